//! The real management server and `meshplane daemon` processes, each run
//! inside a network namespace of a [`Lan`](super::netns::Lan), driven the
//! way an operator would: REST for the server, the CLI for the daemons.

use std::ffi::OsString;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::netns::{exec_in, in_netns};
use super::procs::{
    accepts, admin_token, json_reply, log_file, rest, server_binary, wait_until, Daemon, Proc,
    Rest, MESHPLANE,
};

/// Whether something accepts TCP connections on `at`, seen from inside `ns`.
pub fn listening(ns: &str, at: SocketAddrV4) -> bool {
    in_netns(ns, move || accepts(at))
        .join()
        .expect("connect thread")
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
        let token = admin_token(&bin, &data);
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
}

impl Rest for NsServer {
    /// Called from inside the server's namespace.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (url, token) = (self.url.clone(), self.token.clone());
        let what = format!("{method} {path}");
        let (method, path) = (method.to_string(), path.to_string());
        let reply = in_netns(&self.ns, move || rest(&url, &token, &method, &path, body))
            .join()
            .expect("REST thread");
        json_reply(&what, reply, || self.log())
    }
}

/// A `meshplane daemon` (kernel TUN mode) running inside namespace `ns`,
/// driven through its control socket with the CLI from the host.
pub fn ns_daemon(ns: &str, dir: PathBuf) -> Daemon {
    let command = ["ip", "netns", "exec", ns, MESHPLANE].map(OsString::from);
    Daemon::start(command.to_vec(), dir, &[])
}

/// [`ns_daemon`] configuring the host's resolver: only in a namespace
/// whose `/etc/netns/<ns>/resolv.conf` the test made, which is the
/// daemon's `/etc/resolv.conf` under `ip netns exec`.
pub fn ns_daemon_configuring_host_dns(ns: &str, dir: PathBuf) -> Daemon {
    let command = ["ip", "netns", "exec", ns, MESHPLANE].map(OsString::from);
    Daemon::start_configuring_host_dns(command.to_vec(), dir, &[])
}
