//! Conversations on DynamoDB: one row per (user, peer or group), updated by one conditional
//! UpdateItem per message (`apply`); read, listed, archived, deleted and marked read here.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::DynamoStore;
use super::apply::{flag, newest_at_most, newest_of, string};
use super::item::{KIND, LAST, StoredRow, conversation_key, conversation_of, kind_of, row_of};
use super::request::{Expr, PK, n, s};
use crate::adapters::retry::{Attempt, retry};
use crate::error::Result;
use crate::keys;
use crate::model::Conversation;
use crate::ports::{
    Applied, ConversationKind, ConversationStore, Page, PageRequest, ReadMark, RowUpdate,
    TimelineView,
};

/// The condition that the row exists and is not deleted.
fn live(e: &mut Expr) -> String {
    let deleted = e.name("deleted");
    format!(
        "attribute_exists({}) AND (attribute_not_exists({deleted}) OR {deleted} = {})",
        e.name(PK),
        e.value(AttributeValue::Bool(false))
    )
}

impl DynamoStore {
    /// Sets `fields` on a conversation row that exists and is not deleted, and returns the
    /// conversation as it is then (`None`: no such conversation).
    async fn update_live_row<const N: usize>(
        &self,
        app: &str,
        user: &str,
        with: &str,
        fields: [(&str, AttributeValue); N],
    ) -> Result<Option<Conversation>> {
        let mut e = Expr::default();
        let sets: Vec<String> = fields
            .into_iter()
            .map(|(name, value)| format!("{} = {}", e.name(name), e.value(value)))
            .collect();
        let update = format!("SET {}", sets.join(", "));
        let condition = live(&mut e);
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        match self.table.update_item(update).await? {
            Some(item) => conversation_of(item),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn apply(&self, owner: &str, with: &str, update: &RowUpdate) -> Result<Applied> {
        self.apply_to_row(owner, with, update).await
    }

    async fn lags(&self, app: &str, owner: &str, with: &str, order: &str) -> Result<bool> {
        let row = self
            .table
            .get_projected(conversation_key(app, owner, with), &[LAST, KIND])
            .await?;
        Ok(row.is_none_or(|r| {
            kind_of(string(&r, KIND).as_deref()) != ConversationKind::Direct
                || string(&r, LAST).is_none_or(|last| last.as_str() < order)
        }))
    }

    async fn get_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        match self.table.get(conversation_key(app, user, with)).await? {
            Some(item) => conversation_of(item),
            None => Ok(None),
        }
    }

    async fn timeline_view(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<TimelineView>> {
        match self.table.get(conversation_key(app, user, with)).await? {
            Some(item) => Ok(Some(row_of(item)?.view())),
            None => Ok(None),
        }
    }

    async fn list_conversations(
        &self,
        app: &str,
        user: &str,
        archived: bool,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        // Every row of the user (one partition, no index to keep up to date on each message),
        // ordered here as the lists are: newest first.
        let items = self
            .table
            .query_all(
                keys::user_pk(app, user),
                "begins_with(#sk, :c)",
                vec![(":c", s("C#"))],
            )
            .await?;
        let mut listed = Vec::new();
        for item in items {
            let row: StoredRow = row_of(item)?;
            if row.deleted() || row.archived() != archived {
                continue;
            }
            let conversation = row.conversation();
            let order =
                keys::conversation_order(archived, conversation.last.timestamp, &conversation.key);
            listed.push((order, conversation));
        }
        listed.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(page.page_of(listed))
    }

    async fn archive_conversation(
        &self,
        app: &str,
        user: &str,
        with: &str,
    ) -> Result<Option<Conversation>> {
        let fields = [("archived", AttributeValue::Bool(true))];
        self.update_live_row(app, user, with, fields).await
    }

    async fn delete_conversation(&self, app: &str, user: &str, with: &str) -> Result<()> {
        // A tombstone: out of the lists, its messages so far out of the timeline, no open
        // window; a newer message brings the conversation back.
        let mut e = Expr::default();
        let update = format!(
            "SET {} = {}, {} = {}, {} = {}, {} = {} REMOVE {}, {}",
            e.name("deleted"),
            e.value(AttributeValue::Bool(true)),
            e.name("archived"),
            e.value(AttributeValue::Bool(false)),
            e.name("unread_count"),
            e.value(n(0)),
            e.name("cleared_to"),
            e.name(LAST),
            e.name("open_from"),
            e.name("closed"),
        );
        let condition = format!("attribute_exists({})", e.name(PK));
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }

    async fn mark_read(
        &self,
        app: &str,
        user: &str,
        with: &str,
        at: u64,
    ) -> Result<Option<Conversation>> {
        // One conditional write: the mark at `at` if no newer message was applied; else the
        // row as it is tells the newest, and the mark moves up to it.
        retry("the conversation kept changing", at, |at| async move {
            let mut e = Expr::default();
            let update = format!(
                "SET {} = {}, {} = {}, {} = {}",
                e.name("is_new"),
                e.value(AttributeValue::Bool(false)),
                e.name("unread_count"),
                e.value(n(0)),
                e.name("read_at"),
                e.value(n(at))
            );
            let condition = format!("{} AND {}", live(&mut e), newest_at_most(&mut e, at));
            let update =
                self.table
                    .update(conversation_key(app, user, with), update, condition, &e)?;
            match self
                .table
                .update_returning_or_current(update, ReturnValue::AllNew)
                .await?
            {
                Ok(marked) => Ok(Attempt::Done(conversation_of(marked)?)),
                Err(current) if !current.contains_key(PK) || flag(&current, "deleted") => {
                    Ok(Attempt::Done(None))
                }
                Err(current) => Ok(Attempt::Again(
                    newest_of(&current).map_or(at, |n| n.max(at)),
                )),
            }
        })
        .await
    }

    async fn raise_read_mark(
        &self,
        app: &str,
        user: &str,
        with: &str,
        mark: ReadMark,
        at: u64,
    ) -> Result<()> {
        let mut e = Expr::default();
        let mark = e.name(mark.attribute());
        let at = e.value(n(at));
        let update = format!("SET {mark} = {at}");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({mark}) OR {mark} < {at})",
            e.name(PK)
        );
        let update = self
            .table
            .update(conversation_key(app, user, with), update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }

    async fn open_window(&self, app: &str, member: &str, group: &str, from: &str) -> Result<()> {
        let mut e = Expr::default();
        let open = e.name("open_from");
        let from = e.value(s(from));
        let update = format!("SET {open} = {from}");
        let condition = format!(
            "attribute_exists({}) AND (attribute_not_exists({open}) OR {open} > {from})",
            e.name(PK)
        );
        let update =
            self.table
                .update(conversation_key(app, member, group), update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }

    async fn close_window(&self, app: &str, member: &str, group: &str, at: &str) -> Result<()> {
        let key = conversation_key(app, member, group);
        let Some(row) = self.table.get(key.clone()).await? else {
            return Ok(());
        };
        let Some(from) = string(&row, "open_from").filter(|f| f != keys::CLOSED_WINDOW) else {
            return Ok(());
        };
        let mut e = Expr::default();
        let closed = e.name("closed");
        let open = e.name("open_from");
        let window = AttributeValue::M(
            [
                ("from".to_string(), s(from.as_str())),
                ("to".to_string(), s(at)),
            ]
            .into(),
        );
        let update = format!(
            "SET {closed} = list_append(if_not_exists({closed}, {}), {}), {open} = {}",
            e.value(AttributeValue::L(Vec::new())),
            e.value(AttributeValue::L(vec![window])),
            e.value(s(keys::CLOSED_WINDOW))
        );
        let condition = format!("{open} = {}", e.value(s(from)));
        let update = self.table.update(key, update, condition, &e)?;
        self.table.update_item(update).await.map(|_| ())
    }
}
