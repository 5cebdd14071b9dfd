//! Durable consumer positions, kept in the table as bookkeeping items the engine skips.
//!
//! `pk` = `tally#checkpoint#{stream ARN}`, `sk` = shard id; `sequenceNumber` is the last record
//! applied (absent until one is), `finished` marks a closed shard read to its end.

use std::collections::HashMap;

use aggregates::keys::{ENTITY_TYPE, PK, SK, UPDATED_AT};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};

use crate::store::error::{classify, StoreError};
use crate::store::DynamoTable;

use crate::registry::attributes::SEQUENCE_NUMBER;
use crate::registry::CHECKPOINT;

const FINISHED: &str = "finished";

/// One shard's position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: Option<String>,
    pub finished: bool,
}

/// The checkpoints of one stream, read and written through the table.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    table: DynamoTable,
    pk: String,
}

impl Checkpoints {
    pub fn new(table: DynamoTable, stream_arn: &str) -> Self {
        Checkpoints { table, pk: format!("{}{stream_arn}", CHECKPOINT.pk_prefix) }
    }

    pub async fn load(&self) -> Result<HashMap<String, Checkpoint>, StoreError> {
        let mut checkpoints = HashMap::new();
        self.table
            .for_each_in_partition(&self.pk, |item| {
                let Some(AttributeValue::S(shard)) = item.get(SK) else { return Ok(()) };
                let sequence = match item.get(SEQUENCE_NUMBER) {
                    Some(AttributeValue::S(sequence)) => Some(sequence.clone()),
                    _ => None,
                };
                let finished = matches!(item.get(FINISHED), Some(AttributeValue::Bool(true)));
                checkpoints.insert(shard.clone(), Checkpoint { sequence, finished });
                Ok(())
            })
            .await?;
        Ok(checkpoints)
    }

    pub async fn save(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(shard.to_owned())),
            (ENTITY_TYPE.to_owned(), AttributeValue::S(CHECKPOINT.entity_type.to_owned())),
            (FINISHED.to_owned(), AttributeValue::Bool(checkpoint.finished)),
            (UPDATED_AT.to_owned(), AttributeValue::S(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))),
        ]);
        if let Some(sequence) = &checkpoint.sequence {
            item.insert(SEQUENCE_NUMBER.to_owned(), AttributeValue::S(sequence.clone()));
        }
        let put = self.table.client().put_item().table_name(self.table.name()).set_item(Some(item));
        put.send().await.map_err(|err| classify("PutItem", err))?;
        Ok(())
    }
}
