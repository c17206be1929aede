//! The authorizer function: IoT Core's custom authorizer, wired for Lambda. What it decides is
//! `realtime::authorizer`'s.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::adapters::system::SystemClock;
use crate::config;
use crate::entry::lambda::{Error, init_tracing};
use crate::ports::Clock;
use crate::realtime::authorizer::{self, IotArns};

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
