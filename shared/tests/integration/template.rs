//! `template.yaml` agrees with the code: the same routes (method, path, function) as
//! `chat21::routes::ROUTES`, one function per package under `functions/`, the table layout of
//! the DynamoDB adapter and its stream, the deliver function's filter on what it delivers.
//! And it passes cfn-lint.
//!
//! The template is read as text, line by line (no YAML parser): it is written in a regular
//! layout for this (see the note at its top).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chat21::adapters::dynamo::ORDER_INDEX;
use chat21::adapters::dynamo::stream::{DELIVERED_ORIGINS, image_of, streamed_of};
use chat21::model::{ChangeKind, ChannelType, GroupChange, Message, status};
use chat21::ports::{Origin, Streamed, Written};
use chat21::routes::ROUTES;
use serde_json::{Value, json};

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn template() -> String {
    let path = workspace().join("template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One resource of the template: its logical id and its lines (comments dropped, trimmed,
/// list dashes removed), in order; and the same lines as written (indented, with their dashes).
pub(crate) struct Resource {
    pub(crate) id: String,
    pub(crate) lines: Vec<String>,
    pub(crate) raw: Vec<String>,
}

impl Resource {
    /// The value of the first `key: value` line.
    pub(crate) fn value(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| value_of(l, key))
    }

    pub(crate) fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines.iter().filter_map(move |l| value_of(l, key))
    }

    /// Whether `lines` appear in this order, one right after the other.
    pub(crate) fn has_run(&self, run: &[&str]) -> bool {
        self.lines
            .windows(run.len())
            .any(|w| w.iter().zip(run).all(|(a, b)| a == b))
    }
}

pub(crate) fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(rest.trim_matches('"').trim_matches('\''))
}

fn strip_comment(line: &str) -> &str {
    // No value of this template contains " #", so this is where a comment starts.
    match line.find(" #") {
        Some(at) => &line[..at],
        None if line.trim_start().starts_with('#') => "",
        None => line,
    }
}

/// The resources under `Resources:` (two-space indented logical ids).
pub(crate) fn resources(text: &str) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    let mut in_resources = false;
    for raw in text.lines() {
        let line = strip_comment(raw).trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_resources = line == "Resources:";
            continue;
        }
        if !in_resources {
            continue;
        }
        if indent == 2 {
            let id = line.trim().trim_end_matches(':').to_string();
            out.push(Resource {
                id,
                lines: Vec::new(),
                raw: Vec::new(),
            });
            continue;
        }
        let content = line.trim();
        let content = content.strip_prefix("- ").unwrap_or(content).to_string();
        let resource = out.last_mut().expect("a resource line before any resource");
        resource.lines.push(content);
        resource.raw.push(line.to_string());
    }
    out
}

/// The DynamoDB actions (`GetItem`, `Query`, …) the role of the function built from `package`
/// allows, as template.yaml writes them.
pub(crate) fn dynamodb_actions_of(package: &str) -> BTreeSet<String> {
    let functions = functions_in_template(&template());
    let function = functions
        .iter()
        .find(|f| package_of(f) == package)
        .unwrap_or_else(|| panic!("no function of package {package} in template.yaml"));
    dynamodb_actions(function)
}

/// The DynamoDB actions the resource `id` of template.yaml (a role) allows.
pub(crate) fn dynamodb_actions_of_resource(id: &str) -> BTreeSet<String> {
    let resources = resources(&template());
    let resource = resources
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no resource {id} in template.yaml"));
    dynamodb_actions(resource)
}

fn dynamodb_actions(resource: &Resource) -> BTreeSet<String> {
    resource
        .lines
        .iter()
        .map(|l| value_of(l, "Action").unwrap_or(l))
        .filter_map(|a| a.strip_prefix("dynamodb:"))
        .map(str::to_string)
        .collect()
}

pub(crate) fn functions_in_template(text: &str) -> Vec<Resource> {
    resources(text)
        .into_iter()
        .filter(|r| r.value("Type") == Some("AWS::Serverless::Function"))
        .collect()
}

/// The function package a template function is built from (`CodeUri: functions/<name>`).
pub(crate) fn package_of(function: &Resource) -> String {
    let uri = function
        .value("CodeUri")
        .unwrap_or_else(|| panic!("{} has no CodeUri", function.id));
    uri.strip_prefix("functions/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .unwrap_or_else(|| {
            panic!(
                "{}: CodeUri must be exactly functions/<package>, not {uri:?}",
                function.id
            )
        })
        .to_string()
}

/// `(METHOD, path)` of every HttpApi event of a function.
fn http_events(function: &Resource) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let mut open: Option<(Option<String>, Option<String>)> = None;
    let mut close = |open: &mut Option<(Option<String>, Option<String>)>| {
        if let Some((method, path)) = open.take() {
            let method = method
                .unwrap_or_else(|| panic!("{}: an HttpApi event without Method", function.id));
            let path =
                path.unwrap_or_else(|| panic!("{}: an HttpApi event without Path", function.id));
            events.push((method, path));
        }
    };
    for line in &function.lines {
        if let Some(kind) = value_of(line, "Type") {
            close(&mut open);
            if kind == "HttpApi" {
                open = Some((None, None));
            }
        } else if let Some((method, path)) = open.as_mut() {
            if let Some(m) = value_of(line, "Method") {
                *method = Some(m.to_string());
            } else if let Some(p) = value_of(line, "Path") {
                *path = Some(p.to_string());
            }
        }
    }
    close(&mut open);
    events
}

fn function_packages() -> BTreeSet<String> {
    let dir = workspace().join("functions");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn routes_match_the_route_table() {
    let text = template();
    let mut declared: Vec<(String, String, String)> = Vec::new();
    for function in functions_in_template(&text) {
        let package = package_of(&function);
        for (method, path) in http_events(&function) {
            declared.push((method, path, package.clone()));
        }
    }
    let declared_set: BTreeSet<(String, String, String)> = declared.iter().cloned().collect();
    assert_eq!(
        declared_set.len(),
        declared.len(),
        "a route is declared twice: {declared:?}"
    );
    let mut expected: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|def| {
            (
                def.method.to_string(),
                def.path.to_string(),
                def.route.function().to_string(),
            )
        })
        .collect();
    // Unknown paths reach banner, which answers the JSON 404 (not API Gateway's own body).
    expected.insert(("ANY".into(), "/{proxy+}".into(), "banner".into()));
    let missing: Vec<_> = expected.difference(&declared_set).collect();
    let extra: Vec<_> = declared_set.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "template.yaml and ROUTES differ.\n  missing from the template: {missing:?}\n  not in ROUTES: {extra:?}"
    );
}

#[test]
fn only_functions_that_publish_events_may_publish() {
    // Functions whose routes publish none run without an SNS client and TOPIC_ARN.
    let publishing: BTreeSet<String> = functions_in_template(&template())
        .iter()
        .filter(|f| f.values("Action").any(|a| a == "sns:Publish"))
        .map(package_of)
        .collect();
    // (deliver, which publishes too, has its own role: DeliverRole.) mqtt-inbound runs the
    // operations of clients' publishes, archives included (`conversation-archived`); its main
    // builds its dependencies with events (`serve_mqtt_inbound`).
    let expected: BTreeSet<String> = ROUTES
        .iter()
        .filter(|def| def.route.publishes_events())
        .map(|def| def.route.function().to_string())
        .chain(["mqtt-inbound".to_string()])
        .collect();
    assert_eq!(
        publishing, expected,
        "functions with sns:Publish in template.yaml vs Route::publishes_events and mqtt-inbound"
    );
}

#[test]
fn one_function_per_package() {
    let text = template();
    // Every CodeUri line anywhere in the file, so a stray one is noticed too.
    let uris: Vec<&str> = text
        .lines()
        .filter_map(|l| value_of(strip_comment(l).trim(), "CodeUri"))
        .collect();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for function in functions_in_template(&text) {
        *count.entry(package_of(&function)).or_default() += 1;
        assert_eq!(
            function.value("BuildMethod"),
            Some("rust-cargolambda"),
            "{}",
            function.id
        );
    }
    assert_eq!(
        uris.len(),
        count.values().sum::<usize>(),
        "CodeUri outside a function: {uris:?}"
    );
    for (package, n) in &count {
        assert_eq!(*n, 1, "functions/{package} is deployed {n} times");
    }
    let deployed: BTreeSet<String> = count.into_keys().collect();
    let packages = function_packages();
    assert_eq!(
        deployed, packages,
        "template.yaml functions (left) and packages under functions/ (right) differ"
    );
}

#[test]
fn table_matches_the_dynamodb_adapter() {
    let text = template();
    let tables: Vec<Resource> = resources(&text)
        .into_iter()
        .filter(|r| r.value("Type") == Some("AWS::DynamoDB::Table"))
        .collect();
    assert_eq!(tables.len(), 1, "one table");
    let table = &tables[0];
    assert_eq!(table.value("BillingMode"), Some("PAY_PER_REQUEST"));
    for attribute in ["pk", "sk", "order_key"] {
        assert!(
            table.has_run(&[&format!("AttributeName: {attribute}"), "AttributeType: S"]),
            "attribute {attribute} (S) is not defined"
        );
    }
    assert!(table.has_run(&[
        "KeySchema:",
        "AttributeName: pk",
        "KeyType: HASH",
        "AttributeName: sk",
        "KeyType: RANGE",
    ]));
    let index = format!("IndexName: {ORDER_INDEX}");
    assert!(
        table.has_run(&[
            "LocalSecondaryIndexes:",
            &index,
            "KeySchema:",
            "AttributeName: pk",
            "KeyType: HASH",
            "AttributeName: order_key",
            "KeyType: RANGE",
            "Projection:",
            "ProjectionType: ALL",
        ]),
        "the {ORDER_INDEX} local index (pk, order_key, ALL) is not declared"
    );
    assert!(table.has_run(&[
        "TimeToLiveSpecification:",
        "AttributeName: expires_at",
        "Enabled: true",
    ]));
    assert_eq!(table.value("PointInTimeRecoveryEnabled"), Some("true"));
    // Deliver reads new images (stream::streamed_of).
    assert!(table.has_run(&["StreamSpecification:", "StreamViewType: NEW_IMAGE"]));
}

#[test]
fn cors_is_what_the_local_server_applies() {
    let text = template();
    let api = resources(&text)
        .into_iter()
        .find(|r| r.id == "HttpApi")
        .expect("no HttpApi");
    assert_eq!(api.value("AllowOrigins"), Some("!Ref CorsAllowOrigins"));
    let list_after = |key: &str| -> Vec<String> {
        let at = api
            .lines
            .iter()
            .position(|l| l == key)
            .unwrap_or_else(|| panic!("no {key}"));
        api.lines[at + 1..]
            .iter()
            .take_while(|l| !l.contains(':'))
            .cloned()
            .collect()
    };
    assert_eq!(list_after("AllowMethods:"), chat21::cors::ALLOW_METHODS);
    assert_eq!(list_after("AllowHeaders:"), chat21::cors::ALLOW_HEADERS);
    assert_eq!(
        api.value("MaxAge"),
        Some(chat21::cors::MAX_AGE_SECS.to_string().as_str())
    );
    assert!(text.contains("JWT_LEEWAY_SECS: !Ref JwtLeewaySeconds"));
}

/// Whether a stream record (as Lambda sees it, JSON) matches a filter pattern: every key of the
/// pattern is in the record, an object recursively, a list by one of its values. (The subset
/// of Lambda's event filtering syntax the template uses.)
fn matches(pattern: &Value, record: &Value) -> bool {
    match pattern {
        Value::Object(keys) => keys
            .iter()
            .all(|(k, p)| record.get(k).is_some_and(|r| matches(p, r))),
        Value::Array(values) => values.contains(record),
        _ => false,
    }
}

fn stream_record(event_name: &str, image: Value) -> Value {
    json!({ "eventName": event_name, "dynamodb": { "NewImage": image } })
}

/// The deliver function is invoked for exactly the stream records it delivers: its event
/// source's filter passes new messages and settled group changes, and drops every other write
/// (conversation rows, system messages, memberships, unsettled changes, deletions).
#[test]
fn deliver_is_invoked_for_exactly_what_it_delivers() {
    let text = template();
    let deliver = functions_in_template(&text)
        .into_iter()
        .find(|f| package_of(f) == "deliver")
        .expect("no deliver function");
    assert!(deliver.has_run(&[
        "Type: DynamoDB",
        "Properties:",
        "Stream: !GetAtt Table.StreamArn"
    ]));
    assert!(deliver.has_run(&["FunctionResponseTypes:", "ReportBatchItemFailures"]));
    assert_eq!(deliver.value("BisectBatchOnFunctionError"), Some("true"));
    assert_eq!(
        deliver.value("Destination"),
        Some("!GetAtt DeliverDeadLetterQueue.Arn")
    );
    let filters: Vec<Value> = deliver
        .values("Pattern")
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("pattern {p}: {e}")))
        .collect();
    assert_eq!(filters.len(), 2, "{filters:?}");
    let origins: Vec<&str> = filters[0]["dynamodb"]["NewImage"]["origin"]["S"]
        .as_array()
        .expect("the first filter lists the delivered origins")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(origins, DELIVERED_ORIGINS);
    let passes = |record: &Value| filters.iter().any(|f| matches(f, record));

    let message = |channel: ChannelType, to: &str| Message {
        message_id: "m1".into(),
        sender: "u1".into(),
        sender_fullname: "U1".into(),
        recipient: to.into(),
        recipient_fullname: "R".into(),
        text: "hi".into(),
        kind: "text".into(),
        channel_type: channel,
        attributes: None,
        metadata: None,
        timestamp: 1_700_000_000_000,
        status: status::SENT,
        app_id: "app1".into(),
        timeline_of: if channel == ChannelType::Group {
            to.into()
        } else {
            "u1".into()
        },
        convers_with: to.into(),
    };
    let change = GroupChange {
        id: "c1".into(),
        at: 1,
        actor: "u1".into(),
        kind: ChangeKind::Joined,
        joined: vec!["u2".into()],
        left: vec![],
        stalled: false,
        places_from: Some(3),
        settled: true,
    };
    let delivered = [
        Streamed::Message(Written {
            message: message(ChannelType::Direct, "u2"),
            origin: Origin::Direct,
            written_at: 1,
        }),
        Streamed::Message(Written {
            message: message(ChannelType::Group, "g1"),
            origin: Origin::Group { seq: 7 },
            written_at: 1,
        }),
        Streamed::Message(Written {
            message: message(ChannelType::Group, "g2"),
            origin: Origin::Inline {
                audience: vec!["u1".into(), "u2".into()],
            },
            written_at: 1,
        }),
        Streamed::Change {
            app: "app1".into(),
            group: "g1".into(),
            change: change.clone(),
        },
    ];
    for streamed in &delivered {
        let image = image_of(streamed).unwrap();
        let name = if matches!(streamed, Streamed::Change { .. }) {
            "MODIFY"
        } else {
            "INSERT"
        };
        let record = stream_record(name, serde_json::to_value(&image).unwrap());
        assert!(passes(&record), "the filter drops {streamed:?}");
        assert_eq!(streamed_of(image).unwrap().as_ref(), Some(streamed));
    }

    // What deliver does not deliver: the same items in other states, and other items.
    let unsettled = Streamed::Change {
        app: "app1".into(),
        group: "g1".into(),
        change: GroupChange {
            settled: false,
            ..change
        },
    };
    let mut dropped = vec![(
        "MODIFY",
        serde_json::to_value(image_of(&unsettled).unwrap()).unwrap(),
    )];
    let direct = serde_json::to_value(image_of(&delivered[0]).unwrap()).unwrap();
    let mut system = direct.clone();
    system["origin"] = json!({"S": "system"});
    dropped.push(("INSERT", system));
    // A message item rewritten (never happens today; must not deliver twice if it did).
    dropped.push(("MODIFY", direct.clone()));
    let mut plain = direct;
    plain.as_object_mut().unwrap().remove("origin");
    dropped.push(("INSERT", plain));
    dropped.push((
        "MODIFY",
        json!({"pk": {"S": "app1#U#u2"}, "sk": {"S": "C#u1"}, "unread_count": {"N": "1"}}),
    ));
    dropped.push((
        "INSERT",
        json!({"pk": {"S": "app1#G#g1"}, "sk": {"S": "M#u2"}, "member_id": {"S": "u2"}}),
    ));
    // A tenant's webhook endpoint, and its counter.
    let hook = chat21::model::Webhook {
        id: "w1".into(),
        app_id: "app1".into(),
        url: "https://hooks.example/".into(),
        events: chat21::model::EventType::ALL.to_vec(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        created_at: 1,
        updated_at: 1,
    };
    let hook = chat21::adapters::dynamo::item::item_of(
        &hook,
        chat21::keys::webhooks_pk("app1"),
        chat21::keys::webhook_sk("w1"),
    )
    .unwrap();
    let hook: serde_dynamo::Item = hook.into();
    for name in ["INSERT", "MODIFY"] {
        dropped.push((name, serde_json::to_value(&hook).unwrap()));
    }
    dropped.push((
        "MODIFY",
        json!({"pk": {"S": "app1#W"}, "sk": {"S": "COUNT"}, "webhooks": {"N": "1"}}),
    ));
    for (name, image) in dropped {
        let record = stream_record(name, image.clone());
        assert!(!passes(&record), "the filter passes {record}");
        let item: serde_dynamo::Item = serde_json::from_value(image).unwrap();
        if name == "INSERT" {
            assert_eq!(
                streamed_of(item).unwrap(),
                None,
                "deliver would act on {record}"
            );
        }
    }
    // Deletions carry no new image: nothing to match.
    assert!(!passes(&json!({"eventName": "REMOVE", "dynamodb": {}})));
}

/// The webhooks function consumes its own queue: the topic's events, raw (the body webhooks
/// POST), filtered on the `event_type` attribute the SNS adapter sets, to `WebhookEvents`
/// (every event type the code knows by default); partial batch responses; a dead-letter
/// queue; the configuration the code reads.
#[test]
fn webhooks_consume_their_own_queue() {
    let text = template();
    let all = resources(&text);
    let function = functions_in_template(&text)
        .into_iter()
        .find(|f| package_of(f) == "webhooks")
        .expect("no webhooks function");
    assert!(function.has_run(&[
        "Type: SQS",
        "Properties:",
        "Queue: !GetAtt WebhooksQueue.Arn"
    ]));
    assert!(function.has_run(&["FunctionResponseTypes:", "ReportBatchItemFailures"]));
    assert_eq!(
        function.value("WEBHOOK_QUEUE_URL"),
        Some("!Ref WebhooksQueue")
    );
    assert_eq!(
        function.value("WEBHOOK_DEAD_LETTER_URL"),
        Some("!Ref WebhooksDeadLetterQueue")
    );
    for var in ["WEBHOOK_ENDPOINTS", "WEBHOOK_EVENTS", "WEBHOOK_SECRET"] {
        assert!(function.value(var).is_some(), "the function has no {var}");
    }
    assert!(text.contains("WEBHOOK_ALLOWED_HOSTS: !Ref WebhookAllowedHosts"));
    let timeout: u64 = function.value("Timeout").unwrap().parse().unwrap();
    let queue = all.iter().find(|r| r.id == "WebhooksQueue").unwrap();
    let visibility: u64 = queue.value("VisibilityTimeout").unwrap().parse().unwrap();
    assert!(visibility >= 6 * timeout, "{visibility} < 6 × {timeout}");
    // Each endpoint's lane takes a whole batch: every record reaches every endpoint at once,
    // so endpoints that hang cost a batch one POST timeout, well within the function's.
    let batch: usize = function.value("BatchSize").unwrap().parse().unwrap();
    let lane = chat21::ops::webhooks::lanes::LANE_IN_FLIGHT;
    assert!(
        batch <= lane,
        "BatchSize {batch} > an endpoint's lane ({lane})"
    );
    let post = chat21::ops::webhooks::delivery::POST_TIMEOUT.as_secs();
    assert!(
        timeout >= 3 * post,
        "Timeout {timeout} < 3 × the POST timeout"
    );
    assert!(queue.has_run(&[
        "RedrivePolicy:",
        "deadLetterTargetArn: !GetAtt WebhooksDeadLetterQueue.Arn"
    ]));
    let subscription = all
        .iter()
        .find(|r| r.value("Type") == Some("AWS::SNS::Subscription"))
        .expect("no subscription");
    assert_eq!(subscription.value("TopicArn"), Some("!Ref Topic"));
    assert_eq!(
        subscription.value("Endpoint"),
        Some("!GetAtt WebhooksQueue.Arn")
    );
    assert_eq!(subscription.value("RawMessageDelivery"), Some("true"));
    assert!(subscription.has_run(&["FilterPolicy:", "event_type: !Ref WebhookEvents"]));
    let attributes: Vec<&str> = chat21::events::Event::presence_change(
        "a",
        chat21::events::Presence {
            user_id: chat21::ids::Id::parse("u", "u").unwrap(),
            client_id: chat21::ids::Id::parse("c", "c").unwrap(),
            presence: chat21::events::PresenceState::Online,
        },
        1,
    )
    .attributes()
    .into_iter()
    .map(|(name, _)| name)
    .collect();
    assert!(
        attributes.contains(&"event_type"),
        "the filter's attribute is published"
    );
    // The parameter's default: every event type.
    let default = text
        .lines()
        .skip_while(|l| *l != "  WebhookEvents:")
        .find_map(|l| value_of(l.trim(), "Default"))
        .expect("WebhookEvents has no default");
    let every: Vec<&str> = chat21::model::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(default.split(',').collect::<Vec<_>>(), every);
}

#[test]
fn cfn_lint_passes() {
    let root = workspace();
    let output = match Command::new("cfn-lint")
        .arg("template.yaml")
        .current_dir(&root)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "cfn-lint is not on PATH, so template.yaml cannot be checked: install it \
             (`pip install cfn-lint`) and run the tests again"
        ),
        Err(e) => panic!("cannot run cfn-lint: {e}"),
    };
    assert!(
        output.status.success(),
        "cfn-lint template.yaml failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
