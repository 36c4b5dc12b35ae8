// A virtualised list: only the rows in view (plus a margin) exist in the
// DOM, so thousands of peers scroll and filter without stalls. Rows have
// one fixed height; positions are set through the CSSOM (allowed by the
// page's style-src 'self' policy, unlike style attributes).

import { h } from './dom';

export interface VList<T> {
  el: HTMLElement;
  set(items: T[]): void;
}

export function vlist<T>(rowHeight: number, render: (item: T, index: number) => HTMLElement, label: string): VList<T> {
  const inner = h('div', { class: 'vlist-inner', role: 'presentation' });
  const el = h('div', { class: 'vlist', role: 'list', tabindex: 0, aria: { label } }, inner);
  let items: T[] = [];
  let drawn = '';
  const draw = () => {
    const margin = 8;
    const height = el.clientHeight || 600;
    const first = Math.max(0, Math.floor(el.scrollTop / rowHeight) - margin);
    const last = Math.min(items.length, Math.ceil((el.scrollTop + height) / rowHeight) + margin);
    const key = `${first}:${last}:${items.length}`;
    if (key === drawn) return;
    drawn = key;
    const rows: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const row = render(items[i] as T, i);
      row.classList.add('vrow');
      row.setAttribute('role', 'listitem');
      row.style.transform = `translateY(${i * rowHeight}px)`;
      row.style.height = `${rowHeight}px`;
      rows.push(row);
    }
    inner.replaceChildren(...rows);
  };
  el.addEventListener('scroll', () => requestAnimationFrame(draw), { passive: true });
  new ResizeObserver(() => { drawn = ''; draw(); }).observe(el);
  return {
    el,
    set(next: T[]) {
      items = next;
      inner.style.height = `${items.length * rowHeight}px`;
      drawn = '';
      draw();
    },
  };
}
