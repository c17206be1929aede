//! What a group change pushes on `…/groups/{id}/clientupdated` (REALTIME.md): a creation
//! nothing (members learn of a new group from its system messages' `clientadded`, as with the
//! original server, whose own suite counts update notifications), every other change the
//! whole group to every member after it and to every member it removed.

use super::{create_input, make_group};
use crate::common::{APP, Harness, id, user};
use chat21::ops::groups;
use chat21::ports::Push;

fn group_topic(member: &str, group: &str) -> String {
    format!("apps/{APP}/users/{member}/groups/{group}/clientupdated")
}

fn on_groups(pushes: &[Push]) -> Vec<String> {
    let mut topics: Vec<String> = pushes
        .iter()
        .filter(|p| p.topic.contains("/groups/"))
        .map(|p| p.topic.clone())
        .collect();
    topics.sort();
    topics
}

fn expected(members: &[&str], group: &str) -> Vec<String> {
    let mut topics: Vec<String> = members.iter().map(|m| group_topic(m, group)).collect();
    topics.sort();
    topics
}

pub(super) async fn a_creation_pushes_nothing_on_groups(h: &Harness) {
    h.realtime.take();
    make_group(h, "group-p", &["u2", "u3"]).await;
    let created = h.realtime.take();
    assert_eq!(on_groups(&created), Vec::<String>::new());
    // Members learn of the group from its system messages.
    for member in ["u1", "u2", "u3"] {
        let topic = format!("apps/{APP}/users/{member}/messages/group-p/clientadded");
        let added = created.iter().filter(|p| p.topic == topic).count();
        assert_eq!(added, 4, "{member}: GROUP_CREATED and a join per member");
    }

    // Every other change still tells every member of the whole group.
    groups::rename(&h.deps, &user("u1"), &id("group-p"), "Renamed".into())
        .await
        .unwrap();
    h.deliver_all().await;
    let renamed = h.realtime.take();
    assert_eq!(
        on_groups(&renamed),
        expected(&["u1", "u2", "u3"], "group-p")
    );
    assert!(
        renamed
            .iter()
            .all(|p| !p.topic.contains("/groups/") || p.payload["name"] == "Renamed")
    );

    groups::join(&h.deps, &user("u1"), &id("group-p"), id("u4"))
        .await
        .unwrap();
    h.deliver_all().await;
    let joined = h.realtime.take();
    assert_eq!(
        on_groups(&joined),
        expected(&["u1", "u2", "u3", "u4"], "group-p")
    );
    let notified = joined
        .iter()
        .find(|p| p.topic == group_topic("u4", "group-p"))
        .unwrap();
    assert_eq!(
        notified.payload["notification"]["messagelabel"]["key"],
        "MEMBER_JOINED_GROUP"
    );

    groups::leave(&h.deps, &user("u1"), &id("group-p"), &id("u2"))
        .await
        .unwrap();
    h.deliver_all().await;
    let left = h.realtime.take();
    assert_eq!(
        on_groups(&left),
        expected(&["u1", "u2", "u3", "u4"], "group-p"),
        "the remaining members and the one removed"
    );
}

/// A creation and a join delivered together (one batch of settled changes): the join's
/// pushes only, once per member.
pub(super) async fn a_creation_delivered_with_a_join_pushes_the_join_only(h: &Harness) {
    groups::create(
        &h.deps,
        &user("u1"),
        create_input("Team", &["u2"], Some("group-q")),
    )
    .await
    .unwrap();
    groups::join(&h.deps, &user("u1"), &id("group-q"), id("u3"))
        .await
        .unwrap();
    h.realtime.take();
    h.deliver_all().await;
    let pushes = h.realtime.take();
    assert_eq!(on_groups(&pushes), expected(&["u1", "u2", "u3"], "group-q"));
    assert!(
        pushes
            .iter()
            .filter(|p| p.topic.contains("/groups/"))
            .all(|p| p.payload["notification"]["messagelabel"]["key"] == "MEMBER_JOINED_GROUP"),
        "{pushes:?}"
    );
}
