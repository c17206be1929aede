//! `template.yaml`'s real time (IoT Core) agrees with the code and with REALTIME.md: the topic
//! rules take every client topic and no server topic; the functions' roles, evaluated as IAM
//! would (`iot_policy.rs`), let them publish every server topic and no client topic; the
//! authorizer and the clients' domain, left behind on deletion. The template is read line by
//! line, as in `template.rs`. (The endpoints custom resource: `iot_endpoints_resource.rs`.)

use std::collections::BTreeSet;

use crate::iot_policy::Statement;
use crate::template::{Resource, functions_in_template, package_of, resources, template};

// ---------------------------------------------------------------- the template's IAM policies

/// What `!Sub`'s pseudo parameters stand for when the template's policies are evaluated.
const PARTITION: &str = "aws";
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

/// A policy value as IAM would see it: `!Sub`'s pseudo parameters replaced, quotes dropped;
/// other intrinsic functions are kept as written (they match only themselves).
fn policy_value(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("!Sub ").unwrap_or(text);
    text.trim_matches('"')
        .replace("${AWS::Partition}", PARTITION)
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::AccountId}", ACCOUNT)
}

/// The statements of one `Statement:` list, as `(indent, text, is a list item)` lines.
fn statements_in(block: &[(usize, &str, bool)]) -> Vec<Statement> {
    let Some(&(key_indent, _, _)) = block.first() else {
        return Vec::new();
    };
    let mut items: Vec<Vec<(usize, &str, bool)>> = Vec::new();
    for &line in block {
        if line.2 && line.0 == key_indent {
            items.push(Vec::new());
        }
        items
            .last_mut()
            .expect("a statement starts with a list item")
            .push(line);
    }
    items
        .iter()
        .map(|item| {
            let (mut effect, mut actions, mut resources) = (String::new(), Vec::new(), Vec::new());
            for (j, &(indent, text, _)) in item.iter().enumerate() {
                let Some((key, value)) = text.split_once(':').filter(|_| indent == key_indent)
                else {
                    continue;
                };
                let values: Vec<String> = if value.trim().is_empty() {
                    item[j + 1..]
                        .iter()
                        .take_while(|(n, _, _)| *n > key_indent)
                        .filter(|(_, _, is_item)| *is_item)
                        .map(|(_, t, _)| policy_value(t))
                        .collect()
                } else {
                    vec![policy_value(value)]
                };
                match key {
                    "Effect" => effect = values.concat(),
                    "Action" => actions = values,
                    "Resource" => resources = values,
                    _ => {}
                }
            }
            assert!(
                effect == "Allow" || effect == "Deny",
                "a statement without a valid Effect: {item:?}"
            );
            Statement {
                allow: effect == "Allow",
                actions,
                resources,
            }
        })
        .collect()
}

/// The statements of `resource`'s permission policies, as IAM would read them
/// ([`policy_value`]): a function's or a role's `Policies` (not a role's trust policy), the
/// template's managed policies they attach (`!Ref` in `Policies` or `ManagedPolicyArns`), or
/// a managed policy's own document.
fn iam_statements(resource: &Resource, all: &[Resource]) -> Vec<Statement> {
    // "- x" at indent i is (i + 2, "x", true): the indent its keys have.
    let lines: Vec<(usize, &str, bool)> = resource
        .raw
        .iter()
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            match l.trim().strip_prefix("- ") {
                Some(rest) => (indent + 2, rest, true),
                None => (indent, l.trim(), false),
            }
        })
        .collect();
    let managed = resource.value("Type") == Some("AWS::IAM::ManagedPolicy");
    let mut statements = Vec::new();
    // The indent of the `Policies:`, `ManagedPolicyArns:` or `PolicyDocument:` line we are in.
    let mut block: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let (indent, text, is_item) = lines[i];
        i += 1;
        if block.is_some_and(|b| indent <= b) {
            block = None;
        }
        if text == "Policies:"
            || text == "ManagedPolicyArns:"
            || (managed && text == "PolicyDocument:")
        {
            block = block.or(Some(indent));
        } else if block.is_some() && text == "Statement:" {
            let list: Vec<(usize, &str, bool)> = lines[i..]
                .iter()
                .take_while(|(n, _, _)| *n > indent)
                .copied()
                .collect();
            i += list.len();
            statements.extend(statements_in(&list));
        } else if let Some(id) = text
            .strip_prefix("!Ref ")
            .filter(|_| is_item && block.is_some())
        {
            let policy = all
                .iter()
                .find(|r| r.id == id && r.value("Type") == Some("AWS::IAM::ManagedPolicy"))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {id} is not a managed policy of the template",
                        resource.id
                    )
                });
            statements.extend(iam_statements(policy, all));
        }
    }
    statements
}

/// The IAM ARN of an IoT topic, in the partition, region and account of [`policy_value`].
fn topic_arn(topic: &str) -> String {
    format!("arn:{PARTITION}:iot:{REGION}:{ACCOUNT}:topic/{topic}")
}

/// The template's Lambda functions with the statements of their roles: the SAM functions by
/// package, and the roles of the others (deliver's, the custom resource's) by logical id.
fn function_roles(text: &str) -> Vec<(String, Vec<Statement>)> {
    let all = resources(text);
    let mut roles: Vec<(String, Vec<Statement>)> = functions_in_template(text)
        .iter()
        .filter(|f| f.value("Role").is_none())
        .map(|f| (package_of(f), iam_statements(f, &all)))
        .collect();
    for role in all
        .iter()
        .filter(|r| r.value("Type") == Some("AWS::IAM::Role"))
        .filter(|r| r.has_run(&["Service: lambda.amazonaws.com"]))
    {
        roles.push((role.id.clone(), iam_statements(role, &all)));
    }
    roles
}

/// The parser reads the template's statements as the DynamoDB checks of `template.rs` do.
#[test]
fn the_policy_parser_reads_what_the_template_says() {
    let text = template();
    for function in functions_in_template(&text) {
        let package = package_of(&function);
        if function.value("Role").is_some() {
            continue;
        }
        let statements = iam_statements(&function, &resources(&text));
        let parsed: BTreeSet<String> = statements
            .iter()
            .filter(|s| s.allow)
            .flat_map(|s| s.actions.iter())
            .filter_map(|a| a.strip_prefix("dynamodb:"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            parsed,
            crate::template::dynamodb_actions_of(&package),
            "{package}"
        );
        for statement in &statements {
            assert!(!statement.actions.is_empty(), "{package}: {statement:?}");
            assert!(!statement.resources.is_empty(), "{package}: {statement:?}");
        }
    }
    let roles = function_roles(&text);
    let deliver = roles.iter().find(|(id, _)| id == "DeliverRole").unwrap();
    assert!(
        deliver
            .1
            .iter()
            .any(|s| s.allow && s.actions == ["sns:Publish"] && s.resources == ["!Ref Topic"])
    );
    assert!(
        !roles.iter().any(|(id, _)| id == "IotRuleErrorRole"),
        "not a function's role"
    );
}

// ---------------------------------------------------------------- real time (IoT Core)

/// A topic rule of the template: its SQL's topic filter, the topic level it takes the user
/// from, the names it selects, and the function it invokes.
struct TopicRule {
    id: String,
    filter: String,
    user_level: usize,
    selected: Vec<String>,
    function: String,
    has_error_action: bool,
}

fn topic_rules(text: &str) -> Vec<TopicRule> {
    resources(text)
        .into_iter()
        .filter(|r| r.value("Type") == Some("AWS::IoT::TopicRule"))
        .map(|r| {
            let sql = r
                .value("Sql")
                .unwrap_or_else(|| panic!("{} has no Sql", r.id));
            let filter = sql
                .split_once(" FROM '")
                .map(|(_, f)| f.trim_end_matches('\'').to_string())
                .unwrap_or_else(|| panic!("{}: no FROM '<topic filter>' in {sql}", r.id));
            let selected: Vec<String> = sql
                .split(" AS ")
                .skip(1)
                .map(|rest| {
                    rest.split([',', ' '])
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            let user_level = sql
                .split("topic(")
                .skip(1)
                .find_map(|rest| {
                    let (n, after) = rest.split_once(')')?;
                    after.starts_with(" AS user_id").then(|| n.parse().ok())?
                })
                .unwrap_or_else(|| panic!("{}: no topic(n) AS user_id", r.id));
            TopicRule {
                function: r.value("FunctionArn").unwrap_or_default().to_string(),
                has_error_action: r.lines.iter().any(|l| l == "ErrorAction:"),
                id: r.id,
                filter,
                user_level,
                selected,
            }
        })
        .collect()
}

/// One rule per client-published topic kind of REALTIME.md, each handing the topic's user to
/// mqtt-inbound with what `chat21::entry::rule::RulePublish` reads; no rule matches any
/// topic the server publishes (whatever the ids, even ids named like topic keywords), so the
/// functions' own publishes never come back to them.
#[test]
fn topic_rules_take_every_client_topic_and_no_server_topic() {
    use chat21::realtime::topics::{self, ClientTopic, is_valid_filter, matches};
    let text = template();
    let rules = topic_rules(&text);
    assert_eq!(rules.len(), 5, "one rule per client topic kind");
    let fields = [
        "payload",
        "topic",
        "app_id",
        "user_id",
        "principal",
        "client_id",
        "received_at",
        "publish_id",
    ];
    for rule in &rules {
        assert!(
            is_valid_filter(&rule.filter),
            "{}: {}",
            rule.id,
            rule.filter
        );
        assert_eq!(rule.selected, fields, "{}: what RulePublish reads", rule.id);
        assert_eq!(
            rule.function, "!GetAtt MqttInboundFunction.Arn",
            "{}",
            rule.id
        );
        assert!(
            rule.has_error_action,
            "{}: failed invocations must go somewhere",
            rule.id
        );
        // IoT Core may invoke the function for this rule, and only through its ARN.
        let permission = resources(&text)
            .into_iter()
            .find(|r| r.value("SourceArn") == Some(&format!("!GetAtt {}.Arn", rule.id)))
            .unwrap_or_else(|| panic!("no Lambda permission for {}", rule.id));
        assert_eq!(permission.value("Principal"), Some("iot.amazonaws.com"));
        assert_eq!(
            permission.value("FunctionName"),
            Some("!GetAtt MqttInboundFunction.Arn")
        );
    }
    let ids = [
        "u1",
        "user-2",
        "update",
        "archive",
        "outgoing",
        "presence",
        "messages",
        "conversations",
        "users",
        "apps",
        "clientadded",
        "clientupdated",
        "clientdeleted",
        "groups",
        "archived_conversations",
    ];
    let mut client_topics = 0;
    for app in ["app1", "users"] {
        for me in ids {
            let caller = chat21::model::Caller {
                user_id: chat21::ids::Id::parse("id", me).unwrap(),
                app_id: chat21::ids::Id::parse("id", app).unwrap(),
                admin: false,
            };
            for x in ids {
                for y in ["m1", "update", "outgoing"] {
                    let published = [
                        format!("apps/{app}/outgoing/users/{me}/messages/{x}/outgoing"),
                        format!("apps/{app}/users/{me}/messages/{x}/{y}/update"),
                        format!("apps/{app}/users/{me}/conversations/{x}/update"),
                        format!("apps/{app}/users/{me}/conversations/{x}/archive"),
                        format!("apps/{app}/users/{me}/presence/{x}"),
                    ];
                    for topic in &published {
                        assert!(ClientTopic::parse(topic, &caller).is_some(), "{topic}");
                        let taken: Vec<&TopicRule> =
                            rules.iter().filter(|r| matches(&r.filter, topic)).collect();
                        assert_eq!(taken.len(), 1, "{topic} is taken by {} rules", taken.len());
                        let levels: Vec<&str> = topic.split('/').collect();
                        // topic(n) counts from 1.
                        assert_eq!(levels[taken[0].user_level - 1], me, "{topic}");
                        assert_eq!(levels[1], app, "{topic}");
                        client_topics += 1;
                    }
                    let server = [
                        topics::message_added(app, me, x),
                        topics::message_updated(app, me, x, y),
                        topics::conversation_updated(app, me, x),
                        topics::conversation_deleted(app, me, x),
                        topics::archived_added(app, me, x),
                        topics::archived_deleted(app, me, x),
                        topics::group_updated(app, me, x),
                    ];
                    for topic in &server {
                        for rule in &rules {
                            assert!(
                                !matches(&rule.filter, topic),
                                "{} ({}) matches the server topic {topic}: a loop",
                                rule.id,
                                rule.filter
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(client_topics > 1000);
}

/// Real time's wiring: the functions that push (and only those) know the data endpoint and
/// have IoT permissions; the authorizer is the default of the clients' domain, unsigned (the
/// JWT is the password), callable by IoT Core, and may do nothing else.
#[test]
fn realtime_is_wired_with_least_privilege() {
    let text = template();
    let endpoint = "IOT_DATA_ENDPOINT: !GetAtt IotEndpoints.DataEndpoint";
    let pushing: BTreeSet<String> = functions_in_template(&text)
        .iter()
        .filter(|f| f.lines.iter().any(|l| l == endpoint))
        .map(package_of)
        .collect();
    let expected: BTreeSet<String> = [
        "send-message",
        "delete-conversation",
        "read-conversation",
        "deliver",
        "mqtt-inbound",
    ]
    .map(String::from)
    .into();
    assert_eq!(pushing, expected, "functions given IOT_DATA_ENDPOINT");
    let roles = function_roles(&text);
    let publishers: BTreeSet<String> = roles
        .iter()
        .filter(|(_, statements)| {
            statements.iter().any(|s| {
                s.allow
                    && s.actions
                        .iter()
                        .any(|a| a.starts_with("iot:") && a.ends_with("Publish"))
            })
        })
        .map(|(id, _)| id.clone())
        .collect();
    let expected_publishers: BTreeSet<String> = [
        "send-message",
        "delete-conversation",
        "read-conversation",
        "DeliverRole",
        "mqtt-inbound",
    ]
    .map(String::from)
    .into();
    assert_eq!(publishers, expected_publishers, "roles that may publish");
    // What they may publish: functions_publish_every_server_topic_and_no_client_topic.

    let all = resources(&text);
    let find = |id: &str| {
        all.iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    let authorizer = find("MqttAuthorizer");
    assert_eq!(authorizer.value("SigningDisabled"), Some("true"));
    assert_eq!(
        authorizer.value("AuthorizerFunctionArn"),
        Some("!GetAtt AuthorizerFunction.Arn")
    );
    let function = find("AuthorizerFunction");
    assert_eq!(package_of(function), "authorizer");
    assert!(
        !function.lines.iter().any(|l| l == "Policies:"),
        "the authorizer needs no permissions"
    );
    let timeout: u64 = function.value("Timeout").unwrap().parse().unwrap();
    assert!(timeout <= 5, "IoT Core waits 5 s for an authorizer");
    let permission = find("AuthorizerInvokePermission");
    assert_eq!(permission.value("Principal"), Some("iot.amazonaws.com"));
    assert_eq!(
        permission.value("SourceArn"),
        Some("!GetAtt MqttAuthorizer.Arn")
    );
    let domain = find("MqttDomain");
    assert!(domain.has_run(&[
        "AuthorizerConfig:",
        "DefaultAuthorizerName: !Ref MqttAuthorizer",
        "AllowAuthorizerOverride: false",
    ]));
    assert_eq!(domain.value("ApplicationProtocol"), Some("MQTT_WSS"));
    assert_eq!(domain.value("AuthenticationType"), Some("CUSTOM_AUTH"));
    assert!(
        domain.value("DomainName").is_none(),
        "an AWS-managed domain"
    );
    assert!(text.contains("Value: !Sub \"wss://${IotEndpoints.MqttDomain}/mqtt\""));
}

/// Ids that stretch the topic patterns: ordinary ones, and ones named like topic levels.
const TRICKY_IDS: [&str; 16] = [
    "u1",
    "user-2",
    "presence",
    "update",
    "archive",
    "outgoing",
    "typing",
    "typings",
    "messages",
    "conversations",
    "users",
    "apps",
    "clientadded",
    "clientupdated",
    "clientdeleted",
    "archived_conversations",
];

/// The last level of every server topic (REALTIME.md "What the server publishes").
const SERVER_LAST_LEVELS: [&str; 3] = ["clientadded", "clientupdated", "clientdeleted"];

/// The users whose topics are checked, and their tenants.
const USERS: [&str; 7] = [
    "u1",
    "presence",
    "users",
    "messages",
    "outgoing",
    "conversations",
    "clientadded",
];
const APPS: [&str; 3] = ["app1", "users", "outgoing"];

/// Every server topic of REALTIME.md for the users of `USERS` in the tenants of `APPS` and
/// the ids of `TRICKY_IDS`.
fn server_topics() -> Vec<String> {
    use chat21::realtime::topics;
    let mut out = Vec::new();
    for app in APPS {
        for me in USERS {
            for x in TRICKY_IDS {
                out.extend([
                    topics::message_added(app, me, x),
                    topics::conversation_updated(app, me, x),
                    topics::conversation_deleted(app, me, x),
                    topics::archived_added(app, me, x),
                    topics::archived_deleted(app, me, x),
                    topics::group_updated(app, me, x),
                    format!("apps/{app}/users/{me}/typings/{x}/clientupdated"),
                ]);
                for id in ["m1", "update", "clientadded"] {
                    out.push(topics::message_updated(app, me, x, id));
                }
            }
        }
    }
    out
}

/// Every client-published topic kind of REALTIME.md but presence (below), as
/// [`server_topics`].
fn client_topics() -> Vec<String> {
    let mut out = Vec::new();
    for app in APPS {
        for me in USERS {
            for x in TRICKY_IDS {
                out.extend([
                    format!("apps/{app}/outgoing/users/{me}/messages/{x}/outgoing"),
                    format!("apps/{app}/users/{me}/conversations/{x}/update"),
                    format!("apps/{app}/users/{me}/conversations/{x}/archive"),
                    format!("apps/{app}/users/{me}/typings/{x}/typing"),
                ]);
                for id in ["m1", "update", "clientadded"] {
                    out.push(format!("apps/{app}/users/{me}/messages/{x}/{id}/update"));
                }
            }
        }
    }
    out
}

/// Presence topics (client id last), as [`server_topics`]: `(topic, client id)`.
fn presence_topics() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for app in APPS {
        for me in USERS {
            for client in TRICKY_IDS {
                out.push((format!("apps/{app}/users/{me}/presence/{client}"), client));
            }
        }
    }
    out
}

/// The functions that push, by package or role.
const PUSHING: [&str; 5] = [
    "send-message",
    "delete-conversation",
    "read-conversation",
    "DeliverRole",
    "mqtt-inbound",
];

/// "Functions never publish what a rule consumes", enforced by IAM: evaluated as IAM would
/// (`iot_policy::allows`), every function that pushes may publish every server topic, whatever
/// the ids, and no function may publish a client topic; the functions that may publish at all
/// are explicitly denied every client topic but presence, so no other policy can grant one.
/// Presence topics end with a client id, which may be anything: an explicit Deny of them would
/// deny server topics too (IAM's `*` spans levels), so they are kept out by the Allow, except
/// a client id named like a server topic's last level; mqtt-inbound may publish there (it
/// clears retained wills; the inbound code ignores what it publishes, an empty payload).
#[test]
fn functions_publish_every_server_topic_and_no_client_topic() {
    use crate::iot_policy::{allows, denies_explicitly};
    let roles = function_roles(&template());
    let (server, client, presence) = (server_topics(), client_topics(), presence_topics());
    assert!(roles.len() > 20 && server.len() > 1000 && client.len() > 800);
    for (id, statements) in &roles {
        let may = |topic: &str| allows(statements, "iot:Publish", &topic_arn(topic));
        let pushes = PUSHING.contains(&id.as_str());
        for topic in &server {
            assert_eq!(may(topic), pushes, "{id}: iot:Publish {topic}");
        }
        for topic in &client {
            assert!(!may(topic), "{id} may publish the client topic {topic}");
            assert!(
                !pushes || denies_explicitly(statements, "iot:Publish", &topic_arn(topic)),
                "{id}: no explicit Deny of {topic}"
            );
        }
        for (topic, client_id) in &presence {
            let expected = match id.as_str() {
                "mqtt-inbound" => true,
                _ => pushes && SERVER_LAST_LEVELS.contains(client_id),
            };
            assert_eq!(may(topic), expected, "{id}: iot:Publish {topic}");
        }
    }
    // Why presence has no explicit Deny: it would refuse real server topics, e.g. a message
    // from a user named "presence" to u1.
    let naive = [crate::iot_policy::Statement {
        allow: false,
        actions: vec!["iot:Publish".into()],
        resources: vec![topic_arn("apps/*/users/*/presence/*")],
    }];
    let message = chat21::realtime::topics::message_added("app1", "u1", "presence");
    assert!(denies_explicitly(
        &naive,
        "iot:Publish",
        &topic_arn(&message)
    ));
}

/// Only mqtt-inbound may publish a retained message, and only on presence topics (what
/// clearing a retained will needs: `iot:Publish` and `iot:RetainPublish` there); every other
/// topic is explicitly denied to every function that may publish.
#[test]
fn only_mqtt_inbound_may_retain_and_only_on_presence_topics() {
    use crate::iot_policy::{allows, denies_explicitly};
    let roles = function_roles(&template());
    assert!(roles.iter().any(|(id, _)| id == "mqtt-inbound"));
    let others: Vec<String> = server_topics().into_iter().chain(client_topics()).collect();
    for (id, statements) in &roles {
        let inbound = id == "mqtt-inbound";
        let may = |action: &str, topic: &str| allows(statements, action, &topic_arn(topic));
        for (topic, _) in presence_topics() {
            assert_eq!(may("iot:RetainPublish", &topic), inbound, "{id}: {topic}");
            assert!(!inbound || may("iot:Publish", &topic), "{id}: {topic}");
        }
        for topic in &others {
            assert!(!may("iot:RetainPublish", topic), "{id}: retained {topic}");
            assert!(
                !PUSHING.contains(&id.as_str())
                    || denies_explicitly(statements, "iot:RetainPublish", &topic_arn(topic)),
                "{id}: no explicit Deny of retaining {topic}"
            );
        }
    }
}

/// An AWS-managed domain configuration can be deleted only after 7 days disabled: a failed
/// first deploy or `sam delete` would fail on it, and a fixed name would collide on the next
/// deploy. So CloudFormation names it and leaves it behind (docs/deploy.md: tearing down).
#[test]
fn the_mqtt_domain_is_left_behind_and_named_by_cloudformation() {
    let text = template();
    let all = resources(&text);
    let domain = all
        .iter()
        .find(|r| r.id == "MqttDomain")
        .expect("no MqttDomain");
    assert_eq!(domain.value("Type"), Some("AWS::IoT::DomainConfiguration"));
    assert_eq!(domain.value("DeletionPolicy"), Some("Retain"));
    assert_eq!(domain.value("UpdateReplacePolicy"), Some("Retain"));
    assert_eq!(
        domain.value("DomainConfigurationName"),
        None,
        "a fixed name collides with the domain a failed deploy left behind"
    );
    // The authorizer the domain still names is left behind too (IoT refuses to delete what
    // is attached), but replaced normally: the domain then names the new one.
    let authorizer = all.iter().find(|r| r.id == "MqttAuthorizer").unwrap();
    assert_eq!(authorizer.value("DeletionPolicy"), Some("Retain"));
    assert_eq!(authorizer.value("UpdateReplacePolicy"), Some("Delete"));
    assert_eq!(authorizer.value("AuthorizerName"), None);
    let endpoints = all.iter().find(|r| r.id == "IotEndpoints").unwrap();
    assert_eq!(
        endpoints.value("DomainConfigurationName"),
        Some("!Ref MqttDomain"),
        "the custom resource reads the name CloudFormation gave"
    );
}
