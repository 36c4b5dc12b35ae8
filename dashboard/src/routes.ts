// Every page of the dashboard, in navigation order.

import { peersPage, peerPage } from './pages/peers';
import { groupsPage } from './pages/groups';
import { policiesPage, policyEditor } from './pages/policies';
import { postureChecksPage } from './pages/posture';
import { setupKeysPage } from './pages/setup-keys';
import { routesPage } from './pages/routes';
import { networksPage } from './pages/networks';
import { dnsPage } from './pages/dns';
import { usersPage } from './pages/users';
import { auditPage } from './pages/audit';
import { servicesPage } from './pages/services';
import { settingsPage } from './pages/settings';

export interface Route {
  path: RegExp;
  /** The navigation entry, for top-level pages. */
  nav?: string;
  href?: string;
  title?: string;
  render(params: string[], signal: AbortSignal): HTMLElement;
}

const top = (href: string, nav: string, render: Route['render']): Route => ({
  path: new RegExp(`^${href}$`), nav, href, render,
});

export const routes: Route[] = [
  top('/peers', 'Peers', peersPage),
  { path: /^\/peers\/([^/]+)$/, title: 'Peer', render: peerPage },
  top('/groups', 'Groups', groupsPage),
  top('/policies', 'Policies', policiesPage),
  { path: /^\/policies\/([^/]+)$/, title: 'Policy', render: policyEditor },
  top('/posture-checks', 'Posture checks', postureChecksPage),
  top('/setup-keys', 'Setup keys', setupKeysPage),
  top('/routes', 'Routes', routesPage),
  top('/networks', 'Networks', networksPage),
  top('/dns', 'DNS', dnsPage),
  top('/users', 'Users & tokens', usersPage),
  top('/audit', 'Audit events', auditPage),
  top('/services', 'Exposed services', servicesPage),
  top('/settings', 'Settings', settingsPage),
];
