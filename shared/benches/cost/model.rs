//! The cost model: prices, the stream event source, Lambda durations.

use crate::recorder::Call;
use crate::{Invocation, Outcome};

/// List prices, us-east-1: dollars per million units, and per GB-second.
#[derive(Debug, Clone)]
pub struct Prices {
    pub wru: f64,
    pub rru: f64,
    pub sns_request: f64,
    pub lambda_request: f64,
    pub lambda_gb_second: f64,
    pub http_api_request: f64,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            // DynamoDB on-demand since November 2024.
            wru: 0.625,
            rru: 0.125,
            sns_request: 0.50,
            lambda_request: 0.20,
            lambda_gb_second: 0.000_013_333_4,
            http_api_request: 1.00,
        }
    }
}

/// The deliver function's event source mapping's `BatchSize` (DynamoDB Streams' default).
pub const DELIVER_BATCH_SIZE: usize = 100;

/// How the table's stream reaches deliver: Lambda's DynamoDB event source mapping polls
/// the stream (its GetRecords calls are free for Lambda triggers), drops the records its
/// FilterCriteria do not match (free: they are not invocations), and hands the rest to
/// one invocation per batch of up to `batch_size` records.
#[derive(Debug, Clone)]
pub struct EventSource {
    pub batch_size: usize,
}

impl Default for EventSource {
    fn default() -> EventSource {
        EventSource {
            batch_size: DELIVER_BATCH_SIZE,
        }
    }
}

/// Lambda's billed duration: a handler's own time plus the assumed in-region latency of
/// each request it waits for, at the template's memory size. Requests the code had in
/// flight at once (deliver's fan-out) overlap in the model as they did on the wire.
#[derive(Debug, Clone)]
pub struct LambdaModel {
    pub memory_mb: f64,
    /// Handler time besides waiting for AWS (JSON, JWT; ~15 µs measured for send-message on
    /// the embedded store, so this is mostly the runtime's own overhead).
    pub base_ms: f64,
}

impl Default for LambdaModel {
    fn default() -> LambdaModel {
        LambdaModel {
            memory_mb: 256.0,
            base_ms: 2.0,
        }
    }
}

/// Whether `later` was sent only once `earlier` had completed (on the wire, against moto).
/// Unknown times count as sequential.
fn after(earlier: &Call, later: &Call) -> bool {
    earlier
        .done
        .zip(later.sent)
        .is_none_or(|(done, sent)| done <= sent)
}

impl LambdaModel {
    /// Assumed latency of one request from a Lambda in the same region.
    pub fn latency_ms(call: &Call) -> f64 {
        match (call.service, call.action.as_str()) {
            ("DynamoDB", "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem") => 5.0,
            ("DynamoDB", "Query") => 6.0,
            ("DynamoDB", "BatchWriteItem") => 10.0,
            ("DynamoDB", "TransactWriteItems") => 10.0 + 0.25 * call.entries as f64,
            ("SNS", _) => 15.0,
            _ => 10.0,
        }
    }

    /// Time spent waiting for AWS: each request starts, in the model, once every request
    /// that had completed on the wire before it was sent has completed in the model (so a
    /// sequential handler waits for the sum of its latencies, and requests sent together
    /// overlap).
    pub fn waiting_ms(calls: &[Call]) -> f64 {
        // In the order they completed (as recorded, give or take a race for the lock).
        let mut calls: Vec<&Call> = calls.iter().collect();
        calls.sort_by_key(|c| c.done);
        let mut ends: Vec<f64> = Vec::with_capacity(calls.len());
        for (j, call) in calls.iter().enumerate() {
            let start = calls[..j]
                .iter()
                .zip(&ends)
                .filter(|(earlier, _)| after(earlier, call))
                .map(|(_, end)| *end)
                .fold(0.0, f64::max);
            ends.push(start + Self::latency_ms(call));
        }
        ends.into_iter().fold(0.0, f64::max)
    }

    /// Whether any request was sent while another was still in flight.
    pub fn overlapped(calls: &[Call]) -> bool {
        calls
            .iter()
            .enumerate()
            .any(|(j, b)| calls[..j].iter().any(|a| !after(a, b) && !after(b, a)))
    }

    pub fn billed_ms(&self, invocation: &Invocation) -> f64 {
        (self.base_ms + Self::waiting_ms(&invocation.calls)).ceil()
    }

    pub fn gb_seconds(&self, invocation: &Invocation) -> f64 {
        self.memory_mb / 1024.0 * self.billed_ms(invocation) / 1000.0
    }
}

const M: f64 = 1e6;

/// Dollars per operation, by what they pay for.
#[derive(Debug, Clone, Default)]
pub struct Bill {
    pub dynamo_writes: f64,
    pub dynamo_reads: f64,
    pub sns: f64,
    pub lambda_requests: f64,
    pub lambda_duration: f64,
    pub http_api: f64,
}

impl Bill {
    pub fn total(&self) -> f64 {
        self.dynamo_writes
            + self.dynamo_reads
            + self.sns
            + self.lambda_requests
            + self.lambda_duration
            + self.http_api
    }
}

#[derive(Debug, Clone, Default)]
pub struct CostModel {
    pub prices: Prices,
    pub source: EventSource,
    pub lambda: LambdaModel,
}

impl CostModel {
    pub fn bill(&self, o: &Outcome) -> Bill {
        let p = &self.prices;
        let sum = |f: fn(&Call) -> f64| o.wire().map(f).sum::<f64>();
        let sns: f64 = o
            .wire()
            .filter(|c| c.service == "SNS")
            .map(|c| c.billed)
            .sum();
        let invocations = o.invocations().count() as f64;
        let gb_s: f64 = o.invocations().map(|i| self.lambda.gb_seconds(i)).sum();
        Bill {
            dynamo_writes: sum(|c| c.wru) * p.wru / M,
            dynamo_reads: sum(|c| c.rru) * p.rru / M,
            sns: sns * p.sns_request / M,
            lambda_requests: invocations * p.lambda_request / M,
            lambda_duration: gb_s * p.lambda_gb_second,
            http_api: p.http_api_request / M,
        }
    }
}
