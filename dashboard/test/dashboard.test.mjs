// The dashboard in Debian's Chromium against a real meshplane-server on its
// embedded store: sign in with the token `admin-token` printed; create a
// group and a setup key (the plain key shown once); a real userspace
// daemon joins with that key and shows as connected; a policy with a bad
// port is refused inline before any request, then a good one previews the
// pairs that gain access and is saved (the API has it, the audit page
// shows it); a peer's "why" panel names the deciding rule; `meshplane
// expose` makes a service appear on the services page and Ctrl+C makes it
// disappear, without reloads. A screenshot of every page goes to
// artifacts/dashboard-*.png.
//
// MESHPLANE_BIN: the directory with meshplane-server and meshplane (built
// after dashboard/dist, so the server embeds it). CHROMIUM overrides the
// browser path (default /usr/bin/chromium).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, restClient } from './support.mjs';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const artifacts = join(root, 'artifacts');
const bin = process.env.MESHPLANE_BIN;
if (!bin) {
  console.error('set MESHPLANE_BIN to the directory holding meshplane-server and meshplane');
  process.exit(2);
}
const serverBin = join(bin, 'meshplane-server');
const meshplane = join(bin, 'meshplane');
const dir = mkdtempSync(join(tmpdir(), 'meshplane-dashboard-'));
const children = [];
let browser;
let page;
let base;
let token;
let rest;

/** A free TCP port on loopback. */
function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Starts a long-running process whose stderr goes to a log file. */
function start(name, command, args, env = {}) {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.output = '';
  child.stdout.on('data', (d) => { child.output += d; });
  child.stderr.on('data', (d) => { child.output += d; });
  child.label = name;
  children.push(child);
  return child;
}

/** Polls `probe` until it answers truthy (each try is quick; the deadline only ends a hung test). */
async function until(what, probe, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const answer = await probe().catch(() => undefined);
    if (answer) return answer;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}


async function shot(name) {
  await page.screenshot({ path: join(artifacts, `dashboard-${name}.png`), fullPage: true });
}

/** Goes to a page through the app's own navigation. */
async function open(label) {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: label, exact: true }).click();
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const data = join(dir, 'data');
  token = execFileSync(serverBin, ['admin-token', '--data-dir', data], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  rest = restClient(base, token);
  start('server', serverBin, ['--data-dir', data, '--listen', `127.0.0.1:${port}`], { MESHPLANE_LOG: 'warn' });
  await until('the server', async () => (await fetch(`${base}/health`)).ok);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => { throw e; });
});

after(async () => {
  await browser?.close();
  for (const child of children.reverse()) {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
  await new Promise((r) => setTimeout(r, 300));
  for (const child of children) {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (process.env.DASHBOARD_TEST_LOGS) console.error(`--- ${child.label}\n${child.output}`);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('a newcomer manages the account from the dashboard', async (t) => {
  // Each step needs the ones before it: after a failure the rest are
  // skipped, and the page at the failure is saved.
  let failed = false;
  const step = (name, body) => t.test(name, { skip: failed && 'an earlier step failed' }, async () => {
    try {
      await body();
    } catch (e) {
      failed = true;
      await shot('failure').catch(() => {});
      throw e;
    }
  });
  let plainKey;
  let laptop;
  let server;
  let developers;

  await step('the page is served with a strict policy and asks to sign in', async () => {
    const response = await page.goto(`${base}/`);
    assert.match(response.headers()['content-security-policy'], /script-src 'self' 'wasm-unsafe-eval'/);
    await page.getByRole('heading', { name: 'Sign in to meshplane' }).waitFor();
    await page.getByLabel('Personal access token').fill('nbp_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.error-box').waitFor();
    await shot('signin');
    await page.getByLabel('Personal access token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Peers' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/peers');
    // The token lives in session storage only, never in the URL or local storage.
    assert.ok(!page.url().includes(token));
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await page.getByText('No peers yet').waitFor();
  });

  await step('a group is created', async () => {
    await open('Groups');
    await page.getByLabel('Name').fill('developers');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.getByRole('cell', { name: 'developers', exact: true }).waitFor();
    await shot('groups');
  });

  await step('a setup key is created and its plain key shown once', async () => {
    await open('Setup keys');
    await page.getByLabel('Name', { exact: true }).fill('laptops');
    await page.getByLabel('Type').selectOption('reusable');
    await page.getByLabel('Groups of new peers').selectOption({ label: 'developers' });
    await page.getByRole('button', { name: 'Create setup key' }).click();
    const key = page.locator('code.plain-key');
    await key.waitFor();
    plainKey = (await key.textContent()).trim();
    assert.match(plainKey, /^[0-9A-F-]{36}$/);
    await shot('setup-keys');
    await page.reload();
    await page.getByRole('cell', { name: 'laptops', exact: true }).waitFor();
    assert.equal(await page.locator('code.plain-key').count(), 0);
    assert.equal(await page.getByText(plainKey).count(), 0);
  });

  await step('the default policy is deleted from the list', async () => {
    await open('Policies');
    const row = page.getByRole('row').filter({ hasText: 'Default' });
    await row.getByRole('button', { name: 'Delete' }).click();
    await page.getByText('No policies').waitFor();
  });

  await step('daemons on the userspace stack join and show as connected', async () => {
    // The reverse proxy `meshplane expose` needs, and two netstack daemons
    // that join with the key the page showed.
    const proxies = await rest('POST', '/groups', { name: 'proxies' });
    const proxyKey = await rest('POST', '/setup-keys', { name: 'proxy', type: 'reusable', expires_in: 86400, auto_groups: [proxies.id], usage_limit: 0 });
    writeFileSync(join(dir, 'proxy-key'), `${proxyKey.key}\n`);
    const proxyPort = await freePort();
    start('proxy', meshplane, ['proxy', '--management-url', base, '--setup-key-file', join(dir, 'proxy-key'),
      '--domain', 'proxy.localhost', '--listen', `127.0.0.1:${proxyPort}`, '--state-dir', join(dir, 'proxy')]);
    const joined = [];
    for (const name of ['laptop', 'server']) {
      const socket = join(dir, `${name}.sock`);
      start(name, meshplane, ['daemon', '--netstack', '--state-dir', join(dir, name), '--socket', socket]);
      await until(`the ${name} daemon's socket`, async () => {
        execFileSync(meshplane, ['--socket', socket, 'status'], { stdio: 'ignore' });
        return true;
      });
      execFileSync(meshplane, ['--socket', socket, 'up', '--management-url', base], {
        env: { ...process.env, MESHPLANE_SETUP_KEY: plainKey }, stdio: 'ignore',
      });
      const peer = await until(`the ${name} peer`, async () => (await rest('GET', '/peers'))
        .find((p) => !joined.some((j) => j.id === p.id) && p.groups.some((g) => g.name === 'developers')));
      // Both run on this machine under one hostname: name them apart.
      await rest('PUT', `/peers/${peer.id}`, { name, ssh_enabled: false, login_expiration_enabled: false, inactivity_expiration_enabled: false });
      joined.push({ ...peer, name, socket });
    }
    [laptop, server] = joined;
    developers = laptop.groups.find((g) => g.name === 'developers').id;
    await until('every peer connected', async () => {
      const list = await rest('GET', '/peers');
      return list.length === 3 && list.every((p) => p.connected);
    });
    await open('Peers');
    const row = page.locator('.peer-row').filter({ has: page.getByRole('link', { name: 'laptop', exact: true }) });
    await row.getByText('connected', { exact: true }).waitFor();
    await page.getByText('3 of 3 peers').waitFor();
    await page.getByLabel('Search').fill('lapt');
    await page.getByText('1 of 3 peers').waitFor();
    await page.getByLabel('Group').selectOption({ label: 'developers' });
    await page.getByLabel('Search').fill('');
    await page.getByText('2 of 3 peers').waitFor();
    await page.getByLabel('Group').selectOption('');
    await shot('peers');
  });

  await step('a bad port is refused inline before any request; a good one previews and saves', async () => {
    const sent = [];
    const track = (request) => {
      if (request.url().includes('/api/policies') && request.method() !== 'GET') sent.push(request.method());
    };
    page.on('request', track);
    await open('Policies');
    await page.getByRole('link', { name: 'Add policy' }).click();
    await page.getByLabel('Name').fill('dev-web');
    await page.getByLabel('Protocol').selectOption('tcp');
    await page.getByLabel('Sources').selectOption({ label: 'developers (2)' });
    await page.getByLabel('Destinations').selectOption({ label: 'developers (2)' });
    await page.getByLabel('Ports').fill('70000');
    const portError = page.locator('#' + (await page.getByLabel('Ports').getAttribute('aria-describedby')));
    await assert.doesNotReject(portError.filter({ hasText: /port/ }).waitFor());
    const message = await portError.textContent();
    // The core's own message, the one the server answers with.
    const refused = await fetch(`${base}/api/policies`, {
      method: 'POST',
      headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'x', enabled: true, rules: [{ name: 'x', enabled: true, action: 'accept', bidirectional: true, protocol: 'tcp', ports: ['70000'], sources: [developers], destinations: [developers] }] }),
    });
    assert.equal(refused.status, 422);
    assert.equal((await refused.json()).message, message);
    assert.ok(await page.getByRole('button', { name: 'Create policy' }).isDisabled());
    await page.getByRole('button', { name: 'Create policy' }).click({ force: true });
    await shot('policy-bad-port');
    assert.deepEqual(sent, []);
    assert.equal((await rest('GET', '/policies')).length, 0);

    await page.getByLabel('Ports').fill('80');
    await page.getByText('1 pair gain access').waitFor();
    const pair = page.locator('.pairs li.gain');
    await pair.filter({ hasText: 'laptop' }).filter({ hasText: 'server' }).waitFor();
    assert.match(await pair.textContent(), /allowed by policy "dev-web"/);
    await shot('policy-preview');
    await page.getByRole('button', { name: 'Create policy' }).click();
    await page.getByRole('link', { name: 'dev-web' }).waitFor();
    page.off('request', track);
    assert.deepEqual(sent, ['POST']);
    const saved = await rest('GET', '/policies');
    assert.deepEqual(saved.map((p) => [p.name, p.rules[0].ports]), [['dev-web', ['80']]]);
    await shot('policies');

    await open('Audit events');
    await page.getByRole('row').filter({ hasText: 'dev-web' }).first().waitFor();
    await page.getByLabel('Activity').selectOption({ label: 'Policy added' });
    assert.equal(await page.getByRole('row').filter({ hasText: 'dev-web' }).count(), 1);
    await shot('audit');
  });

  await step("a peer's why panel names the deciding rule", async () => {
    await open('Peers');
    await page.getByRole('link', { name: 'laptop', exact: true }).click();
    await page.getByRole('heading', { name: 'Why' }).waitFor();
    const row = page.locator('.why-row').filter({ hasText: 'server' });
    await row.waitFor();
    assert.match(await row.textContent(), /allowed.*allowed by policy "dev-web" rule "dev-web"/);
    await page.getByRole('heading', { name: 'Accessible peers (1)' }).waitFor();
    await shot('peer');
  });

  await step('an exposed service appears live and disappears on Ctrl+C', async () => {
    await open('Settings');
    await page.getByLabel('Peers may expose local services').check();
    await page.getByLabel('Groups whose peers may expose').selectOption({ label: 'developers' });
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByText('Saved.').waitFor();
    await shot('settings');
    await open('Exposed services');
    await page.getByText('No exposed services').waitFor();
    // The command builder checks each value with the core as it is typed.
    await page.getByLabel('Local port').fill('8080');
    await page.getByLabel('Name prefix').fill('My_Svc');
    await page.getByText('invalid name prefix "My_Svc": must be lowercase alphanumeric with optional hyphens, 1-32 characters').waitFor();
    await page.getByLabel('Name prefix').fill('demo');
    await page.getByLabel('PIN').fill('12345');
    await page.getByText('invalid pin: must be exactly 6 digits').waitFor();
    await page.getByLabel('PIN').fill('123456');
    await page.locator('code.command').filter({ hasText: 'meshplane expose 8080 --with-name-prefix demo --with-pin 123456' }).waitFor();
    const webPort = await freePort();
    const site = join(dir, 'site');
    mkdirSync(site);
    writeFileSync(join(site, 'index.html'), '<h1>hello</h1>\n');
    start('web', 'python3', ['-m', 'http.server', String(webPort), '--bind', '127.0.0.1', '--directory', site]);
    const expose = start('expose', meshplane, ['--socket', laptop.socket, 'expose', String(webPort), '--with-name-prefix', 'demo']);
    const domain = await until('expose to print its domain', async () => /Domain:\s+(\S+)/.exec(expose.output)?.[1]);
    const service = page.locator(`[data-service="${domain}"]`);
    await service.waitFor();
    await shot('services');
    expose.kill('SIGINT');
    await service.waitFor({ state: 'detached' });
    await page.getByText('No exposed services').waitFor();
  });

  await step('every other page renders, at laptop and phone widths', async () => {
    for (const [label, name] of [['Posture checks', 'posture-checks'], ['Routes', 'routes'], ['Networks', 'networks'], ['DNS', 'dns'], ['Users & tokens', 'users']]) {
      await open(label);
      await page.getByRole('heading', { name: label, level: 1 }).waitFor();
      await page.locator('.loading').waitFor({ state: 'detached' });
      assert.equal(await page.locator('.error-box').count(), 0, `${label} shows an error`);
      await shot(name);
    }
    await page.setViewportSize({ width: 390, height: 844 });
    await open('Peers');
    await page.getByText('3 of 3 peers').waitFor();
    await shot('peers-phone');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to meshplane' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });
});
