//! `meshplane-loadgen --peers N [--policy-changes K] [--server-url URL]`:
//! see the crate's README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use meshplane_loadgen::peer::ConnectionPlan;
use meshplane_loadgen::run::{run, Config, ServerTarget};
use meshplane_loadgen::server::default_binary;

/// Loads a meshplane management server with simulated peers and prints how
/// fast and at what cost changes reach them.
#[derive(Debug, Parser)]
#[command(name = "meshplane-loadgen", version, about)]
struct Cli {
    /// Simulated peers registered and holding a Sync stream.
    #[arg(long, value_name = "N")]
    peers: usize,

    /// Policy changes to make, and as many peer joins.
    #[arg(long, value_name = "K", default_value_t = 3)]
    policy_changes: usize,

    /// A running server to load instead of starting one.
    #[arg(long, value_name = "URL")]
    server_url: Option<String>,

    /// Owner token for --server-url.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MESHPLANE_LOADGEN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Process id of the --server-url server, to measure its CPU and memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

    /// The meshplane-server binary to start. Default: the one next to this
    /// executable.
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,

    /// Sync streams per HTTP/2 connection.
    #[arg(long, value_name = "N", default_value_t = 90)]
    streams_per_connection: usize,

    /// Connections from one loopback address before the next 127.0.0.x.
    #[arg(long, value_name = "N", default_value_t = 200)]
    connections_per_address: usize,

    /// Logins in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,

    /// Streams opened and still waiting for their first map, at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    first_maps_in_flight: usize,

    /// Seconds the registration, and the opening of the streams, may take.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    phase_timeout_secs: u64,

    /// Seconds one change may take to reach every peer.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    change_timeout_secs: u64,

    /// Peers ask for the whole map in every message (as before map
    /// deltas) instead of taking deltas and acknowledging each map.
    #[arg(long)]
    full_maps: bool,

    /// Seconds every stream stays open with nothing changing, after they
    /// all hold their first map (the `idle` line: the server's CPU share).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    idle_secs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = match (cli.server_url, cli.token) {
        (Some(url), Some(token)) => ServerTarget::Url {
            url,
            token,
            pid: cli.server_pid,
        },
        (Some(_), None) => {
            eprintln!(
                "error: --server-url needs an owner token: --token or MESHPLANE_LOADGEN_TOKEN"
            );
            return ExitCode::FAILURE;
        }
        (None, _) => match cli.server_bin.map_or_else(default_binary, Ok) {
            Ok(bin) => ServerTarget::Start { bin },
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let config = Config {
        peers: cli.peers,
        changes: cli.policy_changes,
        server,
        plan: ConnectionPlan {
            streams_per_connection: cli.streams_per_connection,
            connections_per_address: cli.connections_per_address,
        },
        concurrency: cli.concurrency,
        first_maps_in_flight: cli.first_maps_in_flight,
        phase_timeout: Duration::from_secs(cli.phase_timeout_secs),
        change_timeout: Duration::from_secs(cli.change_timeout_secs),
        deltas: !cli.full_maps,
        idle: Duration::from_secs(cli.idle_secs),
    };
    match run(&config) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
