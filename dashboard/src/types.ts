// The REST shapes the dashboard reads (NetBird's management API).

export interface GroupMin { id: string; name: string; peers_count?: number }
export interface RestPeer {
  id: string; name: string; ip: string; connected: boolean; last_seen: string; os: string;
  kernel_version: string; version: string; ui_version: string; serial_number: string;
  groups: GroupMin[]; ssh_enabled: boolean; user_id: string; hostname: string; dns_label: string;
  login_expiration_enabled: boolean; login_expired: boolean; last_login: string;
  inactivity_expiration_enabled: boolean; approval_required: boolean; ephemeral: boolean;
  country_code: string; city_name: string; created_at: string; connection_ip: string;
}
export interface RestGroup {
  id: string; name: string; peers_count: number; resources_count: number; issued?: string;
  peers?: { id: string; name: string }[]; resources?: { id: string; type: string }[];
}
export interface RestRule {
  id?: string; name: string; description?: string; enabled: boolean; action: 'accept' | 'drop';
  bidirectional: boolean; protocol: string; ports?: string[]; port_ranges?: { start: number; end: number }[];
  sources?: GroupMin[] | null; destinations?: GroupMin[] | null;
  sourceResource?: { id: string; type: string } | null; destinationResource?: { id: string; type: string } | null;
}
export interface RestPolicy {
  id: string; name: string; description: string; enabled: boolean;
  source_posture_checks: string[]; rules: RestRule[];
}
export interface RestSettings extends Record<string, unknown> {
  peer_expose_enabled: boolean; peer_expose_groups: string[];
}
export interface RestAccount { id: string; domain: string; settings: RestSettings }
export interface RestNetwork { id: string; name: string; description: string; resources: string[]; routers: string[] }
export interface RestResource {
  id: string; name: string; description: string; address: string; type: string; enabled: boolean; groups: GroupMin[];
}
export interface RestRouter {
  id: string; peer?: string | null; peer_groups?: string[] | null; metric: number; masquerade: boolean; enabled: boolean;
}
export interface RestPostureCheck { id: string; name: string; description: string; checks: Record<string, unknown> }
