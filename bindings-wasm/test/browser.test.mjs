// Drives the demo page in Debian's Chromium, headless: serves the demo site
// that demo/build.sh assembled from the package tarball (its directory is the
// first argument, or DEMO_SITE) on 127.0.0.1, types into the page, checks the
// verdicts in the DOM, and saves a screenshot to artifacts/browser-demo.png.
//
// CHROMIUM overrides the browser path (default /usr/bin/chromium).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const pkgRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));
const artifacts = resolve(pkgRoot, '..', 'artifacts');
const siteArg = process.argv[2] ?? process.env.DEMO_SITE;
if (!siteArg) {
  console.error('usage: node test/browser.test.mjs SITE   (a directory made by demo/build.sh)');
  process.exit(2);
}
const site = resolve(siteArg);
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};
const PREFIX_ERROR =
  'invalid name prefix "My_Svc": must be lowercase alphanumeric with optional hyphens, 1-32 characters';

let server;
let browser;
let page;
let base;

/** Serves the demo site (the page and its node_modules) read-only. */
function serve() {
  return createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = join(site, path);
    if (!file.startsWith(site) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
}

before(async () => {
  server = serve();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${base}/index.html`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 }).catch((e) => {
    throw new Error(`page did not start: ${problems.join('; ') || e.message}`);
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

test('a bad name prefix shows the exact error', async () => {
  await page.fill('#prefix', '');
  await page.type('#prefix', 'My_Svc');
  const el = page.locator('#prefix-verdict');
  assert.equal(await el.getAttribute('data-state'), 'error');
  assert.equal(await el.getAttribute('data-code'), 'invalid_name_prefix');
  assert.equal(await el.textContent(), PREFIX_ERROR);
});

test('a good name prefix is accepted', async () => {
  await page.fill('#prefix', '');
  await page.type('#prefix', 'my-svc');
  const el = page.locator('#prefix-verdict');
  assert.equal(await el.getAttribute('data-state'), 'ok');
  assert.equal(await el.textContent(), '"my-svc" is a valid name prefix');
});

async function ask(source, destination, protocol, port) {
  await page.selectOption('#source', source);
  await page.selectOption('#destination', destination);
  await page.selectOption('#protocol', protocol);
  await page.fill('#port', String(port));
  return {
    state: await page.locator('#reach-verdict').getAttribute('data-state'),
    verdict: await page.locator('#reach-verdict').textContent(),
    rule: await page.locator('#reach-rule').textContent(),
  };
}

test('the sample account is preloaded and explains an allowed query', async () => {
  const account = JSON.parse(await page.inputValue('#account'));
  assert.equal(account.id, 'acc-demo');
  const r = await ask('laptop', 'web-1', 'tcp', 443);
  assert.equal(r.state, 'allowed');
  assert.match(r.verdict, /^Allowed: /);
  assert.equal(r.rule, 'Deciding policy "Developers to web" (pol-web), rule "HTTPS and SSH" (rule-https), action accept');
});

test('a drop rule is named as the decider', async () => {
  const r = await ask('ci-runner', 'db-1', 'tcp', 5432);
  assert.equal(r.state, 'denied');
  assert.match(r.verdict, /^Denied: /);
  assert.equal(r.rule, 'Deciding policy "Keep CI out of databases" (pol-guard), rule "No CI to DB" (rule-no-ci-db), action drop');
});

test('no matching rule denies with no decider', async () => {
  const r = await ask('laptop', 'db-1', 'tcp', 5432);
  assert.equal(r.state, 'denied');
  assert.equal(r.rule, 'No rule matched.');
});

test('a port outside the rule is denied', async () => {
  const r = await ask('laptop', 'web-1', 'tcp', 8080);
  assert.equal(r.state, 'denied');
  await ask('laptop', 'web-1', 'tcp', 443);
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'browser-demo.png'), fullPage: true });
});
