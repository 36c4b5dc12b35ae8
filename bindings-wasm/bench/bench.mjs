// `node bench/bench.mjs` (after `bash build.sh`): per-call cost from Node
// through the wasm build, with the napi addon's bench calls.
import { createRequire } from 'node:module';
import { benchCalls } from '../../bindings-node/bench/calls.mjs';

benchCalls(createRequire(import.meta.url)('../pkg/node/meshplane_wasm.js'), 'node-wasm');
