//! Groups: create, read, rename, attributes, join, leave and set-members refusals.

use super::*;

#[tokio::test]
async fn create_group_refusals() {
    let w = world().await;
    let u3 = token("u3");
    let valid = json!({"group_name": "New", "group_members": {"u4": 1}, "group_id": "group-new"});
    let mut cases = Vec::new();
    let mut push = |what: &str, t: &str, body: Option<Vec<u8>>, status: u16| {
        cases.push(case(
            what,
            "POST",
            GROUPS,
            Some(t.to_string()),
            body,
            status,
        ));
    };
    push("no body", &u3, None, 400);
    push("malformed JSON", &u3, raw("{"), 400);
    push("an array body", &u3, raw("[]"), 400);
    push(
        "missing group_name",
        &u3,
        bytes(without(valid.clone(), "group_name")),
        400,
    );
    for (why, name) in [
        ("empty", json!("")),
        ("blank", json!("   ")),
        ("a number", json!(5)),
        ("an object", json!({})),
        ("null", Value::Null),
    ] {
        push(
            &format!("group_name {why}"),
            &u3,
            bytes(with(valid.clone(), "group_name", name)),
            400,
        );
    }
    push(
        "missing group_members",
        &u3,
        bytes(without(valid.clone(), "group_members")),
        400,
    );
    for (why, members) in [
        ("an array", json!([])),
        ("an array of ids", json!(["u4"])),
        ("a string", json!("x")),
        ("a number", json!(1)),
        ("with a key containing .", json!({"a.b": 1})),
        ("with a key containing #", json!({"u4": 1, "a#b": 1})),
        ("with an empty key", json!({"": 1})),
        ("with a 129-character key", json!({"x".repeat(129): 1})),
    ] {
        push(
            &format!("group_members {why}"),
            &u3,
            bytes(with(valid.clone(), "group_members", members)),
            400,
        );
    }
    for (why, id) in [
        ("with *", json!("group-a*b")),
        ("with /", json!("group-a/b")),
        ("empty", json!("")),
        ("a number", json!(5)),
    ] {
        push(
            &format!("group_id {why}"),
            &u3,
            bytes(with(valid.clone(), "group_id", id)),
            400,
        );
    }
    for attributes in [json!("x"), json!([1]), json!(3)] {
        push(
            &format!("attributes {attributes}"),
            &u3,
            bytes(with(valid.clone(), "attributes", attributes)),
            400,
        );
    }
    push(
        "group_owner from a non-admin",
        &u3,
        bytes(with(valid.clone(), "group_owner", json!("u4"))),
        403,
    );
    let crowd: serde_json::Map<String, Value> = (0..=MAX_MEMBER_CHANGES)
        .map(|i| (format!("m{i}"), json!(1)))
        .collect();
    push(
        "more members than one call may add",
        &u3,
        bytes(with(valid.clone(), "group_members", Value::Object(crowd))),
        400,
    );
    let boss = token_for("boss", APP, true);
    push(
        "group_owner not a valid id (admin)",
        &boss,
        bytes(with(valid.clone(), "group_owner", json!("u#4"))),
        400,
    );
    w.refuse_all(&cases).await;
    assert!(
        w.h.deps
            .store
            .group_head(APP, "group-new")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_existing_group_id_is_409_and_the_group_is_unchanged() {
    let w = world().await;
    let taken = |name: &str, members: Value| {
        bytes(json!({"group_name": name, "group_members": members, "group_id": TEAM}))
    };
    let cases = [
        case(
            "a stranger reusing the id",
            "POST",
            GROUPS,
            Some(token("u3")),
            taken("Hijack", json!({"u3": 1, "u4": 1})),
            409,
        ),
        case(
            "the owner creating it again",
            "POST",
            GROUPS,
            Some(token("u1")),
            taken("Team again", json!({"u4": 1})),
            409,
        ),
        case(
            "a member creating it again",
            "POST",
            GROUPS,
            Some(token("u2")),
            taken("Team", json!({"u1": 1})),
            409,
        ),
        case(
            "an admin creating it again",
            "POST",
            GROUPS,
            Some(token_for("boss", APP, true)),
            taken("Admin's", json!({"u3": 1})),
            409,
        ),
    ];
    w.refuse_all(&cases).await;
    let group = w.ok("GET", TEAM_PATH, &token("u1"), None).await;
    assert_eq!(group["result"]["name"], json!("Team"));
    assert_eq!(group["result"]["owner"], json!("u1"));
    assert_eq!(group["result"]["members"], json!({"u1": 1, "u2": 1}));
    assert_eq!(group["result"]["attributes"], json!({"topic": "rust"}));
}

#[tokio::test]
async fn create_group_answers_201_with_the_group() {
    let w = world().await;
    let body = json!({
        "group_name": "New",
        "group_members": {"u4": 1},
        "group_id": "group-new",
        "attributes": {"a": "b"},
    });
    let (status, answer) = w
        .call(
            "POST",
            GROUPS,
            Some(&token("u3")),
            Some(body.to_string().as_bytes()),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let keys: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["success", "group"]), "{answer}");
    assert_eq!(answer["success"], json!(true));
    let g = &answer["group"];
    assert_eq!(g["uid"], json!("group-new"));
    assert_eq!(g["name"], json!("New"));
    assert_eq!(g["owner"], json!("u3"));
    assert_eq!(g["members"], json!({"u3": 1, "u4": 1}));
    assert_eq!(g["attributes"], json!({"a": "b"}));
    assert_eq!(g["appId"], json!(APP));
    assert!(g["createdOn"].is_u64() && g["updatedOn"].is_u64(), "{g}");

    // Without an id the server makes `group-<uuid>`.
    let made = w
        .call(
            "POST",
            GROUPS,
            Some(&token("u3")),
            Some(
                json!({"group_name": "Anon", "group_members": {}})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    assert_eq!(made.0, 201, "{}", made.1);
    assert!(
        made.1["group"]["uid"]
            .as_str()
            .unwrap()
            .starts_with("group-")
    );
    assert_eq!(made.1["group"]["members"], json!({"u3": 1}));

    // An admin creating for u4 owns nothing and is not a member.
    let (status, answer) = w
        .call(
            "POST",
            GROUPS,
            Some(&token_for("boss", APP, true)),
            Some(
                json!({"group_name": "For u4", "group_members": {"u1": 1},
                       "group_owner": "u4", "group_id": "group-for-u4"})
                .to_string()
                .as_bytes(),
            ),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["group"]["owner"], json!("u4"));
    assert_eq!(answer["group"]["members"], json!({"u1": 1, "u4": 1}));
}

#[tokio::test]
async fn an_unknown_group_is_404_on_every_group_route() {
    let w = world().await;
    let nope = "/api/app1/groups/group-nope";
    let mut cases = Vec::new();
    for (who, t) in [
        ("owner elsewhere", token("u1")),
        ("admin", token_for("boss", APP, true)),
    ] {
        let t = Some(t);
        cases.extend([
            case(format!("{who}: get"), "GET", nope, t.clone(), None, 404),
            case(
                format!("{who}: rename"),
                "PUT",
                nope,
                t.clone(),
                bytes(json!({"group_name": "X"})),
                404,
            ),
            case(
                format!("{who}: attributes"),
                "PUT",
                format!("{nope}/attributes"),
                t.clone(),
                bytes(json!({"attributes": {"x": 1}})),
                404,
            ),
            case(
                format!("{who}: join"),
                "POST",
                format!("{nope}/members"),
                t.clone(),
                bytes(json!({"member_id": "u3"})),
                404,
            ),
            case(
                format!("{who}: remove a member"),
                "DELETE",
                format!("{nope}/members/u2"),
                t.clone(),
                None,
                404,
            ),
            case(
                format!("{who}: leave"),
                "DELETE",
                format!("{nope}/members/u1"),
                t.clone(),
                None,
                404,
            ),
            case(
                format!("{who}: set members"),
                "PUT",
                format!("{nope}/members"),
                t.clone(),
                bytes(json!({"members": {"u1": 1}})),
                404,
            ),
        ]);
    }
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn strangers_cannot_touch_a_group() {
    let w = world().await;
    let u3 = Some(token("u3"));
    let cases = [
        case(
            "a stranger reading",
            "GET",
            TEAM_PATH,
            u3.clone(),
            None,
            403,
        ),
        case(
            "a stranger renaming",
            "PUT",
            TEAM_PATH,
            u3.clone(),
            bytes(json!({"group_name": "Mine"})),
            403,
        ),
        case(
            "a stranger changing attributes",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u3.clone(),
            bytes(json!({"attributes": {"topic": "mine"}})),
            403,
        ),
        case(
            "a stranger adding someone",
            "POST",
            format!("{TEAM_PATH}/members"),
            u3.clone(),
            bytes(json!({"member_id": "u4"})),
            403,
        ),
        case(
            "a stranger adding themself (self-join is off)",
            "POST",
            format!("{TEAM_PATH}/members"),
            u3.clone(),
            bytes(json!({"member_id": "u3"})),
            403,
        ),
        case(
            "a stranger setting the members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u3.clone(),
            bytes(json!({"members": {"u3": 1}})),
            403,
        ),
        case(
            "a stranger removing a member",
            "DELETE",
            format!("{TEAM_PATH}/members/u2"),
            u3.clone(),
            None,
            403,
        ),
        case(
            "a stranger leaving a group they are not in",
            "DELETE",
            format!("{TEAM_PATH}/members/u3"),
            u3.clone(),
            None,
            404,
        ),
        case(
            "another tenant's member reading",
            "GET",
            TEAM_PATH,
            Some(token_for("u2", "app2", false)),
            None,
            403,
        ),
        case(
            "another tenant's owner renaming",
            "PUT",
            TEAM_PATH,
            Some(token_for("u1", "app2", false)),
            bytes(json!({"group_name": "X"})),
            403,
        ),
        case(
            "another tenant's admin setting members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            Some(token_for("boss", "app2", true)),
            bytes(json!({"members": {"u3": 1}})),
            403,
        ),
    ];
    w.refuse_all(&cases).await;
}

#[tokio::test]
async fn members_and_owners_are_held_to_their_rights() {
    let w = world().await;
    let u1 = Some(token("u1"));
    let u2 = Some(token("u2"));
    let cases = [
        case(
            "a member renaming",
            "PUT",
            TEAM_PATH,
            u2.clone(),
            bytes(json!({"group_name": "Mine"})),
            403,
        ),
        case(
            "a member changing attributes",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u2.clone(),
            bytes(json!({"attributes": {}})),
            403,
        ),
        case(
            "a member adding someone",
            "POST",
            format!("{TEAM_PATH}/members"),
            u2.clone(),
            bytes(json!({"member_id": "u3"})),
            403,
        ),
        case(
            "a member setting the members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u2.clone(),
            bytes(json!({"members": {"u2": 1}})),
            403,
        ),
        case(
            "a member removing the owner",
            "DELETE",
            format!("{TEAM_PATH}/members/u1"),
            u2.clone(),
            None,
            403,
        ),
        case(
            "the owner removing a non-member",
            "DELETE",
            format!("{TEAM_PATH}/members/u4"),
            u1.clone(),
            None,
            404,
        ),
        case(
            "an admin removing a non-member",
            "DELETE",
            format!("{TEAM_PATH}/members/u4"),
            Some(token_for("boss", APP, true)),
            None,
            404,
        ),
        case(
            "rename without group_name",
            "PUT",
            TEAM_PATH,
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "rename to an empty name",
            "PUT",
            TEAM_PATH,
            u1.clone(),
            bytes(json!({"group_name": ""})),
            400,
        ),
        case(
            "rename to a number",
            "PUT",
            TEAM_PATH,
            u1.clone(),
            bytes(json!({"group_name": 7})),
            400,
        ),
        case(
            "attributes missing",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "attributes a string",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u1.clone(),
            bytes(json!({"attributes": "x"})),
            400,
        ),
        case(
            "attributes an array",
            "PUT",
            format!("{TEAM_PATH}/attributes"),
            u1.clone(),
            bytes(json!({"attributes": [1]})),
            400,
        ),
        case(
            "join without member_id",
            "POST",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "join with a numeric member_id",
            "POST",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"member_id": 3})),
            400,
        ),
        case(
            "join with a member_id containing *",
            "POST",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"member_id": "u*3"})),
            400,
        ),
        case(
            "set members without members",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({})),
            400,
        ),
        case(
            "members an array",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"members": ["u1", "u3"]})),
            400,
        ),
        case(
            "members a string",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"members": "u1"})),
            400,
        ),
        case(
            "members with an invalid id",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({"members": {"u1": 1, "u.3": 1}})),
            400,
        ),
        case(
            "more member changes than one call may make",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            bytes(json!({
                "members": (0..=MAX_MEMBER_CHANGES)
                    .map(|i| (format!("m{i}"), json!(1)))
                    .collect::<serde_json::Map<String, Value>>()
            })),
            400,
        ),
        case(
            "set members with a malformed body",
            "PUT",
            format!("{TEAM_PATH}/members"),
            u1.clone(),
            raw("{\"members\":"),
            400,
        ),
    ];
    w.refuse_all(&cases).await;

    // The controls: a member reads, the owner renames, a member leaves.
    w.ok("GET", TEAM_PATH, u2.as_deref().unwrap(), None).await;
    w.ok(
        "PUT",
        TEAM_PATH,
        u1.as_deref().unwrap(),
        Some(json!({"group_name": "Renamed"})),
    )
    .await;
    w.ok(
        "DELETE",
        &format!("{TEAM_PATH}/members/u2"),
        u2.as_deref().unwrap(),
        None,
    )
    .await;
    assert_eq!(w.h.members(TEAM).await, ["u1"]);
    let group = w.ok("GET", TEAM_PATH, u1.as_deref().unwrap(), None).await;
    assert_eq!(group["result"]["name"], json!("Renamed"));
}
