// Groups: list, create, delete.

import { post } from '../api';
import { h } from '../dom';
import type { RestGroup } from '../types';
import { attempt, deleteButton, field, form, input, page, panel, remoteList, table } from '../ui';

export function groupsPage(): HTMLElement {
  const list = remoteList<RestGroup>('/groups', 'No groups yet.', (groups, refresh) =>
    table(['Name', 'Peers', 'Resources', ''], groups.map((g) => [
      g.name, String(g.peers_count ?? 0), String(g.resources_count ?? 0),
      g.name === 'All' ? '' : deleteButton(`/groups/${g.id}`, refresh),
    ]), 'Groups'));
  const name = field('Name', input({ name: 'group-name', required: true }));
  const result = h('div', {});
  const create = form('inline-form', async () => {
    if (!name.input.value.trim()) {
      name.setError('a group needs a name');
      return;
    }
    name.setError(null);
    if (await attempt(result, async () => { await post('/groups', { name: name.input.value.trim(), peers: [] }); })) {
      name.input.value = '';
      await list.refresh();
    }
  }, name.row, h('button', { type: 'submit', class: 'btn primary' }, 'Create group'));
  void list.refresh();
  return page('Groups', [], panel('New group', create, result), list.el);
}
