//! The behavioural suite: every scenario runs against the SQLite store (in memory) and against DynamoDB
//! (moto), so the two adapters cannot drift apart. Every scenario is listed below, named by the
//! file of its family under `behaviour/`; its tests are `behaviour::{sqlite,dynamodb}::name`.

use crate::common::{Harness, user};
use chat21::ops::groups::CreateGroup;

macro_rules! on_both_stores {
    ($($family:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$family::$name(&super::Harness::sqlite()).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$family::$name(&super::Harness::dynamo().await).await
                }
            )*
        }
    };
}

on_both_stores!(
    messages::direct_message_reaches_both_sides,
    messages::retry_with_message_id_stores_and_delivers_once,
    messages::failed_deliveries_are_retried_without_doubling,
    messages::retries_with_an_id_store_and_deliver_once,
    messages::redelivered_events_change_nothing,
    messages::overtaken_messages_redelivered_change_nothing,
    messages::late_older_message_counts_but_does_not_replace_the_last,
    messages::updateconversation_false_leaves_conversations_alone,
    conversations::paging_reaches_every_item,
    conversations::archive_and_unarchive,
    conversations::permanent_delete_removes_only_the_callers_copies,
    conversations::read_marks_read_and_shows_receipts,
    conversations::concurrent_deliveries_keep_unread_exact,
    conversations::conversation_refusals_change_nothing,
    conversations::receipts_and_unarchiving_raise_their_events,
    groups::create_group_makes_owner_a_member_and_announces,
    groups::group_reads_and_refusals,
    groups::join_rules,
    groups::leave_rules,
    groups::set_members_applies_the_difference,
    groups::a_large_group_change_is_pushed_in_bounded_batches,
    groups::failed_announcement_is_finished_by_the_next_call,
    groups::concurrent_joins_keep_every_member,
    groups::concurrent_set_members_serialize,
    groups::concurrent_creates_of_one_id_answer_201_once,
    groups::only_a_stalled_create_with_the_same_body_is_finished_by_a_retry,
    group_messages::group_message_fans_out_to_every_member,
    group_messages::joiner_gets_the_newest_history,
    group_messages::a_group_history_is_no_users_self_conversation,
    group_messages::racing_self_notes_and_group_messages_never_cross,
    group_messages::joiners_receive_every_message_sent_around_their_join,
    group_messages::a_leavers_conversation_ends_with_their_goodbye,
    webhooks::webhook_endpoints_are_kept_per_tenant_and_bounded,
    webhooks::concurrent_webhook_creates_never_exceed_the_bound,
    event_identity::a_redelivered_record_publishes_the_same_events,
    group_pushes::a_creation_pushes_nothing_on_groups,
    group_pushes::a_creation_delivered_with_a_join_pushes_the_join_only,
    inline_groups::an_inline_group_reaches_its_members_and_creates_no_group,
    inline_groups::an_inline_send_to_a_users_id_is_refused,
    inline_groups::a_row_left_inline_by_old_data_is_repaired_by_the_next_real_message,
    inline_groups::an_inline_send_never_takes_over_a_group_created_later,
    inline_groups::an_inline_copy_delivered_late_never_touches_a_real_conversation,
    read_races::a_message_applied_between_the_reads_clock_and_its_write_is_covered,
    read_races::a_group_read_covers_a_message_dated_later_than_the_last,
    read_races::the_peer_sees_the_same_mark,
    read_races::reads_racing_sends_agree_with_the_unread_count,
    unarchiving::only_a_received_message_raises_conversation_unarchived,
    unarchiving::ones_own_group_message_unarchives_without_an_event,
);

mod conversations;
mod event_identity;
mod group_messages;
mod group_pushes;
mod groups;
mod inline_groups;
mod messages;
mod read_races;
mod unarchiving;
mod webhooks;

// Helpers the families share.

pub(crate) fn create_input(name: &str, members: &[&str], id: Option<&str>) -> CreateGroup {
    CreateGroup {
        name: name.into(),
        members: members.iter().map(|m| crate::common::id(m)).collect(),
        group_id: id.map(crate::common::id),
        attributes: Default::default(),
        owner: None,
    }
}

pub(crate) async fn make_group(h: &Harness, id: &str, members: &[&str]) {
    chat21::ops::groups::create(
        &h.deps,
        &user("u1"),
        create_input("Team", members, Some(id)),
    )
    .await
    .unwrap();
    h.deliver_all().await;
}
