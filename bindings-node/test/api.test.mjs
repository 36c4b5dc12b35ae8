// API tests of the napi addon.
import { createRequire } from 'node:module';
import { apiTests } from './api.mjs';

apiTests(createRequire(import.meta.url)('../index.js'));
