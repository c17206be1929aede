//! What each API operation costs on AWS, counted on the wire.
//!
//! Runs the Lambda path as deployed — `chat21::entry::http::handle` on DynamoDB and the real SNS
//! adapter, then what the table's stream → `deliver` does with the items it wrote — against
//! moto's server: `scripts/with-moto cargo bench -p chat21 --bench cost`. An SDK interceptor
//! records every DynamoDB and SNS request with its response; small models turn them into
//! capacity units, billed requests and dollars. Prints a markdown report and writes it to
//! `target/bench-cost.md`.
//!
//! Sections, one file each, each adaptable on its own when the storage design changes:
//! - [`recorder`]: the wire. An interceptor per SDK client; DynamoDB capacity units computed
//!   from the items as sent and returned (DynamoDB's item-size rules, LSIs, transactions).
//! - [`model`]: prices, the stream event source and the Lambda duration assumptions.
//! - [`rig`]: the deployed path on moto (one fresh table per scenario), the deliver function
//!   fed from the table's stream as its event source mapping would.
//! - [`scenarios`]: the operations measured, and the table layout's item names.
//! - [`report`]: the markdown tables.

#[path = "../../tests/integration/common/mod.rs"]
mod common;

use std::time::Duration;

/// One Lambda invocation and the AWS requests it made.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub calls: Vec<recorder::Call>,
    /// Wall time against moto (informative only: moto is far slower than DynamoDB).
    pub wall: Duration,
    /// Stream records in the invocation's batch (0 for an HTTP call).
    pub records: usize,
}

/// What the table's stream carried during one operation.
#[derive(Debug, Clone, Default)]
pub struct StreamCount {
    /// Every record (each item write that changed an item: the HTTP call's and deliver's).
    pub records: usize,
    /// Those the event source's filter passed to deliver (the rest are free).
    pub passed: usize,
    /// Of those passed, the ones deliver had nothing to do for.
    pub idle: usize,
}

/// One measured operation: its HTTP call (the critical path) and everything it set off.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub what: String,
    pub http: Invocation,
    pub answer: serde_json::Value,
    /// The deliver function's invocations, one per batch of stream records.
    pub deliveries: Vec<Invocation>,
    pub stream: StreamCount,
}

impl Outcome {
    /// Every request on the wire, the HTTP call's first.
    pub fn wire(&self) -> impl Iterator<Item = &recorder::Call> {
        self.http
            .calls
            .iter()
            .chain(self.deliveries.iter().flat_map(|d| d.calls.iter()))
    }

    pub fn invocations(&self) -> impl Iterator<Item = &Invocation> {
        std::iter::once(&self.http).chain(self.deliveries.iter())
    }
}

pub mod model;
pub mod recorder;
pub mod report;
pub mod rig;
pub mod scenarios;

/// Where the report goes: `target/bench-cost.md`, the target dir being the one this binary
/// was built in (`<target>/release/deps/cost-…`).
fn report_path() -> std::path::PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-cost.md")
}

fn main() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        println!(
            "cost: skipped, AWS_ENDPOINT_URL is not set (run: scripts/with-moto cargo bench -p chat21 --bench cost)"
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let env = rig::Env::new(scenarios::schema(), model::CostModel::default()).await;
        let outcomes = scenarios::run(&env).await;
        let mut text = report::render(&outcomes, &env.model, env.delivered_events());
        if let Some(direct) = outcomes.iter().find(|o| o.name == "direct message") {
            text.push_str(&report::itemise(direct, &env.model));
        }
        text.push_str(&report::assumptions(&env.model, &outcomes));
        println!("{text}");
        // The file also itemises every other operation.
        text.push_str("\n# Appendix: every operation itemised\n");
        for o in outcomes.iter().filter(|o| o.name != "direct message") {
            text.push_str(&report::itemise(o, &env.model));
        }
        let path = report_path();
        match std::fs::write(&path, &text) {
            Ok(()) => println!("written to {}", path.display()),
            Err(e) => println!("could not write {}: {e}", path.display()),
        }
    });
}
