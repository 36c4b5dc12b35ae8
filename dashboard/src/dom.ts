// A small element builder: the whole component layer of the dashboard.
// Text always goes in as text nodes (never parsed as HTML), so the server's
// messages and user-supplied names can be shown as they are.

export type Child = Node | string | number | null | undefined | false | Child[];

type Handler = (event: Event) => void;
export interface Props {
  class?: string;
  id?: string;
  for?: string;
  type?: string;
  name?: string;
  value?: string;
  placeholder?: string;
  href?: string;
  role?: string;
  rel?: string;
  scope?: string;
  title?: string;
  checked?: boolean;
  disabled?: boolean;
  required?: boolean;
  autocomplete?: string;
  tabindex?: number;
  aria?: Record<string, string>;
  data?: Record<string, string>;
  on?: Partial<Record<string, Handler>>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value as string;
    else if (key === 'on') {
      for (const [event, handler] of Object.entries(value as Record<string, Handler>)) {
        el.addEventListener(event, handler);
      }
    } else if (key === 'aria') {
      for (const [name, v] of Object.entries(value as Record<string, string>)) el.setAttribute(`aria-${name}`, v);
    } else if (key === 'data') {
      for (const [name, v] of Object.entries(value as Record<string, string>)) el.dataset[name] = v;
    } else if (key === 'checked' || key === 'disabled' || key === 'required') {
      (el as unknown as Record<string, boolean>)[key] = value as boolean;
    } else if (key === 'value') {
      (el as unknown as { value: string }).value = value as string;
    } else {
      el.setAttribute(key === 'for' ? 'for' : key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces every child of `el`. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let nextId = 0;
/** A page-unique id for label/input pairs. */
export function uid(prefix: string): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** "3 minutes ago" for an RFC 3339 time; "never" for the zero time. */
export function ago(time: string | undefined): string {
  if (!time || time.startsWith('0001-')) return 'never';
  const seconds = Math.round((Date.now() - Date.parse(time)) / 1000);
  if (Number.isNaN(seconds)) return time;
  if (seconds < 5) return 'just now';
  const units: [number, string][] = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  for (const [size, name] of units) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${name}${n === 1 ? '' : 's'} ago`;
    }
  }
  return 'in the future';
}
