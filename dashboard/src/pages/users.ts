// Users and the signed-in user's personal access tokens (a new token is
// shown once).

import { get, post } from '../api';
import { ago, h } from '../dom';
import { attempt, badge, deleteButton, empty, field, form, input, loading, page, panel, table } from '../ui';

interface User { id: string; name: string; email: string; role: string; status: string; is_service_user: boolean; last_login?: string; is_current?: boolean }
interface Token { id: string; name: string; expiration_date: string; created_at: string; last_used?: string }

export function usersPage(): HTMLElement {
  const users = h('div', {});
  const tokens = h('div', {});
  let me: User | undefined;
  const refreshTokens = () => loading(tokens, async () => {
    if (!me) return null;
    const list = await get<Token[]>(`/users/${me.id}/tokens`);
    if (list.length === 0) return empty('No tokens.');
    return table(['Name', 'Created', 'Expires', 'Last used', ''], list.map((t) => [
      t.name, ago(t.created_at), new Date(t.expiration_date).toLocaleDateString(), ago(t.last_used),
      deleteButton(`/users/${me?.id}/tokens/${t.id}`, refreshTokens),
    ]), 'Your tokens');
  });
  void loading(users, async () => {
    const list = await get<User[]>('/users');
    me = await get<User>('/users/current');
    void refreshTokens();
    return table(['Name', 'Email', 'Role', 'Status', 'Last login'], list.map((u) => [
      [u.name || u.id, u.id === me?.id ? badge('you', 'muted') : null], u.email, u.role,
      badge(u.status, u.status === 'active' ? 'ok' : 'muted'), ago(u.last_login),
    ]), 'Users');
  });
  const name = field('Token name', input({ name: 'token-name' }));
  const days = field('Expires in (days)', input({ type: 'number', value: '30', name: 'token-days' }));
  const result = h('div', { aria: { live: 'polite' } });
  const create = form('inline-form', async () => {
    if (!me) return;
    await attempt(result, async () => {
      const made = await post<{ plain_token: string }>(`/users/${me?.id}/tokens`, { name: name.input.value.trim(), expires_in: Number(days.input.value) });
      result.replaceChildren(h('div', { class: 'once', role: 'status' }, h('p', {}, 'Copy this token now: it is not shown again.'),
        h('code', { class: 'plain-key' }, made.plain_token)));
      await refreshTokens();
    });
  }, name.row, days.row, h('button', { type: 'submit', class: 'btn primary' }, 'Create token'));
  return page('Users & tokens', [], users, panel('Your personal access tokens', create, result, tokens));
}
