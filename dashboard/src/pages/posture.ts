// Posture checks: list, a minimum client version check, delete.

import { del, get, post } from '../api';
import { h } from '../dom';
import type { RestPostureCheck } from '../types';
import { attempt, button, empty, field, input, loading, page, panel, table } from '../ui';

export function postureChecksPage(): HTMLElement {
  const list = h('div', {});
  const refresh = () => loading(list, async () => {
    const checks = await get<RestPostureCheck[]>('/posture-checks');
    if (checks.length === 0) return empty('No posture checks. A policy can require its sources to pass them.');
    return table(['Name', 'Description', 'Checks', ''], checks.map((c) => [
      c.name, c.description, Object.keys(c.checks ?? {}).join(', '),
      button('Delete', async (e) => {
        const slot = (e.target as HTMLElement).closest('td') as HTMLElement;
        if (await attempt(slot, () => del(`/posture-checks/${c.id}`).then(() => undefined))) await refresh();
      }, 'danger small'),
    ]), 'Posture checks');
  });
  const name = field('Name', input({ name: 'posture-name' }));
  const version = field('Minimum client version', input({ name: 'posture-version', placeholder: '0.40.0' }));
  const result = h('div', {});
  const form = h('form', {
    class: 'inline-form',
    on: {
      submit: async (e) => {
        e.preventDefault();
        if (await attempt(result, async () => {
          await post('/posture-checks', { name: name.input.value.trim(), description: '', checks: { nb_version_check: { min_version: version.input.value.trim() } } });
        })) await refresh();
      },
    },
  }, name.row, version.row, h('button', { type: 'submit', class: 'btn primary' }, 'Add check'));
  void refresh();
  return page('Posture checks', [], panel('New version check', form, result), list);
}
