//! What each API operation costs on AWS, counted on the wire.
//!
//! Runs the Lambda path as deployed — `chat21::entry::http::handle` on DynamoDB and the real SNS
//! adapter, then what the table's stream → `deliver` does with the items it wrote — against
//! moto's server: `scripts/with-moto cargo bench -p chat21 --bench cost`. An SDK interceptor
//! records every DynamoDB and SNS request with its response; small models turn them into
//! capacity units, billed requests and dollars. Prints a markdown report and writes it to
//! `target/bench-cost.md`.
//!
//! Sections, each adaptable on its own when the storage design changes:
//! - [`recorder`]: the wire. An interceptor per SDK client; DynamoDB capacity units computed
//!   from the items as sent and returned (DynamoDB's item-size rules, LSIs, transactions).
//! - [`model`]: prices, the stream event source and the Lambda duration assumptions.
//! - [`rig`]: the deployed path on moto (one fresh table per scenario), the deliver function
//!   fed from the table's stream as its event source mapping would.
//! - [`scenarios`]: the operations measured, and the table layout's item names.
//! - [`report`]: the markdown tables.

#[path = "../tests/integration/common/mod.rs"]
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

// ================================================================================================
// The wire: a request-recording interceptor, and DynamoDB's capacity arithmetic.
// ================================================================================================

pub mod recorder {
    use std::collections::{BTreeMap, HashMap};
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

    // ------------------------------------------------------------------ DynamoDB item sizes

    /// Write units of one item write: 1 per KB, rounded up.
    pub fn write_units(bytes: usize) -> f64 {
        bytes.div_ceil(1024).max(1) as f64
    }

    /// Read units of a read: 1 per 4 KB (rounded up over the whole read), half when eventually
    /// consistent.
    pub fn read_units(bytes: usize, consistent: bool) -> f64 {
        let units = bytes.div_ceil(4096).max(1) as f64;
        if consistent { units } else { units / 2.0 }
    }

    /// An item's size by DynamoDB's rules: every attribute name plus its value.
    pub fn item_size(item: &Attrs) -> usize {
        item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
    }

    /// A value's size: strings their UTF-8 bytes, numbers 1 byte per 2 significant digits + 1,
    /// binary its raw bytes, booleans and null 1, lists and maps 3 + 1 per element + contents
    /// (map keys included).
    pub fn value_size(value: &Value) -> usize {
        let Some((kind, v)) = value.as_object().and_then(|o| o.iter().next()) else {
            return 0;
        };
        let strings = || v.as_array().into_iter().flatten().filter_map(Value::as_str);
        match kind.as_str() {
            "S" => v.as_str().map_or(0, str::len),
            "N" => number_size(v.as_str().unwrap_or("0")),
            "B" => binary_size(v.as_str().unwrap_or("")),
            "BOOL" | "NULL" => 1,
            "SS" => strings().map(str::len).sum(),
            "NS" => strings().map(number_size).sum(),
            "BS" => strings().map(binary_size).sum(),
            "M" => {
                let fields = v.as_object().into_iter().flatten();
                3 + fields
                    .map(|(k, v)| k.len() + value_size(v) + 1)
                    .sum::<usize>()
            }
            "L" => {
                let elements = v.as_array().into_iter().flatten();
                3 + elements.map(|v| value_size(v) + 1).sum::<usize>()
            }
            _ => 0,
        }
    }

    fn number_size(n: &str) -> usize {
        let mantissa = n.split(['e', 'E']).next().unwrap_or("");
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let significant = digits.trim_start_matches('0').trim_end_matches('0');
        significant.len().div_ceil(2) + 1
    }

    fn binary_size(base64: &str) -> usize {
        let padding = base64.bytes().rev().take_while(|b| *b == b'=').count();
        (base64.len() * 3 / 4).saturating_sub(padding)
    }

    fn attrs(value: &Value) -> Attrs {
        value.as_object().cloned().unwrap_or_default()
    }

    impl Inner {
        fn label(&self, item: &Attrs) -> String {
            (self.schema.label)(item)
        }

        /// Costs one DynamoDB request from its body and its response.
        fn dynamo(
            &self,
            state: &mut State,
            action: &str,
            request: &Value,
            ok: bool,
            response: &Value,
        ) -> Call {
            let mut call = Call {
                service: "DynamoDB",
                action: action.to_string(),
                ok,
                ..Call::default()
            };
            // Failed conditions are billed; other errors (throttling, validation) are not.
            let error = response["__type"].as_str().unwrap_or("");
            let conditions_failed = ["ConditionalCheckFailed", "TransactionCanceled"]
                .iter()
                .any(|e| error.contains(e));
            if !ok && !conditions_failed {
                call.items.push(format!("error {error}: not billed"));
                return call;
            }
            let table = request["TableName"].as_str().unwrap_or("");
            let consistent = request["ConsistentRead"].as_bool() == Some(true);
            // A failed condition may return the item as it is (ALL_OLD): learnt before costing,
            // since a failed write is billed on the existing item.
            match action {
                "PutItem" => {
                    self.learn(state, table, &response["Item"]);
                    let write = Write::Put(attrs(&request["Item"]));
                    self.write(state, &mut call, table, write, 1.0, ok);
                }
                "UpdateItem" => {
                    let after = (ok && request["ReturnValues"] == "ALL_NEW")
                        .then(|| attrs(&response["Attributes"]));
                    if ok && request["ReturnValues"] == "ALL_OLD" {
                        // The item as it was: exact, whatever the shadow thought.
                        self.learn(state, table, &response["Attributes"]);
                    }
                    let key = attrs(&request["Key"]);
                    let write = Write::Update {
                        key,
                        request,
                        after,
                    };
                    self.learn(state, table, &response["Item"]);
                    self.write(state, &mut call, table, write, 1.0, ok);
                }
                "DeleteItem" => {
                    let write = Write::Delete(attrs(&request["Key"]));
                    self.write(state, &mut call, table, write, 1.0, ok);
                }
                "BatchWriteItem" => {
                    let tables = request["RequestItems"].as_object().into_iter().flatten();
                    for (table, requests) in tables {
                        for r in requests.as_array().into_iter().flatten() {
                            let write = if r["PutRequest"].is_object() {
                                Write::Put(attrs(&r["PutRequest"]["Item"]))
                            } else {
                                Write::Delete(attrs(&r["DeleteRequest"]["Key"]))
                            };
                            self.write(state, &mut call, table, write, 1.0, ok);
                        }
                    }
                }
                "TransactWriteItems" => {
                    let actions = request["TransactItems"].as_array().cloned();
                    let reasons = response["CancellationReasons"].as_array().cloned();
                    for (i, a) in actions.iter().flatten().enumerate() {
                        let (kind, body) = a
                            .as_object()
                            .and_then(|o| o.iter().next())
                            .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
                        let table = body["TableName"].as_str().unwrap_or("");
                        let write = match kind {
                            "Put" => Write::Put(attrs(&body["Item"])),
                            "Update" => Write::Update {
                                key: attrs(&body["Key"]),
                                request: body,
                                after: None,
                            },
                            "Delete" => Write::Delete(attrs(&body["Key"])),
                            _ => Write::Check(attrs(&body["Key"])),
                        };
                        if let Some(reason) = reasons.as_ref().and_then(|r| r.get(i)) {
                            self.learn(state, table, &reason["Item"]);
                        }
                        // Two underlying writes per item: prepare and commit.
                        self.write(state, &mut call, table, write, 2.0, ok);
                    }
                }
                "GetItem" => {
                    let item = &response["Item"];
                    let projected = request["ProjectionExpression"].is_string();
                    // Read units are charged on the whole item, not on the attributes a
                    // projection returns: a projected read is sized as the item it read.
                    let whole = projected
                        .then(|| {
                            let id = self.schema.identity(table, &attrs(&request["Key"]));
                            state.shadow.get(&id).map(item_size)
                        })
                        .flatten();
                    let size = whole.unwrap_or_else(|| item.as_object().map_or(0, item_size));
                    call.rru = read_units(size, consistent);
                    call.entries = 1;
                    let what = match (item.is_object(), projected) {
                        (false, _) => "nothing found".into(),
                        (true, false) => self.label(&attrs(item)),
                        (true, true) => {
                            format!("{} (projected)", self.label(&attrs(&request["Key"])))
                        }
                    };
                    let consistency = if consistent {
                        ""
                    } else {
                        ", eventually consistent"
                    };
                    call.items.push(format!("get {what} {size} B{consistency}"));
                    // A projected item is partial: not the item as it is.
                    if !projected {
                        self.learn(state, table, item);
                    }
                }
                "Query" | "Scan" => {
                    let items = response["Items"].as_array().cloned().unwrap_or_default();
                    let size: usize = items
                        .iter()
                        .map(|i| i.as_object().map_or(0, item_size))
                        .sum();
                    call.rru = read_units(size, consistent);
                    call.entries = items.len();
                    let index = request["IndexName"]
                        .as_str()
                        .map_or(String::new(), |i| format!(" on {i}"));
                    call.items
                        .push(format!("{} item(s){index}, {size} B in all", items.len()));
                    for item in &items {
                        self.learn(state, table, item);
                    }
                }
                "BatchGetItem" => {
                    // Each item is rounded up on its own.
                    let tables = response["Responses"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    for (table, items) in &tables {
                        let strong = request["RequestItems"][table]["ConsistentRead"] == true;
                        for item in items.as_array().into_iter().flatten() {
                            let size = item.as_object().map_or(0, item_size);
                            call.rru += read_units(size, strong);
                            call.entries += 1;
                            self.learn(state, table, item);
                        }
                    }
                }
                "TransactGetItems" => {
                    for r in response["Responses"].as_array().into_iter().flatten() {
                        let size = r["Item"].as_object().map_or(0, item_size);
                        call.rru += 2.0 * read_units(size, true);
                        call.entries += 1;
                    }
                }
                _ => call.items.push("not costed (no capacity rule here)".into()),
            }
            call
        }

        /// Learns an item DynamoDB returned (a read, or the item a failed condition returned).
        fn learn(&self, state: &mut State, table: &str, item: &Value) {
            if let Some(item) = item.as_object().filter(|i| !i.is_empty()) {
                let id = self.schema.identity(table, item);
                state.shadow.insert(id, item.clone());
            }
        }

        /// Costs one item write. Applied (the request succeeded): the larger of the item's
        /// size before and after, times `factor` (2 in a transaction), plus its index writes;
        /// the shadow then holds the item after. Not applied (a condition failed): the existing
        /// item's size (at least one unit), no index writes.
        fn write(
            &self,
            state: &mut State,
            call: &mut Call,
            table: &str,
            write: Write<'_>,
            factor: f64,
            applied: bool,
        ) {
            let key = match &write {
                Write::Put(item) => self.schema.key_of(item),
                Write::Update { key, .. } | Write::Delete(key) | Write::Check(key) => key.clone(),
            };
            let id = self.schema.identity(table, &key);
            let old = state.shadow.get(&id).cloned();
            let old_size = old.as_ref().map_or(0, item_size);
            let (verb, new) = match write {
                Write::Put(item) => ("put", Some(item)),
                Write::Update { request, after, .. } => {
                    let before = old.clone().unwrap_or_else(|| key.clone());
                    let estimated = after.is_none();
                    let new = after.unwrap_or_else(|| update::apply(before, request));
                    (
                        if estimated { "update (est.)" } else { "update" },
                        Some(new),
                    )
                }
                Write::Delete(_) => ("delete", None),
                Write::Check(_) => ("check", old.clone()),
            };
            let new_size = new.as_ref().map_or(0, item_size);
            let is_check = verb == "check";
            let size = if applied && !is_check {
                old_size.max(new_size)
            } else {
                old_size
            };
            let base = factor * write_units(size);
            let (index, index_note) = if applied && !is_check {
                self.schema.index_writes(old.as_ref(), new.as_ref())
            } else {
                (0.0, String::new())
            };
            call.wru += base + index;
            call.entries += 1;
            let what = self.label(new.as_ref().or(old.as_ref()).unwrap_or(&key));
            let mut line = if factor == 1.0 {
                format!("{verb} {what} {size} B: {base} WRU")
            } else {
                format!("{verb} {what} {size} B: {factor}×{} WRU", base / factor)
            };
            if !index_note.is_empty() {
                line.push_str(&format!(" + {index_note}"));
            }
            if !applied {
                line.push_str(" (not applied: condition failed)");
            }
            call.items.push(line);
            if applied {
                match (is_check, new) {
                    (true, _) => {}
                    (false, Some(new)) => {
                        state.shadow.insert(id, new);
                    }
                    (false, None) => {
                        state.shadow.remove(&id);
                    }
                }
            }
        }
    }

    /// Update expressions applied to the item as it was, to estimate its size after.
    ///
    /// `SET a = :v`, `SET a = b + :v` / `- :v`, `if_not_exists(a, :v)`, `list_append(a, :v)`
    /// (nested in one another too), `ADD a :v` (numbers and sets), `REMOVE a`; paths are taken
    /// at their top-level attribute (a nested `SET a.b = :v` is not modelled: this layout has
    /// none).
    mod update {
        use super::{Attrs, Value};

        const CLAUSES: [&str; 4] = ["SET", "REMOVE", "ADD", "DELETE"];

        struct Context {
            names: Attrs,
            values: Attrs,
        }

        impl Context {
            fn attribute(&self, path: &str) -> String {
                let top = path.trim().split(['.', '[']).next().unwrap_or("");
                match self.names.get(top).and_then(Value::as_str) {
                    Some(name) => name.to_string(),
                    None => top.to_string(),
                }
            }

            /// The value of an operand: a placeholder, a path, a function or a sum.
            fn eval(&self, item: &Attrs, operand: &str) -> Option<Value> {
                let operand = operand.trim();
                if let Some((left, sign, right)) = split_arithmetic(operand) {
                    let number = |t: &str| {
                        self.eval(item, t)
                            .and_then(|v| v["N"].as_str().and_then(|n| n.parse::<i128>().ok()))
                            .unwrap_or(0)
                    };
                    let (a, b) = (number(left), number(right));
                    let n = if sign == '+' { a + b } else { a - b };
                    return Some(serde_json::json!({ "N": n.to_string() }));
                }
                if let Some(args) = call_args(operand, "if_not_exists") {
                    let arg = |i: usize| args.get(i).and_then(|a| self.eval(item, a));
                    return arg(0).or_else(|| arg(1));
                }
                if let Some(args) = call_args(operand, "list_append") {
                    let joined: Vec<Value> = args
                        .iter()
                        .filter_map(|a| self.eval(item, a))
                        .filter_map(|l| l["L"].as_array().cloned())
                        .flatten()
                        .collect();
                    return Some(serde_json::json!({ "L": joined }));
                }
                if operand.starts_with(':') {
                    self.values.get(operand).cloned()
                } else {
                    item.get(&self.attribute(operand)).cloned()
                }
            }
        }

        pub fn apply(mut item: Attrs, request: &Value) -> Attrs {
            let context = Context {
                names: request["ExpressionAttributeNames"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                values: request["ExpressionAttributeValues"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            };
            let expression = request["UpdateExpression"].as_str().unwrap_or("");
            for (clause, body) in clauses(expression) {
                for action in split_top(&body) {
                    match clause.as_str() {
                        "SET" => {
                            let Some((path, rhs)) = action.split_once('=') else {
                                continue;
                            };
                            if let Some(value) = context.eval(&item, rhs) {
                                item.insert(context.attribute(path), value);
                            }
                        }
                        "ADD" => {
                            let mut parts = action.split_whitespace();
                            let (Some(path), Some(token)) = (parts.next(), parts.next()) else {
                                continue;
                            };
                            let Some(added) = context.eval(&item, token) else {
                                continue;
                            };
                            let name = context.attribute(path);
                            let merged = match (item.get(&name), added.as_object()) {
                                (Some(current), Some(a)) if a.contains_key("N") => {
                                    let n = |v: &Value| {
                                        v["N"].as_str().and_then(|n| n.parse::<i128>().ok())
                                    };
                                    let sum = n(current).unwrap_or(0) + n(&added).unwrap_or(0);
                                    serde_json::json!({ "N": sum.to_string() })
                                }
                                (Some(current), Some(a)) => {
                                    let (kind, new) = a.iter().next().expect("a set");
                                    let mut all: Vec<Value> =
                                        current[kind].as_array().cloned().unwrap_or_default();
                                    for v in new.as_array().into_iter().flatten() {
                                        if !all.contains(v) {
                                            all.push(v.clone());
                                        }
                                    }
                                    serde_json::json!({ kind.clone(): all })
                                }
                                _ => added,
                            };
                            item.insert(name, merged);
                        }
                        "REMOVE" if !action.contains(['.', '[']) => {
                            item.remove(&context.attribute(&action));
                        }
                        // DELETE (elements from a set): the item only shrinks; keep it as is.
                        _ => {}
                    }
                }
            }
            item
        }

        /// `a + b` or `a - b` at the top level (outside parentheses): the last such sign.
        fn split_arithmetic(operand: &str) -> Option<(&str, char, &str)> {
            let mut depth = 0i32;
            let mut at = None;
            for (i, c) in operand.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    '+' | '-' if depth == 0 => at = Some((i, c)),
                    _ => {}
                }
            }
            let (i, sign) = at?;
            Some((&operand[..i], sign, &operand[i + 1..]))
        }

        /// `(CLAUSE, its actions)` in order of appearance.
        fn clauses(expression: &str) -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = Vec::new();
            for token in expression.split_whitespace() {
                let upper = token.to_ascii_uppercase();
                if CLAUSES.contains(&upper.as_str()) {
                    out.push((upper, String::new()));
                } else if let Some((_, body)) = out.last_mut() {
                    if !body.is_empty() {
                        body.push(' ');
                    }
                    body.push_str(token);
                }
            }
            out
        }

        /// Splits on the commas outside parentheses.
        fn split_top(body: &str) -> Vec<String> {
            let mut parts = vec![String::new()];
            let mut depth = 0i32;
            for c in body.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(String::new());
                        continue;
                    }
                    _ => {}
                }
                parts.last_mut().expect("one part").push(c);
            }
            parts
                .into_iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        }

        /// The arguments of `function(…)`, split on the commas outside nested parentheses.
        fn call_args(operand: &str, function: &str) -> Option<Vec<String>> {
            let inner = operand.strip_prefix(function)?.trim().strip_prefix('(')?;
            let inner = inner.strip_suffix(')')?;
            Some(split_top(inner))
        }
    }

    // ------------------------------------------------------------------------------- SNS

    /// The fields of an awsQuery (form-encoded) body.
    fn form(body: &[u8]) -> Vec<(String, String)> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        String::from_utf8_lossy(body)
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    /// SNS bills every published message as one request per 64 KB chunk, batched or not.
    pub const SNS_CHUNK: usize = 64 * 1024;

    /// A Publish or PublishBatch request: its billed requests, one line per message.
    fn sns(action: &str, body: &[u8], ok: bool) -> Call {
        #[derive(Default)]
        struct Entry {
            body: String,
            attributes: BTreeMap<usize, [String; 3]>,
        }
        let mut entries: BTreeMap<usize, Entry> = BTreeMap::new();
        for (key, value) in form(body) {
            // PublishBatchRequestEntries.member.N.<field>, or <field> for Publish.
            let (index, field) = match key.strip_prefix("PublishBatchRequestEntries.member.") {
                Some(rest) => match rest.split_once('.') {
                    Some((n, field)) => (n.parse().unwrap_or(0), field.to_string()),
                    None => continue,
                },
                None if action == "Publish" => (1, key.clone()),
                None => continue,
            };
            let entry = entries.entry(index).or_default();
            if field == "Message" {
                entry.body = value;
            } else if let Some(rest) = field.strip_prefix("MessageAttributes.entry.") {
                let Some((m, part)) = rest.split_once('.') else {
                    continue;
                };
                let slot = match part {
                    "Name" => 0,
                    "Value.DataType" => 1,
                    "Value.StringValue" | "Value.BinaryValue" => 2,
                    _ => continue,
                };
                let attribute = entry.attributes.entry(m.parse().unwrap_or(0)).or_default();
                attribute[slot] = value;
            }
        }
        let mut call = Call {
            service: "SNS",
            action: action.to_string(),
            ok,
            ..Call::default()
        };
        for entry in entries.into_values() {
            let bytes = entry.body.len()
                + entry
                    .attributes
                    .values()
                    .map(|a| a.iter().map(String::len).sum::<usize>())
                    .sum::<usize>();
            let chunks = bytes.div_ceil(SNS_CHUNK).max(1) as f64;
            let attributes: BTreeMap<String, String> = entry
                .attributes
                .into_values()
                .map(|[name, _, value]| (name, value))
                .collect();
            let kind = attributes.get("event_type").cloned().unwrap_or_default();
            call.billed += chunks;
            call.entries += 1;
            call.items
                .push(format!("{kind} {bytes} B: {chunks} request"));
        }
        call
    }
}

// ================================================================================================
// The cost model: prices, the stream event source, Lambda durations.
// ================================================================================================

pub mod model {
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
}

// ================================================================================================
// The rig: the deployed Lambda path on moto.
// ================================================================================================

pub mod rig {
    use std::sync::Arc;
    use std::time::Instant;

    use aws_lambda_events::event::dynamodb;
    use aws_sdk_dynamodbstreams::types::{AttributeValue, Record};
    use chat21::adapters::dynamo::DynamoStore;
    use chat21::adapters::dynamo::stream::{ORIGIN, streamed_of};
    use chat21::adapters::sns::SnsEvents;
    use chat21::adapters::system::{SystemClock, UuidIds};
    use chat21::entry::http::Api;
    use chat21::entry::stream::handle_stream;
    use chat21::ops::Deps;
    use chat21::ports::NoRealtime;
    use chat21::routes::{self, Match};
    use serde_json::{Value, json};

    use crate::common;
    use crate::model::CostModel;
    use crate::recorder::{Recorder, Service, TableSchema};
    use crate::{Invocation, Outcome, StreamCount};

    /// What every scenario shares: the recorded clients, the topic, the model.
    pub struct Env {
        pub recorder: Recorder,
        pub model: CostModel,
        config: aws_config::SdkConfig,
        plain: aws_sdk_dynamodb::Client,
        dynamo: aws_sdk_dynamodb::Client,
        sns: aws_sdk_sns::Client,
        topic_arn: String,
        settings: chat21::ops::Settings,
    }

    impl Env {
        pub async fn new(schema: TableSchema, model: CostModel) -> Env {
            let config = common::aws_config().await;
            let recorder = Recorder::new(schema);
            let dynamo = aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(recorder.spy(Service::DynamoDb))
                .build();
            let sns = aws_sdk_sns::config::Builder::from(&config)
                .interceptor(recorder.spy(Service::Sns))
                .build();
            let topic_arn = aws_sdk_sns::Client::new(&config)
                .create_topic()
                .name(common::unique("events"))
                .send()
                .await
                .expect("create the topic on moto")
                .topic_arn
                .expect("a topic ARN");
            // As deployed: DELIVERED_EVENTS from the environment, default true.
            let settings =
                chat21::ops::Settings::from_lookup(chat21::config::env).expect("DELIVERED_EVENTS");
            Env {
                recorder,
                model,
                plain: aws_sdk_dynamodb::Client::new(&config),
                dynamo: aws_sdk_dynamodb::Client::from_conf(dynamo),
                sns: aws_sdk_sns::Client::from_conf(sns),
                config,
                topic_arn,
                settings,
            }
        }

        pub fn delivered_events(&self) -> bool {
            self.settings.delivered_events
        }
    }

    /// One fresh table with the production schema (its stream on, new images), the API on it
    /// as `entry::lambda::aws_deps` builds it (DynamoDB store, SNS events, no real-time endpoint,
    /// system clock, UUIDs), and the table's stream as deliver's event source reads it. The
    /// stream is read by a client of its own, not recorded: Lambda's reads of a stream that
    /// triggers it are free.
    pub struct Rig<'e> {
        env: &'e Env,
        api: Api,
        stream: common::StreamReader,
    }

    /// The origins of the new message items deliver delivers (a group change's system
    /// messages, `origin: system`, are delivered by the settled change instead).
    const DELIVERED_ORIGINS: [&str; 3] = ["direct", "group", "inline"];

    /// Whether the deliver function's event source passes a stream record on. Mirrors the
    /// FilterCriteria of the deliver function's `TableStream` event in template.yaml:
    ///
    /// ```yaml
    /// FilterCriteria:
    ///   Filters:
    ///     - Pattern: '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"origin": {"S": ["direct", "group", "inline"]}}}}'
    ///     - Pattern: '{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"settled": {"BOOL": [true]}}}}'
    /// ```
    ///
    /// new message items, and group change records once settled. Everything else
    /// (conversation rows, memberships, group metas, system messages, change records not yet
    /// settled, removals) is dropped by the event source: free, no invocation.
    fn passes_filter(record: &Record) -> bool {
        let Some(image) = record.dynamodb().and_then(|d| d.new_image()) else {
            return false;
        };
        let event = record.event_name().map(|e| e.as_str());
        let new_message = matches!(
            image.get(ORIGIN),
            Some(AttributeValue::S(origin)) if DELIVERED_ORIGINS.contains(&origin.as_str())
        );
        let settled = matches!(image.get("settled"), Some(AttributeValue::Bool(true)));
        (event == Some("INSERT") && new_message) || (event == Some("MODIFY") && settled)
    }

    /// Whether deliver acts on a record (what `entry::stream::handle_stream` reads from it).
    fn deliver_acts_on(record: &Record) -> bool {
        let Some(image) = record.dynamodb().and_then(|d| d.new_image()) else {
            return false;
        };
        matches!(streamed_of(image.clone().into()), Ok(Some(_)))
    }

    /// Stream records as Lambda hands them to the deliver function.
    fn lambda_event(records: &[Record]) -> dynamodb::Event {
        let records: Vec<Value> = records
            .iter()
            .map(|r| {
                let d = r.dynamodb().expect("a DynamoDB stream record");
                let image: serde_dynamo::Item = d.new_image().cloned().unwrap_or_default().into();
                let keys: serde_dynamo::Item = d.keys().cloned().unwrap_or_default().into();
                json!({
                    "eventID": r.event_id(),
                    "eventName": r.event_name().map(|e| e.as_str()),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": {
                        "ApproximateCreationDateTime": 1_700_000_000,
                        "Keys": keys,
                        "NewImage": image,
                        "SequenceNumber": d.sequence_number(),
                        "SizeBytes": d.size_bytes(),
                        "StreamViewType": "NEW_IMAGE"
                    },
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/chat21/stream/2026-01-01T00:00:00.000"
                })
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("a DynamoDB stream event")
    }

    impl<'e> Rig<'e> {
        pub async fn fresh(env: &'e Env) -> Rig<'e> {
            let table = common::unique("cost");
            common::create_table(&env.plain, &table).await;
            let clock = Arc::new(SystemClock);
            let deps = Deps {
                store: Arc::new(DynamoStore::new(env.dynamo.clone(), table.clone())),
                events: Arc::new(SnsEvents::new(env.sns.clone(), env.topic_arn.clone())),
                realtime: Arc::new(NoRealtime),
                clock,
                ids: Arc::new(UuidIds),
                settings: env.settings.clone(),
            };
            Rig {
                env,
                api: common::api_on(deps),
                stream: common::StreamReader::new(&env.config, &table),
            }
        }

        fn url(path: &str) -> String {
            format!("/api/{}{path}", common::APP)
        }

        async fn http(
            &self,
            method: &str,
            path: &str,
            caller: &str,
            body: Option<&Value>,
        ) -> (u16, Value) {
            let body = body.map(Value::to_string);
            let token = common::token(caller);
            common::call(
                &self.api,
                method,
                &Self::url(path),
                Some(&token),
                body.as_deref().map(str::as_bytes),
            )
            .await
        }

        /// A setup call (not measured); panics unless it succeeds.
        pub async fn call(
            &self,
            method: &str,
            path: &str,
            caller: &str,
            body: Option<Value>,
        ) -> Value {
            let (status, answer) = self.http(method, path, caller, body.as_ref()).await;
            assert!(
                (200..300).contains(&status),
                "{method} {path}: {status} {answer}"
            );
            answer
        }

        /// Delivers everything written so far, unmeasured.
        pub async fn settle(&self) {
            self.env.recorder.take_calls();
            self.deliver().await;
            self.env.recorder.take_calls();
        }

        /// Measures one HTTP call and everything it sets off.
        pub async fn measure(
            &self,
            name: &str,
            what: &str,
            method: &str,
            path: &str,
            caller: &str,
            body: Option<Value>,
        ) -> Outcome {
            self.settle().await;
            let function =
                match routes::find(method, &Self::url(path.split('?').next().unwrap_or(path))) {
                    Match::Found(route, _) => route.function().to_string(),
                    other => panic!("{method} {path} is not routed: {other:?}"),
                };
            let started = Instant::now();
            let (status, answer) = self.http(method, path, caller, body.as_ref()).await;
            let wall = started.elapsed();
            assert!((200..300).contains(&status), "{name}: {status} {answer}");
            let http = Invocation {
                function,
                calls: self.env.recorder.take_calls(),
                wall,
                records: 0,
            };
            let (deliveries, stream) = self.deliver().await;
            Outcome {
                name: name.to_string(),
                what: what.to_string(),
                http,
                answer,
                deliveries,
                stream,
            }
        }

        /// The table's stream → deliver, as the event source mapping runs it: the records
        /// written since the last read, filtered, in batches, each batch one invocation of
        /// `entry::stream::handle_stream`; again until the stream holds nothing new (deliver's own
        /// writes are records too, which the filter drops).
        async fn deliver(&self) -> (Vec<Invocation>, StreamCount) {
            let batch_size = self.env.model.source.batch_size;
            let mut invocations = Vec::new();
            let mut count = StreamCount::default();
            loop {
                let records = self.stream.records().await;
                if records.is_empty() {
                    return (invocations, count);
                }
                count.records += records.len();
                let mut passed = Vec::new();
                for record in records {
                    let acts = deliver_acts_on(&record);
                    let passes = passes_filter(&record);
                    assert!(
                        passes || !acts,
                        "the filter drops a record deliver needs: {record:?}"
                    );
                    if passes {
                        count.idle += usize::from(!acts);
                        passed.push(record);
                    }
                }
                count.passed += passed.len();
                for batch in passed.chunks(batch_size) {
                    let event = lambda_event(batch);
                    let started = Instant::now();
                    let response = handle_stream(&self.api.deps, event).await;
                    let wall = started.elapsed();
                    assert!(
                        response.batch_item_failures.is_empty(),
                        "deliver failed: {response:?}"
                    );
                    invocations.push(Invocation {
                        function: "deliver".into(),
                        calls: self.env.recorder.take_calls(),
                        wall,
                        records: batch.len(),
                    });
                }
            }
        }
    }
}

// ================================================================================================
// The scenarios: what is measured. Everything above is layout-agnostic; the item names below
// are this table layout's (keys.rs).
// ================================================================================================

pub mod scenarios {
    use serde_json::{Map, Value, json};

    use crate::Outcome;
    use crate::recorder::{Attrs, TableSchema};
    use crate::rig::{Env, Rig};
    use chat21::adapters::dynamo::request::{ORDER, PK, SK};

    /// The table as template.yaml declares it.
    pub fn schema() -> TableSchema {
        TableSchema {
            key: [PK, SK],
            lsi_sort_keys: vec![ORDER],
            label,
        }
    }

    /// Names an item by its key shape (keys.rs).
    fn label(item: &Attrs) -> String {
        let text = |k: &str| item.get(k).and_then(|v| v["S"].as_str()).unwrap_or("");
        let (pk, sk) = (text(PK), text(SK));
        let kind = pk.split('#').nth(1).unwrap_or("");
        match (kind, sk) {
            ("D", _) => "direct timeline message",
            ("H", _) => "group history message",
            ("T", _) => "inline copy",
            ("U", s) if s.starts_with("C#") => "conversation row",
            ("G", "GROUP") => "group meta",
            ("G", s) if s.starts_with("M#") => "membership",
            ("G", s) if s.starts_with("C#") => "group change record",
            _ => "item",
        }
        .to_string()
    }

    pub const TEXT: &str = "Hi! Are we still on for the design review at 3pm tomorrow?";
    pub const REPLY: &str = "Yes, see you there. I'll bring the mockups.";
    pub const GROUP_NAME: &str = "Project Phoenix";
    /// Messages in the conversation deleted permanently.
    pub const DELETED_MESSAGES: usize = 10;
    /// Conversations of the user who lists them.
    pub const LISTED_CONVERSATIONS: usize = 10;
    /// Messages in the timeline read (one page: the default limit is 200).
    pub const TIMELINE_MESSAGES: usize = 50;

    /// A user id shaped like Tiledesk's (a 24-hex-digit ObjectId).
    fn user_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..24].to_string()
    }

    fn direct(to: &str, text: &str) -> Value {
        json!({
            "sender_fullname": "Alice Johnson",
            "recipient_id": to,
            "recipient_fullname": "Bob Smith",
            "text": text,
        })
    }

    fn to_group(group: &str, text: &str) -> Value {
        json!({
            "sender_fullname": "Alice Johnson",
            "recipient_id": group,
            "recipient_fullname": GROUP_NAME,
            "channel_type": "group",
            "text": text,
        })
    }

    fn ids(members: &[String]) -> Value {
        let map: Map<String, Value> = members.iter().map(|m| (m.clone(), json!(1))).collect();
        Value::Object(map)
    }

    fn create_body(members: &[String]) -> Value {
        json!({ "group_name": GROUP_NAME, "group_members": ids(members) })
    }

    /// Two users who exchanged `n` messages (alternating), each delivered before the reply.
    async fn conversation(rig: &Rig<'_>, n: usize) -> (String, String) {
        let (a, b) = (user_id(), user_id());
        for i in 0..n {
            let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let text = if i % 2 == 0 { TEXT } else { REPLY };
            rig.call("POST", "/messages", from, Some(direct(to, text)))
                .await;
            rig.settle().await;
        }
        (a, b)
    }

    pub async fn run(env: &Env) -> Vec<Outcome> {
        let mut out = Vec::new();

        // Direct message, then read and archive on the same conversation.
        let chat = Rig::fresh(env).await;
        let (alice, bob) = conversation(&chat, 2).await;
        let sent = chat
            .measure(
                "direct message",
                "send + deliver, in a conversation both users already have",
                "POST",
                "/messages",
                &alice,
                Some(direct(&bob, TEXT)),
            )
            .await;
        out.push(sent);

        // A group message to 100 members (the sender one of them).
        let big = Rig::fresh(env).await;
        let owner = user_id();
        let members: Vec<String> = (0..97).map(|_| user_id()).collect();
        let group = big
            .call("POST", "/groups", &owner, Some(create_body(&members)))
            .await;
        let group = group["group"]["uid"]
            .as_str()
            .expect("group uid")
            .to_string();
        for _ in 0..2 {
            let join = json!({ "member_id": user_id() });
            big.call(
                "POST",
                &format!("/groups/{group}/members"),
                &owner,
                Some(join),
            )
            .await;
        }
        // The setup's changes are delivered (one row update per member each); one earlier
        // message makes a member's message the last of every member's conversation.
        big.settle().await;
        big.call("POST", "/messages", &owner, Some(to_group(&group, REPLY)))
            .await;
        big.settle().await;
        out.push(
            big.measure(
                "group message (100 members)",
                "send (once, into the group history) + fan-out to the 100 members' conversation rows (the sender's included), each row there already",
                "POST",
                "/messages",
                &owner,
                Some(to_group(&group, TEXT)),
            )
            .await,
        );

        // Group creations, all their system messages fanned out.
        for size in [10, 20] {
            let rig = Rig::fresh(env).await;
            let owner = user_id();
            let members: Vec<String> = (1..size).map(|_| user_id()).collect();
            let created = rig
                .measure(
                    &format!("create group ({size} members)"),
                    &format!("the creator + {} members; GROUP_CREATED and {size} MEMBER_JOINED_GROUP messages written once into the history, each member's row updated once for the run", size - 1),
                    "POST",
                    "/groups",
                    &owner,
                    Some(create_body(&members)),
                )
                .await;
            out.push(created.clone());
            if size != 20 {
                continue;
            }
            // Join, leave, set-members on the 20-member group just created.
            let group = created.answer["group"]["uid"]
                .as_str()
                .expect("uid")
                .to_string();
            let newcomer = user_id();
            out.push(
                rig.measure(
                    "join",
                    "the owner adds a member to the 20-member group (21 system messages in its history before; the joiner's view opens on them, nothing copied)",
                    "POST",
                    &format!("/groups/{group}/members"),
                    &owner,
                    Some(json!({ "member_id": newcomer })),
                )
                .await,
            );
            out.push(
                rig.measure(
                    "leave",
                    "that member leaves (21 members before, 20 after; the leaver's row gets MEMBER_LEFT_GROUP too, and its view closes there)",
                    "DELETE",
                    &format!("/groups/{group}/members/{newcomer}"),
                    &newcomer,
                    None,
                )
                .await,
            );
            let mut wanted: Vec<String> = members[2..].to_vec();
            wanted.push(owner.clone());
            wanted.extend([user_id(), user_id()]);
            out.push(
                rig.measure(
                    "set-members",
                    "the owner replaces the 20 members: 2 removed, 2 added (4 system messages; the 2 joiners' views open on the history)",
                    "PUT",
                    &format!("/groups/{group}/members"),
                    &owner,
                    Some(json!({ "members": ids(&wanted) })),
                )
                .await,
            );
        }

        out.push(
            chat.measure(
                "mark read",
                "the recipient marks the direct conversation read (their row, then the peer's read mark)",
                "POST",
                &format!("/{bob}/conversations/{alice}/read"),
                &bob,
                None,
            )
            .await,
        );
        out.push(
            chat.measure(
                "archive",
                "the recipient archives the direct conversation",
                "DELETE",
                &format!("/conversations/{alice}"),
                &bob,
                None,
            )
            .await,
        );

        let rig = Rig::fresh(env).await;
        let (carol, dave) = conversation(&rig, DELETED_MESSAGES).await;
        out.push(
            rig.measure(
                &format!("delete ({DELETED_MESSAGES} messages)"),
                &format!("permanent delete of a direct conversation of {DELETED_MESSAGES} messages (the caller's row becomes a tombstone; the shared timeline stays)"),
                "DELETE",
                &format!("/conversations/{dave}?delete=true"),
                &carol,
                None,
            )
            .await,
        );

        let rig = Rig::fresh(env).await;
        let erin = user_id();
        for _ in 0..LISTED_CONVERSATIONS {
            rig.call("POST", "/messages", &user_id(), Some(direct(&erin, TEXT)))
                .await;
        }
        rig.settle().await;
        out.push(
            rig.measure(
                "list conversations",
                &format!(
                    "a user with {LISTED_CONVERSATIONS} active conversations lists them (one page)"
                ),
                "GET",
                &format!("/{erin}/conversations"),
                &erin,
                None,
            )
            .await,
        );

        let rig = Rig::fresh(env).await;
        let (frank, gina) = conversation(&rig, TIMELINE_MESSAGES).await;
        out.push(
            rig.measure(
                "get timeline",
                &format!("a conversation of {TIMELINE_MESSAGES} messages, read in one page (default limit 200)"),
                "GET",
                &format!("/{frank}/conversations/{gina}/messages"),
                &frank,
                None,
            )
            .await,
        );
        out
    }
}

// ================================================================================================
// The report.
// ================================================================================================

pub mod report {
    use std::collections::BTreeMap;
    use std::fmt::Write;

    use crate::Outcome;
    use crate::model::{Bill, CostModel, LambdaModel};
    use crate::recorder::Call;

    fn units(x: f64) -> String {
        // A sum of nothing is -0.0.
        let x = x + 0.0;
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    }

    fn records(n: usize) -> String {
        format!("{n} record{}", if n == 1 { "" } else { "s" })
    }

    fn dollars(x: f64) -> String {
        format!("{:.2}", x * 1e6 + 0.0)
    }

    /// `Action ×n, …` in first-seen order.
    fn by_action<'a>(calls: impl Iterator<Item = &'a Call>) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for c in calls {
            let name = c.action.clone();
            match counts.iter_mut().find(|(a, _)| *a == name) {
                Some((_, n)) => *n += 1,
                None => counts.push((name, 1)),
            }
        }
        counts
            .iter()
            .map(|(a, n)| {
                if *n == 1 {
                    a.clone()
                } else {
                    format!("{a} ×{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn per_service<'a>(
        calls: impl Iterator<Item = &'a Call>,
    ) -> BTreeMap<&'static str, Vec<&'a Call>> {
        let mut map: BTreeMap<&'static str, Vec<&Call>> = BTreeMap::new();
        for c in calls {
            map.entry(c.service).or_default().push(c);
        }
        map
    }

    pub fn render(outcomes: &[Outcome], model: &CostModel, delivered_events: bool) -> String {
        let mut r = String::new();
        let bills: Vec<Bill> = outcomes.iter().map(|o| model.bill(o)).collect();
        let _ = writeln!(r, "# Cost per API operation (us-east-1 list prices)\n");
        let _ = writeln!(
            r,
            "Every AWS request counted on the wire against moto; `DELIVERED_EVENTS={delivered_events}`. \
             Deliver runs on the table's stream as its event source mapping would (filter, batches; see below). \
             $ are per million operations.\n"
        );
        let _ = writeln!(
            r,
            "| operation | critical path (HTTP call) | total requests: DynamoDB · SNS (billed msgs) · Lambda · API GW | WRU | RRU | $ / 1M ops |"
        );
        let _ = writeln!(r, "|---|---|---|--:|--:|--:|");
        for (o, bill) in outcomes.iter().zip(&bills) {
            let critical = per_service(o.http.calls.iter());
            let crit = critical
                .iter()
                .map(|(s, c)| format!("{s} {}", c.len()))
                .collect::<Vec<_>>()
                .join(" + ");
            let all = per_service(o.wire());
            let count = |s: &str| all.get(s).map_or(0, Vec::len);
            let sns_billed: f64 = all.get("SNS").into_iter().flatten().map(|c| c.billed).sum();
            let wru: f64 = o.wire().map(|c| c.wru).sum();
            let rru: f64 = o.wire().map(|c| c.rru).sum();
            let _ = writeln!(
                r,
                "| {} | {} ({crit}) | {} · {} ({}) · {} · 1 | {} | {} | {} |",
                o.name,
                o.http.calls.len(),
                count("DynamoDB"),
                count("SNS"),
                units(sns_billed),
                o.invocations().count(),
                units(wru),
                units(rru),
                dollars(bill.total()),
            );
        }

        let _ = writeln!(r, "\n## $ per million operations, by what is paid for\n");
        let _ = writeln!(
            r,
            "| operation | DynamoDB writes | DynamoDB reads | SNS | Lambda requests | Lambda GB-s | HTTP API | total |"
        );
        let _ = writeln!(r, "|---|--:|--:|--:|--:|--:|--:|--:|");
        for (o, b) in outcomes.iter().zip(&bills) {
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} | {} | {} | {} | **{}** |",
                o.name,
                dollars(b.dynamo_writes),
                dollars(b.dynamo_reads),
                dollars(b.sns),
                dollars(b.lambda_requests),
                dollars(b.lambda_duration),
                dollars(b.http_api),
                dollars(b.total()),
            );
        }

        let _ = writeln!(r, "\n## Requests by action\n");
        let _ = writeln!(
            r,
            "| operation | what | critical path, in order | asynchronous (deliver invocations × records; the stream) | billed Lambda ms (HTTP; deliver) | moto wall time |"
        );
        let _ = writeln!(r, "|---|---|---|---|---|--:|");
        for o in outcomes {
            let critical = o
                .http
                .calls
                .iter()
                .map(|c| format!("{}:{}", short(c.service), c.action))
                .collect::<Vec<_>>()
                .join(" → ");
            let deliver_calls = o.deliveries.iter().flat_map(|d| d.calls.iter());
            let mut asynchronous = per_service(deliver_calls)
                .iter()
                .map(|(s, c)| format!("{}: {}", short(s), by_action(c.iter().copied())))
                .collect::<Vec<_>>();
            if o.stream.records > 0 {
                let skipped = if o.stream.idle > 0 {
                    format!(", {} of them skipped by deliver", o.stream.idle)
                } else {
                    String::new()
                };
                asynchronous.push(format!(
                    "stream: {}, {} passed the filter{skipped}",
                    records(o.stream.records),
                    o.stream.passed
                ));
            }
            if !o.deliveries.is_empty() {
                let records: Vec<String> =
                    o.deliveries.iter().map(|d| d.records.to_string()).collect();
                asynchronous.insert(
                    0,
                    format!("{} × [{}]", o.deliveries.len(), records.join(", ")),
                );
            }
            let deliver_ms: Vec<String> = o
                .deliveries
                .iter()
                .map(|d| units(model.lambda.billed_ms(d)))
                .collect();
            let wall: std::time::Duration = o.invocations().map(|i| i.wall).sum();
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} | {}; {} | {:.2?} |",
                o.name,
                o.what,
                if critical.is_empty() {
                    "—".into()
                } else {
                    critical
                },
                if asynchronous.is_empty() {
                    "—".into()
                } else {
                    asynchronous.join("<br>")
                },
                units(model.lambda.billed_ms(&o.http)),
                if deliver_ms.is_empty() {
                    "—".into()
                } else {
                    deliver_ms.join(", ")
                },
                wall,
            );
        }
        r
    }

    /// Identical lines once, counted: `20 × put timeline copy …`.
    fn compact(lines: &[String]) -> Vec<String> {
        let mut counted: Vec<(&String, usize)> = Vec::new();
        for line in lines {
            match counted.iter_mut().find(|(l, _)| *l == line) {
                Some((_, n)) => *n += 1,
                None => counted.push((line, 1)),
            }
        }
        counted
            .into_iter()
            .map(|(l, n)| {
                if n == 1 {
                    l.clone()
                } else {
                    format!("{n} × {l}")
                }
            })
            .collect()
    }

    fn short(service: &str) -> &str {
        match service {
            "DynamoDB" => "ddb",
            "SNS" => "sns",
            other => other,
        }
    }

    /// Every request of one operation, with what each item or message cost.
    pub fn itemise(o: &Outcome, model: &CostModel) -> String {
        let mut r = String::new();
        let p = &model.prices;
        let _ = writeln!(r, "\n## Itemised: {} ({})\n", o.name, o.what);
        let _ = writeln!(
            r,
            "| # | phase | service | action | items | WRU | RRU | billed requests |"
        );
        let _ = writeln!(r, "|--:|---|---|---|---|--:|--:|--:|");
        let mut n = 0;
        let mut row = |r: &mut String, phase: &str, c: &Call| {
            n += 1;
            let billed = match c.service {
                "DynamoDB" => String::new(),
                _ => units(c.billed),
            };
            let zero = |x: f64| if x == 0.0 { String::new() } else { units(x) };
            let _ = writeln!(
                r,
                "| {n} | {phase} | {} | {}{} | {} | {} | {} | {billed} |",
                c.service,
                c.action,
                if c.ok { "" } else { " (failed)" },
                compact(&c.items).join("<br>"),
                zero(c.wru),
                zero(c.rru),
            );
        };
        let http_phase = format!("HTTP {}", o.http.function);
        for c in &o.http.calls {
            row(&mut r, &http_phase, c);
        }
        for (i, d) in o.deliveries.iter().enumerate() {
            let phase = format!("deliver #{} ({})", i + 1, records(d.records));
            for c in &d.calls {
                row(&mut r, &phase, c);
            }
        }
        let wru: f64 = o.wire().map(|c| c.wru).sum();
        let rru: f64 = o.wire().map(|c| c.rru).sum();
        let sns: f64 = o
            .wire()
            .filter(|c| c.service == "SNS")
            .map(|c| c.billed)
            .sum();
        let _ = writeln!(
            r,
            "| | | | **total** | | **{}** | **{}** | SNS {} |",
            units(wru),
            units(rru),
            units(sns),
        );
        let _ = writeln!(r);
        for inv in o.invocations() {
            let ms = model.lambda.billed_ms(inv);
            let _ = writeln!(
                r,
                "- Lambda `{}`: 1 request, {} ms billed (model) × {} MB = {:.6} GB-s",
                inv.function,
                units(ms),
                model.lambda.memory_mb,
                model.lambda.gb_seconds(inv)
            );
        }
        let _ = writeln!(r, "- API Gateway HTTP API: 1 request");
        let _ = writeln!(
            r,
            "- Stream: {}, {} passed the filter to deliver{} (reads by the trigger free)",
            records(o.stream.records),
            o.stream.passed,
            if o.stream.idle > 0 {
                format!(", {} of them skipped by deliver", o.stream.idle)
            } else {
                String::new()
            }
        );
        let b = model.bill(o);
        let _ = writeln!(
            r,
            "- $ per million: DynamoDB {} × {} + {} × {} = {} · SNS {} × {} = {} · Lambda {} · HTTP API {} · **total {}**",
            units(wru),
            p.wru,
            units(rru),
            p.rru,
            dollars(b.dynamo_writes + b.dynamo_reads),
            units(sns),
            p.sns_request,
            dollars(b.sns),
            dollars(b.lambda_requests + b.lambda_duration),
            dollars(b.http_api),
            dollars(b.total()),
        );
        r
    }

    pub fn assumptions(model: &CostModel, outcomes: &[Outcome]) -> String {
        let p = &model.prices;
        let l = &model.lambda;
        // The critical path counts the HTTP call's requests one after the other: check that
        // the code did send them so (none sent while another was in flight).
        let parallel: Vec<&str> = outcomes
            .iter()
            .filter(|o| LambdaModel::overlapped(&o.http.calls))
            .map(|o| o.name.as_str())
            .collect();
        let sequential = if parallel.is_empty() {
            "every HTTP call sent its requests one after the other (checked on the wire: none was sent while another was in flight), \
so the critical path is their count and the sum of their latencies"
                .to_string()
        } else {
            format!(
                "the HTTP calls of {} had requests in flight together; the critical path still counts each request",
                parallel.join(", ")
            )
        };
        let fanned: Vec<&str> = outcomes
            .iter()
            .filter(|o| {
                o.deliveries
                    .iter()
                    .any(|d| LambdaModel::overlapped(&d.calls))
            })
            .map(|o| o.name.as_str())
            .collect();
        format!(
            "\n## Models and assumptions\n\n\
- **Prices** (us-east-1, list, no free tier): DynamoDB on-demand ${} per million WRU, ${} per million RRU; \
SNS ${} per million requests; Lambda ${} per million requests + ${} per GB-s (arm64); \
API Gateway HTTP API ${} per million requests. Storage, data transfer, CloudWatch Logs and PITR are not included.\n\
- **Write units**: each item write is 1 WRU per KB of the item (DynamoDB's size rules: attribute names + values; \
strings UTF-8 bytes, numbers 1 byte per 2 significant digits + 1, booleans/null 1, maps and lists 3 + 1 per element + contents), \
rounded up per item; the larger of the item before and after (PutItem over an existing item, UpdateItem). \
TransactWriteItems: ×2 per action, condition checks included (sized as the checked item). \
A write whose condition fails (alone, or a cancelled transaction) is charged on the existing item's size (at least 1), with no index writes; a request refused otherwise (throttling, validation) is not charged.\n\
- **UpdateItem size**: exact when the response returns the new item (`ALL_NEW`); otherwise estimated by applying \
the update expression (`SET`, `ADD`, `REMOVE`, `if_not_exists`, `list_append`, arithmetic) to the item as last seen on the wire in this run \
(every run starts on a fresh table, so the previous state of every item is known; an `ALL_OLD` response or a failed condition's item corrects it).\n\
- **LSI `by_order`** (ALL projection, an entry ≈ the item): only items with `order_key` have an entry (messages; conversation rows, \
group metas, memberships and change records have none and cost no index write). +1 per KB when such an item is put or its entry is \
rewritten (an update that keeps `order_key`), +2 (delete old entry + put new) when `order_key` changes, +1 when the entry \
is removed (item deleted, or `order_key` removed). Index writes are counted once, not doubled inside transactions.\n\
- **Read units**: the sizes of the items returned, summed per Query (per item for GetItem), rounded up per 4 KB; \
strongly consistent reads 1 per 4 KB, eventually consistent 0.5 (the adapter's GetItem of one attribute of a row). A read that finds nothing costs the minimum unit.\n\
- **SNS**: each message of a PublishBatch is billed as one request per 64 KB (body + attributes).\n\
- **The stream → deliver** (the table's DynamoDB stream, new images, is the outbox; no queue): the stream itself costs no write units, \
and Lambda's GetRecords calls for a trigger are free. The event source mapping's FilterCriteria (template.yaml) pass only INSERTs of new \
message items (`origin` direct, group or inline) and MODIFYs of group change records to `settled = true`; filtered-out records are free \
(not invocations). The rest go to `entry::stream::handle_stream` in batches of up to {} records, one invocation each; an operation's records are \
taken as arriving together, so they fill one batch (with traffic spread over polls, or split by the mapping's ParallelizationFactor \
across partition keys, at most one invocation per record; every operation here passes at most one record). Repeated until the stream \
holds nothing new (deliver's own writes are records too, all filtered out). No SQS request is made per operation any more \
(the dead-letter queue only receives what deliver fails on for good).\n\
- **Lambda**: one invocation per HTTP call and one per deliver batch; billed duration = {} ms of handler time + an assumed \
in-region latency per request it waits for (DynamoDB GetItem/PutItem/UpdateItem/DeleteItem 5 ms, Query 6 ms, \
BatchWriteItem 10 ms, TransactWriteItems 10 ms + 0.25 ms per action, SNS 15 ms), at {} MB arm64 (template.yaml). \
Requests sent while others were in flight (on the wire) overlap in the model: a request starts once every request that had \
completed before it was sent has completed, so sequential code waits for the sum and deliver's fan-out (16 row updates at a time) \
for the slowest of each wave{}. Critical path: {sequential}. Cold starts are not counted. moto's wall times are shown for information only.\n\
- **HTTP API**: one request per call (under 512 KB).\n",
            p.wru,
            p.rru,
            p.sns_request,
            p.lambda_request,
            p.lambda_gb_second,
            p.http_api_request,
            model.source.batch_size,
            l.base_ms,
            l.memory_mb,
            if fanned.is_empty() {
                String::new()
            } else {
                format!(
                    " (overlapping requests seen in the deliveries of: {})",
                    fanned.join(", ")
                )
            },
        )
    }
}

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
