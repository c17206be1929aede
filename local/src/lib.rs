//! The local server: every route of the API in one process, on the SQLite store, at the same
//! paths as `template.yaml`. Requests go through the same HTTP glue and operations as on
//! Lambda; new messages are delivered in-process by the same deliver operation, and published
//! events reach the same webhooks consumer, both through the store's outbox (`backend`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use chat21::adapters::sqlite::SqliteStore;
use chat21::cors::Cors;
use chat21::entry::http::{self, Api};
use chat21::error::Error;
use chat21::input::MAX_BODY_BYTES;
use chat21::lambda_http::{self, Body, RequestExt};
use chat21::routes::{self, Match};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::info;

pub mod backend;
pub mod console;
pub mod listen;
pub mod mqtt;
mod wire;
pub use listen::Limits;
use wire::JsonErrors;

/// The local HTTP front: the API, and what API Gateway does in front of it on AWS (routing,
/// CORS), plus the API's own OpenAPI document and the web console.
pub struct Local {
    pub api: Arc<Api>,
    pub cors: Cors,
    pub console: console::Console,
    /// The store, for `GET /health`.
    pub store: Arc<SqliteStore>,
}

/// The OpenAPI document of the HTTP API, served at `/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

/// Connections beyond the cap being answered 503 at once; beyond these, closed at once.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection is kept to read what its client sent (so that the close
/// does not reset the connection before the client has read the 503).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Serves HTTP for ever: every connection within `limits` (see [`listen::accept_loop`]);
/// request headers must come within the handshake timeout, on a new connection and between
/// requests of a kept-alive one.
pub async fn serve(listener: TcpListener, local: Arc<Local>, limits: Limits) {
    serve_until(listener, local, limits, listen::never()).await
}

/// [`serve`] until `stop` turns true: then no new connection is accepted, each connection
/// finishes the request under way (an idle one closes at once), and this returns once all
/// have closed.
pub async fn serve_until(
    listener: TcpListener,
    local: Arc<Local>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let refuse = move |stream| refuse_busy(stream, &refusals);
    let connection_stop = stop.clone();
    listen::accept_loop(
        listener,
        "HTTP",
        limits.max_connections,
        stop,
        refuse,
        move |stream, peer| {
            let local = local.clone();
            let mut stop = connection_stop.clone();
            async move {
                let service = service_fn(move |request| {
                    let local = local.clone();
                    async move { Ok::<_, Infallible>(respond(&local, request).await) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.handshake_timeout)
                    .serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
                tokio::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    () = listen::stopped(&mut stop) => {
                        connection.as_mut().graceful_shutdown();
                        connection.as_mut().await
                    }
                };
                if let Err(e) = served {
                    info!(%peer, error = %e, "connection closed with an error");
                }
            }
        },
    )
    .await
}

/// A connection beyond the cap: answered 503 in the JSON envelope and closed.
fn refuse_busy(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(place) = refusals.clone().try_acquire_owned() else {
        return; // closed at once
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let answer = wire::json_answer(503);
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(&answer).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        drop(place);
    });
}

/// `GET /health`: 200 when the database answers a read, with what its outbox holds (entries
/// waiting, and dead ones, which an operator should look at); 503 in the error envelope when
/// it does not answer.
async fn health(store: &SqliteStore) -> hyper::Response<Full<Bytes>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let checked = match store.check().await {
        Ok(()) => store.outbox_counts(now).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(outbox) => {
            let body = serde_json::json!({
                "success": true,
                "database": "ok",
                "outbox": outbox,
            });
            let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => error(&Error::unavailable(format!(
            "the database does not answer: {e}"
        ))),
    }
}

fn to_hyper(response: lambda_http::Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

fn error(e: &Error) -> hyper::Response<Full<Bytes>> {
    to_hyper(http::error_response(e))
}

/// Answers CORS preflights (as API Gateway does for every path), and adds the CORS headers to
/// everything else.
async fn respond(local: &Local, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    if Cors::is_preflight(request.method(), request.headers()) {
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::NO_CONTENT;
        *response.headers_mut() = local.cors.preflight_headers(request.headers());
        return response;
    }
    let request_headers = request.headers().clone();
    let mut response = route(local, request).await;
    local
        .cors
        .decorate(&request_headers, response.headers_mut());
    response
}

async fn route(local: &Local, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    if console::Console::serves(parts.uri.path()) {
        let console = &local.console;
        return console
            .respond(&parts.method, parts.uri.path(), &parts.headers, body)
            .await;
    }
    if parts.method == hyper::Method::GET && parts.uri.path() == "/health" {
        return health(&local.store).await;
    }
    if parts.method == hyper::Method::GET && parts.uri.path() == "/openapi.yaml" {
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/yaml"),
        );
        return response;
    }
    let (route, params) = match routes::find(parts.method.as_str(), parts.uri.path()) {
        Match::Found(route, params) => (route, params),
        Match::MethodNotAllowed(allowed) => {
            let e =
                Error::MethodNotAllowed(format!("{} is not allowed on this path", parts.method));
            let mut response = error(&e);
            if let Ok(allow) = hyper::header::HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(hyper::header::ALLOW, allow);
            }
            return response;
        }
        Match::NotFound => return error(&Error::not_found("no such route")),
    };
    // Read at most one byte more than the limit: enough to answer 413 without reading it all.
    let bytes = match Limited::new(body, MAX_BODY_BYTES + 1).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return error(&Error::PayloadTooLarge(format!(
                "the request body is larger than {} KiB",
                MAX_BODY_BYTES / 1024
            )));
        }
        Err(e) => {
            return error(&Error::bad_request(format!(
                "the request body could not be read: {e}"
            )));
        }
    };
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.to_vec())
    };
    let query: lambda_http::aws_lambda_events::query_map::QueryMap =
        parts.uri.query().unwrap_or("").parse().unwrap_or_default();
    let request = lambda_http::Request::from_parts(parts, body)
        .with_path_parameters(params)
        .with_query_string_parameters(query);
    to_hyper(http::handle(&local.api, route, request).await)
}
