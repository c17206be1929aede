//! SNS billing: each published message is one request per 64 KB chunk, batched or not.

use std::collections::BTreeMap;

use super::Call;

// ------------------------------------------------------------------------------- SNS

/// The fields of an awsQuery (form-encoded) body.
pub(super) fn form(body: &[u8]) -> Vec<(String, String)> {
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
pub(super) fn sns(action: &str, body: &[u8], ok: bool) -> Call {
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
