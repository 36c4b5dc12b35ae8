//! meshplane-server: the management API over an embedded SQLite database or
//! PostgreSQL. See `meshplane-server --help`.

mod bootstrap;
mod config;
mod cpu;
mod data_dir;
mod domain;
mod expose;
mod grpc;
mod health;
mod http;
mod ids;
mod listen;
mod metrics;
mod netbird;
mod records;
mod relay;
mod secrets;
mod signal;
mod store;
mod stun;

use std::process::ExitCode;

use clap::Parser;

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
    meshplane_logging::init(settings.log_format, &settings.log);
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
    if let Some(at) = settings.metrics_listen {
        metrics::serve(at).await?;
    }
    // STUN on UDP at the same address and port number.
    let stun_at = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tokio::spawn(stun::serve(stun::bind(stun_at).await?));
    // On SQLite a start begins with no expose sessions (the seed's restart
    // clears them); on PostgreSQL they live as long as the cluster does.
    let expose = expose::Expose::start(
        store.clone(),
        expose::ExposeConfig {
            ttl: settings.expose_ttl,
            proxy_domain: settings.proxy_domain.clone(),
            proxy_group: settings.proxy_group.clone(),
        },
    )
    .await
    .map_err(|e| format!("cannot load the expose sessions: {e}"))?;
    let issuer = std::sync::Arc::new(
        relay::Issuer::load(&store, settings.relay_urls.clone())
            .await?
            .with_tls(settings.tls.is_some())
            .with_refresh(settings.relay_token_refresh),
    );
    let (relay, relay_routes) = issuer.routes();
    let app = http::router(http::App {
        store: store.clone(),
        expose: expose.clone(),
        dashboard: settings.dashboard,
    })
    .merge(relay_routes)
    .merge(health::routes(store.clone()))
    .route_layer(axum::middleware::from_fn(metrics::track_rest));
    let (app, streams) = grpc::mount(
        app,
        &store,
        &expose,
        settings.limits.streams_per_peer,
        issuer,
    )
    .await?;
    let app = app.layer(axum::middleware::from_fn(metrics::track_grpc));
    tokio::spawn(grpc::remove_offline(
        store.clone(),
        expose.clone(),
        settings.ephemeral_offline,
    ));
    let tls = match &settings.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    listen::serve(listener, app, settings.limits, tls, async move {
        shutdown_signal().await;
        streams.close();
        relay.shutdown();
    })
    .await;
    expose.flush_audit().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The listener's TLS: the operator's certificate and key, ALPN for gRPC
/// (HTTP/2) and for REST and the relay's WebSocket (HTTP/1.1).
fn tls_acceptor(files: &config::TlsFiles) -> Result<tokio_rustls::TlsAcceptor, String> {
    let chain = meshplane_tls::read_chain(&files.cert).map_err(|e| e.to_string())?;
    let key = meshplane_tls::read_key(&files.key).map_err(|e| e.to_string())?;
    let config = meshplane_tls::server_config(chain, key, &[b"h2", b"http/1.1"])
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    Ok(tokio_rustls::TlsAcceptor::from(config))
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
