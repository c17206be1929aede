//! `chat21-local`: the whole API on $HOST:$PORT (default 127.0.0.1:8004) on the SQLite store
//! (a file under `DATA_DIR`, default `./chat21-data`), until SIGTERM or SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use chat21::adapters::sqlite::Location;
use chat21::auth::JwtVerifier;
use chat21::config;
use chat21::cors::Cors;
use chat21::ops::Settings;
use chat21::ops::webhooks::WebhookConfig;
use chat21_local::backend::Backend;
use chat21_local::console::Console;
use chat21_local::mqtt::{self, Broker, BrokerRealtime, Listener, Router};
use chat21_local::{Limits, Local};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Development key, used only when `JWT_KEY` is unset, and only by this local server.
const DEV_KEY: &str = "chat21-local-development-key";
/// Where the data lives when `DATA_DIR` is unset (relative to the working directory).
const DEFAULT_DATA_DIR: &str = "./chat21-data";
/// How long a shutdown waits for what is under way.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat21-local: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A port from the environment (`0` = a free one).
fn port(name: &str, default: u16) -> Result<u16, String> {
    match config::env(name) {
        None => Ok(default),
        Some(p) => p
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a port number, not {p:?}")),
    }
}

/// Listens on `host` (an IP address) and `port`; returns the address as bound (for the URLs
/// printed: `127.0.0.1:8004`, `[::]:8004`).
async fn bind(name: &str, host: IpAddr, port: u16) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| format!("cannot listen on {host} port {port} ({name}): {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, address))
}

/// `HOST`: the address every listener binds (default 127.0.0.1, this machine only).
fn host() -> Result<IpAddr, String> {
    match config::env("HOST") {
        None => Ok(IpAddr::from([127, 0, 0, 1])),
        Some(h) => h
            .trim()
            .parse()
            .map_err(|_| format!("HOST must be an IP address (127.0.0.1, 0.0.0.0, ::), not {h:?}")),
    }
}

/// Resolves at SIGTERM (what `docker stop` and systemd send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run() -> Result<(), String> {
    let http_port = port("PORT", 8004)?;
    let ws_port = port("MQTT_WS_PORT", 15675)?;
    let tcp_port = port("MQTT_TCP_PORT", 1883)?;
    let dev_key = config::env("JWT_KEY").is_none() && config::env("JWT_PUBLIC_KEY").is_none();
    let verifier = if dev_key {
        let leeway = config::leeway_from_lookup(config::env)?;
        JwtVerifier::hs256(DEV_KEY.as_bytes())
            .map_err(|e| e.to_string())?
            .with_leeway(leeway)
    } else {
        config::verifier_from_lookup(config::env)?
    };
    let host = host()?;
    let (listener, http_address) = bind("PORT", host, http_port).await?;
    let (ws_listener, ws_address) = bind("MQTT_WS_PORT", host, ws_port).await?;
    let (tcp_listener, tcp_address) = bind("MQTT_TCP_PORT", host, tcp_port).await?;
    let port = http_address.port();
    let cors = match config::env("CORS_ALLOW_ORIGINS") {
        None => Cors::default(),
        Some(list) => Cors::from_list(&list).map_err(|e| format!("CORS_ALLOW_ORIGINS: {e}"))?,
    };
    let settings = Settings::from_lookup(config::env)?;
    let limits = Limits::from_lookup(config::env)?;
    let broker_settings = mqtt::Settings::from_lookup(&limits, config::env)?;
    let webhook_config = WebhookConfig::from_lookup(config::env)?;
    let router = Arc::new(Router::new(mqtt::QUEUE_LEN));
    let realtime = Arc::new(BrokerRealtime(router.clone()));
    let data_dir = config::env("DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
    let location = Location::of_data_dir(&data_dir);
    let endpoints = webhook_config.endpoints.len();
    let mut backend = Backend::open(&location, verifier, realtime, settings, webhook_config)
        .map_err(|e| format!("DATA_DIR: {e}"))?;
    backend.start();
    let api = backend.api.clone();
    println!("chat21-local data in {location}");
    let broker = Arc::new(Broker {
        router: router.clone(),
        api: api.clone(),
        settings: broker_settings,
    });
    let (stop, stopping) = watch::channel(false);
    let listeners = vec![
        tokio::spawn(mqtt::serve(
            ws_listener,
            Listener::WebSocket,
            broker.clone(),
            limits,
            stopping.clone(),
        )),
        tokio::spawn(mqtt::serve(
            tcp_listener,
            Listener::Tcp,
            broker,
            limits,
            stopping.clone(),
        )),
    ];
    let console = Console::new(ws_address.port(), dev_key.then_some(DEV_KEY.as_bytes()));
    let store = backend.store.clone();
    let local = Arc::new(Local {
        api,
        cors,
        console,
        store,
    });
    println!("chat21-local MQTT over WebSocket on ws://{ws_address}/ws");
    println!("chat21-local MQTT over TCP on mqtt://{tcp_address}");
    if endpoints > 0 {
        println!("chat21-local webhooks to {endpoints} endpoint(s) of WEBHOOK_ENDPOINTS");
    }
    println!("chat21-local listening on http://{http_address}");
    println!("chat21-local console on http://{http_address}/console");
    if dev_key {
        let token = example_token()?;
        println!(
            "JWT_KEY is not set: using the development key {DEV_KEY:?} (never use it anywhere else).\n\
             Example token (user-1, app default, valid 24 h):\n  {token}\n\
             Try:\n  curl -s -X POST http://127.0.0.1:{port}/api/default/messages \\\n    \
             -H 'Authorization: {token}' -H 'Content-Type: application/json' \\\n    \
             -d '{{\"sender_fullname\":\"User One\",\"recipient_id\":\"user-2\",\"recipient_fullname\":\"User Two\",\"text\":\"hello\"}}'"
        );
    }
    let http = tokio::spawn(chat21_local::serve_until(listener, local, limits, stopping));
    // The listeners never stop by themselves (accept errors are waited out): the process
    // runs until it is told to stop.
    shutdown_signal().await;
    // Graceful: no new connection; HTTP requests under way are answered; MQTT connections
    // are closed (their wills go out); then the outbox's consumers finish what they hold
    // (the rest waits in the database for the next start) and the database is closed.
    println!("chat21-local shutting down");
    let _ = stop.send(true);
    router.close_all();
    let listening = futures_util::future::join_all(listeners.into_iter().chain([http]));
    if tokio::time::timeout(SHUTDOWN_GRACE, listening)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}: closed");
    }
    backend.shutdown(SHUTDOWN_GRACE).await;
    println!("chat21-local stopped");
    Ok(())
}

fn example_token() -> Result<String, String> {
    let exp = jsonwebtoken::get_current_timestamp() + 24 * 3600;
    let claims = serde_json::json!({ "sub": "user-1", "app_id": "default", "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEV_KEY.as_bytes()),
    )
    .map_err(|e| e.to_string())
}
