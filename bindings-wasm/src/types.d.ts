// JSON shapes of meshplane-core's ops, shared by the wasm package (compiled
// into its .d.ts) and the napi package (its index.d.ts header). Field names
// are the core's, snake_case, exactly as the conformance vectors spell them.

/** A time: RFC 3339 text or integer milliseconds since the epoch. */
export type Timestamp = string | number;

/** An account as the core reads it: peers, groups, policies, routes, networks, DNS, settings. */
export type Account = Record<string, unknown>;

/** An access policy with its rules (NetBird REST shape). */
export type Policy = Record<string, unknown>;

/** Traffic protocol of a rule or a query. */
export type Protocol = 'all' | 'tcp' | 'udp' | 'icmp' | 'netbird-ssh';

/** May `source` reach `destination` over `protocol` (and `port`)? */
export interface AccessQuery {
  source: string;
  destination: { peer: string } | { resource: string };
  protocol: Protocol;
  port?: number | null;
}

/** The policy rule that decided a query. */
export interface DecidingRule {
  policy_id: string;
  policy_name: string;
  rule_id: string;
  rule_name: string;
  action: 'accept' | 'drop';
}

/** The answer to an access query, with the reason in words. */
export interface Decision {
  allowed: boolean;
  decided_by: DecidingRule | null;
  reason: string;
}

/** A remote peer as a network map lists it. */
export interface PeerView {
  id: string;
  name: string;
  key: string;
  ip: string;
  fqdn: string;
  ssh_enabled: boolean;
}

/** One peer's network map. */
export interface NetworkMap {
  serial: number;
  network: { id: string; net: string; dns_domain: string };
  peer_config: { address: string; fqdn: string; ssh_enabled: boolean };
  peers: PeerView[];
  offline_peers: PeerView[];
  firewall_rules: Record<string, unknown>[];
  routes: Record<string, unknown>[];
  route_firewall_rules: Record<string, unknown>[];
  dns: Record<string, unknown>;
}

/** A duration in milliseconds. */
export type DurationMs = number;

/** Server-side expose constants (defaults: 90 s TTL, 10 sessions per peer). */
export interface TableConfig {
  ttl?: DurationMs;
  max_sessions_per_peer?: number;
  proxy_domain?: string;
}

/** Client-side keep-alive constants (defaults: renew every 30 s, 10 s per renewal, 5 s stop). */
export interface KeepAliveConfig {
  renew_period?: DurationMs;
  renew_timeout?: DurationMs;
  stop_timeout?: DurationMs;
}

/** The peer asking to expose, and what its account says about it. */
export interface ExposeContext {
  peer: { id: string; name: string; groups?: string[] };
  settings?: Record<string, unknown>;
  groups?: Record<string, unknown>[];
  custom_domains?: string[];
}

/** The flags of `meshplane expose`. */
export interface ExposeRequest {
  port: number;
  protocol?: string;
  pin?: string;
  password?: string;
  user_groups?: string[];
  custom_domain?: string;
  name_prefix?: string;
}

/** One active exposed service. */
export interface Session {
  id: string;
  peer_id: string;
  peer_name: string;
  name: string;
  domain: string;
  url: string;
  protocol: 'http' | 'https';
  port: number;
  auth: { pin_hash?: string; password_hash?: string; user_group_ids: string[] };
  created_at: string;
  deadline: string;
}

/** An audit event of the session table (activity 111 exposed, 112 unexposed, 113 expired). */
export interface ExposeEvent {
  kind: 'exposed' | 'unexposed' | 'expired';
  activity: number;
  at: string;
  peer_id: string;
  peer_name: string;
  domain: string;
  auth_enabled: boolean;
}

/** Where a keep-alive machine is. */
export type KeepAliveState =
  | { state: 'active'; next_renew: string }
  | { state: 'renewing'; deadline: string }
  | { state: 'stopping'; deadline: string }
  | { state: 'stopped'; clean: boolean }
  | { state: 'failed'; reason: string };

/** A message for the management server. */
export type KeepAliveTransmit = 'renew' | 'stop';

/** What the CLI reports when the machine finishes. */
export type KeepAliveEvent = { event: 'failed'; reason: string } | { event: 'stopped'; clean: boolean };
