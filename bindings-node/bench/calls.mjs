// Per-call cost of the benchmark calls from JavaScript, shared by the napi
// addon and the wasm Node build: one name-prefix validation, one policy
// evaluation and one network map on the 1000-peer / 50-group benchmark
// account (the same calls as core/benches/api_calls.rs). Prints the best of
// five runs per call, in microseconds.

const NOW = 1_750_000_000_000;

function perCall(fn, iterations) {
  for (let i = 0; i < Math.min(iterations, 1000); i += 1) fn();
  let best = Infinity;
  for (let run = 0; run < 5; run += 1) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i += 1) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / iterations / 1000);
  }
  return best;
}

/** Runs the three calls against `b` and prints one line each. */
export function benchCalls(b, label) {
  const account = b.generateBenchAccount({ peers: 1000, groups: 50, now: NOW });
  const query = { source: 'peer-0', destination: { peer: 'peer-20' }, protocol: 'tcp', port: 5432 };
  // The account as JSON text, as a dashboard receives it from the server:
  // `callJson` skips converting a large object into the core's input.
  const request = JSON.stringify({ op: 'network_map', input: { account, peer_id: 'peer-0', now: NOW } });
  const rows = [
    ['validate_name_prefix', () => b.validateNamePrefix('my-svc'), 200_000],
    ['evaluate_policy_1000', () => b.evaluatePolicy({ account, query, now: NOW }), 50],
    ['network_map_1000', () => b.networkMap({ account, peer_id: 'peer-0', now: NOW }), 50],
    ['network_map_1000_json_text', () => b.callJson(request), 50],
  ];
  for (const [name, fn, n] of rows) {
    console.log(`${label} ${name}: ${perCall(fn, n).toFixed(3)} µs/call`);
  }
}
