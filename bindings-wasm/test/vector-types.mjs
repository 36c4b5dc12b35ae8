// Writes a TypeScript file that assigns the accounts, policies and network
// maps of the conformance vectors to the package's declared types, plus a few
// shapes the types must reject, so that `tsc --strict` over it shows the
// declarations match what the core reads and answers (excess property checks
// catch a misspelt or missing field; `@ts-expect-error` lines catch types too
// loose to reject anything).
//
// Usage: node vector-types.mjs OUT.ts [MODULE]   (MODULE: @meshplane/wasm)
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [out, module = '@meshplane/wasm'] = process.argv.slice(2);
if (!out) {
  console.error('usage: node vector-types.mjs OUT.ts [MODULE]');
  process.exit(2);
}
const vectors = resolve(fileURLToPath(new URL('../../conformance/vectors', import.meta.url)));

/** Ops whose `input.account` is an account the core accepted. */
const ACCOUNT_OPS = new Set([
  'evaluate_policy', 'accessible_peers', 'network_map', 'all_network_maps', 'register_peer', 'check_login',
]);

const seen = new Set();
const lines = [
  `import type { Account, NetworkMap, Policy } from '${module}';`,
  '',
  '// Shapes the declarations must reject.',
  '// @ts-expect-error a peer needs an address',
  "export const noIp: Account = { peers: [{ id: 'p', name: 'n' }] };",
  '// @ts-expect-error protocols are a closed set',
  "export const badProtocol: Policy = { id: 'x', name: 'x', enabled: true, rules: [{ action: 'accept', protocol: 'sctp' }] };",
  '// @ts-expect-error a map has no such field',
  'export const extra = (m: NetworkMap): NetworkMap => ({ ...m, peer_count: 1 });',
  '',
];
let n = 0;
function check(type, value) {
  const text = JSON.stringify(value);
  const key = `${type}\0${text}`;
  if (seen.has(key)) return;
  seen.add(key);
  lines.push(`export const v${n++}: ${type} = ${text};`);
}

for (const area of readdirSync(vectors, { withFileTypes: true })) {
  if (!area.isDirectory()) continue;
  for (const file of readdirSync(join(vectors, area.name)).filter((f) => f.endsWith('.json')).sort()) {
    for (const c of JSON.parse(readFileSync(join(vectors, area.name, file), 'utf8')).cases) {
      if (!('expect' in c)) continue; // error cases may hold deliberately malformed input
      if (ACCOUNT_OPS.has(c.op) && c.input.account) check('Account', c.input.account);
      if (c.op === 'validate_policy') check('Policy', c.input.policy);
      if (c.op === 'generate_bench_account') check('Required<Account>', c.expect);
      if (c.op === 'network_map') check('NetworkMap', c.expect);
      if (c.op === 'all_network_maps') check('Record<string, NetworkMap>', c.expect);
    }
  }
}
writeFileSync(out, `${lines.join('\n')}\n`);
console.log(`vector-types: ${n} values from the vectors typed in ${out}`);
