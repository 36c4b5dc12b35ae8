//! The command line: `meshplane daemon` runs the daemon; `up`, `down` and
//! `status` are clients of its control socket.

pub mod expose;
pub mod ping;
pub mod service;
pub mod status;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::control::{self, Reply, Request};
use crate::mgmt::setup_key::SetupKeyArgs;
use crate::proxy_peer::{self, ProxyArgs};
use crate::service::Daemon;
use crate::socks;
use crate::state::StateDir;
use expose::ExposeArgs;
use status::StatusArgs;

/// The control socket's file name inside the state directory.
const SOCKET_FILE: &str = "meshplane.sock";
/// The control socket of a daemon run as root.
const ROOT_SOCKET: &str = "/var/run/meshplane.sock";

#[derive(Debug, Parser)]
#[command(
    name = "meshplane",
    version,
    about = "meshplane: WireGuard mesh peer daemon and CLI"
)]
pub struct Cli {
    /// The daemon's control socket [default: /var/run/meshplane.sock as
    /// root, meshplane.sock in the state directory otherwise]
    #[arg(long, global = true, env = "MESHPLANE_SOCKET")]
    socket: Option<PathBuf>,
    /// How the daemon, proxy and relay write log lines: text, or json (one
    /// object per line). The level comes from MESHPLANE_LOG (default info).
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        env = "MESHPLANE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: meshplane_logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (keeps the WireGuard key and settings in the state
    /// directory, listens on the control socket).
    Daemon {
        /// Where the key and settings live [default: /var/lib/meshplane as
        /// root, ~/.local/state/meshplane otherwise]
        #[arg(long, env = "MESHPLANE_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Use the userspace network stack even when a kernel TUN interface
        /// could be created.
        #[arg(long)]
        netstack: bool,
        /// The kernel TUN interface's name (when not in netstack mode).
        #[arg(long, default_value = "meshplane0")]
        interface: String,
        /// Reach peers over the relay only: announce no addresses of this
        /// host and do not try the peers' addresses (for networks where
        /// direct UDP between peers is unwanted).
        #[arg(long, env = "MESHPLANE_RELAY_ONLY")]
        relay_only: bool,
        /// Seconds between renewals of an expose session (shorter than the
        /// server's session TTL).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
        expose_renew_secs: u32,
        /// Serve a SOCKS5 proxy into the mesh for local applications on
        /// ADDR: PORT (on 127.0.0.1) or IP:PORT. It asks for no
        /// credentials. Netstack mode only.
        #[arg(long, value_name = "ADDR", requires = "netstack", value_parser = crate::socks::parse_listen)]
        socks5: Option<SocketAddr>,
        /// Seconds between reports of flow events to the management server
        /// (sent only while the account logs network traffic).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        flow_report_secs: u32,
        /// Leave the host's resolver configuration (systemd-resolved or
        /// /etc/resolv.conf) alone; the peer's resolver still answers on
        /// the mesh IP in kernel TUN mode.
        #[arg(long, env = "MESHPLANE_NO_HOST_DNS")]
        no_host_dns: bool,
        /// Serve Prometheus metrics at /metrics on ADDR (IP:PORT): bytes
        /// and handshakes per peer, connected peers direct and relayed,
        /// firewall drops. Off by default; the listener has no
        /// authentication, so use a private address.
        #[arg(long, value_name = "ADDR", env = "MESHPLANE_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Connect to the management server and join the mesh.
    Up {
        /// The management server, e.g. http://127.0.0.1:33073 [default:
        /// the last one used]
        #[arg(short = 'm', long, env = "MESHPLANE_MANAGEMENT_URL")]
        management_url: Option<String>,
        /// A PEM file with the CA certificate of an https:// management
        /// server whose certificate no public CA signed (trusted besides
        /// the Mozilla roots; also for its rels:// relay) [default: the
        /// last one used with this server]
        #[arg(long, value_name = "FILE", env = "MESHPLANE_MANAGEMENT_CA")]
        management_ca: Option<PathBuf>,
        #[command(flatten)]
        setup_key: SetupKeyArgs,
    },
    /// Leave the mesh: close the management stream and stop the tunnel.
    Down,
    /// Show this peer, its connections and a count of its peers;
    /// `-d` for every peer, `--json` or `--yaml` for everything.
    Status(StatusArgs),
    /// Expose a local HTTP service through the reverse proxy until Ctrl+C.
    Expose(ExposeArgs),
    /// Run the reverse proxy of exposed services as a mesh peer (userspace
    /// network stack, no privileges) until Ctrl+C.
    Proxy(ProxyArgs),
    /// Ping a peer's mesh IP from the daemon's userspace stack (netstack
    /// mode; in kernel TUN mode the system ping works).
    Ping {
        /// The peer's mesh IP.
        ip: Ipv4Addr,
        /// Stop after this many echo requests.
        #[arg(short = 'c', long = "count", default_value_t = 4,
            value_parser = clap::value_parser!(u16).range(1..))]
        count: u16,
        /// Seconds to wait for each reply.
        #[arg(short = 'W', long = "timeout", default_value = "1", value_parser = ping::parse_wait)]
        wait: Duration,
    },
    /// Install or remove the daemon as a systemd service.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Print a shell completion script, e.g. `meshplane completion bash >
    /// /etc/bash_completion.d/meshplane`.
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Run a relay for peers with no direct path to each other: a
    /// WebSocket at /relay on ADDR that accepts the peers the management
    /// server issued relay tokens to. Announce it to peers with the
    /// server's --relay-url rel://HOST:PORT.
    Relay {
        /// Address to listen on (IP:PORT).
        #[arg(long, value_name = "ADDR", env = "MESHPLANE_RELAY_LISTEN")]
        listen: SocketAddr,
        /// The management server whose relay tokens to accept, e.g.
        /// http://127.0.0.1:33073 (its key is fetched at start).
        #[arg(long, value_name = "URL", env = "MESHPLANE_MANAGEMENT_URL")]
        management_url: String,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Daemon { .. } | Command::Proxy(_) | Command::Relay { .. }
    ) {
        let filter = std::env::var("MESHPLANE_LOG").unwrap_or_else(|_| "info".into());
        meshplane_logging::init(cli.log_format, &filter);
    }
    let result = match cli.command {
        Command::Daemon {
            state_dir,
            netstack,
            interface,
            relay_only,
            expose_renew_secs,
            socks5,
            flow_report_secs,
            no_host_dns,
            metrics_listen,
        } => {
            let kernel = (!netstack && is_root()).then_some(interface);
            let renew = meshplane_core::Duration::from_secs(i64::from(expose_renew_secs));
            let flows = Duration::from_secs(u64::from(flow_report_secs));
            let settings = DaemonSettings {
                kernel,
                relay_only,
                expose_renew: renew,
                socks5,
                flow_report: flows,
                host_dns: !no_host_dns,
                metrics_listen,
            };
            run_daemon(state_dir, cli.socket, settings)
        }
        Command::Up {
            management_url,
            management_ca,
            setup_key,
        } => setup_key
            .resolve()
            .map_err(|e| e.to_string())
            .and_then(|setup_key| {
                // The daemon reads the file, from its own directory.
                let management_ca = management_ca
                    .map(|path| {
                        std::fs::canonicalize(&path).map_err(|e| {
                            format!("management CA (--management-ca) {}: {e}", path.display())
                        })
                    })
                    .transpose()?;
                client(
                    cli.socket,
                    &Request::Up {
                        management_url,
                        management_ca,
                        setup_key,
                    },
                )
            }),
        Command::Down => client(cli.socket, &Request::Down),
        Command::Completion { shell } => completion(shell),
        Command::Service(command) => service::run(&command).map_err(|e| e.to_string()),
        Command::Status(args) => {
            status::run(&socket_path(cli.socket), &args).map_err(|e| e.to_string())
        }
        Command::Expose(args) => expose::run(&socket_path(cli.socket), &args),
        Command::Proxy(args) => {
            proxy_peer::run(&args, &default_state_dir().join("proxy"), shutdown_signal())
                .map_err(|e| e.to_string())
        }
        Command::Ping { ip, count, wait } => {
            ping::run(&socket_path(cli.socket), ip, count, wait).map_err(|e| e.to_string())
        }
        Command::Relay {
            listen,
            management_url,
        } => run_relay(listen, &management_url),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    }
}

/// Whether this process runs as root (the effective user owns
/// `/proc/self`).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/meshplane");
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("meshplane");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/meshplane"),
        None => std::env::temp_dir().join("meshplane"),
    }
}

/// The daemon's command-line settings.
struct DaemonSettings {
    /// The TUN interface to create; netstack mode when `None`.
    kernel: Option<String>,
    relay_only: bool,
    expose_renew: meshplane_core::Duration,
    socks5: Option<SocketAddr>,
    flow_report: Duration,
    /// Point the host's resolver at the peer's (not `--no-host-dns`).
    host_dns: bool,
    /// Where to serve Prometheus metrics, if anywhere.
    metrics_listen: Option<SocketAddr>,
}

/// Runs the daemon until SIGINT or SIGTERM.
fn run_daemon(
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    settings: DaemonSettings,
) -> Result<(), String> {
    let DaemonSettings {
        kernel,
        relay_only,
        expose_renew,
        socks5,
        flow_report,
        host_dns,
        metrics_listen,
    } = settings;
    let state =
        StateDir::open(&state_dir.unwrap_or_else(default_state_dir)).map_err(|e| e.to_string())?;
    // A resolv.conf a crashed run left pointing at its resolver goes back
    // first, so the host resolves while this run comes up.
    crate::dns::recover_host(state.path());
    let socket = socket.unwrap_or_else(|| default_socket(state.path()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let listener = control::serve::bind(&socket)
            .map_err(|e| format!("control socket {}: {e}", socket.display()))?;
        let socks = match socks5 {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| format!("SOCKS5 proxy {at}: {e}"))?,
            ),
            None => None,
        };
        tracing::info!(
            "meshplane daemon {} listening on {} (state in {}, {})",
            env!("CARGO_PKG_VERSION"),
            socket.display(),
            state.path().display(),
            kernel
                .as_deref()
                .map_or("netstack".to_string(), |k| format!("kernel TUN {k}"))
        );
        let daemon = Arc::new(
            Daemon::new(state, kernel)
                .with_relay_only(relay_only)
                .with_expose_renew(expose_renew)
                .with_flow_report(flow_report)
                .with_host_dns(host_dns),
        );
        if let Some(at) = metrics_listen {
            crate::metrics::serve(at, Arc::clone(&daemon))
                .await
                .map_err(|e| e.to_string())?;
        }
        daemon.resume();
        if let Some(listener) = socks {
            if let Ok(at) = listener.local_addr() {
                tracing::info!("SOCKS5 proxy into the mesh on {at}");
            }
            tokio::spawn(socks::serve(listener, Arc::clone(&daemon)));
        }
        tokio::select! {
            () = control::serve::serve(listener, Arc::clone(&daemon)) => {}
            () = shutdown_signal() => tracing::info!("shutting down"),
        }
        daemon.shutdown().await;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}

/// Runs a relay process until SIGINT or SIGTERM.
fn run_relay(listen: SocketAddr, management_url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(meshplane_relay::server::run(
            listen,
            management_url,
            shutdown_signal(),
        ))
        .map_err(|e| e.to_string())
}

/// Writes the completion script for `shell` to stdout. A reader that stops
/// early (`| head`) is not an error.
fn completion(shell: clap_complete::Shell) -> Result<(), String> {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "meshplane", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Sends `request` (`up` or `down`) to the daemon and prints the answer.
fn client(socket: Option<PathBuf>, request: &Request) -> Result<(), String> {
    match control::call(&socket_path(socket), request).map_err(|e| e.to_string())? {
        Reply::Up(info) => {
            println!("meshplane is up: {} ({})", info.ip, info.fqdn);
            println!("IP:   {}", info.ip);
            println!("FQDN: {}", info.fqdn);
        }
        Reply::Down => println!("meshplane is down"),
        Reply::Error(message) => return Err(message),
        other => return Err(format!("unexpected reply from the daemon: {other:?}")),
    }
    Ok(())
}

/// The control socket: `--socket`, or the one in the default state
/// directory.
fn socket_path(socket: Option<PathBuf>) -> PathBuf {
    socket.unwrap_or_else(|| default_socket(&default_state_dir()))
}

/// Where the daemon listens and the CLI calls without `--socket`: the
/// system-wide path as root (so `meshplane status` works whatever state
/// directory the service uses), the state directory otherwise.
fn default_socket(state_dir: &std::path::Path) -> PathBuf {
    if is_root() {
        PathBuf::from(ROOT_SOCKET)
    } else {
        state_dir.join(SOCKET_FILE)
    }
}
