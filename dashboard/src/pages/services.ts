// Exposed services, live: the list is fetched again every 1.5 s while the
// page is open, so a new `meshplane expose` appears and a stopped one
// disappears without a reload.

import { get } from '../api';
import { ago, h } from '../dom';
import { invalid } from '../core';
import { empty, errorBox, field, input, page, panel, table } from '../ui';

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
  return page('Exposed services', [], h('p', { class: 'muted' }, 'Updated live.'), slot, commandBuilder());
}

/**
 * Services are published from the peer that runs them: this writes the
 * `meshplane expose` command, checking each value as the core (and so the
 * server) will.
 */
function commandBuilder(): HTMLElement {
  const port = field('Local port', input({ type: 'number', name: 'expose-port', placeholder: '8080' }));
  const prefix = field('Name prefix', input({ name: 'expose-prefix', placeholder: 'myapp' }), 'Optional: the start of the service name');
  const pin = field('PIN', input({ name: 'expose-pin', placeholder: '6 digits', autocomplete: 'off' }), 'Optional: visitors must enter it');
  const command = h('code', { class: 'command', aria: { live: 'polite' } });
  const update = () => {
    port.setError(port.input.value ? invalid('validate_port', Number(port.input.value)) : null);
    prefix.setError(prefix.input.value ? invalid('validate_name_prefix', prefix.input.value) : null);
    pin.setError(pin.input.value ? invalid('validate_pin', pin.input.value) : null);
    const bad = [port, prefix, pin].some((f) => f.error.textContent) || !port.input.value;
    command.textContent = bad ? '' : ['meshplane expose', port.input.value,
      prefix.input.value && `--with-name-prefix ${prefix.input.value}`, pin.input.value && `--with-pin ${pin.input.value}`]
      .filter(Boolean).join(' ');
  };
  for (const f of [port, prefix, pin]) f.input.addEventListener('input', update);
  return panel('Expose a service from a peer', h('div', { class: 'grid-form' }, port.row, prefix.row, pin.row),
    h('p', { class: 'muted' }, 'Run on the peer:'), command);
}
