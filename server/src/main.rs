//! meshplane-server: the management API over an embedded SQLite database or
//! PostgreSQL. See `meshplane-server --help`.

mod bootstrap;
mod config;
mod cpu;
mod data_dir;
mod domain;
mod expose;
mod grpc;
mod http;
mod ids;
mod listen;
mod netbird;
mod records;
mod relay;
mod secrets;
mod signal;
mod store;
mod stun;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use config::{Cli, Command, Settings};
use store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("meshplane-server: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshplane-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::AdminToken { name }) => admin_token(&settings, &name).await,
            None => serve(&settings).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("meshplane-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where the store is, without any password in it (for logs).
fn store_for_logs(url: &str) -> &str {
    url.split_once("://").map_or(url, |(scheme, _)| scheme)
}

async fn open(settings: &Settings) -> Result<Store, String> {
    if let Some(dir) = &settings.data_dir {
        data_dir::prepare(dir).map_err(|e| e.to_string())?;
    }
    Store::open(&settings.store_url).await.map_err(|e| {
        format!(
            "cannot open the {} store: {e}",
            store_for_logs(&settings.store_url)
        )
    })
}

async fn admin_token(settings: &Settings, name: &str) -> Result<(), String> {
    let store = open(settings).await?;
    let token = bootstrap::admin_token(&store, name)
        .await
        .map_err(|e| e.message().to_string())?;
    store.close().await;
    println!("{token}");
    Ok(())
}

async fn serve(settings: &Settings) -> Result<(), String> {
    let store = open(settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    tracing::info!(
        listen = %settings.listen,
        store = store_for_logs(&settings.store_url),
        "meshplane-server listening"
    );
    // STUN on UDP at the same address and port number.
    let stun_at = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tokio::spawn(stun::serve(stun::bind(stun_at).await?));
    // A start begins with no expose sessions: the seed's restart clears them.
    let expose = expose::Expose::start(
        store.clone(),
        expose::ExposeConfig {
            ttl: settings.expose_ttl,
            proxy_domain: settings.proxy_domain.clone(),
            proxy_group: settings.proxy_group.clone(),
        },
    );
    let issuer =
        std::sync::Arc::new(relay::Issuer::load(&store, settings.relay_urls.clone()).await?);
    let (relay, relay_routes) = issuer.routes();
    let app = http::router(http::App {
        store: store.clone(),
        expose: expose.clone(),
    })
    .merge(relay_routes);
    let (app, streams) = grpc::mount(
        app,
        &store,
        &expose,
        settings.limits.streams_per_peer,
        issuer,
    )
    .await?;
    tokio::spawn(grpc::remove_offline(
        store.clone(),
        expose.clone(),
        settings.ephemeral_offline,
    ));
    listen::serve(listener, app, settings.limits, async move {
        shutdown_signal().await;
        streams.close();
        relay.shutdown();
    })
    .await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl+C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
