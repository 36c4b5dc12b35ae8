// Runs every conformance vector through the wasm build for Node, with the
// same runner as the napi addon.
import { createRequire } from 'node:module';
import { runConformance } from '../../bindings-node/test/conformance.mjs';

runConformance(createRequire(import.meta.url)('../pkg/node/meshplane_wasm.js'));
