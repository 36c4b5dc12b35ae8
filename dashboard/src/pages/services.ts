// Exposed services, live: the list is fetched again every 1.5 s while the
// page is open, so a new `meshplane expose` appears and a stopped one
// disappears without a reload.

import { get } from '../api';
import { ago, h } from '../dom';
import { empty, errorBox, page, table } from '../ui';

interface Service {
  id: string; name: string; domain: string; url?: string; enabled: boolean; source?: string; source_peer?: string;
  targets: { target_id?: string; port?: number; protocol?: string; host?: string }[];
  auth: Record<string, { enabled?: boolean } | undefined>; meta: { created_at?: string; status?: string };
}

const EVERY_MS = 1500;

export function servicesPage(_: string[], signal: AbortSignal): HTMLElement {
  const slot = h('div', { aria: { live: 'polite' } }, h('p', { class: 'loading' }, 'Loading…'));
  let last = '';
  const poll = async () => {
    if (signal.aborted) return;
    try {
      const services = await get<Service[]>('/reverse-proxies/services');
      const key = JSON.stringify(services);
      if (key !== last) {
        last = key;
        slot.replaceChildren(services.length === 0
          ? empty('No exposed services. Run `meshplane expose 8080` on a peer to publish a local port.')
          : table(['Name', 'Address', 'Target', 'Protection', 'Created'], services.map((s) => {
            const address = s.url ?? `https://${s.domain}`;
            const auth = Object.entries(s.auth ?? {}).filter(([, v]) => v?.enabled).map(([k]) => k.replace(/_auth$/, ''));
            return [
              h('span', { data: { service: s.domain } }, s.name),
              h('a', { href: address, rel: 'noopener' }, address),
              s.targets.map((t) => `${t.host ?? t.target_id ?? ''}:${t.port ?? ''} ${t.protocol ?? ''}`.trim()).join(', '),
              auth.join(', ') || 'none',
              ago(s.meta?.created_at),
            ];
          }), 'Exposed services'));
      }
    } catch (e) {
      last = '';
      slot.replaceChildren(errorBox((e as Error).message));
    }
    if (!signal.aborted) window.setTimeout(poll, EVERY_MS);
  };
  void poll();
  return page('Exposed services', [], h('p', { class: 'muted' }, 'Updated live.'), slot);
}
