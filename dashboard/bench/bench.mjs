// Measures the dashboard in Debian's Chromium on a large account: the peers
// list (load and first render, search, scrolling through all of it) and the
// policy preview, as the page itself times them. Prints one line per figure.
//
//   node bench/bench.mjs --server-url URL --token TOKEN [--peers N]
//
// The server must serve the dashboard and hold the peers already
// (scripts/bench-dashboard.sh registers them with meshplane-loadgen). The
// script adds 50 groups splitting the peers, when they are missing, so the
// preview has group rules to weigh. CHROMIUM overrides the browser path.
import { parseArgs } from 'node:util';
import { launchChromium, restClient } from '../test/support.mjs';

const { values } = parseArgs({ options: { 'server-url': { type: 'string' }, token: { type: 'string' }, peers: { type: 'string' } } });
const base = values['server-url'];
const token = values.token;
if (!base || !token) {
  console.error('usage: node bench/bench.mjs --server-url URL --token TOKEN [--peers N]');
  process.exit(2);
}
const GROUPS = 50;
const rest = restClient(base, token);


const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(1)} ms`;

const peers = await rest('GET', '/peers');
if (values.peers && peers.length < Number(values.peers)) {
  console.error(`bench: the account holds ${peers.length} peers, fewer than the ${values.peers} asked for`);
  process.exit(1);
}
const groups = await rest('GET', '/groups');
if (!groups.some((g) => g.name === 'bench-0')) {
  const per = Math.floor(peers.length / GROUPS);
  for (let k = 0; k < GROUPS; k++) {
    await rest('POST', '/groups', { name: `bench-${k}`, peers: peers.slice(k * per, (k + 1) * per).map((p) => p.id) });
  }
}
console.log(`account: ${peers.length} peers, ${GROUPS} groups`);

const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
await page.goto(`${base}/`);
await page.getByLabel('Personal access token').fill(token);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByText(`${peers.length} of ${peers.length} peers`).waitFor({ timeout: 120_000 });

// Load and first render: from the click on "Peers" to the count being
// shown, and the part of it after the last REST answer arrived (parsing,
// indexing for search, the first rows).
const loads = [];
for (let i = 0; i < 3; i++) {
  await page.getByRole('link', { name: 'Groups', exact: true }).click();
  await page.getByRole('heading', { name: 'Groups' }).waitFor();
  loads.push(await page.evaluate(async (n) => {
    const shown = new Promise((resolve) => {
      const watch = new MutationObserver(() => {
        if (document.querySelector('.count')?.textContent === `${n} of ${n} peers`) {
          watch.disconnect();
          resolve(performance.now());
        }
      });
      watch.observe(document.body, { childList: true, subtree: true, characterData: true });
    });
    performance.clearResourceTimings();
    const start = performance.now();
    document.querySelector('nav a[href="/peers"]').click();
    const end = await shown;
    const answered = Math.max(...performance.getEntriesByType('resource')
      .filter((e) => /\/api\/(peers|groups)$/.test(e.name)).map((e) => e.responseEnd));
    return { total: end - start, render: end - answered };
  }, peers.length));
}
console.log(`peers list (${peers.length} peers): click to rendered median ${fmt(median(loads.map((l) => l.total)))}, `
  + `of which after the REST answers ${fmt(median(loads.map((l) => l.render)))} (median of 3)`);

// Search: one keystroke's filtering and re-render, up to the next frame.
const searches = await page.evaluate(async () => {
  const box = document.querySelector('input[type="search"]');
  const times = [];
  for (const q of ['p', 'pe', '1', '12', '123', '100.', 'linux', '', 'zzz', '']) {
    const t = performance.now();
    box.value = q;
    box.dispatchEvent(new Event('input', { bubbles: true }));
    await new Promise((r) => requestAnimationFrame(() => r()));
    times.push(performance.now() - t);
  }
  return times;
});
console.log(`peers search, keystroke to next frame: median ${fmt(median(searches))}, max ${fmt(Math.max(...searches))} (${searches.length} queries)`);

// Scrolling the whole list: the time of every frame while it moves.
const frames = await page.evaluate(async () => {
  const list = document.querySelector('.vlist');
  const times = [];
  let last = performance.now();
  for (let y = 0; y <= list.scrollHeight; y += 1500) {
    list.scrollTop = y;
    await new Promise((r) => requestAnimationFrame(() => r()));
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  return times;
});
console.log(`peers scroll, top to bottom: ${frames.length} frames, median ${fmt(median(frames))}, max ${fmt(Math.max(...frames))}`);

// The policy preview, as the editor times it (the core call included).
async function preview(fill, label) {
  const times = [];
  for (let i = 0; i < 5; i++) {
    await page.evaluate(() => delete document.querySelector('.preview').dataset.ms);
    await fill();
    await page.locator('.preview[data-ms]').waitFor({ timeout: 120_000 });
    const ms = Number(await page.locator('.preview').getAttribute('data-ms'));
    const counts = await page.locator('.preview-counts').textContent();
    times.push({ ms, counts });
  }
  console.log(`policy preview, ${label}: median ${fmt(median(times.map((t) => t.ms)))} of 5 (${times[0].counts.replace(/computed.*/, '').trim()})`);
}
const defaultId = (await rest('GET', '/policies')).find((p) => p.name === 'Default').id;
/** Turns the Default policy on or off through the API. */
async function setDefault(enabled) {
  const { id: _id, ...current } = (await rest('GET', '/policies')).find((p) => p.id === defaultId);
  await rest('PUT', `/policies/${defaultId}`, {
    ...current,
    enabled,
    rules: current.rules.map((r) => ({ ...r, sources: r.sources.map((g) => g.id), destinations: r.destinations.map((g) => g.id) })),
  });
}
await setDefault(true);
await page.goto(`${base}/policies/${defaultId}`);
await page.getByLabel('Name').waitFor({ timeout: 120_000 });
await preview(async () => {
  await page.getByLabel('Enabled').setChecked(false);
  await page.getByLabel('Enabled').setChecked(true);
  await page.getByLabel('Enabled').setChecked(false);
}, 'disabling the Default (All <-> All) policy');

// Without the Default policy, a group rule gains pairs of its own.
await setDefault(false);
await page.goto(`${base}/policies/new`);
await page.getByLabel('Name').waitFor({ timeout: 120_000 });
await page.getByLabel('Name').fill('bench');
await page.getByLabel('Protocol').selectOption('tcp');
await page.getByLabel('Sources').selectOption({ label: `bench-0 (${Math.floor(peers.length / GROUPS)})` });
await page.getByLabel('Destinations').selectOption({ label: `bench-1 (${Math.floor(peers.length / GROUPS)})` });
let port = 1000;
await preview(async () => {
  port += 1;
  await page.getByLabel('Ports').fill(String(port));
}, 'a new policy bench-0 -> bench-1 tcp');

await browser.close();
