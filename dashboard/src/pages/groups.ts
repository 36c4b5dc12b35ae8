// Groups: list, create, delete.

import { del, get, post } from '../api';
import { h } from '../dom';
import type { RestGroup } from '../types';
import { attempt, button, empty, field, input, loading, page, panel, table } from '../ui';

export function groupsPage(): HTMLElement {
  const list = h('div', {});
  const refresh = () => loading(list, async () => {
    const groups = await get<RestGroup[]>('/groups');
    if (groups.length === 0) return empty('No groups yet.');
    return table(['Name', 'Peers', 'Resources', ''], groups.map((g) => [
      g.name, String(g.peers_count ?? 0), String(g.resources_count ?? 0),
      g.name === 'All' ? '' : button('Delete', async (e) => {
        const slot = (e.target as HTMLElement).closest('td') as HTMLElement;
        if (await attempt(slot, () => del(`/groups/${g.id}`).then(() => undefined))) await refresh();
      }, 'danger small'),
    ]), 'Groups');
  });
  const name = field('Name', input({ name: 'group-name', required: true }));
  const result = h('div', {});
  const form = h('form', {
    class: 'inline-form',
    on: {
      submit: async (e) => {
        e.preventDefault();
        if (!name.input.value.trim()) {
          name.setError('a group needs a name');
          return;
        }
        name.setError(null);
        if (await attempt(result, async () => { await post('/groups', { name: name.input.value.trim(), peers: [] }); })) {
          name.input.value = '';
          await refresh();
        }
      },
    },
  }, name.row, h('button', { type: 'submit', class: 'btn primary' }, 'Create group'));
  void refresh();
  return page('Groups', [], panel('New group', form, result), list);
}
