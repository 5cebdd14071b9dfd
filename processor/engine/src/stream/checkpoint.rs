//! Durable consumer positions, kept in the table as bookkeeping items the engine skips.
//!
//! `pk` = `tally#checkpoint#{stream ARN}`, `sk` = shard id; `sequenceNumber` is the last record
//! applied (absent until one is), `finished` marks a closed shard read to its end.

use std::collections::HashMap;

use aggregates::keys::{ENTITY_TYPE, PK, SK, UPDATED_AT};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client as DynamoDbClient;
use chrono::{SecondsFormat, Utc};

use crate::store::error::{classify, StoreError};

pub const CHECKPOINT_ENTITY_TYPE: &str = "tally_checkpoint";
const SEQUENCE_NUMBER: &str = "sequenceNumber";
const FINISHED: &str = "finished";

/// One shard's position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: Option<String>,
    pub finished: bool,
}

#[derive(Debug, Clone)]
pub struct Checkpoints {
    client: DynamoDbClient,
    table: String,
    pk: String,
}

impl Checkpoints {
    pub fn new(client: DynamoDbClient, table: impl Into<String>, stream_arn: &str) -> Self {
        Checkpoints { client, table: table.into(), pk: format!("tally#checkpoint#{stream_arn}") }
    }

    pub async fn load(&self) -> Result<HashMap<String, Checkpoint>, StoreError> {
        let mut checkpoints = HashMap::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(self.pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| classify("Query", &err))?;
            for item in output.items.unwrap_or_default() {
                let shard = match item.get(SK) {
                    Some(AttributeValue::S(shard)) => shard.clone(),
                    _ => continue,
                };
                let sequence = match item.get(SEQUENCE_NUMBER) {
                    Some(AttributeValue::S(sequence)) => Some(sequence.clone()),
                    _ => None,
                };
                let finished = matches!(item.get(FINISHED), Some(AttributeValue::Bool(true)));
                checkpoints.insert(shard, Checkpoint { sequence, finished });
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(checkpoints);
            }
        }
    }

    pub async fn save(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(shard.to_owned())),
            (ENTITY_TYPE.to_owned(), AttributeValue::S(CHECKPOINT_ENTITY_TYPE.to_owned())),
            (FINISHED.to_owned(), AttributeValue::Bool(checkpoint.finished)),
            (UPDATED_AT.to_owned(), AttributeValue::S(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))),
        ]);
        if let Some(sequence) = &checkpoint.sequence {
            item.insert(SEQUENCE_NUMBER.to_owned(), AttributeValue::S(sequence.clone()));
        }
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(|err| classify("PutItem", &err))?;
        Ok(())
    }
}
