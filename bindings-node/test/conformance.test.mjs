// Runs every conformance vector through the napi addon.
import { createRequire } from 'node:module';
import { runConformance } from './conformance.mjs';

runConformance(createRequire(import.meta.url)('../index.js'));
