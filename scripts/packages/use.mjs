// Uses an installed JavaScript package of meshplane (@meshplane/node or
// @meshplane/wasm) the way a user's project does: by name, from the
// node_modules of the directory this file was copied into. Checks that the
// name resolves there (not to the source tree), answers the first vector of a
// few ops exactly as the vector says, and raises errors with the core's code.
//
// Usage (from scripts/test-packages.sh): node use.mjs PACKAGE VECTORS_DIR
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const [name, vectors] = process.argv.slice(2);
if (!name || !vectors) {
  console.error('usage: node use.mjs PACKAGE VECTORS_DIR');
  process.exit(2);
}
const app = dirname(fileURLToPath(import.meta.url));
const inApp = (file) => file.startsWith(join(app, 'node_modules') + sep);

// Both module systems reach the package, and both from this project.
const require = createRequire(import.meta.url);
const viaRequire = require(name);
const mp = await import(name);
const resolved = fileURLToPath(import.meta.resolve(name));
assert.ok(inApp(resolved), `${name} resolved to ${resolved}, outside ${app}`);
assert.ok(inApp(require.resolve(name)), `require('${name}') resolved outside ${app}`);
assert.equal(typeof viaRequire.networkMap, 'function');
console.log(`${name}: ${resolved}`);
if (name === '@meshplane/node') {
  // The addon comes from the per-platform package npm picked, not from a
  // file shipped in the main package.
  const platform = `@meshplane/node-${process.platform}-${process.arch}-gnu`;
  assert.ok(inApp(require.resolve(platform)), `${platform} is installed in ${app}`);
  const shipped = readdirSync(dirname(resolved)).filter((f) => f.endsWith('.node'));
  assert.deepEqual(shipped, [], 'the main package ships no addon');
}

/** The first case with a non-empty expected answer of each op, from the vectors. */
function firstCases(ops) {
  const found = new Map();
  const files = readdirSync(vectors, { recursive: true }).filter((f) => f.endsWith('.json')).sort();
  for (const file of files) {
    const { cases = [] } = JSON.parse(readFileSync(join(vectors, file), 'utf8'));
    for (const c of cases) {
      const answered = c.expect != null && Object.keys(c.expect).length > 0;
      if (ops.includes(c.op) && answered && !found.has(c.op)) found.set(c.op, c);
    }
  }
  assert.deepEqual([...found.keys()].sort(), [...ops].sort(), 'a vector for every op');
  return [...found.values()];
}

const camel = (op) => op.replace(/_([a-z])/g, (_, ch) => ch.toUpperCase());
for (const c of firstCases(['generate_bench_account', 'evaluate_policy', 'network_map', 'all_network_maps'])) {
  assert.deepStrictEqual(mp[camel(c.op)](c.input), c.expect, `${c.id} through ${camel(c.op)}`);
  console.log(`${name}: ${c.id} as the vector says`);
}

assert.throws(() => mp.validateNamePrefix('My_Svc'), (e) => e instanceof Error && e.code === 'invalid_name_prefix');
const table = new mp.SessionTable({ seed: 7 });
const now = '2026-01-01T00:00:00Z';
const session = table.create(
  { peer: { id: 'p1', name: 'laptop' }, settings: { peer_expose_enabled: true } },
  { port: 8080, name_prefix: 'demo' },
  now,
);
assert.equal(session.port, 8080);
assert.equal(table.length, 1);
console.log(`${name}: ok`);
