// Account settings: peer expose on/off and the groups allowed to expose.

import { get, put } from '../api';
import { h } from '../dom';
import type { RestAccount, RestGroup } from '../types';
import { attempt, field, form, loading, page, panel, select, selected } from '../ui';

export function settingsPage(): HTMLElement {
  const slot = h('div', {});
  void loading(slot, async () => {
    const [[account], groups] = await Promise.all([get<RestAccount[]>('/accounts'), get<RestGroup[]>('/groups')]);
    if (!account) throw new Error('no account');
    const enabled = h('input', { type: 'checkbox', id: 'expose-enabled', checked: account.settings.peer_expose_enabled });
    const allowed = field('Groups whose peers may expose', select(groups.map((g): [string, string] => [g.id, g.name]), undefined, true),
      'None selected: every peer may expose.');
    for (const o of allowed.input.options) o.selected = account.settings.peer_expose_groups.includes(o.value);
    const result = h('div', { aria: { live: 'polite' } });
    const save = form('grid-form', async () => {
      const settings = { ...account.settings, peer_expose_enabled: enabled.checked, peer_expose_groups: selected(allowed.input) };
      if (await attempt(result, async () => { await put(`/accounts/${account.id}`, { settings }); })) {
        result.replaceChildren(h('p', { class: 'ok-text', role: 'status' }, 'Saved.'));
      }
    },
    h('div', { class: 'field check' }, enabled, h('label', { for: 'expose-enabled' }, 'Peers may expose local services (`meshplane expose`)')),
    allowed.row, h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Save settings')), result);
    return panel('Exposing services', save);
  });
  return page('Settings', [], slot);
}
