// Builds the dashboard into dist/: the TypeScript bundled by esbuild into
// app.js, the page, the stylesheet and the core's wasm from the wasm
// package that bindings-wasm/build.sh makes. meshplane-server embeds dist/
// when it is built after this.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..', 'bindings-wasm', 'pkg', 'web');
const wasm = join(pkg, 'meshplane_wasm_bg.wasm');
if (!existsSync(wasm)) {
  console.error(`dashboard: ${wasm} is missing; run \`bash bindings-wasm/build.sh\` first`);
  process.exit(1);
}
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
await build({
  entryPoints: [join(here, 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: false,
  outfile: join(dist, 'app.js'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(dist, 'index.html'));
copyFileSync(join(here, 'src', 'app.css'), join(dist, 'app.css'));
copyFileSync(wasm, join(dist, 'meshplane_wasm_bg.wasm'));
console.log(`dashboard: built ${dist}`);
