// Setup keys: the plain key is shown once, right after creation; the list
// only ever has the masked key.

import { get, post, put } from '../api';
import { h } from '../dom';
import type { RestGroup } from '../types';
import { attempt, badge, button, deleteButton, field, form, input, page, panel, remoteList, select, selected, table } from '../ui';

interface SetupKey {
  id: string; name: string; key: string; type: string; valid: boolean; revoked: boolean; used_times: number;
  usage_limit: number; expires: string; auto_groups: string[]; state: string; ephemeral: boolean; last_used: string;
}

export function setupKeysPage(): HTMLElement {
  let groups: RestGroup[] = [];
  const list = remoteList<SetupKey>('/setup-keys', 'No setup keys yet. A setup key lets a machine join with `meshplane up --setup-key KEY`.',
    (keys, refresh) => table(['Name', 'Key', 'Type', 'State', 'Used', 'Groups', 'Expires', ''], keys.map((k) => [
      k.name, h('span', { class: 'mono' }, k.key), k.type,
      badge(k.state, k.state === 'valid' ? 'ok' : 'muted'),
      `${k.used_times}${k.usage_limit ? ` / ${k.usage_limit}` : ''}`,
      k.auto_groups.map((id) => groups.find((g) => g.id === id)?.name ?? id).join(', '),
      k.expires.startsWith('0001-') ? 'never' : new Date(k.expires).toLocaleDateString(),
      h('span', { class: 'row-actions' },
        k.revoked ? null : button('Revoke', async (e) => {
          const slot = (e.target as HTMLElement).closest('td') as HTMLElement;
          if (await attempt(slot, () => put(`/setup-keys/${k.id}`, { revoked: true, auto_groups: k.auto_groups }).then(() => undefined))) await refresh();
        }, 'small'),
        deleteButton(`/setup-keys/${k.id}`, refresh)),
    ]), 'Setup keys'));
  const name = field('Name', input({ name: 'key-name', required: true }));
  const type = field('Type', select([['one-off', 'One-off'], ['reusable', 'Reusable']]));
  const days = field('Expires in (days)', input({ type: 'number', value: '30', name: 'expires' }), '0: never');
  const limit = field('Usage limit', input({ type: 'number', value: '0', name: 'usage-limit' }), '0: unlimited');
  const autoGroups = field('Groups of new peers', select([], undefined, true));
  const ephemeral = h('input', { type: 'checkbox', id: 'key-ephemeral' });
  const result = h('div', { aria: { live: 'polite' } });
  const create = form('grid-form', async () => {
    if (!name.input.value.trim()) {
      name.setError('a setup key needs a name');
      return;
    }
    name.setError(null);
    await attempt(result, async () => {
      const created = await post<SetupKey>('/setup-keys', {
        name: name.input.value.trim(), type: type.input.value,
        expires_in: Number(days.input.value) * 86400, usage_limit: Number(limit.input.value),
        auto_groups: selected(autoGroups.input), ephemeral: ephemeral.checked,
      });
      result.replaceChildren(h('div', { class: 'once', role: 'status' },
        h('p', {}, 'Copy this key now: it is not shown again.'),
        h('code', { class: 'plain-key', data: { key: 'plain' } }, created.key),
        button('Copy', () => void navigator.clipboard?.writeText(created.key), 'small')));
      name.input.value = '';
      await list.refresh();
    });
  }, name.row, type.row, days.row, limit.row, autoGroups.row,
  h('div', { class: 'field check' }, ephemeral, h('label', { for: 'key-ephemeral' }, 'Ephemeral peers (removed when offline)')),
  h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Create setup key')));
  void get<RestGroup[]>('/groups').then((g) => {
    groups = g;
    autoGroups.input.replaceChildren(...g.filter((x) => x.name !== 'All').map((x) => h('option', { value: x.id }, x.name)));
  }).finally(() => list.refresh());
  return page('Setup keys', [], panel('New setup key', create, result), list.el);
}
