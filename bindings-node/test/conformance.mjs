// The shared conformance runner of the JavaScript bindings: the napi addon
// and the wasm Node build run the same vectors through the same code, each
// from its own test file. One node:test test per case; the closing line
// `conformance: N passed, M failed` is what scripts/test-bindings.sh compares
// with the Rust runner's count.
//
// MESHPLANE_VECTORS overrides the vectors directory.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
export const vectorsDir = resolve(process.env.MESHPLANE_VECTORS ?? join(here, '..', '..', 'conformance', 'vectors'));

/** Every vector file under `dir` except the schema, sorted. */
export function vectorFiles(dir = vectorsDir) {
  return readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.json') && !f.endsWith('schema.json'))
    .map((f) => join(dir, f))
    .sort();
}

/** Runs one case; throws an AssertionError saying how the answer differed. */
export function checkCase(binding, c) {
  assert.ok(('expect' in c) !== ('error' in c), 'a case needs exactly one of expect and error');
  if ('expect' in c) {
    assert.deepStrictEqual(binding.call(c.op, c.input), c.expect);
  } else {
    assert.throws(
      () => binding.call(c.op, c.input),
      (e) => {
        assert.ok(e instanceof Error, 'thrown value is an Error');
        assert.deepStrictEqual({ code: e.code, message: e.message }, c.error);
        return true;
      },
    );
  }
}

/** Registers one test per vector case against `binding` (an object with `call`). */
export function runConformance(binding) {
  let passed = 0;
  let failed = 0;
  const seen = new Map();
  const files = vectorFiles();
  test('vector files are present', () => assert.ok(files.length > 0, `no vectors under ${vectorsDir}`));
  for (const file of files) {
    const { cases } = JSON.parse(readFileSync(file, 'utf8'));
    test(relative(vectorsDir, file), async (t) => {
      for (const c of cases) {
        await t.test(c.id, () => {
          try {
            assert.ok(!seen.has(c.id), `duplicate case id ${c.id} (also in ${seen.get(c.id)})`);
            seen.set(c.id, file);
            checkCase(binding, c);
            passed += 1;
          } catch (e) {
            failed += 1;
            throw e;
          }
        });
      }
    });
  }
  after(() => console.log(`conformance: ${passed} passed, ${failed} failed`));
}
