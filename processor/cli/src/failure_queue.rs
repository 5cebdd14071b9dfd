//! The SQS queue Lambda's event source mapping sends failed batches to (its on-failure
//! destination), drained by `tally redrive --queue-url`.
//!
//! The only module that imports `aws_sdk_sqs`. A message is deleted only by [`FailureQueue::delete`],
//! which the caller invokes once the message's range has been applied: a message whose redrive
//! fails becomes visible again after its visibility timeout, so nothing is lost.

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::Client as SqsClient;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Most messages one `ReceiveMessage` returns.
const MAX_RECEIVE: i32 = 10;

/// Why the queue could not be read or a message acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} on {queue_url} failed: {message}")]
pub struct QueueError {
    /// The SQS action that failed: `ReceiveMessage` or `DeleteMessage`.
    pub operation: &'static str,
    /// The queue's URL.
    pub queue_url: String,
    /// What SQS answered: its error code and message, else the SDK's error.
    pub message: String,
}

/// One received message: its body and the handle that deletes it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message's SQS id, the same each time it is received.
    pub message_id: String,
    /// The handle of its latest receipt, the one that deletes it.
    pub receipt_handle: String,
    /// The message's body: Lambda's on-failure message, as JSON text.
    pub body: String,
}

/// The failure queue at one URL: its messages received, and each deleted once its range is applied.
#[derive(Debug, Clone)]
pub struct FailureQueue {
    client: SqsClient,
    url: String,
}

impl FailureQueue {
    /// The queue at `url`, through a client configured from the SDK's environment
    /// (`AWS_ENDPOINT_URL_SQS`, `AWS_REGION`, credentials), `region` overriding it.
    pub async fn connect(url: impl Into<String>, region: Option<&str>) -> Self {
        let client = SqsClient::new(&tally_engine::store::sdk_config(None, region).await);
        FailureQueue { client, url: url.into() }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        operation: &'static str,
        err: SdkError<E, R>,
    ) -> QueueError {
        let message = match err.code() {
            Some(code) => format!("{code}: {}", err.message().unwrap_or_default()),
            None => DisplayErrorContext(&err).to_string(),
        };
        QueueError { operation, queue_url: self.url.clone(), message }
    }

    /// Receives messages until the queue answers with none or `limit` are held, hiding each for
    /// `visibility` so no other reader takes it while its range is redriven.
    ///
    /// Every message is received before any is applied, so that ranges can be applied oldest
    /// first across messages, which an exact baseline correction needs (docs/design.md).
    pub async fn receive_all(&self, limit: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let mut received = Vec::new();
        while received.len() < limit {
            let want = (limit - received.len()).min(MAX_RECEIVE as usize) as i32;
            let output = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(want)
                .visibility_timeout(i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX))
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|err| self.error("ReceiveMessage", err))?;
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let (Some(message_id), Some(receipt_handle)) = (message.message_id, message.receipt_handle) else {
                    continue;
                };
                // A message seen again (its visibility ran out mid-drain) keeps one entry, with
                // the newest receipt handle: only that one deletes it.
                match received.iter_mut().find(|seen: &&mut Received| seen.message_id == message_id) {
                    Some(seen) => seen.receipt_handle = receipt_handle,
                    None => received.push(Received { message_id, receipt_handle, body: message.body.unwrap_or_default() }),
                }
            }
        }
        Ok(received)
    }

    /// Acknowledges a message for good.
    pub async fn delete(&self, message: &Received) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&message.receipt_handle)
            .send()
            .await
            .map_err(|err| self.error("DeleteMessage", err))?;
        Ok(())
    }
}
