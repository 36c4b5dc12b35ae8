// Client-side navigation: history entries without reloads; main.ts
// renders on the event.

export const NAVIGATE = 'meshplane:navigate';

export function navigate(path: string): void {
  history.pushState(null, '', path);
  window.dispatchEvent(new Event(NAVIGATE));
}
