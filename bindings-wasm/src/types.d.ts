// JSON shapes of meshplane-core's ops, shared by the wasm package (compiled
// into its .d.ts) and the napi package (its index.d.ts header). Field names
// are the core's, snake_case, exactly as the conformance vectors spell them.

/** A time: RFC 3339 text or integer milliseconds since the epoch. */
export type Timestamp = string | number;

/**
 * An account as the core reads it: peers, groups, policies, routes, networks,
 * DNS, settings. A field marked optional takes its zero value (or the core's
 * default) when left out; `generateBenchAccount` answers every field
 * (`Required<Account>`).
 */
export interface Account {
  id?: string;
  domain?: string;
  settings?: Partial<AccountSettings>;
  /** Bumped on every change that can alter a network map. */
  serial?: number;
  users?: User[];
  peers?: Peer[];
  groups?: Group[];
  policies?: Policy[];
  posture_checks?: PostureCheck[];
  routes?: Route[];
  networks?: Network[];
  network_resources?: NetworkResource[];
  network_routers?: NetworkRouter[];
  nameserver_groups?: NameserverGroup[];
  dns_settings?: { disabled_management_groups?: string[] };
}

/** Account-wide settings, named as in the REST `settings` object (expirations in seconds). */
export interface AccountSettings {
  peer_login_expiration_enabled: boolean;
  peer_login_expiration: number;
  peer_inactivity_expiration_enabled: boolean;
  peer_inactivity_expiration: number;
  regular_users_view_blocked: boolean;
  groups_propagation_enabled: boolean;
  jwt_groups_enabled: boolean;
  jwt_groups_claim_name: string;
  jwt_allow_groups: string[];
  routing_peer_dns_resolution_enabled: boolean;
  dns_domain: string;
  /** The account network in CIDR form (a /16 inside 100.64.0.0/10). */
  network_range: string;
  lazy_connection_enabled: boolean;
  peer_expose_enabled: boolean;
  peer_expose_groups: string[];
  extra: Partial<{
    peer_approval_enabled: boolean;
    user_approval_required: boolean;
    network_traffic_logs_enabled: boolean;
    network_traffic_logs_groups: string[];
    network_traffic_packet_counter_enabled: boolean;
  }>;
}

/** A user's role (the REST `role`). */
export type Role = 'owner' | 'admin' | 'user' | 'billing_admin' | 'auditor' | 'network_admin';

/** A user of the account. */
export interface User {
  id: string;
  email?: string;
  name?: string;
  role: Role;
  status?: 'active' | 'invited' | 'blocked';
  auto_groups?: string[];
  is_service_user?: boolean;
  is_blocked?: boolean;
  pending_approval?: boolean;
  last_login?: Timestamp | null;
  issued?: string;
}

/** A peer as the store keeps it; group membership lives on the groups. */
export interface Peer {
  id: string;
  name: string;
  /** The peer's WireGuard public key (base64). */
  key?: string;
  /** Mesh address inside the account network (IPv4). */
  ip: string;
  dns_label?: string;
  extra_dns_labels?: string[];
  /** The user that added the peer (SSO login); null for setup-key peers. */
  user_id?: string | null;
  hostname?: string;
  meta?: Partial<PeerMeta>;
  connected?: boolean;
  last_seen?: Timestamp;
  last_login?: Timestamp;
  created_at?: Timestamp;
  ssh_enabled?: boolean;
  login_expiration_enabled?: boolean;
  inactivity_expiration_enabled?: boolean;
  /** True while the peer waits for approval: an empty map, and in nobody's. */
  approval_required?: boolean;
  ephemeral?: boolean;
  connection_ip?: string | null;
  location?: Partial<{ country_code: string; city_name: string; geoname_id: number }>;
}

/** What the daemon reports at login; posture checks read it. */
export interface PeerMeta {
  /** `linux`, `darwin`, `windows`, `android`, `ios`, ... (lower case). */
  os: string;
  os_version: string;
  kernel_version: string;
  /** The client version (`0.40.0`). */
  version: string;
  ui_version: string;
  serial_number: string;
  /** Local interface addresses in CIDR form. */
  network_addresses: string[];
  /** Full paths of running processes (for process checks). */
  processes: string[];
}

/** The kind of a resource referenced from a group or a rule side. */
export type ResourceKind = 'host' | 'subnet' | 'domain' | 'peer';

/** A reference to a network resource (or a single peer) by id and type. */
export interface ResourceRef {
  id: string;
  type: ResourceKind;
}

/** A group: membership of peers and resources is stored here. */
export interface Group {
  id: string;
  name: string;
  peers?: string[];
  resources?: ResourceRef[];
  issued?: 'api' | 'integration' | 'jwt';
}

/** Traffic protocol of a rule or a query. */
export type Protocol = 'all' | 'tcp' | 'udp' | 'icmp' | 'netbird-ssh';

/** An inclusive port range. */
export interface PortRange {
  start: number;
  end: number;
}

/** One rule of a policy. A side is a list of groups or one resource. */
export interface PolicyRule {
  id?: string;
  name?: string;
  description?: string;
  enabled?: boolean;
  action: 'accept' | 'drop';
  bidirectional?: boolean;
  protocol: Protocol;
  ports?: string[];
  port_ranges?: PortRange[];
  sources?: string[];
  destinations?: string[];
  sourceResource?: ResourceRef;
  destinationResource?: ResourceRef;
}

/** An access policy with its rules (NetBird REST shape). */
export interface Policy {
  id: string;
  name: string;
  description?: string;
  enabled: boolean;
  source_posture_checks?: string[];
  rules: PolicyRule[];
}

/** Allow or deny, for the geo and network range checks. */
export type CheckAction = 'allow' | 'deny';

/** A named set of posture checks; every check present must pass. */
export interface PostureCheck {
  id: string;
  name: string;
  description?: string;
  checks: {
    nb_version_check?: { min_version?: string };
    os_version_check?: {
      android?: { min_version?: string };
      darwin?: { min_version?: string };
      ios?: { min_version?: string };
      linux?: { min_kernel_version?: string };
      windows?: { min_kernel_version?: string };
    };
    geo_location_check?: {
      locations?: { country_code?: string; city_name?: string }[];
      action: CheckAction;
    };
    peer_network_range_check?: { ranges?: string[]; action: CheckAction };
    process_check?: {
      processes?: { linux_path?: string; mac_path?: string; windows_path?: string }[];
    };
  };
}

/** A route (REST `Route` plus id). `peer` conflicts with `peer_groups`, `network` with `domains`. */
export interface Route {
  id: string;
  description?: string;
  /** Routes sharing a `network_id` are one highly available route. */
  network_id: string;
  enabled: boolean;
  peer?: string;
  peer_groups?: string[];
  network?: string;
  domains?: string[];
  metric: number;
  masquerade: boolean;
  /** Distribution groups: peers in them receive the route. */
  groups: string[];
  keep_route?: boolean;
  access_control_groups?: string[];
}

/** A network: a container of resources and routers. */
export interface Network {
  id: string;
  name: string;
  description?: string;
}

/** A host, subnet or domain inside a network. */
export interface NetworkResource {
  id: string;
  network_id: string;
  name: string;
  description?: string;
  /** `1.1.1.1`, `1.1.1.1/32`, `192.168.0.0/24`, `example.com` or `*.example.com`. */
  address: string;
  type: ResourceKind;
  enabled: boolean;
}

/** A router of a network: one peer or the peers of some groups. */
export interface NetworkRouter {
  id: string;
  network_id: string;
  peer?: string;
  peer_groups?: string[];
  metric: number;
  masquerade: boolean;
  enabled: boolean;
}

/** A nameserver. */
export interface Nameserver {
  ip: string;
  ns_type: string;
  port: number;
}

/** A nameserver group; peers in `groups` use it. */
export interface NameserverGroup {
  id: string;
  name: string;
  description?: string;
  nameservers: Nameserver[];
  enabled: boolean;
  groups: string[];
  primary: boolean;
  domains?: string[];
  search_domains_enabled?: boolean;
}

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

/** One firewall rule of a map; `peer_ip` is `0.0.0.0` for every other peer. */
export interface FirewallRule {
  policy_id: string;
  rule_id: string;
  peer_ip: string;
  direction: 'in' | 'out';
  action: 'accept' | 'drop';
  protocol: Protocol;
  port?: number;
  port_range?: PortRange;
}

/** A route as a map carries it, with its routing peer. */
export interface MapRoute {
  id: string;
  network_id: string;
  network?: string;
  domains?: string[];
  peer: string;
  peer_ip: string;
  metric: number;
  masquerade: boolean;
  keep_route: boolean;
}

/** What a routing peer lets through to a route (`0.0.0.0/0` destination for domain routes). */
export interface RouteFirewallRule {
  route_id: string;
  source_ranges: string[];
  action: 'accept' | 'drop';
  destination: string;
  domains?: string[];
  protocol: Protocol;
  port?: number;
  port_range?: PortRange;
}

/** An A record of the account zone. */
export interface DnsRecord {
  name: string;
  type: 'A';
  class: 'IN';
  ttl: number;
  rdata: string;
}

/** The DNS part of a map. */
export interface MapDns {
  service_enable: boolean;
  custom_zones: { domain: string; records: DnsRecord[] }[];
  nameserver_groups: {
    id: string;
    name: string;
    nameservers: Nameserver[];
    primary: boolean;
    domains: string[];
    search_domains_enabled: boolean;
  }[];
}

/** One peer's network map. */
export interface NetworkMap {
  serial: number;
  network: { id: string; net: string; dns_domain: string };
  peer_config: { address: string; fqdn: string; ssh_enabled: boolean };
  peers: PeerView[];
  offline_peers: PeerView[];
  firewall_rules: FirewallRule[];
  routes: MapRoute[];
  route_firewall_rules: RouteFirewallRule[];
  dns: MapDns;
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
  settings?: Partial<AccountSettings>;
  groups?: Group[];
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
