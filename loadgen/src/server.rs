//! The server under load when the harness runs it itself: `meshplane-server`
//! on its embedded store in a fresh temporary directory, on a free loopback
//! port, with connection limits raised so one client address may hold every
//! simulated peer's connection. Also reads a process's CPU time and peak
//! resident memory from `/proc`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// The server binary's file name.
pub const SERVER_BIN: &str = "meshplane-server";
/// The command that builds the release server binary next to the harness.
pub const BUILD_HINT: &str = "cargo build --release -p meshplane-server";
/// How long the server may take to listen after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections the started server accepts from one address: more than the
/// harness opens at any scale it is meant for.
const CONNECTIONS_PER_ADDRESS: u32 = 10_000;
/// `/proc/<pid>/stat` counts CPU time in these ticks (`USER_HZ`), which
/// Linux fixes at 100 for user space.
const TICKS_PER_SEC: f64 = 100.0;

/// Why the server could not be started or measured.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{path} not found; build it with `{BUILD_HINT}` (or `cargo build -p meshplane-server` for a debug harness), or pass --server-bin")]
    Missing { path: PathBuf },
    #[error("cannot start {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`meshplane-server admin-token` failed: {0}")]
    AdminToken(String),
    #[error("the server did not start listening within {}s; its log:\n{log}", START_TIMEOUT.as_secs())]
    NotListening { log: String },
    #[error("the server exited at start ({status}); its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("temporary directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read /proc/{pid}: {reason}")]
    Proc { pid: u32, reason: String },
}

/// The server binary next to the running executable: `target/<profile>/`
/// holds both the harness and the server; a test executable lives one level
/// down, in `deps/`.
pub fn default_binary() -> Result<PathBuf, ServerError> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent();
    let first = dir.map(|d| d.join(SERVER_BIN));
    while let Some(d) = dir {
        let candidate = d.join(SERVER_BIN);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n != "deps") {
            break;
        }
        dir = d.parent();
    }
    Err(ServerError::Missing {
        path: first.unwrap_or_else(|| PathBuf::from(SERVER_BIN)),
    })
}

/// A running server; killed and its directory removed on drop.
#[derive(Debug)]
pub struct ManagedServer {
    child: Child,
    dir: PathBuf,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// An owner token for REST.
    pub token: String,
}

impl ManagedServer {
    /// Starts `bin` on a fresh embedded store and waits until it listens.
    pub fn start(bin: &Path) -> Result<ManagedServer, ServerError> {
        if !bin.is_file() {
            return Err(ServerError::Missing {
                path: bin.to_path_buf(),
            });
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("meshplane-loadgen-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data").display().to_string();
        let token = admin_token(bin, &data)?;
        // Free for TCP and UDP alike: the server listens on both (STUN).
        let port = loop {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = server_command(bin)
            .args(["--data-dir", &data])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--log", "warn"])
            .args([
                "--max-connections-per-address",
                &CONNECTIONS_PER_ADDRESS.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                path: bin.to_path_buf(),
                source,
            })?;
        let mut server = ManagedServer {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            token,
        };
        server.wait_listening(port)?;
        Ok(server)
    }

    fn wait_listening(&mut self, port: u16) -> Result<(), ServerError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                return Err(ServerError::Exited {
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            if Instant::now() > deadline {
                return Err(ServerError::NotListening { log: self.log() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `bin` without the caller's `MESHPLANE_*` settings, so the server runs
/// exactly on the store and limits the harness gives it.
fn server_command(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("MESHPLANE_") {
            command.env_remove(&var);
        }
    }
    command
}

/// Creates the account and an owner token on the store in `data`.
fn admin_token(bin: &Path, data: &str) -> Result<String, ServerError> {
    let out = server_command(bin)
        .args(["--data-dir", data, "--log", "warn", "admin-token"])
        .output()
        .map_err(|source| ServerError::Spawn {
            path: bin.to_path_buf(),
            source,
        })?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || token.is_empty() {
        return Err(ServerError::AdminToken(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(token)
}

/// A process's CPU time so far and its peak resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStats {
    /// User plus system CPU seconds.
    pub cpu_secs: f64,
    /// Peak resident set (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// Reads [`ProcStats`] of process `pid`.
pub fn proc_stats(pid: u32) -> Result<ProcStats, ServerError> {
    let fail = |reason: String| ServerError::Proc { pid, reason };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| fail(format!("stat: {e}")))?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| fail("stat without a command name".to_string()))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, ServerError> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / TICKS_PER_SEC)
            .ok_or_else(|| fail(format!("stat field {} missing", i + 3)))
    };
    let cpu_secs = tick(11)? + tick(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| fail(format!("status: {e}")))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| fail("status without VmHWM".to_string()))?;
    Ok(ProcStats {
        cpu_secs,
        peak_rss_kib,
    })
}
