//! Command line, environment and TOML configuration.
//!
//! Precedence, highest first: command-line flags, `MESHPLANE_*` environment
//! variables, the TOML file given with `--config`, built-in defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use meshplane_core::registration::EPHEMERAL_OFFLINE;
use meshplane_core::validate::{Domain, ValidationError};
use meshplane_core::Duration;
use serde::Deserialize;
use thiserror::Error;

/// Where the embedded SQLite database lives when nothing else is said.
pub const DEFAULT_DATA_DIR: &str = "./meshplane-data";
/// The port the API listens on (on 127.0.0.1) when nothing else is said.
pub const DEFAULT_PORT: u16 = 33073;
/// File name of the embedded database inside the data directory.
const SQLITE_FILE: &str = "meshplane.db";

/// meshplane management server: the REST API under /api, backed by an
/// embedded SQLite database (default) or PostgreSQL.
///
/// Every option can also be set with the environment variable shown, or as a
/// key of the TOML file given with --config (keys: data_dir, store, listen,
/// log, ephemeral_offline_secs, expose_ttl_secs, proxy_domain, proxy_group).
/// Flags win over environment variables, which win over the file.
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
    ephemeral_offline_secs: Option<u32>,
    expose_ttl_secs: Option<u32>,
    proxy_domain: Option<String>,
    proxy_group: Option<String>,
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
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sqlx database URL.
    pub store_url: String,
    pub listen: SocketAddr,
    pub log: String,
    /// How long an ephemeral peer may stay offline.
    pub ephemeral_offline: Duration,
    /// Lifetime of an expose session without renewal.
    pub expose_ttl: Duration,
    /// The reverse proxy's domain.
    pub proxy_domain: Domain,
    /// The name of the group of reverse-proxy peers.
    pub proxy_group: String,
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
        let store_url = match self.store.clone().or(file.store) {
            Some(url) => url,
            None => {
                let dir = self
                    .data_dir
                    .clone()
                    .or(file.data_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                std::fs::create_dir_all(&dir).map_err(|source| ConfigError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
                sqlite_url(&dir.join(SQLITE_FILE))
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
        Ok(Settings {
            store_url,
            listen,
            log,
            ephemeral_offline,
            expose_ttl: Duration::from_secs(i64::from(ttl)),
            proxy_domain,
            proxy_group,
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
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("meshplane-config2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let cli = Cli::parse_from(["meshplane-server", "--config", file.to_str().unwrap()]);
        assert!(matches!(cli.settings(), Err(ConfigError::Parse { .. })));
    }
}
