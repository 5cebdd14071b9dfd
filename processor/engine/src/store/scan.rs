//! Parallel scans of the whole table, for verify and backfill.

use aws_sdk_dynamodb::Client as DynamoDbClient;

use crate::store::error::{classify, SdkItem, StoreError};

/// Scans one segment of `total` (consistent reads), handing each page's items to `page`.
pub async fn scan_segment(
    client: &DynamoDbClient,
    table: &str,
    segment: u32,
    total: u32,
    mut page: impl FnMut(Vec<SdkItem>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut start = None;
    loop {
        let output = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .segment(segment as i32)
            .total_segments(total as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|err| classify("Scan", &err))?;
        start = output.last_evaluated_key;
        page(output.items.unwrap_or_default())?;
        if start.is_none() {
            return Ok(());
        }
    }
}
