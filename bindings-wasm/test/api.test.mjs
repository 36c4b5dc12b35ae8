// API tests of the wasm build for Node (the same tests as the napi addon's).
import { createRequire } from 'node:module';
import { apiTests } from '../../bindings-node/test/api.mjs';

apiTests(createRequire(import.meta.url)('../pkg/node/meshplane_wasm.js'));
