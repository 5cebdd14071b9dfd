//! Durable consumer positions, kept in the table as bookkeeping items the engine skips.
//!
//! `pk` = `tally#checkpoint#{stream ARN}`, `sk` = shard id; `sequenceNumber` is the last record
//! applied (absent until one is), `finished` marks a closed shard read to its end.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use crate::items::ItemKey;
use crate::store::error::{classify, StoreError};
use crate::store::DynamoTable;

use crate::registry::attributes::{FINISHED, SEQUENCE_NUMBER};
use crate::registry::CHECKPOINT;

/// One shard's position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The sequence number of the last record applied from the shard; `None` until one is.
    pub sequence: Option<String>,
    /// Whether the shard is closed and was read to its end.
    pub finished: bool,
}

/// The checkpoints of one stream, read and written through the table.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    table: DynamoTable,
    pk: String,
}

impl Checkpoints {
    /// The checkpoints of the stream `stream_arn`, kept in `table`.
    pub fn new(table: DynamoTable, stream_arn: &str) -> Self {
        let pk = format!("{}{stream_arn}", CHECKPOINT.pk_prefix(table.codec().rules().table()));
        Checkpoints { table, pk }
    }

    /// Every shard's checkpoint, by shard id (consistent reads).
    pub async fn load(&self) -> Result<HashMap<String, Checkpoint>, StoreError> {
        let mut checkpoints = HashMap::new();
        let sk = self.table.codec().rules().table().sk();
        self.table
            .for_each_in_partition(&self.pk, |item| {
                let Some(AttributeValue::S(shard)) = item.get(sk) else { return Ok(()) };
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

    /// Writes `shard`'s checkpoint, replacing the one before.
    pub async fn save(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let key = ItemKey { pk: self.pk.clone(), sk: shard.to_owned() };
        let mut item = self.table.codec().bookkeeping_item(CHECKPOINT, &key, Utc::now());
        item.insert(FINISHED.to_owned(), AttributeValue::Bool(checkpoint.finished));
        if let Some(sequence) = &checkpoint.sequence {
            item.insert(SEQUENCE_NUMBER.to_owned(), AttributeValue::S(sequence.clone()));
        }
        let put = self.table.client().put_item().table_name(self.table.name()).set_item(Some(item));
        put.send().await.map_err(|err| classify("PutItem", err))?;
        Ok(())
    }
}
