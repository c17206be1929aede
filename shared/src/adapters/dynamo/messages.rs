//! Messages on DynamoDB: sent records (retry safety), copies, timelines.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, PutRequest, TransactWriteItem, WriteRequest,
};

use super::item::{Place, item_of, message_item, message_key, parse};
use super::request::{Item, PK, SK, built, key, n};
use super::{DynamoStore, EXPIRES, SENT_RECORD_TTL_SECS};
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{Message, SentRecord};
use crate::ports::{MessageStore, Page, PageRequest};

fn sent_key(message: &Message) -> Item {
    key(
        keys::sent_pk(&message.app_id, &message.sender),
        message.message_id.clone(),
    )
}

impl DynamoStore {
    /// Puts messages in batches; one request may not name the same item twice, so the last
    /// of each is kept.
    async fn put_messages(&self, messages: &[Message], place: Place) -> Result<()> {
        let mut unique: HashMap<(String, String), Item> = HashMap::new();
        for message in messages {
            let item = message_item(message, place)?;
            let id = match (item.get(PK), item.get(SK)) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                    (pk.clone(), sk.clone())
                }
                _ => return Err(Error::internal("a message item without its key")),
            };
            unique.insert(id, item);
        }
        let requests = unique
            .into_values()
            .map(|item| {
                let put = built(PutRequest::builder().set_item(Some(item)).build())?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.table.batch_write(requests).await
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn claim_sent(&self, record: &SentRecord) -> Result<Option<SentRecord>> {
        let m = &record.message;
        let mut item = item_of(
            record,
            keys::sent_pk(&m.app_id, &m.sender),
            m.message_id.clone(),
        )?;
        let expires = self.clock.now_ms() / 1000 + SENT_RECORD_TTL_SECS;
        item.insert(EXPIRES.into(), n(expires));
        match self.table.put_if_absent(item).await? {
            None => Ok(None),
            Some(earlier) => parse(earlier).map(Some),
        }
    }

    async fn mark_published(&self, message: &Message) -> Result<()> {
        self.table.set_flag(sent_key(message), "published").await
    }

    async fn abandon_sent(&self, message: &Message) -> Result<()> {
        let sent = built(
            Delete::builder()
                .table_name(&self.table.name)
                .set_key(Some(sent_key(message)))
                .condition_expression("published = :f")
                .expression_attribute_values(":f", AttributeValue::Bool(false))
                .build(),
        )?;
        let copy = built(
            Delete::builder()
                .table_name(&self.table.name)
                .set_key(Some(message_key(message, Place::of_canonical(message))))
                .build(),
        )?;
        let actions = vec![
            TransactWriteItem::builder().delete(sent).build(),
            TransactWriteItem::builder().delete(copy).build(),
        ];
        // A failed condition means it was published after all: then it must stay.
        self.table.transact(actions).await.map(|_| ())
    }

    async fn put_copies(&self, copies: &[Message]) -> Result<()> {
        self.put_messages(copies, Place::Timeline).await
    }

    async fn put_history(&self, messages: &[Message]) -> Result<()> {
        self.put_messages(messages, Place::History).await
    }

    async fn get_copy(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Message>> {
        let k = key(
            keys::timeline_pk(app, owner, with),
            keys::message_sk(sender, message_id),
        );
        self.table.get(k).await?.map(parse).transpose()
    }

    async fn list_history(
        &self,
        app: &str,
        group: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        self.table
            .query_page(keys::history_pk(app, group), None, page)
            .await
    }

    async fn list_messages(
        &self,
        app: &str,
        owner: &str,
        with: &str,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        self.table
            .query_page(keys::timeline_pk(app, owner, with), None, page)
            .await
    }
}
