//! Test harness shared by the integration suites (and, through `#[path]`, by the benches): the
//! same deps on the embedded store or on DynamoDB (moto's server on loopback, started by
//! `scripts/test`). By concern: `harness` (the scenarios' deps and store stream), `moto`
//! (tables, streams, topics, queues), `api` (the HTTP API as API Gateway calls it),
//! `stand_ins` (recording endpoints and clients, a hand-moved clock). Suites import from here.
// Each binary that includes it (the suites, two benches) uses a part of it.
#![allow(dead_code, unused_imports)]

use chat21::ids::Id;
use chat21::model::Caller;

mod api;
mod harness;
mod moto;
mod stand_ins;

pub use api::*;
pub use harness::*;
pub use moto::*;
pub use stand_ins::*;

pub const APP: &str = "app1";

/// A valid id (test data only).
pub fn id(raw: &str) -> Id {
    Id::parse("id", raw).unwrap_or_else(|e| panic!("{raw:?} is not a valid id: {e}"))
}

pub fn user(user_id: &str) -> Caller {
    Caller {
        user_id: id(user_id),
        app_id: id(APP),
        admin: false,
    }
}

pub fn admin(user_id: &str) -> Caller {
    Caller {
        user_id: id(user_id),
        app_id: id(APP),
        admin: true,
    }
}
