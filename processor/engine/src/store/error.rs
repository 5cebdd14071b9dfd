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
    /// DynamoDB refused the request for what it holds (`ValidationException`: a key or a value it
    /// cannot store). Permanent for these items, but other items may go through: the engine
    /// narrows such a failure down to the items that cause it.
    #[error("DynamoDB refused {operation} for its items: {message}")]
    Refused { operation: &'static str, message: String },
    /// Will fail again whatever the items: permissions, a missing table. Do not retry.
    #[error("DynamoDB rejected {operation}: {message}")]
    Permanent { operation: &'static str, message: String },
    /// An item tally owns does not have the shape tally writes.
    #[error("item pk=`{}` sk=`{}` is corrupt: {problem}", .key.pk, .key.sk)]
    Corrupt { key: ItemKey, problem: String },
}

impl StoreError {
    /// Whether trying again (after re-planning, for [`StoreError::Changed`]) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Changed(_) | StoreError::Transient { .. })
    }

    /// Whether the table does not exist.
    pub fn is_missing_table(&self) -> bool {
        matches!(self, StoreError::Permanent { message, .. } if message.starts_with(MISSING_TABLE_CODE))
    }
}

/// The code DynamoDB answers for a table that does not exist.
const MISSING_TABLE_CODE: &str = "ResourceNotFoundException";

/// The code DynamoDB answers when a request holds something it cannot store.
const VALIDATION_CODE: &str = "ValidationException";

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
/// Cancellation reason codes that name an item DynamoDB cannot store.
const REFUSED_CANCELLATION_CODES: &[&str] = &["ValidationError", "ItemCollectionSizeLimitExceeded"];

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
            } else if code == VALIDATION_CODE {
                StoreError::Refused { operation, message }
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
    let any = |codes: &[&str]| reasons.iter().any(|reason| reason.code().is_some_and(|code| codes.contains(&code)));
    if any(TRANSIENT_CANCELLATION_CODES) {
        StoreError::Transient { operation: "TransactWriteItems", message }
    } else if any(REFUSED_CANCELLATION_CODES) {
        StoreError::Refused { operation: "TransactWriteItems", message }
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
            StoreError::Refused { .. }
        ));
        assert!(matches!(classify_cancellation(&[reason("None"), reason("Unknown")], &keys, String::new()), StoreError::Permanent { .. }));
    }

    fn service_error(code: &str, status: u16) -> SdkError<aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError, HttpResponse> {
        use aws_sdk_dynamodb::error::ErrorMetadata;
        use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
        let response = HttpResponse::new(status.try_into().unwrap(), aws_smithy_types::body::SdkBody::empty());
        SdkError::service_error(BatchGetItemError::generic(ErrorMetadata::builder().code(code).message("m").build()), response)
    }

    #[test]
    fn service_errors_are_classified_by_code_and_status() {
        let verdict = |code, status| match classify("BatchGetItem", &service_error(code, status)) {
            StoreError::Transient { .. } => "transient",
            StoreError::Refused { .. } => "refused",
            StoreError::Permanent { .. } => "permanent",
            other => panic!("{other:?}"),
        };
        assert_eq!(verdict("ThrottlingException", 400), "transient");
        assert_eq!(verdict("ProvisionedThroughputExceededException", 400), "transient");
        assert_eq!(verdict("InternalServerError", 500), "transient");
        assert_eq!(verdict("SomethingNew", 503), "transient");
        assert_eq!(verdict("ValidationException", 400), "refused");
        assert_eq!(verdict("AccessDeniedException", 400), "permanent");
        assert_eq!(verdict("ResourceNotFoundException", 400), "permanent");
        assert!(StoreError::Transient { operation: "x", message: String::new() }.is_retryable());
        assert!(classify("BatchGetItem", &service_error("ResourceNotFoundException", 400)).is_missing_table());
        assert!(!classify("BatchGetItem", &service_error("AccessDeniedException", 400)).is_missing_table());
        assert!(!StoreError::Refused { operation: "x", message: String::new() }.is_retryable());
    }
}
