// DNS: nameserver groups and the groups whose DNS is not managed.

import { get, post, put } from '../api';
import { h } from '../dom';
import { invalid } from '../core';
import type { RestGroup } from '../types';
import { attempt, badge, deleteButton, field, form, input, loading, page, panel, remoteList, select, selected, table } from '../ui';

interface NsGroup { id: string; name: string; description: string; nameservers: { ip: string; ns_type: string; port: number }[]; enabled: boolean; groups: string[]; primary: boolean; domains: string[] }

export function dnsPage(): HTMLElement {
  const settingsSlot = h('div', {});
  let groups: RestGroup[] = [];
  const groupName = (id: string) => groups.find((g) => g.id === id)?.name ?? id;
  const list = remoteList<NsGroup>('/dns/nameservers', 'No nameserver groups: peers keep their own DNS.', (ns, refresh) =>
    table(['Name', 'Nameservers', 'Domains', 'Groups', 'State', ''], ns.map((n) => [
      n.name, n.nameservers.map((s) => `${s.ip}:${s.port}`).join(', '), n.primary ? 'all (primary)' : n.domains.join(', '),
      n.groups.map(groupName).join(', '), badge(n.enabled ? 'enabled' : 'disabled', n.enabled ? 'ok' : 'muted'),
      deleteButton(`/dns/nameservers/${n.id}`, refresh),
    ]), 'Nameserver groups'));
  const name = field('Name', input({ name: 'ns-name' }));
  const ip = field('Nameserver IP', input({ name: 'ns-ip', placeholder: '1.1.1.1' }));
  const port = field('Port', input({ type: 'number', name: 'ns-port', value: '53' }));
  const domains = field('Domains', input({ name: 'ns-domains', placeholder: 'empty: all domains' }));
  const target = field('For groups', select([], undefined, true));
  const result = h('div', {});
  const checks = () => {
    port.setError(invalid('validate_port', Number(port.input.value)));
    const bad = domains.input.value.split(/[\s,]+/).filter(Boolean).map((d) => invalid('validate_domain', d)).find(Boolean);
    domains.setError(bad ?? null);
    ip.setError(ip.input.value ? invalid('validate_cidr', `${ip.input.value}/32`) : null);
  };
  const create = form('grid-form', async () => {
    checks();
    if ([port, domains, ip].some((f) => f.error.textContent)) return;
    const names = domains.input.value.split(/[\s,]+/).filter(Boolean);
    if (await attempt(result, async () => {
      await post('/dns/nameservers', {
        name: name.input.value.trim(), description: '', enabled: true, groups: selected(target.input),
        nameservers: [{ ip: ip.input.value.trim(), ns_type: 'udp', port: Number(port.input.value) }],
        primary: names.length === 0, domains: names, search_domains_enabled: false,
      });
    })) await list.refresh();
  }, name.row, ip.row, port.row, domains.row, target.row,
  h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn primary' }, 'Add nameserver group')), result);
  create.addEventListener('input', checks);
  void get<RestGroup[]>('/groups').then(async (g) => {
    groups = g;
    target.input.replaceChildren(...g.map((x) => h('option', { value: x.id }, x.name)));
    await list.refresh();
    await loading(settingsSlot, async () => {
      const s = await get<{ disabled_management_groups: string[] }>('/dns/settings');
      const off = field('Groups whose DNS is not managed', select(g.map((x): [string, string] => [x.id, x.name]), undefined, true));
      for (const o of off.input.options) o.selected = s.disabled_management_groups.includes(o.value);
      const saved = h('div', {});
      return form('inline-form', async () => {
        if (await attempt(saved, async () => { await put('/dns/settings', { disabled_management_groups: selected(off.input) }); })) {
          saved.replaceChildren(h('p', { class: 'ok-text', role: 'status' }, 'Saved.'));
        }
      }, off.row, h('button', { type: 'submit', class: 'btn' }, 'Save'), saved);
    });
  }, () => list.refresh());
  return page('DNS', [], panel('New nameserver group', create), list.el, panel('DNS settings', settingsSlot));
}
