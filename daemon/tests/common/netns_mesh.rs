//! The real management server and `meshplane daemon` processes, each run
//! inside a network namespace of a [`Lan`](super::netns::Lan), driven the
//! way an operator would: REST for the server, the CLI for the daemons.

use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::netns::{exec_in, in_netns};

pub const MESHPLANE: &str = env!("CARGO_BIN_EXE_meshplane");

/// A scratch directory for one test: removed on drop unless the test
/// failed, so the logs in it can be read.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("mp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process, killed with SIGKILL and reaped on drop.
pub struct Proc(Option<Child>);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd.stdin(Stdio::null()).spawn().expect("spawn");
        Proc(Some(child))
    }

    /// `kill -9` and wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An appending log file for a child's standard error (restarts add to it).
fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// Polls `check` every 50 ms until it holds; panics after `within`.
pub fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Whether something accepts TCP connections on `at`, seen from inside `ns`.
pub fn listening(ns: &str, at: SocketAddrV4) -> bool {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&SocketAddr::V4(at), Duration::from_millis(500)).is_ok()
    })
    .join()
    .expect("connect thread")
}

/// The server binary in the same target directory as the running test
/// (`target/<profile>/meshplane-server`).
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .join("meshplane-server");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p meshplane-server` first",
        bin.display()
    );
    bin
}

/// The management server running inside a namespace, with an owner token;
/// its REST API is called from inside the same namespace.
pub struct NsServer {
    ns: String,
    pub url: String,
    token: String,
    log: PathBuf,
    _process: Proc,
}

impl NsServer {
    pub fn start(ns: &str, listen: SocketAddrV4, dir: &Path) -> NsServer {
        let bin = server_binary();
        let data = dir.join("server-data");
        let out = Command::new(&bin)
            .arg("--data-dir")
            .arg(&data)
            .arg("admin-token")
            .env_remove("MESHPLANE_CONFIG")
            .output()
            .expect("run admin-token");
        assert!(
            out.status.success(),
            "admin-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let log = dir.join("server.log");
        let process = Proc::spawn(
            exec_in(ns, &bin)
                .arg("--data-dir")
                .arg(&data)
                .arg("--listen")
                .arg(listen.to_string())
                .env_remove("MESHPLANE_CONFIG")
                .stdout(Stdio::null())
                .stderr(log_file(&log)),
        );
        let server = NsServer {
            ns: ns.to_string(),
            url: format!("http://{listen}"),
            token,
            log,
            _process: process,
        };
        wait_until(Duration::from_secs(30), "the server listening", || {
            listening(ns, listen)
        });
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One REST call; the JSON reply (`null` when empty). Panics on a
    /// transport error or a non-2xx status.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let auth = format!("Token {}", self.token);
        let method = method.to_string();
        let what = format!("{method} {path}");
        let reply = in_netns(&self.ns, move || {
            let req = ureq::request(&method, &url)
                .set("Authorization", &auth)
                .timeout(Duration::from_secs(10));
            let res = match body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            match res {
                Ok(r) => r.into_string().map_err(|e| e.to_string()),
                Err(ureq::Error::Status(code, r)) => Err(format!(
                    "status {code}: {}",
                    r.into_string().unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        })
        .join()
        .expect("REST thread");
        let text = reply.unwrap_or_else(|e| panic!("{what}: {e}\n{}", self.log()));
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
        }
    }

    pub fn get(&self, path: &str) -> Value {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        self.call("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) {
        self.call("DELETE", path, None);
    }

    /// The id of the group called `name`.
    pub fn group_id(&self, name: &str) -> Value {
        self.get("/api/groups")
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["name"] == name))
            .map(|g| g["id"].clone())
            .unwrap_or_else(|| panic!("no group {name}"))
    }
}

/// A `meshplane daemon` (kernel TUN mode) running inside a namespace,
/// driven through its control socket with the CLI from the host.
pub struct NsDaemon {
    ns: String,
    dir: PathBuf,
    socket: PathBuf,
    process: Proc,
}

impl NsDaemon {
    pub fn start(ns: &str, dir: PathBuf) -> NsDaemon {
        std::fs::create_dir_all(&dir).expect("daemon directory");
        let mut d = NsDaemon {
            ns: ns.to_string(),
            socket: dir.join("control.sock"),
            dir,
            process: Proc(None),
        };
        d.launch();
        d
    }

    /// Starts the daemon on this state directory and waits for its socket.
    pub fn launch(&mut self) {
        self.process = Proc::spawn(
            exec_in(&self.ns, MESHPLANE)
                .arg("daemon")
                .arg("--state-dir")
                .arg(self.dir.join("state"))
                .arg("--socket")
                .arg(&self.socket)
                .env_remove("MESHPLANE_SOCKET")
                .env_remove("MESHPLANE_STATE_DIR")
                .stdout(Stdio::null())
                .stderr(log_file(&self.dir.join("daemon.log"))),
        );
        let socket = self.socket.clone();
        wait_until(Duration::from_secs(10), "the daemon's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
    }

    /// `kill -9` and wait.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// A CLI command that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = Command::new(MESHPLANE)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("MESHPLANE_SOCKET")
            .output()
            .expect("run the CLI");
        assert!(
            out.status.success(),
            "meshplane {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status(&self) -> Value {
        let text = self.ok(&["status", "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status: {e}: {text}"))
    }
}
