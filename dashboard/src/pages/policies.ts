// Policies: the list, and an editor that validates with the core as you
// type and previews, before saving, which peer pairs gain or lose access
// and which rule decides, on the account this page loaded.

import { get, post, put } from '../api';
import { fill, h } from '../dom';
import { coreRule, loadAccount, policyProblem, previewPolicy, type Loaded, type Preview } from '../core';
import { navigate } from '../nav';
import type { RestPolicy, RestRule } from '../types';
import { attempt, badge, deleteButton, empty, errorBox, field, input, loading, page, panel, select, selected, table } from '../ui';

export function policiesPage(): HTMLElement {
  const list = h('div', {});
  const refresh = () => loading(list, async () => {
    const policies = await get<RestPolicy[]>('/policies');
    if (policies.length === 0) return empty('No policies: no peer reaches another.', h('a', { href: '/policies/new', class: 'btn primary' }, 'Add a policy'));
    return table(['Name', 'State', 'Rules', ''], policies.map((p) => [
      h('a', { href: `/policies/${encodeURIComponent(p.id)}` }, p.name),
      badge(p.enabled ? 'enabled' : 'disabled', p.enabled ? 'ok' : 'muted'),
      p.rules.map(describeRule).join('; '),
      deleteButton(`/policies/${p.id}`, refresh),
    ]), 'Policies');
  });
  void refresh();
  return page('Policies', [h('a', { href: '/policies/new', class: 'btn primary' }, 'Add policy')], list);
}

function describeRule(r: RestRule): string {
  const side = (s: RestRule['sources'], res: RestRule['sourceResource']) =>
    (s ?? []).map((g) => g.name).join(', ') || (res ? `resource ${res.id}` : '—');
  const ports = [...(r.ports ?? []), ...(r.port_ranges ?? []).map((x) => `${x.start}-${x.end}`)].join(',');
  const arrow = r.bidirectional ? '⟷' : '→';
  return `${r.action} ${r.protocol}${ports ? `/${ports}` : ''}: ${side(r.sources, r.sourceResource)} ${arrow} ${side(r.destinations, r.destinationResource)}`;
}

/** Ports as typed ("22, 80, 8000-8100") as a rule's ports and ranges. */
function parsePorts(text: string): { ports: string[]; port_ranges: { start: number; end: number }[] } {
  const ports: string[] = [];
  const port_ranges: { start: number; end: number }[] = [];
  for (const token of text.split(/[\s,]+/).filter(Boolean)) {
    const range = /^(\d+)-(\d+)$/.exec(token);
    if (range) port_ranges.push({ start: Number(range[1]), end: Number(range[2]) });
    else ports.push(token);
  }
  return { ports, port_ranges };
}

export function policyEditor([id]: string[]): HTMLElement {
  const slot = h('div', { class: 'stack' });
  const creating = id === 'new';
  const body = page(creating ? 'New policy' : 'Edit policy', [h('a', { href: '/policies', class: 'btn subtle' }, 'All policies')], slot);
  void loading(slot, async () => {
    const loaded = await loadAccount();
    const existing = creating ? undefined : loaded.policies.find((p) => p.id === id);
    if (!creating && !existing) return errorBox(`policy ${id} not found`);
    return editor(loaded, existing);
  });
  return body;
}

function editor(loaded: Loaded, existing?: RestPolicy): HTMLElement {
  const rule = existing?.rules[0];
  const groupOptions = loaded.groups.map((g): [string, string] => [g.id, `${g.name} (${g.peers_count ?? 0})`]);
  const name = field('Name', input({ name: 'policy-name', value: existing?.name ?? '' }));
  const description = field('Description', input({ name: 'policy-description', value: existing?.description ?? '' }));
  const action = field('Action', select([['accept', 'Accept'], ['drop', 'Drop']], rule?.action ?? 'accept'));
  const protocol = field('Protocol', select([['all', 'All'], ['tcp', 'TCP'], ['udp', 'UDP'], ['icmp', 'ICMP']], rule?.protocol ?? 'all'));
  const sources = field('Sources', select(groupOptions, undefined, true));
  const destinations = field('Destinations', select(groupOptions, undefined, true));
  for (const [f, side] of [[sources, rule?.sources], [destinations, rule?.destinations]] as const) {
    for (const o of f.input.options) o.selected = (side ?? []).some((g) => g.id === o.value);
  }
  const portText = [...(rule?.ports ?? []), ...(rule?.port_ranges ?? []).map((r) => `${r.start}-${r.end}`)].join(', ');
  const ports = field('Ports', input({ name: 'ports', value: portText, placeholder: '22, 443, 8000-8100' }), 'TCP or UDP only; empty: every port');
  const enabled = h('input', { type: 'checkbox', id: 'policy-enabled', checked: existing?.enabled ?? true });
  const bidirectional = h('input', { type: 'checkbox', id: 'policy-bidirectional', checked: rule?.bidirectional ?? true });
  const problem = h('p', { class: 'field-error', role: 'alert', id: 'policy-problem' });
  const save = h('button', { type: 'submit', class: 'btn primary' }, existing ? 'Save policy' : 'Create policy');
  const result = h('div', {});
  const previewSlot = h('div', { class: 'preview', aria: { live: 'polite' } });

  /** The policy as it would be saved, in the core's shape. */
  const draft = () => {
    const { ports: p, port_ranges } = parsePorts(ports.input.value);
    const ruleName = name.input.value.trim();
    return {
      id: existing?.id ?? 'draft-policy',
      name: name.input.value.trim(),
      description: description.input.value,
      enabled: enabled.checked,
      source_posture_checks: existing?.source_posture_checks ?? [],
      rules: [
        {
          id: rule?.id ?? 'draft-rule', name: rule?.name ?? ruleName, description: rule?.description ?? '', enabled: true,
          action: action.input.value, bidirectional: bidirectional.checked, protocol: protocol.input.value,
          ports: p, port_ranges, sources: selected(sources.input), destinations: selected(destinations.input),
        },
        ...(existing?.rules.slice(1).map(coreRule) ?? []),
      ],
    };
  };

  // Each core message goes under the field it is about.
  const fields: [RegExp, { setError(m: string | null): void }][] = [
    [/port/i, ports], [/name/i, name], [/description/i, description], [/source/i, sources], [/destination/i, destinations],
  ];
  let timer = 0;
  // A new policy's messages wait for the first keystroke.
  let touched = existing !== undefined;
  const check = (): boolean => {
    const message = touched ? policyProblem(draft()) : policyProblem(draft()) && '';
    let placed = false;
    for (const [pattern, f] of fields) {
      const mine: boolean = message !== null && !placed && pattern.test(message);
      f.setError(mine ? message : null);
      placed ||= mine;
    }
    problem.textContent = message && !placed ? message : '';
    save.disabled = message !== null;
    if (message === '') {
      previewSlot.replaceChildren(h('p', { class: 'muted' }, 'The preview appears when the policy is valid.'));
      return false;
    }
    window.clearTimeout(timer);
    if (message === null) timer = window.setTimeout(showPreview, 120);
    else previewSlot.replaceChildren(h('p', { class: 'muted' }, 'The preview appears when the policy is valid.'));
    return message === null;
  };

  const showPreview = () => {
    const started = performance.now();
    let preview: Preview;
    try {
      preview = previewPolicy(loaded.account, draft());
    } catch (e) {
      previewSlot.replaceChildren(errorBox((e as Error).message));
      return;
    }
    const took = performance.now() - started;
    previewSlot.dataset.ms = took.toFixed(1);
    fill(previewSlot,
      h('h2', {}, 'What saving changes'),
      h('p', { class: 'preview-counts' },
        badge(`${preview.gained} pair${preview.gained === 1 ? '' : 's'} gain access`, preview.gained ? 'ok' : 'muted'), ' ',
        badge(`${preview.lost} pair${preview.lost === 1 ? '' : 's'} lose access`, preview.lost ? 'bad' : 'muted'),
        h('span', { class: 'muted' }, ` computed in ${took.toFixed(0)} ms`)),
      preview.pairs.length === 0 ? h('p', { class: 'muted' }, 'No pair of peers changes.')
        : h('ul', { class: 'pairs' }, ...preview.pairs.map((p) => h('li', { class: p.connected ? 'gain' : 'loss' },
          h('strong', {}, `${p.a_name} ⟷ ${p.b_name}`), ' ',
          badge(p.connected ? 'gains access' : 'loses access', p.connected ? 'ok' : 'bad'), ' ',
          h('span', { class: 'reason' }, p.reason)))),
      preview.truncated ? h('p', { class: 'muted' }, `Showing the first ${preview.pairs.length}.`) : null);
  };

  const form = h('form', {
    class: 'grid-form',
    aria: { label: 'Policy' },
    on: {
      input: () => { touched = true; check(); },
      change: () => { touched = true; check(); },
      submit: async (e) => {
        e.preventDefault();
        if (!check()) return;
        const d = draft();
        const r = d.rules[0];
        const restRule = { ...r, id: rule?.id, name: r?.name || d.name };
        const bodyOut = {
          name: d.name, description: d.description, enabled: d.enabled, source_posture_checks: d.source_posture_checks,
          rules: [restRule, ...(existing?.rules.slice(1).map((x) => ({ ...x, sources: (x.sources ?? []).map((g) => g.id), destinations: (x.destinations ?? []).map((g) => g.id) })) ?? [])],
        };
        const ok = await attempt(result, async () => {
          if (existing) await put(`/policies/${existing.id}`, bodyOut);
          else await post('/policies', bodyOut);
        });
        if (ok) navigate('/policies');
      },
    },
  },
  name.row, description.row, action.row, protocol.row, sources.row, destinations.row, ports.row,
  h('div', { class: 'field check' }, bidirectional, h('label', { for: 'policy-bidirectional' }, 'Both directions')),
  h('div', { class: 'field check' }, enabled, h('label', { for: 'policy-enabled' }, 'Enabled')),
  h('div', { class: 'form-actions' }, problem, save), result);
  check();
  return h('div', { class: 'editor' }, panel('Policy', form), h('section', { class: 'panel', aria: { label: 'Preview' } }, previewSlot));
}
