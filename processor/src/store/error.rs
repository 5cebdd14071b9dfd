//! How DynamoDB failures are classified: the one place that decides what is worth retrying.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

use crate::decode::ItemKey;

/// A DynamoDB item as the SDK holds it.
pub type SdkItem = HashMap<String, AttributeValue>;

/// Why a read or a commit did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A condition failed: these items are no longer what was read. Carries their current state
    /// (`None` if absent) so the caller can re-plan without reading again. Retry after re-planning.
    #[error("{} item(s) changed since they were read", .0.len())]
    Changed(Vec<(ItemKey, Option<SdkItem>)>),
    /// Throttling, a transaction conflict, a 5xx, a timeout or a lost connection, after the SDK's
    /// own retries. Retry with backoff; the write may or may not have been applied.
    #[error("transient DynamoDB failure in {operation}: {message}")]
    Transient { operation: &'static str, message: String },
    /// Will fail again: validation, permissions, a missing table. Do not retry.
    #[error("DynamoDB rejected {operation}: {message}")]
    Permanent { operation: &'static str, message: String },
    /// An item tally owns does not have the shape tally writes.
    #[error("item pk=`{}` sk=`{}` is corrupt: {problem}", .key.pk, .key.sk)]
    Corrupt { key: ItemKey, problem: String },
}

/// Error codes DynamoDB documents as transient.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Cancellation reason codes that clear up on retry (`ConditionalCheckFailed` is handled apart).
const TRANSIENT_CANCELLATION_CODES: &[&str] = &["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

/// Classifies an SDK error from any operation by its code and HTTP status: documented transient
/// codes and any 5xx are retried.
pub fn classify<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Transient { operation, message: aws_smithy_types::error::display::DisplayErrorContext(err).to_string() }
        }
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("UnknownError");
            let message = format!("{code}: {}", context.err().message().unwrap_or("no message"));
            if TRANSIENT_CODES.contains(&code) || context.raw().status().is_server_error() {
                StoreError::Transient { operation, message }
            } else {
                StoreError::Permanent { operation, message }
            }
        }
        _ => StoreError::Permanent { operation, message: aws_smithy_types::error::display::DisplayErrorContext(err).to_string() },
    }
}

/// Classifies a cancelled transaction from its per-action reasons, aligned with `keys`.
pub fn classify_cancellation(reasons: &[aws_sdk_dynamodb::types::CancellationReason], keys: &[ItemKey], message: String) -> StoreError {
    let changed: Vec<(ItemKey, Option<SdkItem>)> = reasons
        .iter()
        .zip(keys)
        .filter(|(reason, _)| reason.code() == Some("ConditionalCheckFailed"))
        .map(|(reason, key)| (key.clone(), reason.item().cloned()))
        .collect();
    if !changed.is_empty() {
        return StoreError::Changed(changed);
    }
    let transient = reasons.iter().any(|reason| reason.code().is_some_and(|code| TRANSIENT_CANCELLATION_CODES.contains(&code)));
    if transient {
        StoreError::Transient { operation: "TransactWriteItems", message }
    } else {
        StoreError::Permanent { operation: "TransactWriteItems", message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn reason(code: &str) -> CancellationReason {
        CancellationReason::builder().code(code).build()
    }

    fn key(sk: &str) -> ItemKey {
        ItemKey { pk: "p".into(), sk: sk.into() }
    }

    #[test]
    fn failed_conditions_name_the_changed_items() {
        let item: SdkItem = [("pk".to_owned(), AttributeValue::S("p".into()))].into();
        let reasons = [
            reason("None"),
            CancellationReason::builder().code("ConditionalCheckFailed").set_item(Some(item.clone())).build(),
            reason("None"),
        ];
        match classify_cancellation(&reasons, &[key("a"), key("b"), key("c")], String::new()) {
            StoreError::Changed(changed) => assert_eq!(changed, vec![(key("b"), Some(item))]),
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn conflicts_and_throttling_are_transient_validation_is_not() {
        let keys = [key("a"), key("b")];
        assert!(matches!(
            classify_cancellation(&[reason("None"), reason("TransactionConflict")], &keys, String::new()),
            StoreError::Transient { .. }
        ));
        assert!(matches!(
            classify_cancellation(&[reason("ThrottlingError"), reason("None")], &keys, String::new()),
            StoreError::Transient { .. }
        ));
        assert!(matches!(
            classify_cancellation(&[reason("ValidationError"), reason("None")], &keys, String::new()),
            StoreError::Permanent { .. }
        ));
    }
}
