//! `chat21-local`: the whole API on 127.0.0.1:$PORT (default 8004) on the embedded store.

use std::process::ExitCode;

use std::sync::Arc;

use chat21::auth::JwtVerifier;
use chat21::config;
use chat21::cors::Cors;
use chat21_local::Local;

/// Development key, used only when `JWT_KEY` is unset, and only by this local server.
const DEV_KEY: &str = "chat21-local-development-key";

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

async fn run() -> Result<(), String> {
    let port: u16 = match config::env("PORT") {
        None => 8004,
        Some(p) => p
            .parse()
            .map_err(|_| format!("PORT must be a port number, not {p:?}"))?,
    };
    let dev_key = config::env("JWT_KEY").is_none() && config::env("JWT_PUBLIC_KEY").is_none();
    let verifier = if dev_key {
        let leeway = config::leeway_from_lookup(config::env)?;
        JwtVerifier::hs256(DEV_KEY.as_bytes())
            .map_err(|e| e.to_string())?
            .with_leeway(leeway)
    } else {
        config::verifier_from_lookup(config::env)?
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let cors = match config::env("CORS_ALLOW_ORIGINS") {
        None => Cors::default(),
        Some(list) => Cors::from_list(&list).map_err(|e| format!("CORS_ALLOW_ORIGINS: {e}"))?,
    };
    let (api, events) = chat21_local::embedded_api(verifier);
    tokio::spawn(chat21_local::deliver_events(api.deps.clone(), events));
    let local = Arc::new(Local { api, cors });
    println!("chat21-local listening on http://127.0.0.1:{port}");
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
    tokio::select! {
        served = chat21_local::serve(listener, local) => served.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
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
