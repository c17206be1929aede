//! `template.yaml` agrees with the code: the same routes (method, path, function) as
//! `chat21::routes::ROUTES`, one function per package under `functions/`, the table layout of
//! the DynamoDB adapter, the queue's filter on what deliver consumes. And it passes cfn-lint.
//!
//! The template is read as text, line by line (no YAML parser): it is written in a regular
//! layout for this (see the note at its top).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chat21::adapters::dynamo::ORDER_INDEX;
use chat21::events::DELIVER_CONSUMES;
use chat21::routes::ROUTES;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> String {
    let path = workspace().join("template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One resource of the template: its logical id and its lines (comments dropped, trimmed,
/// list dashes removed), in order.
struct Resource {
    id: String,
    lines: Vec<String>,
}

impl Resource {
    /// The value of the first `key: value` line.
    fn value(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| value_of(l, key))
    }

    fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines.iter().filter_map(move |l| value_of(l, key))
    }

    /// Whether `lines` appear in this order, one right after the other.
    fn has_run(&self, run: &[&str]) -> bool {
        self.lines
            .windows(run.len())
            .any(|w| w.iter().zip(run).all(|(a, b)| a == b))
    }
}

fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
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
fn resources(text: &str) -> Vec<Resource> {
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
            });
            continue;
        }
        let content = line.trim();
        let content = content.strip_prefix("- ").unwrap_or(content).to_string();
        out.last_mut()
            .expect("a resource line before any resource")
            .lines
            .push(content);
    }
    out
}

fn functions_in_template(text: &str) -> Vec<Resource> {
    resources(text)
        .into_iter()
        .filter(|r| r.value("Type") == Some("AWS::Serverless::Function"))
        .collect()
}

/// The function package a template function is built from (`CodeUri: functions/<name>`).
fn package_of(function: &Resource) -> String {
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

#[test]
fn queue_gets_what_deliver_consumes() {
    let text = template();
    let all = resources(&text);
    let subscription = all
        .iter()
        .find(|r| r.value("Type") == Some("AWS::SNS::Subscription"))
        .expect("no SNS subscription");
    assert_eq!(subscription.value("Protocol"), Some("sqs"));
    assert_eq!(subscription.value("RawMessageDelivery"), Some("true"));
    let at = subscription
        .lines
        .iter()
        .position(|l| l == "event_type:")
        .expect("no FilterPolicy on event_type");
    let filtered: BTreeSet<&str> = subscription.lines[at + 1..]
        .iter()
        .take_while(|l| !l.contains(':'))
        .map(String::as_str)
        .collect();
    let consumed: BTreeSet<&str> = DELIVER_CONSUMES.iter().map(|e| e.as_str()).collect();
    assert_eq!(
        filtered, consumed,
        "the subscription filter is not DELIVER_CONSUMES"
    );

    // Lambda's advice for SQS sources: visibility timeout at least 6 x the function timeout.
    let deliver = functions_in_template(&text)
        .into_iter()
        .find(|f| package_of(f) == "deliver")
        .expect("no deliver function");
    assert!(deliver.has_run(&["Type: SQS", "Properties:"]));
    assert_eq!(deliver.value("BatchSize"), Some("10"));
    assert!(deliver.has_run(&["FunctionResponseTypes:", "ReportBatchItemFailures"]));
    let timeout: u64 = deliver
        .value("Timeout")
        .expect("deliver Timeout")
        .parse()
        .unwrap();
    let queue = all
        .iter()
        .find(|r| r.id == "DeliverQueue")
        .expect("no DeliverQueue");
    let visibility: u64 = queue.value("VisibilityTimeout").unwrap().parse().unwrap();
    assert!(visibility >= 6 * timeout, "{visibility} < 6 x {timeout}");
    assert_eq!(queue.value("maxReceiveCount"), Some("5"));
    assert!(queue.values("deadLetterTargetArn").count() == 1);
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
