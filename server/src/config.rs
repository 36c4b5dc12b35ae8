//! Command line, environment and TOML configuration.
//!
//! Precedence, highest first: command-line flags, `MESHPLANE_*` environment
//! variables, the TOML file given with `--config`, built-in defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use clap::{Args, Parser, Subcommand};
use meshplane_core::registration::EPHEMERAL_OFFLINE;
use meshplane_core::validate::{Domain, ValidationError};
use meshplane_core::Duration;
use serde::Deserialize;
use thiserror::Error;

/// Where the embedded SQLite database lives when nothing else is said.
pub const DEFAULT_DATA_DIR: &str = "./meshplane-data";
/// The port the API listens on (on 127.0.0.1) when nothing else is said.
pub const DEFAULT_PORT: u16 = 33073;
/// Default seconds between relay token refreshes on NetBird Sync streams:
/// half the token's lifetime.
pub const DEFAULT_RELAY_TOKEN_REFRESH_SECS: u32 = 1800;
/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "meshplane.db";

/// meshplane management server: the REST API under /api, backed by an
/// embedded SQLite database (default) or PostgreSQL.
///
/// Every option can also be set with the environment variable shown, or as a
/// key of the TOML file given with --config (keys: data_dir, store, listen,
/// log, log_format, ephemeral_offline_secs, expose_ttl_secs, proxy_domain, proxy_group,
/// relay_urls (a list), relay_token_refresh_secs, tls_cert, tls_key, metrics_listen, no_dashboard, and the connection limits in a `[limits]` table: header_read_timeout_secs,
/// idle_timeout_secs, ...). Flags win over environment variables, which win
/// over the file.
#[derive(Debug, Parser)]
#[command(name = "meshplane-server", version, about, long_about)]
pub struct Cli {
    /// Directory of the embedded SQLite database (created if missing).
    /// Default: ./meshplane-data. Ignored when --store is given.
    #[arg(long, value_name = "DIR", env = "MESHPLANE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Database URL: postgres://user:pass@host/db for PostgreSQL, or
    /// sqlite://path/to/file.db for a SQLite file elsewhere.
    #[arg(
        long,
        value_name = "URL",
        env = "MESHPLANE_STORE",
        hide_env_values = true,
        global = true
    )]
    pub store: Option<String>,

    /// Address to listen on. Default: 127.0.0.1:33073.
    #[arg(long, value_name = "ADDR", env = "MESHPLANE_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,

    /// Optional TOML configuration file.
    #[arg(long, value_name = "FILE", env = "MESHPLANE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Log filter in tracing's EnvFilter syntax (for example `info` or
    /// `meshplane_server=debug`). Default: info. Logs go to stderr.
    #[arg(long, value_name = "FILTER", env = "MESHPLANE_LOG", global = true)]
    pub log: Option<String>,

    /// How log lines are written: `text`, or `json` (one object per line,
    /// for log collectors). Default: text.
    #[arg(
        long,
        value_name = "FORMAT",
        env = "MESHPLANE_LOG_FORMAT",
        global = true
    )]
    pub log_format: Option<meshplane_logging::Format>,

    /// Seconds an ephemeral peer (registered with an ephemeral setup key)
    /// may stay offline before the server deletes it. Default: 600.
    #[arg(
        long,
        value_name = "SECS",
        env = "MESHPLANE_EPHEMERAL_OFFLINE_SECS",
        global = true
    )]
    pub ephemeral_offline_secs: Option<u32>,

    /// Seconds an expose session lives without a renewal (every renewal
    /// starts it again). Default: 90.
    #[arg(
        long,
        value_name = "SECS",
        env = "MESHPLANE_EXPOSE_TTL_SECS",
        global = true
    )]
    pub expose_ttl_secs: Option<u32>,

    /// Seconds between the fresh relay tokens a NetBird client's Sync
    /// stream is sent (tokens live an hour). Default: 1800.
    #[arg(
        long,
        value_name = "SECS",
        env = "MESHPLANE_RELAY_TOKEN_REFRESH_SECS",
        global = true
    )]
    pub relay_token_refresh_secs: Option<u32>,

    /// The reverse proxy's domain: exposed services get names under it, and
    /// a proxy must serve exactly this domain to watch the services.
    /// Default: proxy.localhost.
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "MESHPLANE_PROXY_DOMAIN",
        global = true
    )]
    pub proxy_domain: Option<String>,

    /// Name of the group whose peers are an account's reverse proxies: they
    /// may watch the services and reach only the exposed ports. Default:
    /// proxies.
    #[arg(
        long,
        value_name = "NAME",
        env = "MESHPLANE_PROXY_GROUP",
        global = true
    )]
    pub proxy_group: Option<String>,

    /// A relay address peers are told to use when no direct path works
    /// (rel://host:port, rels://host:port for TLS); repeat for several,
    /// preferred first. Default: this server's own relay, at the address
    /// the peer reached the server on.
    #[arg(
        long = "relay-url",
        value_name = "URL",
        env = "MESHPLANE_RELAY_URLS",
        value_delimiter = ',',
        global = true
    )]
    pub relay_urls: Vec<String>,

    /// A PEM certificate chain: serve REST, gRPC and the relay over TLS on
    /// the listen port (with --tls-key). Default: plain HTTP, for a server
    /// behind a TLS-terminating load balancer or on a private network.
    #[arg(
        long,
        value_name = "FILE",
        env = "MESHPLANE_TLS_CERT",
        global = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Serve Prometheus metrics at /metrics on this address (IP:PORT), a
    /// listener of its own. Default: off.
    #[arg(
        long,
        value_name = "ADDR",
        env = "MESHPLANE_METRICS_LISTEN",
        global = true
    )]
    pub metrics_listen: Option<SocketAddr>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "MESHPLANE_TLS_KEY",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Do not serve the web dashboard at / (the API is unchanged).
    #[arg(long, env = "MESHPLANE_NO_DASHBOARD", global = true)]
    pub no_dashboard: bool,

    #[command(flatten)]
    pub limits: LimitOptions,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the account and its owner user if none exist yet, create a
    /// personal access token for the owner and print the plain token alone
    /// on stdout.
    AdminToken {
        /// Name of the new token.
        #[arg(long, value_name = "NAME", default_value = "admin")]
        name: String,
    },
}

/// The keys the TOML file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    store: Option<String>,
    listen: Option<SocketAddr>,
    log: Option<String>,
    log_format: Option<meshplane_logging::Format>,
    ephemeral_offline_secs: Option<u32>,
    expose_ttl_secs: Option<u32>,
    proxy_domain: Option<String>,
    proxy_group: Option<String>,
    relay_urls: Option<Vec<String>>,
    relay_token_refresh_secs: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    no_dashboard: Option<bool>,
    #[serde(default)]
    limits: LimitOptions,
}

/// Why the configuration could not be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid proxy domain: {0}")]
    ProxyDomain(#[from] ValidationError),
    #[error("the expose TTL must be at least one second")]
    ExposeTtl,
    #[error("relay_token_refresh_secs must be between 1 and {max}")]
    RelayTokenRefresh { max: i64 },
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error("invalid relay URL: {0}")]
    RelayUrl(String),
    #[error("TLS needs both a certificate and a key (--tls-cert and --tls-key)")]
    TlsPair,
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sqlx database URL.
    pub store_url: String,
    pub listen: SocketAddr,
    pub log: String,
    pub log_format: meshplane_logging::Format,
    /// How long an ephemeral peer may stay offline.
    pub ephemeral_offline: Duration,
    /// Lifetime of an expose session without renewal.
    pub expose_ttl: Duration,
    /// The reverse proxy's domain.
    pub proxy_domain: Domain,
    /// The name of the group of reverse-proxy peers.
    pub proxy_group: String,
    /// The directory of the embedded database, when the store is one.
    pub data_dir: Option<PathBuf>,
    /// What one client may hold open.
    pub limits: Limits,
    /// The relays peers are told to use (empty: this server's own).
    pub relay_urls: Vec<String>,
    /// How often NetBird clients' Sync streams get a fresh relay token.
    pub relay_token_refresh: StdDuration,
    /// The certificate chain and key files to serve TLS with.
    pub tls: Option<TlsFiles>,
    /// Where to serve metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `/` serves the web dashboard.
    pub dashboard: bool,
}

/// Where the listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Defaults of the expose settings (the seed's 90 s TTL).
pub const DEFAULT_EXPOSE_TTL_SECS: u32 = 90;
pub const DEFAULT_PROXY_DOMAIN: &str = "proxy.localhost";
pub const DEFAULT_PROXY_GROUP: &str = "proxies";

impl Cli {
    /// Merges flags and environment (already in `self`) with the file and the
    /// defaults, and makes sure an embedded database has its directory.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let (store_url, data_dir) = match self.store.clone().or(file.store) {
            Some(url) => (url, None),
            None => {
                let dir = self
                    .data_dir
                    .clone()
                    .or(file.data_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                (sqlite_url(&dir.join(SQLITE_FILE)), Some(dir))
            }
        };
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)));
        let log = self
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".to_string());
        let log_format = self.log_format.or(file.log_format).unwrap_or_default();
        let ephemeral_offline = self
            .ephemeral_offline_secs
            .or(file.ephemeral_offline_secs)
            .map_or(EPHEMERAL_OFFLINE, |s| Duration::from_secs(i64::from(s)));
        let ttl = self
            .expose_ttl_secs
            .or(file.expose_ttl_secs)
            .unwrap_or(DEFAULT_EXPOSE_TTL_SECS);
        if ttl == 0 {
            return Err(ConfigError::ExposeTtl);
        }
        let proxy_domain = self
            .proxy_domain
            .clone()
            .or(file.proxy_domain)
            .unwrap_or_else(|| DEFAULT_PROXY_DOMAIN.to_string())
            .parse()?;
        let proxy_group = self
            .proxy_group
            .clone()
            .or(file.proxy_group)
            .unwrap_or_else(|| DEFAULT_PROXY_GROUP.to_string());
        let limits = self.limits.clone().or(file.limits).resolve()?;
        let relay_urls = if self.relay_urls.is_empty() {
            file.relay_urls.unwrap_or_default()
        } else {
            self.relay_urls.clone()
        };
        for url in &relay_urls {
            meshplane_relay::dial::Target::relay(url)
                .map_err(|e| ConfigError::RelayUrl(e.to_string()))?;
        }
        // A refresh must come before the token it replaces expires.
        let refresh = self
            .relay_token_refresh_secs
            .or(file.relay_token_refresh_secs)
            .unwrap_or(DEFAULT_RELAY_TOKEN_REFRESH_SECS);
        let max = crate::relay::TOKEN_TTL_SECS - 1;
        if refresh == 0 || i64::from(refresh) > max {
            return Err(ConfigError::RelayTokenRefresh { max });
        }
        // A flag pair wins as a whole over the file's pair.
        let tls = match (self.tls_cert.clone(), self.tls_key.clone()) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => match (file.tls_cert, file.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => return Err(ConfigError::TlsPair),
            },
        };
        Ok(Settings {
            relay_urls,
            relay_token_refresh: StdDuration::from_secs(u64::from(refresh)),
            tls,
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            dashboard: !(self.no_dashboard || file.no_dashboard.unwrap_or(false)),
            store_url,
            data_dir,
            limits,
            listen,
            log,
            log_format,
            ephemeral_offline,
            expose_ttl: Duration::from_secs(i64::from(ttl)),
            proxy_domain,
            proxy_group,
        })
    }
}

/// The connection and stream limits as flags, variables and the `[limits]`
/// table of the file. Every one is optional; [`LimitOptions::resolve`]
/// fills in the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOptions {
    /// Seconds a client has to send a complete request head, on a new
    /// connection and between keep-alive requests. Default: 10.
    #[arg(long, value_name = "SECS", env = "MESHPLANE_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u32>,

    /// Seconds a connection may stay open with no request in progress
    /// before it is closed (HTTP/2: GOAWAY). Open gRPC streams count as
    /// requests in progress, so Sync streams are never idle. Default: 60.
    #[arg(long, value_name = "SECS", env = "MESHPLANE_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u32>,

    /// Seconds without any frame from an HTTP/2 client after which the
    /// server pings it. Default: 60.
    #[arg(long, value_name = "SECS", env = "MESHPLANE_H2_KEEPALIVE_SECS")]
    h2_keepalive_secs: Option<u32>,

    /// Seconds the server waits for the answer to its HTTP/2 ping before it
    /// closes the connection. Default: 20.
    #[arg(long, value_name = "SECS", env = "MESHPLANE_H2_KEEPALIVE_TIMEOUT_SECS")]
    h2_keepalive_timeout_secs: Option<u32>,

    /// Streams (calls) one HTTP/2 connection may have open at once.
    /// Default: 100.
    #[arg(long, value_name = "N", env = "MESHPLANE_H2_MAX_STREAMS")]
    h2_max_streams: Option<u32>,

    /// Requests one HTTP/1 keep-alive connection may carry; the last is
    /// answered with `Connection: close`. Default: 1000.
    #[arg(long, value_name = "N", env = "MESHPLANE_MAX_REQUESTS_PER_CONNECTION")]
    max_requests_per_connection: Option<u32>,

    /// Connections open at once. While at the cap the server accepts none;
    /// it is also kept below the process's open-file limit. Default: 10000.
    #[arg(long, value_name = "N", env = "MESHPLANE_MAX_CONNECTIONS")]
    max_connections: Option<u32>,

    /// Connections open at once from one source address; further ones are
    /// closed as soon as they are accepted. Default: 256 (a NAT may put a
    /// whole office behind one address).
    #[arg(long, value_name = "N", env = "MESHPLANE_MAX_CONNECTIONS_PER_ADDRESS")]
    max_connections_per_address: Option<u32>,

    /// Sync streams, and WatchServices streams, one peer key may have open
    /// at once; a newer one closes the oldest. Default: 4.
    #[arg(long, value_name = "N", env = "MESHPLANE_STREAMS_PER_PEER")]
    streams_per_peer: Option<u32>,
}

/// What one client may hold open: [`LimitOptions`] resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: StdDuration,
    pub idle_timeout: StdDuration,
    pub h2_keepalive_interval: StdDuration,
    pub h2_keepalive_timeout: StdDuration,
    pub h2_max_streams: u32,
    pub max_requests_per_connection: u32,
    pub max_connections: u32,
    pub max_connections_per_address: u32,
    pub streams_per_peer: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: StdDuration::from_secs(10),
            idle_timeout: StdDuration::from_secs(60),
            h2_keepalive_interval: StdDuration::from_secs(60),
            h2_keepalive_timeout: StdDuration::from_secs(20),
            h2_max_streams: 100,
            max_requests_per_connection: 1000,
            max_connections: 10_000,
            max_connections_per_address: 256,
            streams_per_peer: 4,
        }
    }
}

impl LimitOptions {
    /// Each option of `self`, or else of `file`.
    fn or(self, file: LimitOptions) -> LimitOptions {
        LimitOptions {
            header_read_timeout_secs: self
                .header_read_timeout_secs
                .or(file.header_read_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(file.idle_timeout_secs),
            h2_keepalive_secs: self.h2_keepalive_secs.or(file.h2_keepalive_secs),
            h2_keepalive_timeout_secs: self
                .h2_keepalive_timeout_secs
                .or(file.h2_keepalive_timeout_secs),
            h2_max_streams: self.h2_max_streams.or(file.h2_max_streams),
            max_requests_per_connection: self
                .max_requests_per_connection
                .or(file.max_requests_per_connection),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address),
            streams_per_peer: self.streams_per_peer.or(file.streams_per_peer),
        }
    }

    /// The limits with defaults for what is not set; a zero is refused (it
    /// would close or refuse everything).
    fn resolve(self) -> Result<Limits, ConfigError> {
        fn positive(
            value: Option<u32>,
            default: u32,
            name: &'static str,
        ) -> Result<u32, ConfigError> {
            match value.unwrap_or(default) {
                0 => Err(ConfigError::ZeroLimit(name)),
                n => Ok(n),
            }
        }
        let secs = |value, default: StdDuration, name| {
            let default = u32::try_from(default.as_secs()).unwrap_or(u32::MAX);
            positive(value, default, name).map(|s| StdDuration::from_secs(u64::from(s)))
        };
        let d = Limits::default();
        Ok(Limits {
            header_read_timeout: secs(
                self.header_read_timeout_secs,
                d.header_read_timeout,
                "the header read timeout",
            )?,
            idle_timeout: secs(self.idle_timeout_secs, d.idle_timeout, "the idle timeout")?,
            h2_keepalive_interval: secs(
                self.h2_keepalive_secs,
                d.h2_keepalive_interval,
                "the HTTP/2 keep-alive interval",
            )?,
            h2_keepalive_timeout: secs(
                self.h2_keepalive_timeout_secs,
                d.h2_keepalive_timeout,
                "the HTTP/2 keep-alive timeout",
            )?,
            h2_max_streams: positive(self.h2_max_streams, d.h2_max_streams, "h2-max-streams")?,
            max_requests_per_connection: positive(
                self.max_requests_per_connection,
                d.max_requests_per_connection,
                "max-requests-per-connection",
            )?,
            max_connections: positive(self.max_connections, d.max_connections, "max-connections")?,
            max_connections_per_address: positive(
                self.max_connections_per_address,
                d.max_connections_per_address,
                "max-connections-per-address",
            )?,
            streams_per_peer: positive(
                self.streams_per_peer,
                d.streams_per_peer,
                "streams-per-peer",
            )?,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        source: Box::new(source),
    })
}

/// The sqlx URL of a SQLite file, created on first use.
fn sqlite_url(file: &Path) -> String {
    format!("sqlite://{}?mode=rwc", file.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("meshplane-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:4000\"\nstore = \"postgres://x@localhost/db\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "meshplane-server",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:5000",
        ]);
        let s = cli.settings().unwrap();
        assert_eq!(s.listen.port(), 5000);
        assert_eq!(s.store_url, "postgres://x@localhost/db");
        assert_eq!(s.log, "info");
        assert_eq!(s.ephemeral_offline, EPHEMERAL_OFFLINE);
        assert_eq!(s.expose_ttl, Duration::from_secs(90));
        assert_eq!(s.proxy_domain.as_str(), DEFAULT_PROXY_DOMAIN);
        assert_eq!(s.proxy_group, DEFAULT_PROXY_GROUP);
        let short = Cli::parse_from([
            "meshplane-server",
            "--store",
            "postgres://x@localhost/db",
            "--ephemeral-offline-secs",
            "3",
            "--expose-ttl-secs",
            "2",
            "--proxy-domain",
            "proxy.example.net",
        ]);
        let expose = short.settings().unwrap();
        assert_eq!(expose.expose_ttl, Duration::from_secs(2));
        assert_eq!(expose.proxy_domain.as_str(), "proxy.example.net");
        let bad = Cli::parse_from([
            "meshplane-server",
            "--store",
            "postgres://x@localhost/db",
            "--proxy-domain",
            "Not A Domain",
        ]);
        assert!(matches!(bad.settings(), Err(ConfigError::ProxyDomain(_))));
        assert_eq!(
            short.settings().unwrap().ephemeral_offline,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn limits_come_from_flags_file_and_defaults() {
        let dir = std::env::temp_dir().join(format!("meshplane-config3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("limits.toml");
        std::fs::write(
            &file,
            "store = \"postgres://x@localhost/db\"\n[limits]\nidle_timeout_secs = 5\nstreams_per_peer = 2\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::parse_from([
            "meshplane-server",
            "--config",
            path,
            "--streams-per-peer",
            "3",
        ]);
        let limits = cli.settings().unwrap().limits;
        assert_eq!(limits.idle_timeout, StdDuration::from_secs(5));
        assert_eq!(limits.streams_per_peer, 3);
        assert_eq!(
            limits.header_read_timeout,
            Limits::default().header_read_timeout
        );
        let zero = Cli::parse_from([
            "meshplane-server",
            "--config",
            path,
            "--max-connections",
            "0",
        ]);
        assert!(matches!(zero.settings(), Err(ConfigError::ZeroLimit(_))));
        std::fs::write(&file, "[limits]\nidle = 5\n").unwrap();
        let unknown = Cli::parse_from(["meshplane-server", "--config", path]);
        assert!(matches!(unknown.settings(), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn tls_needs_a_certificate_and_a_key() {
        let dir = std::env::temp_dir().join(format!("meshplane-config5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let half = dir.join("half.toml");
        std::fs::write(&half, "tls_cert = \"/etc/c.pem\"\n").unwrap();
        let cli = Cli::parse_from(["meshplane-server", "--config", half.to_str().unwrap()]);
        assert_eq!(
            cli.settings().unwrap_err().to_string(),
            "TLS needs both a certificate and a key (--tls-cert and --tls-key)"
        );
        // A flag pair wins over the file's half.
        let cli = Cli::parse_from([
            "meshplane-server",
            "--config",
            half.to_str().unwrap(),
            "--tls-cert",
            "/a.pem",
            "--tls-key",
            "/b.pem",
        ]);
        assert_eq!(
            cli.settings().unwrap().tls,
            Some(TlsFiles {
                cert: "/a.pem".into(),
                key: "/b.pem".into()
            })
        );
        // One flag alone is refused by the parser.
        assert!(Cli::try_parse_from(["meshplane-server", "--tls-cert", "/a.pem"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relay_token_refresh_is_bounded_by_the_token_lifetime() {
        let settings = |args: &[&str]| {
            let mut all = vec!["meshplane-server"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap().settings()
        };
        assert_eq!(
            settings(&[]).unwrap().relay_token_refresh,
            StdDuration::from_secs(1800)
        );
        assert_eq!(
            settings(&["--relay-token-refresh-secs", "1"])
                .unwrap()
                .relay_token_refresh,
            StdDuration::from_secs(1)
        );
        for refused in ["0", "3600"] {
            assert_eq!(
                settings(&["--relay-token-refresh-secs", refused])
                    .unwrap_err()
                    .to_string(),
                "relay_token_refresh_secs must be between 1 and 3599"
            );
        }
    }

    #[test]
    fn relay_urls_come_from_flags_or_file_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("meshplane-config4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "store = \"postgres://x@localhost/db\"\nrelay_urls = [\"rel://a.example:80\"]\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let from_file = Cli::parse_from(["meshplane-server", "--config", path]);
        assert_eq!(
            from_file.settings().unwrap().relay_urls,
            ["rel://a.example:80"]
        );
        let flags = Cli::parse_from([
            "meshplane-server",
            "--config",
            path,
            "--relay-url",
            "rels://b.example",
            "--relay-url",
            "rel://c.example:1",
        ]);
        assert_eq!(
            flags.settings().unwrap().relay_urls,
            ["rels://b.example", "rel://c.example:1"]
        );
        let bad = Cli::parse_from([
            "meshplane-server",
            "--config",
            path,
            "--relay-url",
            "b.example",
        ]);
        assert!(matches!(bad.settings(), Err(ConfigError::RelayUrl(_))));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("meshplane-config2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let cli = Cli::parse_from(["meshplane-server", "--config", file.to_str().unwrap()]);
        assert!(matches!(cli.settings(), Err(ConfigError::Parse { .. })));
    }
}
