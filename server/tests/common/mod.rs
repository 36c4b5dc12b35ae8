//! Starts the real `meshplane-server` binary on a free loopback port with a
//! fresh store and talks to it over HTTP.
//!
//! Every test runs on the embedded SQLite store; when
//! `MESHPLANE_TEST_POSTGRES_URL` is set (a URL of a role that may create
//! databases), the `_postgres` twin of each test runs against a fresh
//! PostgreSQL database too.

#![allow(dead_code)]

pub mod client;
pub mod netbird;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_meshplane-server");
pub const PG_ENV: &str = "MESHPLANE_TEST_POSTGRES_URL";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL when `MESHPLANE_TEST_POSTGRES_URL` is set, else SQLite
    /// (for the benchmarks, which run on one backend).
    pub fn from_env() -> Backend {
        if std::env::var(PG_ENV).is_ok() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Runs `body` against a fresh server on each backend the environment
/// offers, as `<name>_sqlite` and `<name>_postgres`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                let mut s = $crate::common::Server::start($crate::common::Backend::Sqlite);
                super::$name(&mut s);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                if std::env::var($crate::common::PG_ENV).is_err() {
                    eprintln!("{} not set: PostgreSQL run skipped", $crate::common::PG_ENV);
                    return;
                }
                let mut s = $crate::common::Server::start($crate::common::Backend::Postgres);
                super::$name(&mut s);
            })*
        }
    };
}

/// A running server with an owner token.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    dir: PathBuf,
    store_args: Vec<String>,
    /// More flags for every launch (see [`Server::restart_with`]).
    extra_args: Vec<String>,
    postgres_db: Option<String>,
    store_url: String,
    pub base: String,
    pub port: u16,
    pub token: String,
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `f` to completion on a single-threaded runtime: the tests' direct
/// database access happens outside the server, from synchronous tests.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(f)
}

/// A connection straight to a server's store, bypassing the server.
async fn store_connection(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url)
        .await
        .expect("connect to the store")
}

/// Runs one statement on the PostgreSQL server of `MESHPLANE_TEST_POSTGRES_URL`.
fn postgres_admin(statement: &str) {
    let base = std::env::var(PG_ENV).expect("postgres url");
    block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to postgres");
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    });
}

/// A fresh PostgreSQL database; returns its name and URL.
fn fresh_postgres_db() -> (String, String) {
    let base = std::env::var(PG_ENV).expect("postgres url");
    let name = unique("meshplane_test");
    postgres_admin(&format!("CREATE DATABASE {name}"));
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base.as_str(), String::new()),
    };
    let (server, _db) = head.rsplit_once('/').expect("postgres url has a database");
    let url = format!("{server}/{name}{query}");
    (name, url)
}

/// The server binary, with none of the developer's configuration variables.
fn server_command() -> Command {
    let mut command = Command::new(BIN);
    // Every server setting is a `MESHPLANE_*` variable; the tests' own
    // (`MESHPLANE_TEST_*`) configure the tests, not the server.
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("MESHPLANE_") && !name.starts_with("MESHPLANE_TEST_") {
            command.env_remove(&var);
        }
    }
    command
}

/// The `id` of every object in a JSON list, sorted: lists compare as sets.
pub fn sorted_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|p| p["id"].as_str().expect("an id").to_string())
        .collect();
    ids.sort();
    ids
}

/// A loopback port free for TCP and UDP alike: the server listens on both
/// (STUN on UDP).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The `meshplane` binary in the same target directory as this test.
pub fn meshplane_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("meshplane");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p meshplane` first",
        bin.display()
    );
    bin
}

impl Server {
    /// A gRPC channel to the server's port.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.base.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn start(backend: Backend) -> Server {
        let dir = std::env::temp_dir().join(unique("meshplane-server-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let (store_args, postgres_db) = match backend {
            Backend::Sqlite => (
                vec![
                    "--data-dir".to_string(),
                    dir.join("data").display().to_string(),
                ],
                None,
            ),
            Backend::Postgres => {
                let (name, url) = fresh_postgres_db();
                (vec!["--store".to_string(), url], Some(name))
            }
        };
        let store_url = match &store_args[..] {
            [flag, url] if flag == "--store" => url.clone(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                dir.join("data").join("meshplane.db").display()
            ),
        };
        let token = admin_token(&store_args);
        let port = free_port();
        let mut s = Server {
            child: None,
            dir,
            store_args,
            extra_args: Vec::new(),
            postgres_db,
            store_url,
            base: format!("http://127.0.0.1:{port}"),
            port,
            token,
        };
        s.launch();
        s
    }

    /// A second server process on this server's store (PostgreSQL), with
    /// its own port and the same owner token; the store stays this
    /// server's to drop.
    pub fn another_instance(&self) -> Server {
        let dir = std::env::temp_dir().join(unique("meshplane-server-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut s = Server {
            child: None,
            dir,
            store_args: self.store_args.clone(),
            extra_args: self.extra_args.clone(),
            postgres_db: None,
            store_url: self.store_url.clone(),
            base: format!("http://127.0.0.1:{port}"),
            port,
            token: self.token.clone(),
        };
        s.launch();
        s
    }

    /// Runs `statement` as the PostgreSQL administrator, with `{db}`
    /// standing for this server's database (a server that owns its
    /// PostgreSQL store). Works from inside a test's runtime too.
    pub fn postgres_admin(&self, statement: &str) {
        let db = self.postgres_db.as_deref().expect("a PostgreSQL store");
        let statement = statement.replace("{db}", db);
        std::thread::spawn(move || postgres_admin(&statement))
            .join()
            .expect("the statement ran");
    }

    /// Another `admin-token` run against this server's store.
    pub fn admin_token(&self) -> String {
        admin_token(&self.store_args)
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = server_command()
            .args(&self.store_args)
            .args(&self.extra_args)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The data directory of the embedded database (SQLite servers).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether the server's database may be shared (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.store_url.starts_with("postgres")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `kill -9` and start again on the same store and port, with `args`
    /// added to the command line from now on.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(ToString::to_string).collect();
        self.crash_and_restart();
    }

    /// `kill -9` and start again on the same store and port.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        self.launch();
    }

    /// Sends SIGTERM and waits up to `within` for the server to exit: its
    /// exit status, or `None` if it is still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// A request with the owner token.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Token {}", self.token);
        self.call_as(Some(&auth), method, path, body)
    }

    /// A request with a given `Authorization` header (or none).
    pub fn call_as(
        &self,
        auth: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = ureq::request(method, &format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        response(result)
    }

    /// A request with a raw body and content type, with the owner token.
    pub fn raw(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let req = ureq::request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Token {}", self.token))
            .set("Content-Type", content_type);
        response(req.send_string(body))
    }

    /// Sends only the head of a request whose declared body is `length`
    /// bytes, and reads the answer: for limits that must answer before a
    /// body is read.
    pub fn head_only(&self, method: &str, path: &str, length: usize) -> (u16, Value) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Token {}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
            self.token
        );
        stream.write_all(head.as_bytes()).expect("send the head");
        let mut answer = Vec::new();
        // The server closes the connection after answering: read to the end.
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The body of a successful GET as text, unparsed (the benchmarks time
    /// the server apart from the client's JSON parser).
    pub fn get_text(&self, path: &str) -> String {
        let resp = ureq::get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Token {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.into_string().expect("a text body")
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.call("POST", path, Some(body));
        assert_eq!(status, 200, "POST {path}: {out}");
        out
    }

    pub fn put(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.call("PUT", path, Some(body));
        assert_eq!(status, 200, "PUT {path}: {out}");
        out
    }

    pub fn delete(&self, path: &str) {
        let (status, out) = self.call("DELETE", path, None);
        assert_eq!(status, 200, "DELETE {path}: {out}");
    }

    /// Asserts an error answer: status, the JSON shape and the exact message.
    pub fn expect_error(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
        message: &str,
    ) {
        let (got, out) = self.call(method, path, body);
        assert_eq!(got, status, "{method} {path}: {out}");
        assert_eq!(out["code"], status, "{out}");
        assert_eq!(out["message"], message, "{out}");
    }

    /// The id of the `All` group.
    pub fn all_group(&self) -> String {
        let groups = self.get("/api/groups?name=All");
        groups[0]["id"].as_str().unwrap().to_string()
    }

    /// Puts a peer straight into the store (peers join over gRPC, which the
    /// REST tests do not drive) and adds it to the `All` group and `groups`.
    pub fn insert_peer(&self, id: &str, name: &str, ip: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        self.insert_peers(vec![(
            id.to_string(),
            name.to_string(),
            ip.to_string(),
            groups,
        )]);
    }

    /// [`Server::insert_peer`] for many peers (id, name, ip, groups) in one
    /// transaction.
    pub fn insert_peers(&self, peers: Vec<(String, String, String, Vec<String>)>) {
        let account = self.account_id();
        let all = self.all_group();
        let url = self.store_url.clone();
        block_on(async move {
            use sqlx::{Connection, Row};
            let mut conn = store_connection(&url).await;
            let mut tx = conn.begin().await.unwrap();
            let rows = sqlx::query(
                "SELECT id, data FROM objects WHERE account_id = $1 AND kind = 'group'",
            )
            .bind(&account)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            let mut groups: std::collections::BTreeMap<String, Value> = rows
                .iter()
                .map(|r| {
                    let data = serde_json::from_str(&r.get::<String, _>("data")).unwrap();
                    (r.get::<String, _>("id"), data)
                })
                .collect();
            for (id, name, ip, member_of) in peers {
                let peer = serde_json::json!({
                    "id": id, "name": name, "ip": ip, "dns_label": name, "hostname": name,
                    "meta": {"os": "linux", "os_version": "6.1", "version": "0.40.0"},
                    "created_at": 1_700_000_000_000_i64, "last_seen": 1_700_000_000_000_i64,
                });
                sqlx::query(
                    "INSERT INTO objects (account_id, kind, id, data) VALUES ($1, 'peer', $2, $3)",
                )
                .bind(&account)
                .bind(&id)
                .bind(peer.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
                for g in member_of.iter().chain([&all]) {
                    let group = groups.get_mut(g).expect("group exists");
                    group["peers"]
                        .as_array_mut()
                        .unwrap()
                        .push(Value::from(id.as_str()));
                }
            }
            for (id, data) in groups {
                sqlx::query("UPDATE objects SET data = $1 WHERE account_id = $2 AND kind = 'group' AND id = $3")
                    .bind(data.to_string())
                    .bind(&account)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            bump_version(&mut tx, &account).await;
            tx.commit().await.unwrap();
        });
    }

    /// Puts a resource row straight into the store, as another part of the
    /// system (gRPC login, SSO sign-up) would.
    pub fn insert_object(&self, kind: &str, value: &Value) {
        self.insert_objects(kind, std::slice::from_ref(value));
    }

    /// Puts resource rows of one kind straight into the store in one
    /// transaction (the benchmarks' large accounts).
    pub fn insert_objects(&self, kind: &str, values: &[Value]) {
        let account = self.account_id();
        let url = self.store_url.clone();
        block_on(async move {
            use sqlx::Connection;
            let mut conn = store_connection(&url).await;
            let mut tx = conn.begin().await.unwrap();
            for value in values {
                sqlx::query(
                    "INSERT INTO objects (account_id, kind, id, data) VALUES ($1, $2, $3, $4)",
                )
                .bind(&account)
                .bind(kind)
                .bind(value["id"].as_str().unwrap())
                .bind(value.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            bump_version(&mut tx, &account).await;
            tx.commit().await.unwrap();
        });
    }

    /// Makes `user_id` the user of peer `peer_id` in the store, as a peer
    /// that logged in through the identity provider has one.
    pub fn set_peer_user(&self, peer_id: &str, user_id: &str) {
        let user_id = Value::from(user_id);
        self.edit_peer(peer_id, |peer| peer["user_id"] = user_id);
    }

    /// Changes the stored peer `peer_id` with `edit` (its JSON), straight in
    /// the store, and bumps the account's version so the server's cache
    /// and maps follow: for what no API sets, such as the user that added
    /// a peer or its last login.
    pub fn edit_peer(&self, peer_id: &str, edit: impl FnOnce(&mut Value)) {
        let account = self.account_id();
        let url = self.store_url.clone();
        let peer_id = peer_id.to_string();
        block_on(async move {
            use sqlx::Row;
            let mut conn = store_connection(&url).await;
            let row = sqlx::query(
                "SELECT data FROM objects WHERE account_id = $1 AND kind = 'peer' AND id = $2",
            )
            .bind(&account)
            .bind(&peer_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let mut peer: Value = serde_json::from_str(&row.get::<String, _>("data")).unwrap();
            edit(&mut peer);
            sqlx::query(
                "UPDATE objects SET data = $1 WHERE account_id = $2 AND kind = 'peer' AND id = $3",
            )
            .bind(peer.to_string())
            .bind(&account)
            .bind(&peer_id)
            .execute(&mut conn)
            .await
            .unwrap();
            bump_version(&mut conn, &account).await;
        });
    }

    /// The id of the server's one account.
    fn account_id(&self) -> String {
        self.get("/api/accounts")[0]["id"]
            .as_str()
            .expect("an account id")
            .to_string()
    }

    /// How many expose sessions the store's own table holds (read straight
    /// from the database, on a thread of its own so async tests may ask).
    pub fn stored_sessions(&self) -> usize {
        let url = self.store_url.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let mut conn = store_connection(&url).await;
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM expose_sessions")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                usize::try_from(n).unwrap()
            })
        })
        .join()
        .unwrap()
    }

    /// The activity codes of the audit log, newest first.
    pub fn activities(&self) -> Vec<String> {
        let events = self.get("/api/events/audit");
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["activity_code"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Raises the account's version, as every write of the server does, so
/// servers drop what they decoded from the account before this direct write.
async fn bump_version(conn: &mut sqlx::AnyConnection, account: &str) {
    sqlx::query(
        "INSERT INTO account_versions (account_id, version) VALUES ($1, 1) \
         ON CONFLICT (account_id) DO UPDATE SET version = account_versions.version + 1",
    )
    .bind(account)
    .execute(conn)
    .await
    .unwrap();
}

fn response(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, body)
}

fn admin_token(store_args: &[String]) -> String {
    let out = server_command()
        .args(store_args)
        .arg("admin-token")
        .output()
        .expect("run admin-token");
    assert!(
        out.status.success(),
        "admin-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 40, "{token}");
    token
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
            if let Some(db) = &self.postgres_db {
                postgres_admin(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
        }
    }
}
