// The dashboard's entry: loads the wasm core, shows sign-in or the app
// frame, and routes client-side paths (the server answers every non-API
// path with this page).

import { credential, onSignOut, signInWithToken, signOut } from './auth';
import { h, fill } from './dom';
import { loadCore } from './core';
import { errorBox, field, input } from './ui';
import { routes, type Route } from './routes';
import { NAVIGATE, navigate } from './nav';

const app = document.getElementById('app') as HTMLElement;
let current: AbortController | null = null;


function match(path: string): { route: Route; params: string[] } | null {
  for (const route of routes) {
    const m = route.path.exec(path);
    if (m) return { route, params: m.slice(1).map(decodeURIComponent) };
  }
  return null;
}

function signInPage(reason?: string): HTMLElement {
  const token = field('Personal access token', input({ type: 'password', autocomplete: 'off', name: 'token', required: true }),
    'Create one with `meshplane-server admin-token`, or under Users in this dashboard.');
  const slot = h('div', {});
  const submit = h('button', { type: 'submit', class: 'btn primary' }, 'Sign in');
  const form = h('form', {
    class: 'signin',
    aria: { label: 'Sign in' },
    on: {
      submit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        slot.replaceChildren();
        try {
          await signInWithToken(token.input.value);
          render();
        } catch (err) {
          slot.replaceChildren(errorBox((err as Error).message));
        } finally {
          submit.disabled = false;
        }
      },
    },
  },
  h('h1', {}, 'Sign in to meshplane'),
  reason ? errorBox(reason) : null,
  h('fieldset', { class: 'method' }, h('legend', {}, 'With a token'), token.row, submit),
  slot);
  return h('main', { class: 'signin-wrap' }, form);
}

function frame(content: HTMLElement, path: string): HTMLElement {
  const nav = h('nav', { class: 'nav', aria: { label: 'Sections' } },
    h('ul', {}, ...routes.filter((r) => r.nav).map((r) => {
      const active = path === r.href || path.startsWith(`${r.href}/`);
      const a = h('a', { href: r.href ?? '/', class: active ? 'active' : '' }, r.nav ?? '');
      if (active) a.setAttribute('aria-current', 'page');
      return h('li', {}, a);
    })));
  return h('div', { class: 'shell' },
    h('header', { class: 'top' },
      h('a', { href: '/peers', class: 'brand' }, 'meshplane'),
      h('button', { type: 'button', class: 'btn subtle', on: { click: () => signOut() } }, 'Sign out')),
    nav,
    h('main', { class: 'content', id: 'main', tabindex: -1 }, content));
}

function render(reason?: string): void {
  current?.abort();
  current = new AbortController();
  if (!credential()) {
    fill(app, signInPage(reason));
    return;
  }
  let path = location.pathname.replace(/\/+$/, '') || '/';
  if (path === '/') {
    history.replaceState(null, '', '/peers');
    path = '/peers';
  }
  const found = match(path);
  const content = found
    ? found.route.render(found.params, current.signal)
    : h('section', { class: 'page' }, h('h1', {}, 'Not found'), h('p', {}, `Nothing lives at ${path}.`));
  fill(app, frame(content, path));
  document.title = `${found?.route.nav ?? found?.route.title ?? 'Not found'} · meshplane`;
}

// Links inside the app route client-side.
document.addEventListener('click', (e) => {
  const a = (e.target as Element).closest?.('a');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('/api')) return;
  e.preventDefault();
  navigate(href);
});
window.addEventListener('popstate', () => render());
window.addEventListener(NAVIGATE, () => render());
onSignOut((reason) => render(reason));

loadCore().then(() => render(), (e: Error) => fill(app, errorBox(`cannot load the core: ${e.message}`)));
