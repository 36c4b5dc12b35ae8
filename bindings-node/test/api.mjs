// API tests shared by the napi addon and the wasm Node build, which expose
// the same JavaScript surface: named functions over the generic `call`, and
// errors thrown as `Error` objects with `code`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

const NOW = '2026-01-01T00:00:00Z';

/** Registers the API tests against `binding`. */
export function apiTests(b) {
  test('validators answer the value', () => {
    assert.equal(b.validateNamePrefix('my-svc'), 'my-svc');
    assert.equal(b.validatePort(443), 443);
    assert.equal(b.validatePin('123456'), undefined);
    assert.deepEqual(b.validateUserGroups(['devs']), ['devs']);
  });

  test('errors are Error objects with code and the exact message', () => {
    assert.throws(
      () => b.validateNamePrefix('My_Svc'),
      (e) =>
        e instanceof Error &&
        e.code === 'invalid_name_prefix' &&
        e.message ===
          'invalid name prefix "My_Svc": must be lowercase alphanumeric with optional hyphens, 1-32 characters',
    );
    assert.throws(() => b.validatePort(70000), { code: 'invalid_port' });
    assert.throws(() => b.validatePort(1.5), { code: 'invalid_input' });
    assert.throws(() => b.call('no_such_op', {}), { code: 'unknown_op' });
  });

  test('named ops equal the generic call', () => {
    const account = b.generateBenchAccount({ peers: 20, groups: 4, now: NOW });
    const [p0, p1] = account.peers.map((p) => p.id);
    const input = { account, peer_id: p0, now: NOW };
    assert.deepEqual(b.networkMap(input), b.call('network_map', input));
    const maps = b.allNetworkMaps({ account, now: NOW });
    assert.deepEqual(Object.keys(maps).sort(), account.peers.map((p) => p.id).sort());
    const d = b.evaluatePolicy({
      account,
      query: { source: p0, destination: { peer: p1 }, protocol: 'tcp', port: 22 },
      now: NOW,
    });
    assert.equal(typeof d.allowed, 'boolean');
    assert.ok(d.reason.length > 0);
    assert.throws(() => b.networkMap({ account, peer_id: 'nope', now: NOW }), { code: 'peer_not_found' });
  });

  test('PAT and setup-key helpers round-trip', () => {
    const pat = b.patGenerate({ seed: 7 });
    assert.deepEqual(b.patGenerate({ seed: 7 }), pat);
    assert.deepEqual(b.patValidate({ token: pat.token }), { valid: true });
    assert.deepEqual(b.secretVerify({ secret: pat.token, hash: pat.hashed_token }), { matches: true });
    const key = b.setupKeyGenerate({ seed: 3 });
    assert.deepEqual(b.setupKeyValidate({ key: key.key }), { valid: true });
    assert.deepEqual(b.setupKeyMask({ key: key.key }), { masked_key: key.masked_key });
  });

  test('integer millisecond times beyond 32 bits stay integers', () => {
    const byMs = b.generateBenchAccount({ peers: 3, groups: 1, now: 1_750_000_000_000 });
    const byText = b.generateBenchAccount({ peers: 3, groups: 1, now: '2025-06-15T15:06:40Z' });
    assert.deepEqual(byMs, byText);
  });

  test('expose names come from the seed', () => {
    assert.match(b.exposeGenerateName({ name_prefix: 'demo', seed: 1 }).name, /^demo-[a-z0-9]{4}$/);
    assert.deepEqual(b.exposeGenerateName({ seed: 1 }), b.call('expose_generate_name', { seed: 1 }));
    assert.throws(() => b.exposeGenerateName({ name_prefix: 'Bad!', seed: 1 }), { code: 'invalid_name_prefix' });
  });

  test('callJson answers the envelope', () => {
    const answer = JSON.parse(b.callJson(JSON.stringify({ op: 'validate_pin', input: { value: '12' } })));
    assert.deepEqual(answer, { error: { code: 'invalid_pin', message: 'invalid pin: must be exactly 6 digits' } });
    assert.ok(b.ops().includes('network_map'));
  });

  test('SessionTable matches the expose_table_run op step for step', () => {
    const settings = { peer_expose_enabled: true };
    const peer = { id: 'p1', name: 'laptop' };
    const t0 = 1_750_000_000_000;
    const table = new b.SessionTable({ seed: 9, config: { max_sessions_per_peer: 1 } });
    const s = table.create({ peer, settings }, { port: 8080, name_prefix: 'demo', pin: '123456' }, t0);
    assert.throws(() => table.create({ peer, settings }, { port: 8081 }, t0), { code: 'limit_reached' });
    const deadline = table.renew('p1', s.domain, t0 + 30_000);
    assert.equal(table.length, 1);
    assert.deepEqual(table.get(s.domain), { ...s, deadline });
    table.handleTimeout(t0 + 200_000);
    assert.equal(table.length, 0);
    assert.equal(table.pollTimeout(), null);
    const events = [table.pollEvent(), table.pollEvent()];
    assert.equal(table.pollEvent(), null);
    assert.throws(() => table.renew('p1', s.domain, t0 + 300_000), { code: 'session_not_found' });

    const run = b.call('expose_table_run', {
      config: { max_sessions_per_peer: 1 },
      settings,
      peers: [peer],
      seed: 9,
      steps: [
        { at: t0, action: 'create', peer: 'p1', request: { port: 8080, name_prefix: 'demo', pin: '123456' } },
        { at: t0, action: 'create', peer: 'p1', request: { port: 8081 } },
        { at: t0 + 30_000, action: 'renew', peer: 'p1', domain: s.domain },
        { at: t0 + 200_000, action: 'tick' },
      ],
    });
    assert.deepEqual(run.results[0], { ok: s });
    assert.equal(run.results[1].error.code, 'limit_reached');
    assert.deepEqual(run.results[2], { ok: { deadline } });
    assert.deepEqual(run.events, events);
    assert.deepEqual(run.sessions, table.sessions());
  });

  test('KeepAlive matches the expose_keepalive_run op step for step', () => {
    const start = '2026-01-01T00:00:00Z';
    const ka = new b.KeepAlive({ now: start });
    const snap = (at) => {
      const transmits = [];
      for (let t = ka.pollTransmit(); t !== null; t = ka.pollTransmit()) transmits.push(t);
      const events = [];
      for (let e = ka.pollEvent(); e !== null; e = ka.pollEvent()) events.push(e);
      return { at, state: ka.state, transmits, events, next_timeout: ka.pollTimeout() };
    };
    const initial = snap(start);
    ka.handleTimeout('2026-01-01T00:00:30Z');
    const renewing = snap('2026-01-01T00:00:30Z');
    ka.handleRenewOk('2026-01-01T00:00:31Z');
    const renewed = snap('2026-01-01T00:00:31Z');
    ka.stop('2026-01-01T00:00:40Z');
    const stopping = snap('2026-01-01T00:00:40Z');
    ka.handleStopDone('2026-01-01T00:00:41Z');
    const stopped = snap('2026-01-01T00:00:41Z');
    assert.ok(ka.isFinished);
    const run = b.call('expose_keepalive_run', {
      start,
      steps: [
        { at: '2026-01-01T00:00:30Z', input: 'timeout' },
        { at: '2026-01-01T00:00:31Z', input: 'renew_ok' },
        { at: '2026-01-01T00:00:40Z', input: 'stop' },
        { at: '2026-01-01T00:00:41Z', input: 'stop_done' },
      ],
    });
    assert.deepEqual(run, { initial, trace: [renewing, renewed, stopping, stopped] });
    assert.deepEqual(stopped.state, { state: 'stopped', clean: true });
  });
}
