//! Real time on AWS, wired for Lambda: the publishing adapter every function that pushes gets
//! (`IOT_DATA_ENDPOINT`), and what the `authorizer` and `mqtt-inbound` functions' mains call.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::authorizer::{self, IotArns};
use super::rule;
use crate::adapters::iot::IotRealtime;
use crate::adapters::system::SystemClock;
use crate::config;
use crate::lambda::{Error, aws_deps, init_tracing};
use crate::ports::{Clock, NoRealtime, Realtime};

/// The real-time port of a function: IoT Core's data plane at `IOT_DATA_ENDPOINT` (the
/// account's `iot:Data-ATS` endpoint, a host name, or a URL), or nothing if it is unset.
/// Builds a client without any network call.
pub fn realtime_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
    shared: &aws_config::SdkConfig,
) -> Arc<dyn Realtime> {
    match lookup("IOT_DATA_ENDPOINT")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        None => Arc::new(NoRealtime),
        Some(endpoint) => {
            let url = if endpoint.contains("://") {
                endpoint
            } else {
                format!("https://{endpoint}")
            };
            let config = aws_sdk_iotdataplane::config::Builder::from(shared)
                .endpoint_url(url)
                .build();
            Arc::new(IotRealtime::new(aws_sdk_iotdataplane::Client::from_conf(
                config,
            )))
        }
    }
}

/// Answers one authorizer invocation (never an error; see [`authorizer`]).
pub fn authorizer_response(
    verifier: &crate::auth::JwtVerifier,
    function_arn: &str,
    now: u64,
    event: &Value,
) -> Value {
    let arns = IotArns::of_function(function_arn).unwrap_or_else(|| {
        warn!(%function_arn, "cannot read the function's ARN; the policy names any region and account");
        IotArns::anywhere()
    });
    let connection = event.pointer("/connectionMetadata/id").cloned();
    let (response, refusal) = authorizer::authorize(verifier, &arns, now, event);
    match refusal {
        Some(why) => info!(reason = %why, ?connection, "connection refused"),
        None => info!(principal = %response.principal_id, ?connection, "connection authorized"),
    }
    // A plain struct always serializes; were it not to, the answer is still a refusal.
    serde_json::to_value(&response).unwrap_or_else(|_| json!({ "isAuthenticated": false }))
}

/// Runs the IoT Core custom authorizer. Its cold start reads the key and nothing else: no
/// SDK, no network.
pub async fn serve_authorizer() -> Result<(), Error> {
    init_tracing();
    let verifier = config::verifier_from_lookup(config::env)?;
    let verifier = &verifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let arn = &event.context.invoked_function_arn;
        Ok::<_, Error>(authorizer_response(
            verifier,
            arn,
            SystemClock.now_ms() / 1000,
            &event.payload,
        ))
    }))
    .await
}

/// Runs the function IoT Core's topic rules invoke with clients' publishes.
pub async fn serve_mqtt_inbound() -> Result<(), Error> {
    init_tracing();
    let deps = aws_deps(config::env, true).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        rule::handle(deps, &event.payload)
            .await
            .map_err(Error::from)
    }))
    .await
}
