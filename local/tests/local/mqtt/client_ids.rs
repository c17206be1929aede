//! Client ids: the same client id replaces the first connection; anonymous clients get
//! distinct ids.

use super::*;

pub(super) async fn the_same_client_id_replaces_the_first_connection(via: Via) {
    let server = start();
    let mut first = connect_as(&server, via, "u1", "same-id").await;
    first.subscribe_ok("apps/app1/users/u1/#").await;
    let mut second = connect_as(&server, via, "u1", "same-id").await;
    second.subscribe_ok("apps/app1/users/u1/#").await;
    first.expect_closed(WAIT).await;
    send(&server, "u2", direct("u1", "to the second")).await;
    second
        .expect("apps/app1/users/u1/messages/u2/clientadded")
        .await;
    // Another user's connection with the same client id replaces nobody's.
    let mut stranger = connect_as(&server, via, "u2", "same-id").await;
    stranger.subscribe_ok("apps/app1/users/u2/#").await;
    send(&server, "u3", direct("u1", "still the second")).await;
    second
        .expect_where(
            "apps/app1/users/u1/messages/u3/clientadded",
            "still the second",
            |p| p["text"] == "still the second",
        )
        .await;
    assert!(second.closed.is_none(), "{:?}", second.closed);
    assert!(stranger.closed.is_none(), "{:?}", stranger.closed);
}

/// MQTT 3.1.1 (3.1.3-6, 3.1.3-8): a client sending an empty client id (clean session) gets a
/// unique one from the server, so two anonymous clients never replace each other.
pub(super) async fn anonymous_clients_get_distinct_ids(via: Via) {
    let server = start();
    // Another connection of the same user, open while the first anonymous client connects,
    // then closed (DISCONNECT, then the broker's close).
    let mut named = Raw::connected(&server, via, "u1", "named", 30).await;
    let mut first = Raw::connected(&server, via, "u1", "", 30).await;
    named.send(&[0xE0, 0]).await;
    assert!(
        named.closed_within(WAIT).await.is_some(),
        "DISCONNECT did not close"
    );
    let mut second = Raw::connected(&server, via, "u1", "", 30).await;
    // Neither anonymous client replaced the other.
    for round in 0..2 {
        second
            .ping(&format!(
                "PINGRESP to the second anonymous client (round {round})"
            ))
            .await;
        first
            .ping(&format!(
                "PINGRESP to the first anonymous client (round {round}): was it replaced by \
                 the second one?"
            ))
            .await;
        sleep(Duration::from_millis(200)).await;
    }
}
