//! The webhooks' HTTP client: hyper-util's pooled client over hyper-rustls, the HTTP and TLS
//! stack the AWS SDK's client already links (rustls on ring, the system's root certificates),
//! so webhooks add no second TLS stack and no OpenSSL. HTTP/1.1, keep-alive per host.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use crate::ports::{PostOutcome, WebhookClient};

/// How much of an endpoint's answer is read (and dropped): enough to keep the connection for
/// the next POST; a longer answer closes it.
const ANSWER_BYTES: usize = 64 * 1024;
const USER_AGENT: &str = concat!("chat21-serverless-webhooks/", env!("CARGO_PKG_VERSION"));

/// The client's TLS configuration: the one place that names the crypto provider and the
/// roots. Without root certificates on the machine, https endpoints fail (and are retried);
/// http ones still work.
pub fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        warn!(error = %e, "reading the system's root certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        warn!("no root certificates found: webhooks to https endpoints will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose POSTs (connection, request and answer) take at most `timeout`.
    pub fn new(timeout: Duration) -> Result<HttpClient, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpClient { client, timeout })
    }

    async fn exchange(&self, request: hyper::Request<Full<Bytes>>) -> Result<u16, String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("connection failed: {e}"))?;
        let status = response.status().as_u16();
        // Read the answer so the connection can serve the next POST; its content is not used.
        let _ = Limited::new(response.into_body(), ANSWER_BYTES)
            .collect()
            .await;
        Ok(status)
    }
}

#[async_trait]
impl WebhookClient for HttpClient {
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> PostOutcome {
        let mut request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match request.body(Full::new(Bytes::from(body.to_string()))) {
            Ok(request) => request,
            Err(e) => return PostOutcome::Refused(format!("cannot build the request: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Err(_) => PostOutcome::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => PostOutcome::Retry(e),
            Ok(Ok(status)) => PostOutcome::of_status(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_configuration_builds_with_the_named_provider() {
        let config = tls_config().unwrap();
        assert!(config.alpn_protocols.is_empty(), "HTTP/1.1 only");
    }

    /// Offline: nothing listens on port 1 of loopback.
    #[tokio::test]
    async fn unreachable_endpoints_are_retried_never_refused() {
        let client = HttpClient::new(Duration::from_secs(5)).unwrap();
        for url in ["http://127.0.0.1:1/hook", "https://127.0.0.1:1/hook"] {
            let outcome = client.post(url, &[], "{}").await;
            assert!(
                matches!(outcome, PostOutcome::Retry(_)),
                "{url}: {outcome:?}"
            );
        }
        let outcome = client.post("not a url", &[], "{}").await;
        assert!(matches!(outcome, PostOutcome::Refused(_)), "{outcome:?}");
    }
}
