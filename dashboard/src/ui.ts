// Shared pieces of every page: labelled fields with inline errors, error
// and empty states, tables, and the page frame.

import { h, uid, type Child } from './dom';
import { del, get } from './api';

/** A labelled control with a slot for its inline error. */
export interface Field<E extends HTMLElement> { row: HTMLElement; input: E; error: HTMLElement; setError(m: string | null): void }

export function field<E extends HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>(
  label: string, input: E, hint?: string,
): Field<E> {
  const id = input.id || uid('f');
  input.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, role: 'alert' });
  input.setAttribute('aria-describedby', `${id}-error`);
  const row = h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('p', { class: 'hint' }, hint) : null, error);
  const setError = (m: string | null) => {
    error.textContent = m ?? '';
    input.setAttribute('aria-invalid', m ? 'true' : 'false');
  };
  return { row, input, error, setError };
}

export function input(props: Parameters<typeof h<'input'>>[1] = {}): HTMLInputElement {
  return h('input', { type: 'text', autocomplete: 'off', ...props });
}

export function select(options: [string, string][], value?: string, multiple = false): HTMLSelectElement {
  const s = h('select', {}, ...options.map(([v, label]) => h('option', { value: v }, label)));
  s.multiple = multiple;
  if (value !== undefined) s.value = value;
  return s;
}

export function selected(s: HTMLSelectElement): string[] {
  return [...s.selectedOptions].map((o) => o.value);
}

/** The server's (or the core's) message, as is. */
export function errorBox(message: string): HTMLElement {
  return h('div', { class: 'error-box', role: 'alert' }, message);
}

export function empty(text: string, ...actions: Child[]): HTMLElement {
  return h('div', { class: 'empty' }, h('p', {}, text), ...actions);
}

export function page(title: string, actions: Child[], ...body: Child[]): HTMLElement {
  return h('section', { class: 'page' },
    h('header', { class: 'page-head' }, h('h1', {}, title), h('div', { class: 'actions' }, ...actions)),
    ...body);
}

export function table(head: string[], rows: Child[][], caption: string): HTMLElement {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c)))))));
}

export function button(label: string, onClick: (e: Event) => void, kind = ''): HTMLButtonElement {
  return h('button', { type: 'button', class: `btn ${kind}`.trim(), on: { click: onClick } }, label);
}

export function badge(text: string, kind: string): HTMLElement {
  return h('span', { class: `badge ${kind}` }, text);
}

/** A dialog-less panel for create forms, shown above a list. */
export function panel(title: string, ...body: Child[]): HTMLElement {
  return h('section', { class: 'panel', aria: { label: title } }, h('h2', {}, title), ...body);
}

/** Runs `work`, showing its failure (the server's message) in `slot`. */
export async function attempt(slot: HTMLElement, work: () => Promise<void>): Promise<boolean> {
  slot.replaceChildren();
  try {
    await work();
    return true;
  } catch (e) {
    slot.replaceChildren(errorBox((e as Error).message));
    return false;
  }
}

/** A list loaded from the API: loading, error and content states. */
export async function loading(slot: HTMLElement, work: () => Promise<Child>): Promise<void> {
  slot.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  try {
    const content = await work();
    slot.replaceChildren();
    if (content !== null && content !== undefined && content !== false) {
      slot.append(...(Array.isArray(content) ? content.filter((c): c is Node => c instanceof Node) : [content as Node]));
    }
  } catch (e) {
    slot.replaceChildren(errorBox((e as Error).message));
  }
}

/** A form that runs `onSubmit` instead of navigating. */
export function form(cls: string, onSubmit: () => unknown, ...children: Child[]): HTMLFormElement {
  return h('form', {
    class: cls,
    on: {
      submit: (e) => {
        e.preventDefault();
        void onSubmit();
      },
    },
  }, ...children);
}

/** A "Delete" button for one row: the server's refusal shows in its cell. */
export function deleteButton(path: string, then: () => Promise<void>, label = 'Delete'): HTMLButtonElement {
  return button(label, async (e) => {
    const slot = (e.target as HTMLElement).closest('td') ?? (e.target as HTMLElement).parentElement as HTMLElement;
    if (await attempt(slot, () => del(path).then(() => undefined))) await then();
  }, 'danger small');
}

/** A list fetched from `path`, drawn by `draw` (or an empty state), that can refresh itself. */
export function remoteList<T>(path: string, emptyText: string, draw: (items: T[], refresh: () => Promise<void>) => Child) {
  const el = h('div', { class: 'stack' });
  const refresh = (): Promise<void> => loading(el, async () => {
    const items = await get<T[]>(path);
    return items.length === 0 ? empty(emptyText) : draw(items, refresh);
  });
  return { el, refresh };
}
