//! The wire: a request-recording interceptor per SDK client, and DynamoDB's capacity arithmetic
//! (`dynamodb`, with `update` expressions) and SNS's billing (`sns`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::{Map, Value};

mod dynamodb;
mod sns;
mod update;

use dynamodb::{item_size, write_units};
use sns::{form, sns};

/// A DynamoDB item in the wire format (`{"name": {"S": "…"}, …}`).
pub type Attrs = Map<String, Value>;

/// One AWS request on the wire, with what it is billed.
#[derive(Debug, Clone, Default)]
pub struct Call {
    pub service: &'static str,
    pub action: String,
    /// The service answered 2xx (a failed conditional write still costs).
    pub ok: bool,
    /// DynamoDB write and read request units.
    pub wru: f64,
    pub rru: f64,
    /// Requests billed by request-priced services (SNS): one per 64 KB chunk of each
    /// message. 0 for DynamoDB, billed by units.
    pub billed: f64,
    /// Actions or messages in the request.
    pub entries: usize,
    /// Itemised: what each item or message cost.
    pub items: Vec<String>,
    /// When the request was sent and its response read (against moto): which requests
    /// the code had in flight at once.
    pub sent: Option<Instant>,
    pub done: Option<Instant>,
}

/// What the capacity arithmetic needs to know of the table.
#[derive(Debug)]
pub struct TableSchema {
    /// Partition and sort key attributes.
    pub key: [&'static str; 2],
    /// Sort keys of the local secondary indexes, all with the ALL projection (an index
    /// entry is the whole item). An item without the index's sort key has no entry, and
    /// costs no index write. A GSI or a KEYS_ONLY projection would be modelled here (the
    /// table's stream costs no write units).
    pub lsi_sort_keys: Vec<&'static str>,
    /// A short name for an item in itemised listings (layout knowledge, kept out of here).
    pub label: fn(&Attrs) -> String,
}

impl TableSchema {
    fn identity(&self, table: &str, item: &Attrs) -> String {
        let part = |k: &str| item.get(k).map_or(String::new(), Value::to_string);
        format!(
            "{table}\u{1}{}\u{1}{}",
            part(self.key[0]),
            part(self.key[1])
        )
    }

    fn key_of(&self, item: &Attrs) -> Attrs {
        self.key
            .iter()
            .filter_map(|k| Some((k.to_string(), item.get(*k)?.clone())))
            .collect()
    }

    /// Index write units of a write that turned `old` into `new` (DynamoDB's LSI rules):
    /// an entry put, deleted, or rewritten (ALL projection: any change of the item
    /// rewrites its entry) costs one write per KB; a changed index key costs two (delete
    /// the old entry, put the new one).
    fn index_writes(&self, old: Option<&Attrs>, new: Option<&Attrs>) -> (f64, String) {
        let mut units = 0.0;
        let mut notes = Vec::new();
        for attr in &self.lsi_sort_keys {
            let before = old.and_then(|i| i.get(*attr));
            let after = new.and_then(|i| i.get(*attr));
            let size = |i: Option<&Attrs>| i.map_or(0, item_size);
            let (u, note) = match (before, after) {
                (None, None) => continue,
                (None, Some(_)) => (write_units(size(new)), "entry put"),
                (Some(_), None) => (write_units(size(old)), "entry deleted"),
                (Some(a), Some(b)) if a == b => (write_units(size(new)), "entry rewritten"),
                (Some(_), Some(_)) => (
                    write_units(size(old)) + write_units(size(new)),
                    "key changed: delete + put",
                ),
            };
            units += u;
            notes.push(format!("LSI {attr} +{u} ({note})"));
        }
        (units, notes.join(", "))
    }
}

/// One write to cost: a put, an update (its item after, when DynamoDB returned it), a
/// delete, or a transaction's condition check.
enum Write<'a> {
    Put(Attrs),
    Update {
        key: Attrs,
        request: &'a Value,
        after: Option<Attrs>,
    },
    Delete(Attrs),
    Check(Attrs),
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    /// Every item as last written or read in this run: the item before a write (for
    /// updates, deletes, LSI key changes). Complete, since every run starts on a fresh
    /// table and every request goes through the recorder.
    shadow: HashMap<String, Attrs>,
}

#[derive(Debug)]
struct Inner {
    schema: TableSchema,
    state: Mutex<State>,
}

/// Records every request of the clients it spies on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder(Arc<Inner>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    Sns,
}

impl Recorder {
    pub fn new(schema: TableSchema) -> Recorder {
        Recorder(Arc::new(Inner {
            schema,
            state: Mutex::new(State::default()),
        }))
    }

    /// The interceptor to install on one service's client.
    pub fn spy(&self, service: Service) -> Spy {
        Spy {
            service,
            recorder: self.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The requests recorded since the last call.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }
}

/// The interceptor: keeps each request's body in the attempt's config bag before it is
/// sent, and costs it once its response is read (after deserialization the response body
/// is buffered; before it, it is still a stream).
#[derive(Debug, Clone)]
pub struct Spy {
    service: Service,
    recorder: Recorder,
}

#[derive(Debug, Clone)]
struct Sent {
    action: String,
    body: Vec<u8>,
    at: Instant,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Spy {
    fn name(&self) -> &'static str {
        "cost-recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let body = request.body().bytes().unwrap_or_default().to_vec();
        let action = match self.service {
            Service::DynamoDb => request
                .headers()
                .get("x-amz-target")
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("?")
                .to_string(),
            Service::Sns => form(&body)
                .into_iter()
                .find(|(k, _)| k == "Action")
                .map_or_else(|| "?".to_string(), |(_, v)| v),
        };
        cfg.interceptor_state().store_put(Sent {
            action,
            body,
            at: Instant::now(),
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(sent) = cfg.load::<Sent>().cloned() else {
            return Ok(());
        };
        let done = Instant::now();
        let response = context.response();
        let status = response.status().as_u16();
        let ok = (200..300).contains(&status);
        let body = response.body().bytes().unwrap_or_default();
        let inner = &self.recorder.0;
        let mut state = self.recorder.state();
        match self.service {
            Service::DynamoDb => {
                let request: Value = serde_json::from_slice(&sent.body).unwrap_or_default();
                let response: Value = serde_json::from_slice(body).unwrap_or_default();
                let mut call = inner.dynamo(&mut state, &sent.action, &request, ok, &response);
                (call.sent, call.done) = (Some(sent.at), Some(done));
                state.calls.push(call);
            }
            Service::Sns => {
                let mut call = sns(&sent.action, &sent.body, ok);
                (call.sent, call.done) = (Some(sent.at), Some(done));
                state.calls.push(call);
            }
        }
        Ok(())
    }
}
