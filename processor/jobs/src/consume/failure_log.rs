//! The failure log: where the consumer writes the positions of batches it gave up, one JSON
//! message per line, in the shape of Lambda's on-failure destination message for a stream batch
//! (what `tally redrive` reads).

use std::io::Write as _;
use std::path::Path;

use aws_lambda_events::event::dynamodb::EventRecord;
use serde::{Deserialize, Serialize};

use crate::error::ConsumeError;

/// Lambda's on-failure destination message for a stream batch: positions only, no records.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailureMessage {
    /// Why the batch was given up (`condition`, `reason`) and after how many attempts.
    #[serde(rename = "requestContext")]
    pub request_context: serde_json::Value,
    /// The message format's version.
    pub version: String,
    /// When the batch was given up.
    pub timestamp: String,
    /// The batch's positions.
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: BatchInfo,
}

/// Where a batch given up lies in the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    /// Its shard.
    pub shard_id: String,
    /// Its first record's sequence number.
    pub start_sequence_number: String,
    /// Its last record's sequence number.
    pub end_sequence_number: String,
    /// When its first record reached the stream, roughly.
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<String>,
    /// When its last record reached the stream, roughly.
    #[serde(default)]
    pub approximate_arrival_of_last_record: Option<String>,
    /// Its number of records.
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Its stream.
    pub stream_arn: String,
}

impl FailureMessage {
    /// The message for `records` of `shard` in `stream_arn`, given up after `attempts` for `reason`.
    pub(super) fn new(stream_arn: &str, shard: &str, records: &[EventRecord], attempts: u32, reason: &str) -> Self {
        let sequence = |record: Option<&EventRecord>| record.and_then(|record| record.change.sequence_number.clone()).unwrap_or_default();
        let arrival = |record: Option<&EventRecord>| record.map(|record| record.change.approximate_creation_date_time.to_rfc3339());
        FailureMessage {
            request_context: serde_json::json!({
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": "tally consume",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
                "reason": reason,
            }),
            version: "1.0".into(),
            timestamp: chrono::Utc::now().to_rfc3339(),
            batch: BatchInfo {
                shard_id: shard.to_owned(),
                start_sequence_number: sequence(records.first()),
                end_sequence_number: sequence(records.last()),
                approximate_arrival_of_first_record: arrival(records.first()),
                approximate_arrival_of_last_record: arrival(records.last()),
                batch_size: Some(records.len() as u64),
                stream_arn: stream_arn.to_owned(),
            },
        }
    }

    /// Appends the message to the log at `path` as one line, creating the file if need be.
    pub(super) fn append_to(&self, path: &Path) -> Result<(), ConsumeError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ConsumeError::OpenFailureLog { path: path.to_owned(), source })?;
        let written = serde_json::to_string(self).map_err(std::io::Error::from).and_then(|line| writeln!(file, "{line}"));
        written.map_err(|source| ConsumeError::WriteFailureLog { path: path.to_owned(), source })
    }
}
