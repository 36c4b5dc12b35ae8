//! The host's resolver configuration: pointing the host's programs at the
//! peer's resolver and giving the host back what it had.
//!
//! With systemd-resolved (its stub `127.0.0.53` in `/etc/resolv.conf`), the
//! TUN interface gets the peer's resolver as its DNS server and the mesh
//! zones and match domains as routing domains (`~domain`), plus the
//! default route when a primary nameserver group takes every name; it is
//! done with `resolvectl`, and the settings go with the interface, so
//! nothing on disk needs restoring. Otherwise `/etc/resolv.conf` is
//! rewritten: the original goes to the state directory first, ours is
//! written in place (truncate and write, never a rename: under `ip netns
//! exec` the file is a bind mount, and elsewhere it may be a symlink
//! another tool owns), and `down` writes the original back. A backup left
//! behind by a crash is written back at the next start. Either way, a file
//! someone else rewrote since is left as they wrote it.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The host's resolver configuration file.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where systemd-resolved lists the nameservers it learnt from the uplinks.
const RESOLVED_UPLINKS: &str = "/run/systemd/resolve/resolv.conf";
/// systemd-resolved's stub listener.
const RESOLVED_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));
/// The backup's name in the state directory.
const BACKUP_FILE: &str = "resolv.conf.original";
/// The first line of a resolv.conf we wrote.
const MARKER: &str = "# Written by meshplane";

/// How the host's resolver is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostMode {
    /// Per-link DNS on the TUN interface through systemd-resolved.
    SystemdResolved,
    /// `/etc/resolv.conf` rewritten, the original kept in the state
    /// directory.
    ResolvConf,
    /// Not touched (`--no-host-dns`).
    Untouched,
}

impl std::fmt::Display for HostMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostMode::SystemdResolved => "systemd-resolved",
            HostMode::ResolvConf => "resolv.conf",
            HostMode::Untouched => "untouched (--no-host-dns)",
        })
    }
}

/// Why the host's configuration could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("resolvectl {args}: {reason}")]
    Resolvectl { args: String, reason: String },
}

/// What the host is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// The peer's resolver.
    pub nameserver: Ipv4Addr,
    /// Domains the host's programs append to short names.
    pub search: Vec<String>,
    /// Domains whose names go to the peer's resolver (systemd-resolved
    /// routes only these to it unless `default_route`).
    pub routing: Vec<String>,
    /// Every name goes to the peer's resolver (a primary group exists).
    pub default_route: bool,
}

/// The resolv.conf and its backup.
#[derive(Debug, Clone)]
pub struct ResolvConf {
    path: PathBuf,
    backup: PathBuf,
}

impl ResolvConf {
    /// The host's `/etc/resolv.conf`, backed up into `state_dir`.
    pub fn host(state_dir: &Path) -> ResolvConf {
        ResolvConf::at(PathBuf::from(RESOLV_CONF), state_dir.join(BACKUP_FILE))
    }

    pub fn at(path: PathBuf, backup: PathBuf) -> ResolvConf {
        ResolvConf { path, backup }
    }

    /// Where the original is kept while ours is in place.
    pub fn backup(&self) -> &Path {
        &self.backup
    }

    /// The configuration from before we touched it: the backup when there
    /// is one, the file otherwise.
    pub fn original(&self) -> Result<String, HostError> {
        match fs::read_to_string(&self.backup) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => read(&self.path),
            Err(e) => Err(io_error(&self.backup, e)),
        }
    }

    /// Backs up the original (once) and writes `text` in its place.
    pub fn install(&self, text: &str) -> Result<(), HostError> {
        if !self.backup.exists() {
            let original = read(&self.path)?;
            if is_ours(&original) {
                // Ours without a backup: nothing to come back to but what
                // we would write again.
                tracing::warn!("{} is ours but has no backup", self.path.display());
            } else {
                write_new(&self.backup, &original)?;
            }
        }
        write_in_place(&self.path, text)
    }

    /// Writes the backup back if the file is still ours, and removes the
    /// backup. Whether there was one.
    pub fn restore(&self) -> Result<bool, HostError> {
        let original = match fs::read_to_string(&self.backup) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(&self.backup, e)),
        };
        if is_ours(&read(&self.path)?) {
            write_in_place(&self.path, &original)?;
        } else {
            tracing::warn!(
                "{} was rewritten by someone else; leaving it as it is",
                self.path.display()
            );
        }
        fs::remove_file(&self.backup).map_err(|e| io_error(&self.backup, e))?;
        Ok(true)
    }
}

fn is_ours(text: &str) -> bool {
    text.starts_with(MARKER)
}

fn io_error(path: &Path, source: io::Error) -> HostError {
    HostError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, HostError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        // No resolv.conf is a valid configuration: the resolver's default.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Truncates and writes `path` itself (never a new file renamed over it),
/// so bind mounts and symlinks keep pointing at it.
fn write_in_place(path: &Path, text: &str) -> Result<(), HostError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

/// Writes a file of our own whole or not at all: a temporary file renamed
/// into place.
fn write_new(path: &Path, text: &str) -> Result<(), HostError> {
    let tmp = path.with_extension("tmp");
    write_in_place(&tmp, text)?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// The `nameserver` lines of a resolv.conf, on port 53, except `skip`.
pub fn nameservers(text: &str, skip: &[IpAddr]) -> Vec<SocketAddr> {
    directives(text, "nameserver")
        .filter_map(|v| v.split_whitespace().next()?.parse::<IpAddr>().ok())
        .filter(|ip| !skip.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The values of `keyword` lines (comments skipped).
fn directives<'a>(text: &'a str, keyword: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines().filter_map(move |line| {
        let line = line.trim();
        let rest = line.strip_prefix(keyword)?;
        rest.starts_with([' ', '\t']).then(|| rest.trim())
    })
}

/// Our resolv.conf: the peer's resolver as the only nameserver (it
/// forwards the rest to the original's), our search domains before the
/// original's, the original's options kept.
pub fn render(original: &str, settings: &HostSettings, backup: &Path) -> String {
    let mut search: Vec<&str> = settings.search.iter().map(String::as_str).collect();
    for domain in directives(original, "search")
        .chain(directives(original, "domain"))
        .flat_map(str::split_whitespace)
    {
        if !search.iter().any(|s| s.eq_ignore_ascii_case(domain)) {
            search.push(domain);
        }
    }
    let mut out = format!(
        "{MARKER}: names go to the mesh peer's resolver.\n\
         # The original is kept in {} and comes back on `meshplane down`.\n\
         nameserver {}\n",
        backup.display(),
        settings.nameserver
    );
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for options in directives(original, "options") {
        out.push_str(&format!("options {options}\n"));
    }
    out
}

/// Whether the host resolves through systemd-resolved's stub (and
/// `resolvectl` is there to configure it).
pub fn uses_resolved(resolv_conf: &str) -> bool {
    nameservers(resolv_conf, &[])
        .iter()
        .any(|s| s.ip() == RESOLVED_STUB)
        && Command::new("resolvectl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// The nameservers systemd-resolved uses for the uplinks.
pub fn resolved_uplinks(skip: &[IpAddr]) -> Vec<SocketAddr> {
    let text = fs::read_to_string(RESOLVED_UPLINKS).unwrap_or_default();
    let mut skip = skip.to_vec();
    skip.push(RESOLVED_STUB);
    nameservers(&text, &skip)
}

/// Configures interface `interface` in systemd-resolved.
pub fn resolved_apply(interface: &str, settings: &HostSettings) -> Result<(), HostError> {
    resolvectl(&["dns", interface, &settings.nameserver.to_string()])?;
    let mut domains: Vec<String> = settings.routing.iter().map(|d| format!("~{d}")).collect();
    domains.extend(settings.search.iter().cloned());
    let mut args = vec!["domain", interface];
    args.extend(domains.iter().map(String::as_str));
    resolvectl(&args)?;
    let default = if settings.default_route { "yes" } else { "no" };
    resolvectl(&["default-route", interface, default])
}

/// Drops what [`resolved_apply`] set on `interface`.
pub fn resolved_revert(interface: &str) -> Result<(), HostError> {
    resolvectl(&["revert", interface])
}

/// systemd-resolved is driven with its own CLI: three calls on a change of
/// the map do not warrant a D-Bus client in the daemon.
fn resolvectl(args: &[&str]) -> Result<(), HostError> {
    let error = |reason: String| HostError::Resolvectl {
        args: args.join(" "),
        reason,
    };
    let out = Command::new("resolvectl")
        .args(args)
        .output()
        .map_err(|e| error(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(error(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "# from DHCP\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n\
                            search lan.example\noptions edns0 timeout:2\n";

    fn settings() -> HostSettings {
        HostSettings {
            nameserver: Ipv4Addr::new(100, 64, 0, 1),
            search: vec!["netbird.cloud".to_string()],
            routing: vec!["netbird.cloud".to_string()],
            default_route: false,
        }
    }

    fn files(dir: &Path) -> ResolvConf {
        ResolvConf::at(dir.join("resolv.conf"), dir.join("state").join(BACKUP_FILE))
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mp-host-dns-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("state")).expect("scratch");
        dir
    }

    #[test]
    fn ours_points_at_the_peer_and_keeps_search_and_options() {
        let text = render(ORIGINAL, &settings(), Path::new("/state/backup"));
        assert!(text.starts_with(MARKER));
        assert_eq!(
            nameservers(&text, &[]),
            [SocketAddr::from((Ipv4Addr::new(100, 64, 0, 1), 53))]
        );
        assert!(
            text.contains("search netbird.cloud lan.example\n"),
            "{text}"
        );
        assert!(text.contains("options edns0 timeout:2\n"), "{text}");
        assert_eq!(
            nameservers(ORIGINAL, &[]),
            [
                "192.0.2.53:53".parse::<SocketAddr>().expect("addr"),
                "[2001:db8::53]:53".parse().expect("addr")
            ]
        );
    }

    #[test]
    fn install_backs_up_once_and_restore_writes_the_original_back_in_place() {
        let dir = scratch("install");
        let conf = files(&dir);
        fs::write(&conf.path, ORIGINAL).expect("original");
        let before = fs::metadata(&conf.path).expect("meta");
        let ours = render(ORIGINAL, &settings(), &conf.backup);
        conf.install(&ours).expect("install");
        // A second map rewrites ours but keeps the first backup.
        conf.install(&ours.replace("100.64.0.1", "100.64.0.9"))
            .expect("install again");
        assert_eq!(fs::read_to_string(&conf.backup).expect("backup"), ORIGINAL);
        assert_eq!(conf.original().expect("original"), ORIGINAL);
        assert!(is_ours(&fs::read_to_string(&conf.path).expect("ours")));
        // Written in place: the same inode, as a bind mount needs.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&conf.path).expect("meta").ino(), before.ino());
        assert!(conf.restore().expect("restore"));
        assert_eq!(fs::read_to_string(&conf.path).expect("back"), ORIGINAL);
        assert!(!conf.backup.exists());
        assert!(!conf.restore().expect("nothing left"), "restores once");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_crash_backup_comes_back_unless_someone_else_rewrote_the_file() {
        let dir = scratch("crash");
        let conf = files(&dir);
        fs::write(&conf.path, ORIGINAL).expect("original");
        conf.install(&render(ORIGINAL, &settings(), &conf.backup))
            .expect("install");
        // The daemon died here; the next start restores.
        let next = files(&dir);
        assert!(next.restore().expect("recover"));
        assert_eq!(fs::read_to_string(&conf.path).expect("back"), ORIGINAL);

        // Someone rewrote the file while we were up: theirs stays.
        conf.install(&render(ORIGINAL, &settings(), &conf.backup))
            .expect("install");
        fs::write(&conf.path, "nameserver 198.51.100.1\n").expect("theirs");
        assert!(conf.restore().expect("restore"));
        assert_eq!(
            fs::read_to_string(&conf.path).expect("theirs"),
            "nameserver 198.51.100.1\n"
        );
        assert!(!conf.backup.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_resolv_conf_is_an_empty_one() {
        let dir = scratch("missing");
        let conf = files(&dir);
        assert_eq!(conf.original().expect("original"), "");
        conf.install("# Written by meshplane\nnameserver 100.64.0.1\n")
            .expect("install");
        assert!(conf.restore().expect("restore"));
        assert_eq!(fs::read_to_string(&conf.path).expect("empty"), "");
        let _ = fs::remove_dir_all(&dir);
    }
}
