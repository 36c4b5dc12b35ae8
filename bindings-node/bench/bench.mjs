// `node bench/bench.mjs` (after `npm run build`): per-call cost from Node
// through the napi addon.
import { createRequire } from 'node:module';
import { benchCalls } from './calls.mjs';

benchCalls(createRequire(import.meta.url)('../index.js'), 'node-napi');
