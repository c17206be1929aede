//! The endpoints custom resource of `template.yaml` (`IotEndpoints`: its inline Python reads
//! the IoT data endpoint and the MQTT domain's name at deploy time), run with Python against
//! moto's IoT control plane: what it answers CloudFormation, its retries, its time budget.

use serde_json::{Value, json};

use crate::template::{resources, template};

/// The endpoints custom resource's inline Python, written to a temporary `index.py`, and the
/// function's timeout (seconds).
fn endpoints_code(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let text = template();
    let start = text
        .lines()
        .position(|l| l.trim() == "ZipFile: |")
        .expect("no inline ZipFile code");
    let lines: Vec<&str> = text.lines().skip(start + 1).collect();
    let indent = lines[0].len() - lines[0].trim_start().len();
    let code: String = lines
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("index.py");
    std::fs::write(&path, code).unwrap();
    let function = resources(&text)
        .into_iter()
        .find(|r| r.id == "IotEndpointsFunction")
        .expect("no IotEndpointsFunction");
    let timeout = function.value("Timeout").unwrap().parse().unwrap();
    (path, timeout)
}

/// Runs the handler on each case against moto's IoT control plane, with a recorder standing in
/// for CloudFormation's response URL, a clock the code's sleeps move (no waiting), the Lambda
/// context's remaining time on that clock, and `boto3.client("iot")` failing its first calls
/// with the given error code as many times as asked. Returns the answers (in order) and, per
/// case, what the runner saw: the sleeps and when the answer was sent.
async fn run_endpoints_resource(cases: Value) -> (Vec<Value>, Vec<Value>) {
    crate::common::aws_config().await;
    let dir = std::env::temp_dir().join(crate::common::unique("iot-endpoints"));
    let (index, timeout) = endpoints_code(&dir);
    let responses = crate::common::Recorder::start().await;
    let domain = crate::common::unique("chat21-mqtt");
    let runner = r#"
import importlib.util, json, sys, types
import boto3
from botocore.exceptions import ClientError
spec = importlib.util.spec_from_file_location("index", sys.argv[1])
index = importlib.util.module_from_spec(spec)
spec.loader.exec_module(index)
name, url, timeout, cases = sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
# AWS names an AWS-managed domain itself; moto keeps the name it is given.
boto3.client("iot").create_domain_configuration(
    domainConfigurationName=name, domainName="abc123-ats.iot.us-east-1.amazonaws.com", serviceType="DATA")

class Clock:
    now = 1000.0
    sleeps = []
    def monotonic(self): return self.now
    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

class Context:
    def __init__(self, clock, seconds): self.clock, self.end = clock, clock.now + seconds
    def get_remaining_time_in_millis(self): return int((self.end - self.clock.now) * 1000)

class Failing:
    # moto's client, whose first calls raise the error of an IAM role not propagated yet,
    # or of a throttled or unavailable IoT.
    def __init__(self, real, failures, code): self.real, self.failures, self.code = real, failures, code
    def __getattr__(self, operation):
        call = getattr(self.real, operation)
        def failing(*args, **kwargs):
            if self.failures > 0:
                self.failures -= 1
                raise ClientError({"Error": {"Code": self.code, "Message": "injected"}}, operation)
            return call(*args, **kwargs)
        return failing

real_urlopen = index.urllib.request.urlopen
for case in cases:
    clock = Clock()
    clock.sleeps = []
    start = clock.now
    seen = {}
    def urlopen(request, timeout):
        seen["answered_after"] = clock.now - start
        seen["answer_timeout"] = timeout
        return real_urlopen(request, timeout=timeout)
    index.time = clock
    index.urllib.request.urlopen = urlopen
    failures, code = case.get("failures", 0), case.get("code", "AccessDeniedException")
    index.boto3 = types.SimpleNamespace(client=lambda service: Failing(boto3.client(service), failures, code))
    domain = name if case["domain"] == "ours" else case["domain"]
    index.handler({"RequestType": case["kind"], "ResponseURL": url + "/cfn", "StackId": "stack",
                   "RequestId": case["kind"], "LogicalResourceId": "IotEndpoints",
                   "ResourceProperties": {"DomainConfigurationName": domain}}, Context(clock, timeout))
    seen["sleeps"] = clock.sleeps
    print(json.dumps(seen))
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(runner)
        .arg(&index)
        .arg(&domain)
        .arg(&responses.url)
        .arg(timeout.to_string())
        .arg(cases.to_string())
        .output()
        .await
        .expect("run python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let answers: Vec<Value> = responses
        .take()
        .iter()
        .map(|r| {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/cfn"));
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect();
    assert_eq!(
        answers.len(),
        cases.as_array().unwrap().len(),
        "{answers:?}"
    );
    assert_eq!(seen.len(), answers.len(), "{seen:?}");
    (answers, seen)
}

fn assert_endpoints(answer: &Value) {
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["LogicalResourceId"], "IotEndpoints");
    assert_eq!(
        answer["Data"]["MqttDomain"],
        "abc123-ats.iot.us-east-1.amazonaws.com"
    );
    let data_endpoint = answer["Data"]["DataEndpoint"].as_str().unwrap();
    assert!(data_endpoint.contains("-ats.iot."), "{data_endpoint}");
}

/// The inline code of the endpoints custom resource, run with Python against moto (its IoT
/// control plane): creates and updates answer both values, a deletion answers at once, a
/// domain that never appears fails the stack.
#[tokio::test]
async fn the_endpoints_custom_resource_answers_cloudformation() {
    let cases = json!([
        {"kind": "Create", "domain": "ours"},
        {"kind": "Update", "domain": "ours"},
        {"kind": "Create", "domain": "missing"},
        {"kind": "Delete", "domain": "ours"},
    ]);
    let (answers, seen) = run_endpoints_resource(cases).await;
    for created in &answers[..2] {
        assert_endpoints(created);
    }
    for first_time in [&seen[0], &seen[1], &seen[3]] {
        assert_eq!(first_time["sleeps"], json!([]), "{first_time}");
    }
    assert_eq!(
        answers[2]["Status"], "FAILED",
        "a missing domain must fail the stack"
    );
    assert!(
        answers[2]["Reason"]
            .as_str()
            .unwrap()
            .contains("ResourceNotFound"),
        "{}",
        answers[2]
    );
    assert_eq!(answers[2]["Data"], json!({}));
    assert_eq!(
        answers[3]["Status"], "SUCCESS",
        "deleting never blocks the stack"
    );
    assert_eq!(answers[3]["Data"], json!({}));
}

/// Right after stack creation the custom resource's role may not have propagated through IAM
/// yet (AccessDenied), and IoT may throttle: the resource retries with growing delays and
/// still answers SUCCESS; a failure that lasts is answered FAILED while the function still has
/// time to answer (its timeout, less the answer's own 10 s), never left for CloudFormation to
/// time out.
#[tokio::test]
async fn the_endpoints_custom_resource_retries_then_answers_within_its_timeout() {
    let cases = json!([
        {"kind": "Create", "domain": "ours", "failures": 2, "code": "AccessDeniedException"},
        {"kind": "Create", "domain": "ours", "failures": 3, "code": "ThrottlingException"},
        {"kind": "Create", "domain": "ours", "failures": 1000, "code": "ServiceUnavailableException"},
    ]);
    let (answers, seen) = run_endpoints_resource(cases).await;
    let timeout = endpoints_code(&std::env::temp_dir().join(crate::common::unique("code"))).1;
    let sleeps = |i: usize| -> Vec<f64> {
        seen[i]["sleeps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect()
    };
    assert_endpoints(&answers[0]);
    assert_eq!(sleeps(0), [1.0, 2.0], "two failures, two growing delays");
    assert_endpoints(&answers[1]);
    assert_eq!(sleeps(1), [1.0, 2.0, 4.0]);

    let failed = &answers[2];
    assert_eq!(failed["Status"], "FAILED", "{failed}");
    let reason = failed["Reason"].as_str().unwrap();
    assert!(reason.contains("ServiceUnavailableException"), "{reason}");
    assert_eq!(failed["Data"], json!({}));
    let waits = sleeps(2);
    println!(
        "a lasting failure: {} attempts, sleeps {waits:?}, answered after {} s of a {timeout} s timeout",
        waits.len() + 1,
        seen[2]["answered_after"]
    );
    assert!(waits.len() >= 5, "gave up early: {waits:?}");
    assert!(
        waits.windows(2).all(|w| w[1] >= w[0]) && waits[0] < *waits.last().unwrap(),
        "backoff grows: {waits:?}"
    );
    let answered_after = seen[2]["answered_after"].as_f64().unwrap();
    let answer_timeout = seen[2]["answer_timeout"].as_f64().unwrap();
    assert!(
        answered_after + answer_timeout <= timeout as f64,
        "answered after {answered_after} s, plus up to {answer_timeout} s for the answer, past the {timeout} s timeout"
    );
    // It used most of its time before giving up (IAM propagation can take a while).
    assert!(
        answered_after >= timeout as f64 / 2.0,
        "gave up after {answered_after} s of {timeout}"
    );
}
