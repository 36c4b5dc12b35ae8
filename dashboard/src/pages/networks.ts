// Networks with their resources and routers.

import { get, post } from '../api';
import { h } from '../dom';
import { invalid } from '../core';
import type { RestGroup, RestNetwork, RestResource, RestRouter } from '../types';
import { attempt, badge, deleteButton, empty, field, form, input, loading, page, panel, select, table } from '../ui';

export function networksPage(): HTMLElement {
  const list = h('div', { class: 'stack' });
  let groups: RestGroup[] = [];
  const groupName = (id: string) => groups.find((g) => g.id === id)?.name ?? id;
  const refresh = () => loading(list, async () => {
    const networks = await get<RestNetwork[]>('/networks');
    if (networks.length === 0) return empty('No networks. A network groups resources (hosts, subnets, domains) reached through routing peers.');
    return Promise.all(networks.map(async (n) => {
      const [resources, routers] = await Promise.all([
        get<RestResource[]>(`/networks/${n.id}/resources`), get<RestRouter[]>(`/networks/${n.id}/routers`),
      ]);
      return h('section', { class: 'panel', aria: { label: n.name } },
        h('header', { class: 'page-head' }, h('h2', {}, n.name), deleteButton(`/networks/${n.id}`, refresh, 'Delete network')),
        resources.length === 0 ? h('p', { class: 'muted' }, 'No resources.') : table(['Resource', 'Address', 'Type', 'Groups', 'State'],
          resources.map((r) => [r.name, h('span', { class: 'mono' }, r.address), r.type, (r.groups ?? []).map((g) => g.name).join(', '),
            badge(r.enabled ? 'enabled' : 'disabled', r.enabled ? 'ok' : 'muted')]), `Resources of ${n.name}`),
        routers.length === 0 ? h('p', { class: 'muted' }, 'No routers.') : table(['Router', 'Metric', 'Masquerade', 'State'],
          routers.map((r) => [r.peer ?? (r.peer_groups ?? []).map(groupName).join(', '), String(r.metric), r.masquerade ? 'yes' : 'no',
            badge(r.enabled ? 'enabled' : 'disabled', r.enabled ? 'ok' : 'muted')]), `Routers of ${n.name}`),
        addToNetwork(n, groups, refresh));
    }));
  });
  const name = field('Name', input({ name: 'network-name' }));
  const result = h('div', {});
  const create = form('inline-form', async () => {
    if (await attempt(result, async () => { await post('/networks', { name: name.input.value.trim(), description: '' }); })) await refresh();
  }, name.row, h('button', { type: 'submit', class: 'btn primary' }, 'Create network'));
  void get<RestGroup[]>('/groups').then((g) => { groups = g; void refresh(); }, () => refresh());
  return page('Networks', [], panel('New network', create, result), list);
}

/** A resource (address checked by the core as a CIDR or a domain) and a router. */
function addToNetwork(n: RestNetwork, groups: RestGroup[], refresh: () => Promise<void>): HTMLElement {
  const name = field('Resource name', input());
  const address = field('Address', input({ placeholder: '10.0.0.0/24 or db.internal' }));
  const group = field('Resource group', select(groups.map((g): [string, string] => [g.id, g.name])));
  const routerGroup = field('Router peer group', select(groups.map((g): [string, string] => [g.id, g.name])));
  const result = h('div', {});
  const check = () => {
    const a = address.input.value.trim();
    const asCidr = a.includes('/') || /^[\d.]+$/.test(a) ? invalid('validate_cidr', a.includes('/') ? a : `${a}/32`) : invalid('validate_domain', a);
    address.setError(a ? asCidr : null);
  };
  address.input.addEventListener('input', check);
  return h('div', { class: 'two' },
    form('inline-form', async () => {
      check();
      if (address.error.textContent) return;
      if (await attempt(result, async () => {
        await post(`/networks/${n.id}/resources`, { name: name.input.value.trim(), address: address.input.value.trim(), enabled: true, groups: [group.input.value], description: '' });
      })) await refresh();
    }, name.row, address.row, group.row, h('button', { type: 'submit', class: 'btn' }, 'Add resource')),
    form('inline-form', async () => {
      if (await attempt(result, async () => {
        await post(`/networks/${n.id}/routers`, { peer_groups: [routerGroup.input.value], metric: 9999, masquerade: true, enabled: true });
      })) await refresh();
    }, routerGroup.row, h('button', { type: 'submit', class: 'btn' }, 'Add router')),
    result);
}
