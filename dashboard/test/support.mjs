// What the browser test and the bench share: Chromium launched as CI runs
// it, and REST calls with the owner token.
import { chromium } from 'playwright-core';

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

/** A REST client for `base` with `token`: answers the JSON, throws the server's message. */
export function restClient(base, token) {
  return async (method, path, body) => {
    const response = await fetch(`${base}/api${path}`, {
      method,
      headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${data.message}`);
    return data;
  };
}
