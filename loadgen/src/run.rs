//! The phases of a run, in order: register N peers (Login), open their Sync
//! streams until each holds its first map, K policy changes, K peer joins.
//! After each change the harness waits until every peer holds a map
//! reflecting it, then until the streams are quiet, so each change's bytes
//! include its trailing messages and the next change starts from rest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::entries::SharedEntries;
use crate::peer::{ConnectionPlan, Connections, Peer, PeerError};
use crate::report::{PhaseReport, Report};
use crate::rest::{Rest, RestError};
use crate::server::{proc_stats, ManagedServer, ProcStats, ServerError};
use crate::track::{Goal, Tracker, WaitError};

/// How long the streams must be silent before a change counts as settled.
const QUIET: Duration = Duration::from_millis(300);
/// The first TCP port the policy changes open; each change opens the next.
const FIRST_PORT: u16 = 20_000;

/// Which server the run loads.
#[derive(Debug, Clone)]
pub enum ServerTarget {
    /// Start this `meshplane-server` binary on a fresh embedded store.
    Start { bin: PathBuf },
    /// Use a running server; `pid` (when given) is measured from `/proc`.
    Url {
        url: String,
        token: String,
        pid: Option<u32>,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub peers: usize,
    /// Policy changes, and as many peer joins.
    pub changes: usize,
    pub server: ServerTarget,
    pub plan: ConnectionPlan,
    /// Logins in flight at once.
    pub concurrency: usize,
    /// Streams opened and still waiting for their first map, at once.
    pub first_maps_in_flight: usize,
    /// Limit on the registration and on the stream-opening phase each.
    pub phase_timeout: Duration,
    /// Limit on one change's convergence.
    pub change_timeout: Duration,
    /// Peers take map deltas (and acknowledge maps); else whole maps.
    pub deltas: bool,
    /// How long every stream stays open with nothing changing, to measure
    /// what the server spends on idle streams.
    pub idle: Duration,
}

/// Why a run failed.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("{phase}: {missing} of {of} peers did not converge within {}s", limit.as_secs())]
    NotConverged {
        phase: String,
        missing: usize,
        of: usize,
        limit: Duration,
    },
    #[error("{phase}: a stream failed: {reason}")]
    Stream { phase: String, reason: String },
    #[error("{phase}: {reason}")]
    Task { phase: String, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("--peers must be at least 2")]
    TooFewPeers,
}

/// Runs `config` to the end on its own runtime.
pub fn run(config: &Config) -> Result<Report, RunError> {
    if config.peers < 2 {
        return Err(RunError::TooFewPeers);
    }
    let (managed, url, token, pid) = match &config.server {
        ServerTarget::Start { bin } => {
            let server = ManagedServer::start(bin)?;
            let (url, token, pid) = (server.url.clone(), server.token.clone(), server.pid());
            (Some(server), url, token, Some(pid))
        }
        ServerTarget::Url { url, token, pid } => (None, url.clone(), token.clone(), *pid),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let result = runtime.block_on(Driver::new(config, &url, &token, pid).drive());
    runtime.shutdown_timeout(Duration::from_secs(1));
    match (result, managed) {
        (Err(e), Some(server)) => {
            let log = server.log();
            if !log.trim().is_empty() {
                eprintln!("server log:\n{log}");
            }
            Err(e)
        }
        (result, _) => result,
    }
}

/// The state of a run in progress.
struct Driver<'a> {
    config: &'a Config,
    url: String,
    rest: Rest,
    pid: Option<u32>,
    tracker: Arc<Tracker>,
    /// The map entries every simulated peer shares.
    entries: Arc<SharedEntries>,
    report: Report,
}

impl<'a> Driver<'a> {
    fn new(config: &'a Config, url: &str, token: &str, pid: Option<u32>) -> Driver<'a> {
        Driver {
            config,
            url: url.to_string(),
            rest: Rest::new(url, token),
            pid,
            tracker: Arc::new(Tracker::default()),
            entries: Arc::new(SharedEntries::default()),
            report: Report::default(),
        }
    }

    fn stats(&self) -> Result<Option<ProcStats>, RunError> {
        Ok(self.pid.map(proc_stats).transpose()?)
    }

    async fn drive(mut self) -> Result<Report, RunError> {
        let n = self.config.peers;
        let rest = self.rest.clone();
        let setup_key = blocking("setup key", move || rest.reusable_setup_key()).await??;
        let rest = self.rest.clone();
        let target = blocking("policy lookup", move || rest.target()).await??;
        let mut connections = Connections::open(&self.url, n, self.config.plan).await?;
        self.report.connections = connections.count();

        let peers = self.register(&connections, &setup_key).await?;
        self.connect(peers).await?;

        let phase = self.begin("idle")?;
        tokio::time::sleep(self.config.idle).await;
        self.end(phase)?;

        let mut phase = self.begin("policy change")?;
        for i in 0..self.config.changes {
            let port = FIRST_PORT.saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
            self.tracker.set_goal(Goal::Port(port), n);
            let rest = self.rest.clone();
            let target = target.clone();
            blocking("policy change", move || rest.allow_port(&target, port)).await??;
            let answered = Instant::now();
            self.converge(&mut phase, answered, n, &format!("policy change {}", i + 1))
                .await?;
        }
        self.end(phase)?;

        let mut phase = self.begin("peer join")?;
        for j in 0..self.config.changes {
            let index = n + j;
            connections.grow(index + 1).await?;
            let mut peer = Peer::new(index, &connections);
            self.tracker.set_goal(
                Goal::Listed {
                    key: peer.key.clone(),
                    index,
                },
                index + 1,
            );
            peer.login(&setup_key).await?;
            let answered = Instant::now();
            peer.sync(
                self.tracker.clone(),
                self.entries.clone(),
                self.config.deltas,
                None,
            )
            .await?;
            self.converge(
                &mut phase,
                answered,
                index + 1,
                &format!("peer join {}", j + 1),
            )
            .await?;
        }
        self.end(phase)?;

        self.tracker.finish();
        self.report.peak_rss_kib = self.stats()?.map(|s| s.peak_rss_kib);
        self.report.connections = connections.count();
        Ok(self.report)
    }

    /// Registers peers `0..N` over the sealed Login call.
    async fn register(
        &mut self,
        connections: &Connections,
        setup_key: &str,
    ) -> Result<Vec<Peer>, RunError> {
        let mut phase = self.begin("register")?;
        let limit = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for index in 0..self.config.peers {
            let mut peer = Peer::new(index, connections);
            let key = setup_key.to_string();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _slot = limit.acquire_owned().await;
                let start = Instant::now();
                peer.login(&key).await.map(|_| (peer, start.elapsed()))
            });
        }
        let deadline = phase.started + self.config.phase_timeout;
        let mut peers = Vec::with_capacity(self.config.peers);
        while let Some(joined) = timeout_at(
            deadline,
            tasks.join_next(),
            "register",
            &self.config.phase_timeout,
            self.config.peers - peers.len(),
            self.config.peers,
        )
        .await?
        {
            let (peer, took) = joined.map_err(|e| task_error("register", e))??;
            phase.latencies.push(took);
            peers.push(peer);
        }
        peers.sort_by_key(|p| p.index);
        self.end(phase)?;
        Ok(peers)
    }

    /// Opens every peer's Sync stream; done when each holds its first map.
    async fn connect(&mut self, peers: Vec<Peer>) -> Result<(), RunError> {
        let n = peers.len();
        let mut phase = self.begin("open streams")?;
        self.tracker.set_goal(Goal::AnyMap, n);
        let limit = Arc::new(Semaphore::new(self.config.first_maps_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        let deltas = self.config.deltas;
        for peer in peers {
            let tracker = self.tracker.clone();
            let entries = self.entries.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                // Held until the stream's first map arrived: streams opened
                // all at once had the server seal thousands of whole maps
                // that then waited behind each other on the harness's
                // shared connections, at 10,000 peers some longer than the
                // envelope's replay window (60 s). A daemon has a
                // connection of its own.
                let slot = limit.acquire_owned().await.ok();
                peer.sync(tracker, entries, deltas, slot).await
            });
        }
        let deadline = phase.started + self.config.phase_timeout;
        let mut opened = 0;
        while let Some(joined) = timeout_at(
            deadline,
            tasks.join_next(),
            "open streams",
            &self.config.phase_timeout,
            n - opened,
            n,
        )
        .await?
        {
            joined.map_err(|e| task_error("open streams", e))??;
            opened += 1;
        }
        let started = phase.started;
        self.converge_until(&mut phase, started, deadline, "open streams")
            .await?;
        self.end(phase)
    }

    /// Waits for the current goal with the change limit, from `answered`.
    async fn converge(
        &self,
        phase: &mut PhaseReport,
        answered: Instant,
        receivers: usize,
        name: &str,
    ) -> Result<(), RunError> {
        let deadline = answered + self.config.change_timeout;
        self.converge_until(phase, answered, deadline, name).await?;
        phase.changes += 1;
        phase.receivers += receivers;
        Ok(())
    }

    /// Waits until every target holds the goal; records each peer's
    /// latency from `from`, then waits for the streams to fall quiet.
    async fn converge_until(
        &self,
        phase: &mut PhaseReport,
        from: Instant,
        deadline: Instant,
        name: &str,
    ) -> Result<(), RunError> {
        let reached = self.tracker.wait(deadline).await.map_err(|e| match e {
            WaitError::Stream(reason) => RunError::Stream {
                phase: name.to_string(),
                reason,
            },
            WaitError::Timeout { missing, of } => RunError::NotConverged {
                phase: name.to_string(),
                missing,
                of,
                limit: deadline.saturating_duration_since(from),
            },
        })?;
        phase
            .latencies
            .extend(reached.iter().map(|t| t.saturating_duration_since(from)));
        self.tracker.settle(QUIET, deadline + QUIET).await;
        Ok(())
    }

    fn begin(&self, name: &str) -> Result<PhaseReport, RunError> {
        let (bytes, messages) = self.tracker.received();
        Ok(PhaseReport {
            name: name.to_string(),
            started: Instant::now(),
            bytes_before: bytes,
            messages_before: messages,
            server_before: self.stats()?,
            ..PhaseReport::default()
        })
    }

    fn end(&mut self, mut phase: PhaseReport) -> Result<(), RunError> {
        let (bytes, messages) = self.tracker.received();
        phase.wall = phase.started.elapsed();
        phase.bytes = bytes - phase.bytes_before;
        phase.messages = messages - phase.messages_before;
        phase.server_after = self.stats()?;
        eprintln!("{phase}");
        self.report.phases.push(phase);
        Ok(())
    }
}

/// Runs blocking REST work off the async workers.
async fn blocking<R: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, RunError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| task_error(what, e))
}

fn task_error(phase: &str, e: tokio::task::JoinError) -> RunError {
    RunError::Task {
        phase: phase.to_string(),
        reason: e.to_string(),
    }
}

/// `future` unless `deadline` passes first: then the phase did not
/// converge, `missing` of `of` peers short.
async fn timeout_at<T>(
    deadline: Instant,
    future: impl std::future::Future<Output = T>,
    phase: &str,
    limit: &Duration,
    missing: usize,
    of: usize,
) -> Result<T, RunError> {
    tokio::time::timeout_at(deadline.into(), future)
        .await
        .map_err(|_| RunError::NotConverged {
            phase: phase.to_string(),
            missing,
            of,
            limit: *limit,
        })
}
