//! The receiver: a hyper server on loopback whose paths answer as each test scripts them
//! (healthy, failing, hanging, refusing), checking every POST's signature and recording what
//! arrives.

use super::*;

/// How one path of the receiver answers.
#[derive(Clone, Copy, Debug)]
pub(super) enum Script {
    /// 200 to everything.
    Ok,
    /// 503 to the first `n` attempts of each webhook id, then 200.
    FailFirst(usize),
    /// The very first request hangs (past the client's timeout); 200 to the others.
    HangOnce,
    /// 410 to the very first request, 200 to the others.
    GoneOnce,
    /// 503 to everything.
    Down,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    pub(super) path: String,
    pub(super) id: String,
    pub(super) body: String,
    pub(super) content_type: String,
    /// The signature verified with the path's secret (or there was none to check).
    pub(super) verified: bool,
    /// What it answered (0: it hung).
    pub(super) answered: u16,
}

impl Arrival {
    pub(super) fn event(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
pub(super) struct ReceiverState {
    pub(super) arrivals: Vec<Arrival>,
    /// Requests per path, and per path and webhook id.
    pub(super) per_path: HashMap<String, usize>,
    pub(super) per_id: HashMap<(String, String), usize>,
}

pub(super) struct Receiver {
    pub(super) base: String,
    pub(super) state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1: `paths` maps a path to its script and the secret its
    /// signatures must verify with (`None`: unsigned POSTs expected).
    pub(super) async fn start(paths: &[(&str, Script, Option<&str>)]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let scripts: Arc<HashMap<String, (Script, Option<Secret>)>> = Arc::new(
            paths
                .iter()
                .map(|(path, script, secret)| {
                    let secret = secret.map(|s| Secret::parse("secret", s).unwrap());
                    (path.to_string(), (*script, secret))
                })
                .collect(),
        );
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (scripts, state) = (scripts.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (scripts, state) = (scripts.clone(), state.clone());
                        async move { Ok::<_, Infallible>(answer(&scripts, &state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { base, state }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(super) fn arrivals(&self) -> Vec<Arrival> {
        self.state.lock().unwrap().arrivals.clone()
    }

    pub(super) fn at(&self, path: &str) -> Vec<Arrival> {
        self.arrivals()
            .into_iter()
            .filter(|a| a.path == path)
            .collect()
    }
}

pub(super) async fn answer(
    scripts: &HashMap<String, (Script, Option<Secret>)>,
    state: &Mutex<ReceiverState>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let content_type = header("content-type");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let (script, secret) = scripts
        .get(&path)
        .cloned()
        .unwrap_or_else(|| panic!("a POST to an unknown path {path}"));
    let verified = match &secret {
        Some(secret) => timestamp
            .parse()
            .is_ok_and(|ts| secret.verify(&id, ts, body.as_bytes(), &signature)),
        None => signature.is_empty(),
    };
    let status = {
        let mut state = state.lock().unwrap();
        let nth = *state
            .per_path
            .entry(path.clone())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let nth_of_id = *state
            .per_id
            .entry((path.clone(), id.clone()))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let status = match script {
            Script::Ok => 200,
            Script::FailFirst(n) if nth_of_id <= n => 503,
            Script::FailFirst(_) => 200,
            Script::HangOnce if nth == 1 => 0,
            Script::HangOnce => 200,
            Script::GoneOnce if nth == 1 => 410,
            Script::GoneOnce => 200,
            Script::Down => 503,
        };
        state.arrivals.push(Arrival {
            path,
            id,
            body,
            content_type,
            verified,
            answered: status,
        });
        status
    };
    if status == 0 {
        // Past the client's timeout: it gives up first.
        tokio::time::sleep(TIMEOUT * 4).await;
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = hyper::StatusCode::from_u16(status.max(200)).unwrap();
    response
}
