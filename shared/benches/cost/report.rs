//! The report.

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

fn per_service<'a>(calls: impl Iterator<Item = &'a Call>) -> BTreeMap<&'static str, Vec<&'a Call>> {
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
            let records: Vec<String> = o.deliveries.iter().map(|d| d.records.to_string()).collect();
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
