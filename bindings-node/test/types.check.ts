// Compiled with `tsc --noEmit --strict` by scripts/test-bindings.sh: the
// generated declarations of both JavaScript packages must type-check and
// describe the same surface.
import * as napi from '../index';
import * as wasm from '../../bindings-wasm/pkg/node/meshplane_wasm';

type Surface = Pick<
  typeof napi,
  | 'call'
  | 'callJson'
  | 'ops'
  | 'validateNamePrefix'
  | 'validatePort'
  | 'evaluatePolicy'
  | 'networkMap'
  | 'allNetworkMaps'
  | 'patGenerate'
  | 'setupKeyGenerate'
  | 'generateBenchAccount'
>;

function use(b: Surface): string {
  const account: napi.Account = { peers: [] };
  const bench: Required<napi.Account> = b.generateBenchAccount({ peers: 2, groups: 1, now: 0 });
  const firstIp: string | undefined = bench.peers[0]?.ip;
  const d: napi.Decision = b.evaluatePolicy({
    account,
    query: { source: 'a', destination: { peer: 'b' }, protocol: 'tcp', port: 22 },
  });
  const map: napi.NetworkMap = b.networkMap({ account, peer_id: 'a', now: 0 });
  const maps: Record<string, napi.NetworkMap> = b.allNetworkMaps({ account, now: '2026-01-01T00:00:00Z' });
  const port: number = b.validatePort(443);
  const pat: { token: string } = b.patGenerate({ seed: 1 });
  return `${b.validateNamePrefix('x')} ${d.reason} ${map.serial} ${Object.keys(maps).length} ${port} ${pat.token} ${firstIp}`;
}

export const both = [use(napi), use(wasm)];

export function expose(t: napi.SessionTable, w: wasm.SessionTable, k: napi.KeepAlive, kw: wasm.KeepAlive): void {
  const ctx: napi.ExposeContext = { peer: { id: 'p', name: 'p' } };
  const s: napi.Session = t.create(ctx, { port: 80 }, 0);
  const s2: wasm.Session = w.create(ctx, { port: 80 }, 0);
  const states: napi.KeepAliveState[] = [k.state, kw.state];
  const e: napi.ExposeEvent | null = t.pollEvent();
  void [s, s2, states, e, t.length + w.length, k.pollTransmit(), kw.pollTransmit()];
}
