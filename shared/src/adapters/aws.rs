//! The AWS SDK's configuration, shared by every AWS adapter of a process: built once per cold
//! start, with one HTTPS client for every SDK client.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;

/// The AWS SDK configuration: the standard chain (environment, profile files, web identity,
/// container and instance credentials; `AWS_ENDPOINT_URL*` honoured), built without network
/// calls, with one HTTPS client for every SDK client: rustls on ring (randomness straight from
/// the OS, `getrandom`), verifying servers against the system's root certificates as the SDK's
/// default client does. The default client's aws-lc seeds its DRBG from CPU jitter on first use:
/// ~30 ms of CPU on the 2-core development machine, in the first request of every cold start,
/// several times that on a fraction of a Lambda core (scripts/coldstart measures it).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let https = PreparedOnce {
        inner: https,
        prepared: AtomicBool::new(false),
    };
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(https))
        .load()
        .await
}

/// The SDK's HTTPS client builds a whole TLS configuration (root store included) when each SDK
/// client is built on it, so that the roots are loaded before the first request: once per
/// process is enough (the STS client of the credential chain, then DynamoDB, then SNS).
#[derive(Debug)]
struct PreparedOnce {
    inner: SharedHttpClient,
    prepared: AtomicBool,
}

impl HttpClient for PreparedOnce {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        if self.prepared.load(Ordering::Acquire) {
            return Ok(());
        }
        self.inner.validate_base_client_config(components, cfg)?;
        self.prepared.store(true, Ordering::Release);
        Ok(())
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// aws-lc (the SDK's default TLS crypto, and jsonwebtoken's other backend) seeds its DRBG
    /// from CPU jitter on first use: ~30 ms of CPU in the first request of every cold start.
    /// `scripts/coldstart/run` measures it; this keeps it from coming back through a feature.
    #[test]
    fn aws_lc_is_not_in_the_build() {
        let lock = include_str!("../../../Cargo.lock");
        for name in ["aws-lc-sys", "aws-lc-rs"] {
            assert!(
                !lock.contains(&format!("name = \"{name}\"")),
                "{name} is in Cargo.lock: see the AWS SDK comment in the workspace Cargo.toml"
            );
        }
    }

    #[tokio::test]
    async fn every_sdk_client_gets_the_https_client() {
        let config = sdk_config().await;
        assert!(config.http_client().is_some());
    }
}
