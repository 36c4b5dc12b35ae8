// Audit events with filters on activity, initiator and free text.

import { get } from '../api';
import { h } from '../dom';
import { empty, field, input, loading, page, select, table } from '../ui';

interface Event {
  id: string; timestamp: string; activity: string; activity_code: string; initiator_id: string;
  initiator_name: string; initiator_email: string; target_id: string; meta: Record<string, string>;
}

export function auditPage(): HTMLElement {
  const slot = h('div', { class: 'stack' });
  void loading(slot, async () => {
    const events = await get<Event[]>('/events/audit');
    if (events.length === 0) return empty('No events yet.');
    const activities = [...new Set(events.map((e) => e.activity))].sort();
    const initiators = [...new Set(events.map((e) => e.initiator_name || e.initiator_id))].sort();
    const text = field('Search', input({ type: 'search', placeholder: 'name, target, details…' }));
    const activity = field('Activity', select([['', 'Any activity'], ...activities.map((a): [string, string] => [a, a])]));
    const initiator = field('Initiator', select([['', 'Anyone'], ...initiators.map((a): [string, string] => [a, a])]));
    const list = h('div', {});
    const apply = () => {
      const q = text.input.value.trim().toLowerCase();
      const shown = events.filter((e) => (!activity.input.value || e.activity === activity.input.value)
        && (!initiator.input.value || (e.initiator_name || e.initiator_id) === initiator.input.value)
        && (!q || JSON.stringify(e).toLowerCase().includes(q)));
      list.replaceChildren(shown.length === 0 ? empty('No event matches the filters.') : table(
        ['Time', 'Activity', 'Initiator', 'Target', 'Details'],
        shown.slice(0, 500).map((e) => [
          new Date(e.timestamp).toLocaleString(), e.activity, e.initiator_name || e.initiator_email || e.initiator_id,
          h('span', { class: 'mono' }, e.target_id),
          Object.entries(e.meta ?? {}).map(([k, v]) => `${k}: ${v}`).join(', '),
        ]), 'Audit events'));
    };
    for (const f of [text, activity, initiator]) f.input.addEventListener('input', apply);
    apply();
    return [h('div', { class: 'filters' }, text.row, activity.row, initiator.row), list];
  });
  return page('Audit events', [], slot);
}
