// The wasm core in the page: the same validation messages, access
// decisions and counts the server computes, from the same code.

import init, { call, callJson } from '../../bindings-wasm/pkg/web/meshplane_wasm.js';
import type {
  RestAccount, RestGroup, RestNetwork, RestPeer, RestPolicy, RestPostureCheck, RestResource, RestRouter, RestRule,
} from './types';
import { get } from './api';

export async function loadCore(): Promise<void> {
  await init({ module_or_path: '/meshplane_wasm_bg.wasm' });
}

/** The core's message for a bad value, or null when the value is valid. */
export function invalid(op: string, value: unknown): string | null {
  try {
    call(op, { value });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Runs an op on a large input: JSON text crosses into wasm faster than objects. */
function big<T>(op: string, input: unknown): T {
  const answer = JSON.parse(callJson(JSON.stringify({ op, input }))) as
    { ok: T } | { error: { code: string; message: string } };
  if ('error' in answer) throw new Error(answer.error.message);
  return answer.ok;
}

const NEVER = '0001-01-01T00:00:00Z';
const time = (t: string | undefined) => (!t || t === NEVER ? 0 : t);

/** A REST rule as the core reads it (sides as group ids). */
export function coreRule(r: RestRule) {
  return {
    id: r.id ?? '', name: r.name, description: r.description ?? '', enabled: r.enabled, action: r.action,
    bidirectional: r.bidirectional, protocol: r.protocol, ports: r.ports ?? [], port_ranges: r.port_ranges ?? [],
    sources: (r.sources ?? []).map((g) => g.id), destinations: (r.destinations ?? []).map((g) => g.id),
    sourceResource: r.sourceResource ?? undefined, destinationResource: r.destinationResource ?? undefined,
  };
}
function corePolicy(p: RestPolicy) {
  return {
    id: p.id, name: p.name, description: p.description ?? '', enabled: p.enabled,
    source_posture_checks: p.source_posture_checks ?? [], rules: p.rules.map(coreRule),
  };
}

/** The account as the core reads it, built from the REST lists. */
export type CoreAccount = Record<string, unknown> & { peers: { id: string; name: string }[] };

export interface Loaded { account: CoreAccount; peers: RestPeer[]; groups: RestGroup[]; policies: RestPolicy[] }

/** Loads everything access decisions depend on. */
export async function loadAccount(): Promise<Loaded> {
  const [accounts, peers, groups, policies, checks, networks] = await Promise.all([
    get<RestAccount[]>('/accounts'), get<RestPeer[]>('/peers'), get<RestGroup[]>('/groups'),
    get<RestPolicy[]>('/policies'), get<RestPostureCheck[]>('/posture-checks'), get<RestNetwork[]>('/networks'),
  ]);
  const perNetwork = await Promise.all(networks.map(async (n) => {
    const [resources, routers] = await Promise.all([
      get<RestResource[]>(`/networks/${n.id}/resources`), get<RestRouter[]>(`/networks/${n.id}/routers`),
    ]);
    return { n, resources, routers };
  }));
  // Members as the groups list them (the peers list leaves out some, such
  // as the reverse proxies' memberships).
  const members = new Map<string, string[]>(groups.map((g) => [g.id, (g.peers ?? []).map((p) => p.id)]));
  const account: CoreAccount = {
    id: accounts[0]?.id ?? '',
    domain: accounts[0]?.domain ?? '',
    settings: accounts[0]?.settings ?? {},
    peers: peers.map((p) => {
      const [os, ...release] = (p.os ?? '').split(' ');
      return {
        id: p.id, name: p.name, ip: p.ip, dns_label: p.dns_label.split('.')[0], hostname: p.hostname,
        user_id: p.user_id || null,
        meta: {
          os: (os ?? '').toLowerCase(), os_version: release.join(' '), kernel_version: p.kernel_version,
          version: p.version, ui_version: p.ui_version, serial_number: p.serial_number,
        },
        connected: p.connected, last_seen: time(p.last_seen), last_login: time(p.last_login),
        created_at: time(p.created_at), ssh_enabled: p.ssh_enabled,
        login_expiration_enabled: p.login_expiration_enabled,
        inactivity_expiration_enabled: p.inactivity_expiration_enabled,
        approval_required: p.approval_required, ephemeral: p.ephemeral,
      };
    }),
    groups: groups.map((g) => ({
      id: g.id, name: g.name, peers: members.get(g.id) ?? [], resources: g.resources ?? [],
    })),
    policies: policies.map(corePolicy),
    posture_checks: checks,
    networks: networks.map((n) => ({ id: n.id, name: n.name, description: n.description })),
    network_resources: perNetwork.flatMap(({ n, resources }) => resources.map((r) => ({
      id: r.id, network_id: n.id, name: r.name, description: r.description, address: r.address,
      type: r.type, enabled: r.enabled,
    }))),
    network_routers: perNetwork.flatMap(({ n, routers }) => routers.map((r) => ({
      id: r.id, network_id: n.id, peer: r.peer || undefined, peer_groups: r.peer_groups ?? [],
      metric: r.metric, masquerade: r.masquerade, enabled: r.enabled,
    }))),
  };
  return { account, peers, groups, policies };
}

export interface Decided { policy_id: string; policy_name: string; rule_id: string; rule_name: string; action: string }
export interface Verdict { connected: boolean; decided_by: Decided | null; reason: string }
export interface PeerVerdict extends Verdict { peer_id: string; peer_name: string }
export interface PairChange extends Verdict { a: string; a_name: string; b: string; b_name: string }
export interface Preview { gained: number; lost: number; pairs: PairChange[]; truncated: boolean }

export function explainPeer(account: CoreAccount, peerId: string): PeerVerdict[] {
  return big('explain_peer', { account, peer_id: peerId, now: Date.now() });
}

export function previewPolicy(account: CoreAccount, policy: unknown, limit = 50): Preview {
  return big('preview_policy', { account, policy, now: Date.now(), limit });
}

/** The core's objection to a policy as it would be saved, or null. */
export function policyProblem(policy: unknown): string | null {
  try {
    call('validate_policy', { policy });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
