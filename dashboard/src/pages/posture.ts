// Posture checks: list, a minimum client version check, delete.

import { post } from '../api';
import { h } from '../dom';
import type { RestPostureCheck } from '../types';
import { attempt, deleteButton, field, form, input, page, panel, remoteList, table } from '../ui';

export function postureChecksPage(): HTMLElement {
  const list = remoteList<RestPostureCheck>('/posture-checks', 'No posture checks. A policy can require its sources to pass them.',
    (checks, refresh) => table(['Name', 'Description', 'Checks', ''], checks.map((c) => [
      c.name, c.description, Object.keys(c.checks ?? {}).join(', '), deleteButton(`/posture-checks/${c.id}`, refresh),
    ]), 'Posture checks'));
  const name = field('Name', input({ name: 'posture-name' }));
  const version = field('Minimum client version', input({ name: 'posture-version', placeholder: '0.40.0' }));
  const result = h('div', {});
  const create = form('inline-form', async () => {
    if (await attempt(result, async () => {
      await post('/posture-checks', { name: name.input.value.trim(), description: '', checks: { nb_version_check: { min_version: version.input.value.trim() } } });
    })) await list.refresh();
  }, name.row, version.row, h('button', { type: 'submit', class: 'btn primary' }, 'Add check'));
  void list.refresh();
  return page('Posture checks', [], panel('New version check', create, result), list.el);
}
