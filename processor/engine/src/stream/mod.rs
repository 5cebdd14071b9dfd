//! Reading a DynamoDB stream with the Streams API: shards, iterators, records as Lambda sees them.
//!
//! The only module that imports `aws_sdk_dynamodbstreams`. Records are converted into
//! `aws_lambda_events` records so that `tally consume` and `tally redrive` feed the engine exactly
//! what the Lambda gets.

use aws_lambda_events::event::dynamodb::{EventRecord, StreamRecord, UserIdentity};
use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{Record, Shard, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client as StreamsClient;
use chrono::{TimeZone, Utc};

/// Why the stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The table, named, has no stream enabled.
    #[error("table `{0}` has no stream enabled")]
    NoStream(String),
    /// The position is older than the stream's 24 h retention.
    #[error("{0}: the records are no longer in the stream (older than its 24 h retention)")]
    Trimmed(String),
    /// An iterator lives 15 minutes; get a new one from the last position.
    #[error("shard iterator expired")]
    ExpiredIterator,
    /// Any other failure of a Streams API call.
    #[error("DynamoDB Streams {operation} failed: {message}")]
    Service {
        /// The operation that failed (`DescribeStream`, `GetShardIterator`, `GetRecords`).
        operation: &'static str,
        /// What the service or the SDK said; for an error the service answered, its code first.
        message: String,
    },
}

fn service<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    err: SdkError<E, R>,
) -> StreamError {
    match err.code() {
        Some("TrimmedDataAccessException") => StreamError::Trimmed(err.message().unwrap_or("trimmed").to_owned()),
        Some("ExpiredIteratorException") => StreamError::ExpiredIterator,
        Some(code) => StreamError::Service { operation, message: format!("{code}: {}", err.message().unwrap_or_default()) },
        None => StreamError::Service { operation, message: aws_smithy_types::error::display::DisplayErrorContext(&err).to_string() },
    }
}

/// How long DynamoDB Streams keeps a record.
pub const STREAM_RETENTION: chrono::Duration = chrono::Duration::hours(24);

/// Empty pages in a row after which an open shard counts as caught up: DynamoDB Streams may
/// return an empty page before a later part of the shard that holds records. Enough for a
/// consumer, which polls again anyway.
pub const EMPTY_PAGES_CAUGHT_UP: u32 = 3;
/// Empty pages in a row after which a reader that must not miss a record (a redrive, backfill's
/// search for pending records) takes an open shard as read to its end.
pub const EMPTY_PAGES_AT_END: u32 = 20;

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The oldest record the shard still holds.
    TrimHorizon,
    /// Just after the newest record: only records written from then on.
    Latest,
    /// At the record with this sequence number.
    At(String),
    /// Just after the record with this sequence number.
    After(String),
}

/// One page of a shard.
#[derive(Debug)]
pub struct Page {
    /// Its records, in shard order, as Lambda delivers them.
    pub records: Vec<EventRecord>,
    /// `None` once a closed shard is read to its end.
    pub next: Option<String>,
}

/// The DynamoDB Streams service, through one client: what makes a [`StreamReader`] of any stream.
#[derive(Debug, Clone)]
pub struct Streams {
    client: StreamsClient,
}

impl Streams {
    /// The service through a client configured as the store's is (`AWS_ENDPOINT_URL_DYNAMODBSTREAMS`
    /// or `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials), `endpoint` and `region` overriding
    /// the environment (DynamoDB Local serves both APIs at one endpoint).
    pub async fn connect(endpoint: Option<&str>, region: Option<&str>) -> Self {
        Streams { client: StreamsClient::new(&crate::store::sdk_config(endpoint, region).await) }
    }

    /// A reader of the stream `arn`; its records name the stream's region (from the ARN).
    pub fn reader(&self, arn: &str) -> StreamReader {
        let region = arn.split(':').nth(3).unwrap_or_default();
        StreamReader::new(self.client.clone(), arn, region)
    }
}

/// A stream, by ARN.
#[derive(Debug, Clone)]
pub struct StreamReader {
    client: StreamsClient,
    arn: String,
    region: String,
}

impl StreamReader {
    /// The stream `arn` through `client`; `region` is given to records that do not name theirs.
    fn new(client: StreamsClient, arn: impl Into<String>, region: impl Into<String>) -> Self {
        StreamReader { client, arn: arn.into(), region: region.into() }
    }

    /// The stream's ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Every shard of the stream, open and closed. Paged by hand: the Streams SDK generates no
    /// paginator for `DescribeStream`.
    pub async fn shards(&self) -> Result<Vec<Shard>, StreamError> {
        let mut shards = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start)
                .send()
                .await
                .map_err(|err| service("DescribeStream", err))?;
            let description = output
                .stream_description
                .ok_or_else(|| StreamError::Service { operation: "DescribeStream", message: "no description".into() })?;
            shards.extend(description.shards.unwrap_or_default());
            start = description.last_evaluated_shard_id;
            if start.is_none() {
                return Ok(shards);
            }
        }
    }

    /// An iterator over the shard `shard_id` from `position`; `None` if the service gives none.
    pub async fn iterator(&self, shard_id: &str, position: &Position) -> Result<Option<String>, StreamError> {
        let (kind, sequence) = match position {
            Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            Position::Latest => (ShardIteratorType::Latest, None),
            Position::At(sequence) => (ShardIteratorType::AtSequenceNumber, Some(sequence.clone())),
            Position::After(sequence) => (ShardIteratorType::AfterSequenceNumber, Some(sequence.clone())),
        };
        let output = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard_id)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence)
            .send()
            .await
            .map_err(|err| service("GetShardIterator", err))?;
        Ok(output.shard_iterator)
    }

    /// The next page from `iterator`: at most `limit` records (the service takes 1 to 1,000), and
    /// the iterator to read on with.
    pub async fn page(&self, iterator: &str, limit: i32) -> Result<Page, StreamError> {
        let output =
            self.client.get_records().shard_iterator(iterator).limit(limit).send().await.map_err(|err| service("GetRecords", err))?;
        let records =
            output.records.unwrap_or_default().into_iter().map(|record| to_event_record(record, &self.arn, &self.region)).collect();
        Ok(Page { records, next: output.next_shard_iterator })
    }

    /// Reads every record the stream still holds, shard by shard, handing each page to `page`:
    /// closed shards to their end, open ones until [`EMPTY_PAGES_AT_END`]. An iterator that expires (after
    /// 15 minutes) is renewed after the last record read.
    pub async fn read_retained(&self, mut page: impl FnMut(Vec<EventRecord>)) -> Result<(), StreamError> {
        for shard in self.shards().await? {
            let Some(shard_id) = shard.shard_id() else { continue };
            let mut last: Option<String> = None;
            let mut iterator = self.iterator(shard_id, &Position::TrimHorizon).await?;
            let mut empty_pages = 0;
            while let Some(current) = iterator.take() {
                let read = match self.page(&current, 1000).await {
                    Ok(read) => read,
                    Err(StreamError::ExpiredIterator) => {
                        let from = last.clone().map_or(Position::TrimHorizon, Position::After);
                        iterator = self.iterator(shard_id, &from).await?;
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                empty_pages = if read.records.is_empty() { empty_pages + 1 } else { 0 };
                if let Some(sequence) = read.records.last().and_then(|record| record.change.sequence_number.clone()) {
                    last = Some(sequence);
                }
                page(read.records);
                if empty_pages >= EMPTY_PAGES_AT_END {
                    break;
                }
                iterator = read.next;
            }
        }
        Ok(())
    }
}

/// A Streams API record in the shape Lambda delivers.
pub fn to_event_record(record: Record, stream_arn: &str, region: &str) -> EventRecord {
    let mut event = EventRecord::default();
    event.event_id = record.event_id.unwrap_or_default();
    event.event_name = record.event_name.map(|name| name.as_str().to_owned()).unwrap_or_default();
    event.event_version = record.event_version;
    event.event_source = record.event_source;
    event.aws_region = record.aws_region.unwrap_or_else(|| region.to_owned());
    event.event_source_arn = Some(stream_arn.to_owned());
    event.user_identity = record.user_identity.map(|identity| {
        let mut user = UserIdentity::default();
        user.type_ = identity.r#type.unwrap_or_default();
        user.principal_id = identity.principal_id.unwrap_or_default();
        user
    });
    if let Some(stream) = record.dynamodb {
        let mut change = StreamRecord::default();
        if let Some(at) = stream.approximate_creation_date_time {
            if let chrono::LocalResult::Single(at) = Utc.timestamp_opt(at.secs(), at.subsec_nanos()) {
                change.approximate_creation_date_time = at;
            }
        }
        change.keys = stream.keys.unwrap_or_default().into();
        change.new_image = stream.new_image.unwrap_or_default().into();
        change.old_image = stream.old_image.unwrap_or_default().into();
        change.sequence_number = stream.sequence_number;
        change.size_bytes = stream.size_bytes.unwrap_or_default();
        event.change = change;
    }
    event
}
