//! The real binaries as child processes, driven the way an operator would:
//! REST for the management server, the CLI for the daemons. Used as they
//! are on loopback (netstack mode, no privileges) and, by
//! [`netns_mesh`](super::netns_mesh), inside network namespaces.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
    pub fn none() -> Proc {
        Proc(None)
    }

    pub fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd.stdin(Stdio::null()).spawn().expect("spawn");
        Proc(Some(child))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
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
pub fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// Polls `check` every 50 ms until it holds; panics after `within`. How
/// long it took.
pub fn wait_until(within: Duration, what: &str, check: impl FnMut() -> bool) -> Duration {
    wait_until_telling(within, what, check, String::new)
}

/// [`wait_until`], with `context()` (such as the last state seen and a log)
/// appended to the panic message.
pub fn wait_until_telling(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// A loopback port nothing listens on, TCP or UDP (at the time of asking):
/// the server listens on both (STUN on UDP).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// Whether something accepts TCP connections on `at`.
pub fn accepts(at: SocketAddrV4) -> bool {
    TcpStream::connect_timeout(&at.into(), Duration::from_millis(500)).is_ok()
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

/// A new owner token for the server keeping its data in `data`.
pub fn admin_token(bin: &Path, data: &Path) -> String {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .arg("admin-token")
        .env_remove("MESHPLANE_CONFIG")
        .output()
        .expect("run admin-token");
    assert!(
        out.status.success(),
        "admin-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One REST call with an owner token; the body, or why it failed
/// (transport error or non-2xx status).
pub fn rest(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<String, String> {
    let req = ureq::request(method, &format!("{url}{path}"))
        .set("Authorization", &format!("Token {token}"))
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
}

/// A REST reply as JSON (`null` when empty); panics with `log` on failure.
pub fn json_reply(
    what: &str,
    reply: Result<String, String>,
    log: impl FnOnce() -> String,
) -> Value {
    let text = reply.unwrap_or_else(|e| panic!("{what}: {e}\n{}", log()));
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
    }
}

/// The management server on loopback, with an owner token; it can be
/// killed and launched again on the same data and port, as after a crash.
pub struct Server {
    pub url: String,
    token: String,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    log: PathBuf,
    /// Server flags besides the data directory and listen address.
    flags: Vec<String>,
    /// With TLS: the CA its certificate is checked against (REST then
    /// goes through curl).
    ca: Option<PathBuf>,
    process: Proc,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// The server with further `flags` (such as `--expose-ttl-secs 3`),
    /// kept for every [`launch`](Server::launch).
    pub fn start_with(dir: &Path, flags: &[&str]) -> Server {
        Server::start_as(dir, flags, None)
    }

    /// The server serving TLS with `cert` and `key` (for `localhost`),
    /// reached as `https://localhost:PORT` and checked against `ca`.
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path, ca: &Path) -> Server {
        let flags = ["--tls-cert", path_str(cert), "--tls-key", path_str(key)];
        Server::start_as(dir, &flags, Some(ca))
    }

    /// Starts a server with `flags` in `dir`: over `https://localhost`
    /// checked against `ca` when there is one, plain HTTP on 127.0.0.1
    /// otherwise.
    fn start_as(dir: &Path, flags: &[&str], ca: Option<&Path>) -> Server {
        let bin = server_binary();
        let data = dir.join("server-data");
        let token = admin_token(&bin, &data);
        let port = free_port();
        let url = match ca {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://{}", SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        };
        let mut server = Server {
            url,
            token,
            bin,
            data,
            port,
            log: dir.join("server.log"),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            ca: ca.map(Path::to_path_buf),
            process: Proc::none(),
        };
        server.launch();
        server
    }

    /// Starts the server on its data and port and waits until it listens.
    pub fn launch(&mut self) {
        let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        self.process = Proc::spawn(
            Command::new(&self.bin)
                .arg("--data-dir")
                .arg(&self.data)
                .args(["--listen", &at.to_string()])
                .args(&self.flags)
                .env_remove("MESHPLANE_CONFIG")
                .stdout(Stdio::null())
                .stderr(log_file(&self.log)),
        );
        wait_until(Duration::from_secs(30), "the server listening", || {
            accepts(at)
        });
    }

    /// `kill -9` and wait.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Rest for Server {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = match &self.ca {
            Some(ca) => rest_tls(&self.url, ca, &self.token, method, path, body),
            None => rest(&self.url, &self.token, method, path, body),
        };
        json_reply(&format!("{method} {path}"), reply, || self.log())
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// [`rest`] over TLS, through curl, trusting `ca`.
fn rest_tls(
    url: &str,
    ca: &Path,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<String, String> {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-m", "10", "--cacert", path_str(ca), "-X", method])
        .args(["-H", &format!("Authorization: Token {token}")])
        .args(["-H", "Content-Type: application/json"])
        .args(["-w", "\n%{http_code}"]);
    if let Some(body) = body {
        curl.args(["--data-binary", &body.to_string()]);
    }
    let out = curl
        .arg(format!("{url}{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text
        .rsplit_once('\n')
        .ok_or_else(|| format!("curl: {}", String::from_utf8_lossy(&out.stderr)))?;
    if code.starts_with('2') {
        Ok(body.to_string())
    } else {
        Err(format!(
            "status {code}: {body}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The management server's REST API, wherever the server runs.
pub trait Rest {
    /// One REST call; the JSON reply (`null` when empty). Panics on a
    /// transport error or a non-2xx status.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value;

    fn get(&self, path: &str) -> Value {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call("POST", path, Some(body))
    }

    fn delete(&self, path: &str) {
        self.call("DELETE", path, None);
    }

    /// Creates a group; its id.
    fn new_group(&self, name: &str) -> Value {
        self.post("/api/groups", serde_json::json!({ "name": name }))["id"].clone()
    }

    /// A new reusable setup key that puts peers in `groups`.
    fn reusable_key(&self, name: &str, groups: &[&Value]) -> String {
        let body = serde_json::json!({"name": name, "type": "reusable", "expires_in": 0,
            "auto_groups": groups, "usage_limit": 0});
        self.post("/api/setup-keys", body)["key"]
            .as_str()
            .expect("the setup key")
            .to_string()
    }

    /// Adds a policy allowing everything both ways within `group`; the
    /// policy.
    fn allow_all(&self, group: &Value) -> Value {
        self.post(
            "/api/policies",
            policy(
                "allow all",
                serde_json::json!({"name": "all", "enabled": true, "action": "accept",
                    "bidirectional": true, "protocol": "all",
                    "sources": [group], "destinations": [group]}),
            ),
        )
    }

    /// Adds a policy allowing only TCP to `port` from `group` to `group`.
    fn allow_tcp_port(&self, group: &Value, port: u16) -> Value {
        self.post(
            "/api/policies",
            policy(
                "one port",
                serde_json::json!({"name": port.to_string(), "enabled": true,
                    "action": "accept", "bidirectional": false, "protocol": "tcp",
                    "ports": [port.to_string()], "sources": [group], "destinations": [group]}),
            ),
        )
    }

    /// The id of the group called `name`.
    fn group_id(&self, name: &str) -> Value {
        self.get("/api/groups")
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["name"] == name))
            .map(|g| g["id"].clone())
            .unwrap_or_else(|| panic!("no group {name}"))
    }

    /// The server's view of the peer with mesh IP `ip`.
    fn peer_by_ip(&self, ip: Ipv4Addr) -> Value {
        self.get("/api/peers")
            .as_array()
            .and_then(|peers| {
                peers
                    .iter()
                    .find(|p| p["ip"] == ip.to_string().as_str())
                    .cloned()
            })
            .unwrap_or_else(|| panic!("the server does not list {ip}"))
    }

    /// Deletes every policy; the time just before the first deletion.
    fn delete_policies(&self) -> Instant {
        let policies = self.get("/api/policies");
        let since = Instant::now();
        for p in policies.as_array().into_iter().flatten() {
            self.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap_or("")));
        }
        since
    }
}

/// A policy with one rule, for `POST /api/policies`.
fn policy(name: &str, rule: Value) -> Value {
    serde_json::json!({"name": name, "enabled": true, "rules": [rule]})
}

/// The mesh IP in a daemon's `status --json`.
pub fn mesh_ip(status: &Value) -> Ipv4Addr {
    status["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no mesh IP in {status:#}"))
}

/// Runs `probe` until it returns true; panics unless one that started
/// within `limit` of `since` did. How long after `since` that probe started.
pub fn changes_within(
    since: Instant,
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> bool,
) -> Duration {
    loop {
        let started = Instant::now();
        if probe() {
            return started - since;
        }
        assert!(
            started - since < limit,
            "{what} did not happen within {limit:?}"
        );
    }
}

/// Runs the CLI against the daemon on `socket`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(MESHPLANE)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("MESHPLANE_SOCKET")
        .env_remove("MESHPLANE_SETUP_KEY")
        .output()
        .expect("run the CLI")
}

/// Waits until a daemon answers on its control socket.
pub fn wait_for_socket(socket: &Path) {
    wait_until(Duration::from_secs(10), "the daemon's socket", || {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
}

/// A `meshplane daemon` process with its own state directory, driven
/// through its control socket with the CLI from the host.
pub struct Daemon {
    dir: PathBuf,
    pub socket: PathBuf,
    /// What runs the binary: `meshplane` itself, or a wrapper such as
    /// `ip netns exec NS meshplane`.
    command: Vec<OsString>,
    /// Daemon flags besides the state directory and socket.
    flags: Vec<String>,
    process: Proc,
}

impl Daemon {
    /// `meshplane daemon --netstack` on this host with further `flags`
    /// (such as `--socks5`).
    pub fn netstack(dir: PathBuf, flags: &[&str]) -> Daemon {
        let mut all = vec!["--netstack"];
        all.extend_from_slice(flags);
        Daemon::start(vec![MESHPLANE.into()], dir, &all)
    }

    /// The daemon run by `command` (the binary, or a wrapper ending in it),
    /// with `--no-host-dns`: tests never touch the host's resolver.
    pub fn start(command: Vec<OsString>, dir: PathBuf, flags: &[&str]) -> Daemon {
        let mut all = vec!["--no-host-dns"];
        all.extend_from_slice(flags);
        Daemon::start_configuring_host_dns(command, dir, &all)
    }

    /// [`Daemon::start`] without `--no-host-dns`: only for a daemon inside
    /// a namespace whose `/etc/netns/<ns>/resolv.conf` the test made.
    pub fn start_configuring_host_dns(
        command: Vec<OsString>,
        dir: PathBuf,
        flags: &[&str],
    ) -> Daemon {
        std::fs::create_dir_all(&dir).expect("daemon directory");
        let mut d = Daemon {
            socket: dir.join("control.sock"),
            dir,
            command,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            process: Proc::none(),
        };
        d.launch();
        d
    }

    /// Starts the daemon on this state directory and waits for its socket.
    pub fn launch(&mut self) {
        let (program, wrapper_args) = self.command.split_first().expect("a command");
        self.process = Proc::spawn(
            Command::new(program)
                .args(wrapper_args)
                .arg("daemon")
                .args(&self.flags)
                .arg("--state-dir")
                .arg(self.dir.join("state"))
                .arg("--socket")
                .arg(&self.socket)
                .env_remove("MESHPLANE_SOCKET")
                .env_remove("MESHPLANE_STATE_DIR")
                .stdout(Stdio::null())
                .stderr(log_file(&self.dir.join("daemon.log"))),
        );
        wait_for_socket(&self.socket);
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
        let out = cli(&self.socket, args);
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

    /// Polls `status --json` until `check` holds; panics after `within`
    /// with the last status and the daemon's log. The status that held.
    pub fn wait_for(&self, within: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let last = RefCell::new(Value::Null);
        wait_until_telling(
            within,
            what,
            || {
                let status = self.status();
                let holds = check(&status);
                last.replace(status);
                holds
            },
            || format!(": {:#}\n{}", last.borrow(), self.log()),
        );
        last.into_inner()
    }
}

/// Whether `tool` can be run.
pub fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Kills `daemon` with SIGKILL, waits for `server` to show it disconnected,
/// starts it again on its state directory and waits until it is back up by
/// itself (it was up and nobody ran `down`) as the same peer with the same
/// IP and connected on the server. `before` is its status before the kill.
pub fn kill_and_restart(
    server: &impl Rest,
    daemon: &mut Daemon,
    before: &Value,
    disconnect_within: Duration,
    within: Duration,
) {
    let ip = mesh_ip(before);
    assert_eq!(server.peer_by_ip(ip)["connected"], true);
    daemon.kill();
    let took = wait_until(
        disconnect_within,
        "the killed daemon disconnected on the server",
        || server.peer_by_ip(ip)["connected"] == false,
    );
    eprintln!("daemon killed: disconnected on the server {took:?} later");
    daemon.launch();
    wait_until(within, "the daemon back up by itself", || {
        daemon.status()["up"] == true
    });
    let back = daemon.status();
    assert_eq!(back["peer_id"], before["peer_id"]);
    assert_eq!(mesh_ip(&back), ip);
    wait_until(within, "the daemon connected again", || {
        server.peer_by_ip(ip)["connected"] == true
    });
}

/// A local HTTP server answering every request with `body`; its port.
pub fn backend(body: &'static str) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    let port = listener.local_addr().expect("the bound address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = write!(
                    &stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}
