// Network routes: a CIDR served by routing peers to distribution groups.

import { get, post } from '../api';
import { h } from '../dom';
import { invalid } from '../core';
import type { RestGroup } from '../types';
import { attempt, badge, deleteButton, field, form, input, page, panel, remoteList, select, selected, table } from '../ui';

interface Route { id: string; network_id: string; network?: string; domains?: string[]; peer?: string; peer_groups?: string[]; groups: string[]; metric: number; enabled: boolean; masquerade: boolean }

export function routesPage(): HTMLElement {
  let groups: RestGroup[] = [];
  const names = (ids: string[] | undefined) => (ids ?? []).map((id) => groups.find((g) => g.id === id)?.name ?? id).join(', ');
  const list = remoteList<Route>('/routes', 'No routes: peers reach only each other.', (routes, refresh) =>
    table(['Network', 'Identifier', 'Routing peers', 'Distribution', 'Metric', 'State', ''], routes.map((r) => [
      h('span', { class: 'mono' }, r.network ?? (r.domains ?? []).join(', ')), r.network_id,
      r.peer ?? names(r.peer_groups), names(r.groups), String(r.metric),
      badge(r.enabled ? 'enabled' : 'disabled', r.enabled ? 'ok' : 'muted'), deleteButton(`/routes/${r.id}`, refresh),
    ]), 'Routes'));
  const network = field('Network (CIDR)', input({ name: 'route-network', placeholder: '10.0.0.0/16' }));
  const id = field('Identifier', input({ name: 'route-id', placeholder: 'office' }));
  const routers = field('Routing peer group', select([]));
  const to = field('Distribution groups', select([], undefined, true));
  const metric = field('Metric', input({ type: 'number', value: '9999', name: 'route-metric' }));
  const result = h('div', {});
  const check = () => network.setError(network.input.value ? invalid('validate_cidr', network.input.value) : null);
  const create = form('grid-form', async () => {
    check();
    if (network.error.textContent) return;
    if (await attempt(result, async () => {
      await post('/routes', {
        description: '', network_id: id.input.value.trim(), network: network.input.value.trim(), enabled: true,
        peer_groups: [routers.input.value], groups: selected(to.input), metric: Number(metric.input.value),
        masquerade: true, keep_route: false,
      });
    })) await list.refresh();
  }, network.row, id.row, routers.row, to.row, metric.row,
  h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Add route')), result);
  create.addEventListener('input', check);
  void get<RestGroup[]>('/groups').then((g) => {
    groups = g;
    const opts = () => g.map((x) => h('option', { value: x.id }, x.name));
    routers.input.replaceChildren(...opts());
    to.input.replaceChildren(...opts());
  }).finally(() => list.refresh());
  return page('Routes', [], panel('New route', create), list.el);
}
