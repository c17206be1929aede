//! DynamoDB's capacity arithmetic: item sizes by DynamoDB's rules, and each request costed from
//! its body and response (writes against the shadow of every item, LSIs, transactions).

use serde_json::Value;

use super::{Attrs, Call, Inner, State, Write, update};

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
    pub(super) fn dynamo(
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
