// Peers: a virtualised, searchable list, and one peer's page with the
// peers it may reach and, from the wasm core, why each other peer is or
// is not connected.

import { get } from '../api';
import { ago, h } from '../dom';
import { explainPeer, loadAccount, type PeerVerdict } from '../core';
import type { RestGroup, RestPeer } from '../types';
import { badge, empty, errorBox, field, input, loading, page, select } from '../ui';
import { vlist } from '../vlist';

function status(p: RestPeer): HTMLElement {
  if (p.approval_required) return badge('waiting for approval', 'warn');
  if (p.login_expired) return badge('login expired', 'warn');
  return p.connected ? badge('connected', 'ok') : badge('disconnected', 'muted');
}

/** What the search box matches: name, IP, DNS name, hostname, groups. */
function haystack(p: RestPeer): string {
  return [p.name, p.ip, p.dns_label, p.hostname, p.os, ...(p.groups ?? []).map((g) => g.name)].join(' ').toLowerCase();
}

export function peersPage(): HTMLElement {
  const slot = h('div', { class: 'stack' });
  const body = page('Peers', [], slot);
  void loading(slot, async () => {
    const [peers, groups] = await Promise.all([get<RestPeer[]>('/peers'), get<RestGroup[]>('/groups')]);
    if (peers.length === 0) {
      return empty('No peers yet. Create a setup key and run `meshplane up --setup-key KEY` on a machine.',
        h('a', { href: '/setup-keys', class: 'btn primary' }, 'Create a setup key'));
    }
    const keys = peers.map(haystack);
    const search = field('Search', input({ type: 'search', placeholder: 'name, IP, DNS name, group…' }));
    const state = field('Status', select([['', 'Any status'], ['connected', 'Connected'], ['disconnected', 'Disconnected'], ['approval', 'Waiting for approval']]));
    const group = field('Group', select([['', 'Any group'], ...groups.map((g): [string, string] => [g.id, g.name])]));
    const oses = [...new Set(peers.map((p) => (p.os || '').split(' ')[0] ?? '').filter(Boolean))].sort();
    const os = field('OS', select([['', 'Any OS'], ...oses.map((o): [string, string] => [o, o])]));
    const count = h('p', { class: 'count', aria: { live: 'polite' } });
    const list = vlist<RestPeer>(44, (p) => h('div', { class: 'peer-row' },
      h('a', { href: `/peers/${encodeURIComponent(p.id)}`, class: 'name' }, p.name),
      h('span', { class: 'mono' }, p.ip),
      status(p),
      h('span', { class: 'groups' }, (p.groups ?? []).map((g) => g.name).join(', ')),
      h('span', {}, p.os),
      h('span', { class: 'muted' }, ago(p.last_seen))), 'Peers');
    const apply = () => {
      const q = search.input.value.trim().toLowerCase();
      const s = state.input.value;
      const g = group.input.value;
      const o = os.input.value;
      const shown = peers.filter((p, i) =>
        (!q || (keys[i] as string).includes(q))
        && (!s || (s === 'connected' ? p.connected : s === 'disconnected' ? !p.connected : p.approval_required))
        && (!g || (p.groups ?? []).some((x) => x.id === g))
        && (!o || (p.os || '').startsWith(o)));
      list.set(shown);
      count.textContent = `${shown.length} of ${peers.length} peers`;
    };
    for (const f of [search, state, group, os]) f.input.addEventListener('input', apply);
    apply();
    const head = h('div', { class: 'peer-row head', aria: { hidden: 'true' } },
      h('span', {}, 'Name'), h('span', {}, 'IP'), h('span', {}, 'Status'), h('span', {}, 'Groups'), h('span', {}, 'OS'), h('span', {}, 'Last seen'));
    return [h('div', { class: 'filters' }, search.row, state.row, group.row, os.row), count, head, list.el];
  });
  return body;
}

export function peerPage([id]: string[]): HTMLElement {
  const slot = h('div', { class: 'stack' });
  const body = page('Peer', [h('a', { href: '/peers', class: 'btn subtle' }, 'All peers')], slot);
  void loading(slot, async () => {
    const peerId = id as string;
    const [loaded, reachable] = await Promise.all([
      loadAccount(), get<{ id: string; name: string; ip: string }[]>(`/peers/${encodeURIComponent(peerId)}/accessible-peers`),
    ]);
    const peer = loaded.peers.find((p) => p.id === peerId);
    if (!peer) return errorBox(`peer ${peerId} not found`);
    const h1 = body.querySelector('h1');
    if (h1) h1.textContent = peer.name;
    const facts: [string, string | HTMLElement][] = [
      ['Status', status(peer)], ['IP', peer.ip], ['DNS name', peer.dns_label], ['Hostname', peer.hostname],
      ['OS', peer.os], ['Version', peer.version], ['Groups', (peer.groups ?? []).map((g) => g.name).join(', ') || 'none'],
      ['Last seen', ago(peer.last_seen)],
    ];
    const verdicts = explainPeer(loaded.account, peerId);
    const why = whyPanel(verdicts);
    return [
      h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('section', { class: 'panel', aria: { label: 'Accessible peers' } },
        h('h2', {}, `Accessible peers (${reachable.length})`),
        reachable.length === 0 ? h('p', { class: 'muted' }, 'This peer reaches no other peer.')
          : h('ul', { class: 'chips' }, ...reachable.map((p) => h('li', {}, h('a', { href: `/peers/${encodeURIComponent(p.id)}` }, `${p.name} (${p.ip})`))))),
      why,
    ];
  });
  return body;
}

/** Every other peer, allowed or denied, with the rule or reason that decides. */
function whyPanel(verdicts: PeerVerdict[]): HTMLElement {
  const filter = field('Why can this peer reach…', input({ type: 'search', placeholder: 'peer name' }));
  const which = field('Show', select([['', 'All peers'], ['allowed', 'Allowed'], ['denied', 'Denied']]));
  const list = vlist<PeerVerdict>(52, (v) => h('div', { class: `why-row ${v.connected ? 'allowed' : 'denied'}`, data: { peer: v.peer_name } },
    h('span', { class: 'name' }, v.peer_name),
    badge(v.connected ? 'allowed' : 'denied', v.connected ? 'ok' : 'bad'),
    h('span', { class: 'reason' }, v.reason)), 'Why each peer is allowed or denied');
  const apply = () => {
    const q = filter.input.value.trim().toLowerCase();
    const w = which.input.value;
    list.set(verdicts.filter((v) => (!q || v.peer_name.toLowerCase().includes(q))
      && (!w || (w === 'allowed') === v.connected)));
  };
  filter.input.addEventListener('input', apply);
  which.input.addEventListener('input', apply);
  apply();
  const allowed = verdicts.filter((v) => v.connected).length;
  return h('section', { class: 'panel why', aria: { label: 'Why' } },
    h('h2', {}, 'Why'),
    h('p', { class: 'muted' }, `${allowed} allowed, ${verdicts.length - allowed} denied — computed in this page by the same core the server runs.`),
    h('div', { class: 'filters' }, filter.row, which.row), list.el);
}
