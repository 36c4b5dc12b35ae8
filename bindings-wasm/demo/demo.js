// The demo's glue: every decision comes from the wasm core; this file only
// reads inputs and writes the verdicts into the DOM. A dashboard can copy
// the two `show*` functions as they are. It imports the published package
// by name; index.html's import map resolves the name in the site that
// demo/build.sh assembles from the package tarball.
import init, { validateNamePrefix, evaluatePolicy } from '@meshplane/wasm';

const $ = (id) => document.getElementById(id);

function verdict(el, ok, text) {
  el.className = `verdict ${ok ? 'ok' : 'bad'}`;
  el.dataset.state = ok ? 'ok' : 'error';
  el.textContent = text;
}

/** Live validation of the name prefix: the core's exact message on error. */
function showPrefix() {
  const value = $('prefix').value;
  const el = $('prefix-verdict');
  if (value === '') {
    el.className = 'verdict muted';
    el.dataset.state = 'empty';
    el.textContent = 'Type a prefix.';
    return;
  }
  try {
    verdict(el, true, `"${validateNamePrefix(value)}" is a valid name prefix`);
  } catch (e) {
    verdict(el, false, e.message);
    el.dataset.code = e.code;
  }
}

/** Fills the peer pickers from the account JSON, keeping the choices made. */
function fillPeers(account) {
  for (const [id, fallback] of [['source', 0], ['destination', 1]]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren(
      ...(account.peers ?? []).map((p) => new Option(`${p.name} (${p.ip})`, p.id)),
    );
    const ids = [...select.options].map((o) => o.value);
    select.value = ids.includes(keep) ? keep : (ids[fallback] ?? '');
  }
}

/** The reachability explainer: verdict plus the deciding policy and rule. */
function showReach() {
  const el = $('reach-verdict');
  const ruleEl = $('reach-rule');
  ruleEl.textContent = '';
  let account;
  try {
    account = JSON.parse($('account').value);
  } catch (e) {
    verdict(el, false, `account JSON: ${e.message}`);
    return;
  }
  fillPeers(account);
  const port = $('port').value === '' ? null : Number($('port').value);
  const query = {
    source: $('source').value,
    destination: { peer: $('destination').value },
    protocol: $('protocol').value,
    port,
  };
  try {
    const d = evaluatePolicy({ account, query });
    verdict(el, d.allowed, `${d.allowed ? 'Allowed' : 'Denied'}: ${d.reason}`);
    el.dataset.state = d.allowed ? 'allowed' : 'denied';
    if (d.decided_by) {
      const r = d.decided_by;
      ruleEl.textContent = `Deciding policy "${r.policy_name}" (${r.policy_id}), rule "${r.rule_name}" (${r.rule_id}), action ${r.action}`;
    } else {
      ruleEl.textContent = 'No rule matched.';
    }
  } catch (e) {
    verdict(el, false, e.message);
  }
}

await init();
$('account').value = JSON.stringify(await (await fetch('./sample-account.json')).json(), null, 2);
$('prefix').addEventListener('input', showPrefix);
for (const id of ['account', 'source', 'destination', 'protocol', 'port']) {
  $(id).addEventListener('input', showReach);
  $(id).addEventListener('change', showReach);
}
showPrefix();
showReach();
document.body.dataset.ready = 'true';
