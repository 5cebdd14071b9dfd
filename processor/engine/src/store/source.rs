//! Writing source items as the application writes them, for `tally seed`: plain `PutItem` and
//! `DeleteItem`, one item at a time and unconditioned, so that the stream carries exactly what an
//! application's writes would put on it (one record per write, in the order written; a batch
//! write could not hold two writes of one item).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::items::ItemKey;
use crate::store::error::{classify, SdkItem, StoreError};
use crate::store::DynamoTable;

impl DynamoTable {
    /// Writes `image` whole, replacing any item with its key.
    pub async fn put_source(&self, image: serde_dynamo::Item) -> Result<(), StoreError> {
        let item: SdkItem = image.into();
        self.client().put_item().table_name(self.name()).set_item(Some(item)).send().await.map_err(|err| classify("PutItem", err))?;
        Ok(())
    }

    /// Deletes the item `key`; one that is already gone is no error.
    pub async fn delete_source(&self, key: &ItemKey) -> Result<(), StoreError> {
        let table = self.codec().rules().table();
        self.client()
            .delete_item()
            .table_name(self.name())
            .key(table.pk(), AttributeValue::S(key.pk.clone()))
            .key(table.sk(), AttributeValue::S(key.sk.clone()))
            .send()
            .await
            .map_err(|err| classify("DeleteItem", err))?;
        Ok(())
    }
}
