//! How DynamoDB failures are classified: the one place that decides what is worth retrying.

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::AggregateKey;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};

use crate::items::ItemKey;
use crate::items::{Ledger, StoredAggregate};
use crate::store::codec::Codec;

/// A DynamoDB item as the SDK holds it.
pub type SdkItem = HashMap<String, AttributeValue>;

/// Why a read or a commit did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A condition failed: these items are no longer what was read. Carries their current state
    /// so the caller can re-plan without reading again. Retry after re-planning.
    #[error("{} item(s) changed since they were read", .0.len())]
    Changed(Vec<Current>),
    /// Throttling, a transaction conflict, a 5xx, a timeout or a lost connection, after the SDK's
    /// own retries. Retry with backoff; the write may or may not have been applied.
    #[error("transient DynamoDB failure in {}: {}", .0.operation, .0.message)]
    Transient(Failure),
    /// DynamoDB refused the request for what it holds (`ValidationException`: a key or a value it
    /// cannot store). Permanent for these items, but other items may go through: the engine
    /// narrows such a failure down to the items that cause it.
    #[error("DynamoDB refused {} for its items: {}", .0.operation, .0.message)]
    Refused(Failure),
    /// Will fail again whatever the items: permissions, a missing table. Do not retry.
    #[error("DynamoDB rejected {}: {}", .0.operation, .0.message)]
    Permanent(Failure),
    /// An item where tally keeps a ledger or an aggregate is not tally's: it does not carry the
    /// type tally gives that kind of item in the rules' type attribute (an application item at a
    /// key one of the rules' templates also gives, say). tally neither decodes nor replaces it.
    /// Permanent for the items that need it, but other items may go through: the engine narrows
    /// such a failure down to them. Names the kind and the key, never what the item holds.
    #[error(
        "item pk=`{}` sk=`{}` is not tally's `{entity_type}`: its `{type_attribute}` is not `{entity_type}`, and tally neither \
         reads nor replaces an item it does not own",
        .key.pk,
        .key.sk
    )]
    NotOwned {
        /// Where tally keeps the ledger or the aggregate.
        key: ItemKey,
        /// The type tally gives that item: the aggregate's name, or `tally_ledger`.
        entity_type: String,
        /// The rules' type attribute (`entityType`).
        type_attribute: String,
    },
    /// An item of tally's own type does not have the shape tally writes. Permanent for the items
    /// that need it, but other items may go through: the engine narrows it down as it does
    /// [`StoreError::Refused`].
    #[error("item pk=`{}` sk=`{}` is corrupt: {problem}", .key.pk, .key.sk)]
    Corrupt {
        /// The item's key.
        key: ItemKey,
        /// What is wrong with it.
        problem: String,
    },
}

/// The state, at the failed commit, of an item whose condition failed (`None`: it is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// A ledger.
    Ledger {
        /// The source item it belongs to.
        source: ItemKey,
        /// The ledger as it is.
        ledger: Option<Ledger>,
    },
    /// An aggregate.
    Aggregate {
        /// The aggregate.
        key: AggregateKey,
        /// The aggregate as it is.
        stored: Option<StoredAggregate>,
    },
}

/// A failed DynamoDB operation: what DynamoDB (or the SDK) said, and the SDK's typed error when
/// there is one ([`Failure::sdk_error`]). [`StoreError`] already shows the message, so it does not
/// chain the failure as its source: an error printed with its causes would repeat it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The operation that failed (`BatchGetItem`, `TransactWriteItems`, ...).
    pub operation: &'static str,
    /// DynamoDB's error code (`ThrottlingException`, `ValidationException`, ...), when it gave one.
    pub code: Option<String>,
    /// What DynamoDB or the SDK said; for an error DynamoDB answered, its code first.
    pub message: String,
    sdk_error: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Failure {
    /// A failure the store found itself, with no SDK error behind it.
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        Failure { operation, code: None, message: message.into(), sdk_error: None }
    }

    fn of_sdk<E>(operation: &'static str, code: Option<&str>, message: String, err: SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Failure { operation, code: code.map(str::to_owned), message, sdk_error: Some(Arc::new(err)) }
    }

    /// The SDK's error, typed per operation (`SdkError<BatchGetItemError, HttpResponse>`, ...).
    pub fn sdk_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.sdk_error.as_deref().and_then(|err| err.downcast_ref())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.sdk_error.as_deref().map(|err| err as &(dyn std::error::Error + 'static))
    }
}

/// What to do about a [`StoreError`]: the one decision every loop that retries acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the same request again after a pause ([`crate::retry::retry_until`]).
    Retry,
    /// Take the items' current state, plan again from it, and commit that.
    Replan,
    /// Set aside the items that cause it; other items may go on.
    SetAside,
    /// Stop: trying again cannot help.
    Stop,
}

impl StoreError {
    /// What to do about this failure.
    pub fn verdict(&self) -> Verdict {
        match self {
            StoreError::Transient(_) => Verdict::Retry,
            StoreError::Changed(_) => Verdict::Replan,
            StoreError::Refused(_) | StoreError::NotOwned { .. } | StoreError::Corrupt { .. } => Verdict::SetAside,
            StoreError::Permanent(_) => Verdict::Stop,
        }
    }

    /// Whether trying again (after re-planning, for [`StoreError::Changed`]) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.verdict(), Verdict::Retry | Verdict::Replan)
    }

    /// Whether the failure is permanent for the items involved but says nothing of any other:
    /// DynamoDB refused them, or one of their ledgers or aggregates is not tally's or is corrupt.
    /// The engine sets aside the items that cause it and applies the rest of their batch.
    pub fn is_permanent_for_its_items(&self) -> bool {
        self.verdict() == Verdict::SetAside
    }

    /// Whether the table does not exist.
    pub fn is_missing_table(&self) -> bool {
        matches!(self, StoreError::Permanent(failure) if failure.code.as_deref() == Some(MISSING_TABLE_CODE))
    }
}

/// The code DynamoDB answers for a table that does not exist.
const MISSING_TABLE_CODE: &str = "ResourceNotFoundException";

/// The code of a transaction cancelled for the reasons it lists, one per action.
const CANCELLED_CODE: &str = "TransactionCanceledException";

/// The cancellation reason of an action whose condition failed.
const CONDITION_FAILED_CODE: &str = "ConditionalCheckFailed";

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
/// codes and any 5xx are retried. The one place that decides; the error is kept as the source.
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            let message = DisplayErrorContext(&err).to_string();
            StoreError::Transient(Failure::of_sdk(operation, None, message, err))
        }
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("UnknownError").to_owned();
            let message = format!("{code}: {}", context.err().message().unwrap_or("no message"));
            let transient = TRANSIENT_CODES.contains(&code.as_str()) || context.raw().status().is_server_error();
            let failure = Failure::of_sdk(operation, Some(&code), message, err);
            if transient {
                StoreError::Transient(failure)
            } else if code == VALIDATION_CODE {
                StoreError::Refused(failure)
            } else {
                StoreError::Permanent(failure)
            }
        }
        _ => {
            let message = DisplayErrorContext(&err).to_string();
            StoreError::Permanent(Failure::of_sdk(operation, None, message, err))
        }
    }
}

/// Classifies a failed `TransactWriteItems` whose actions wrote `keys`, in order. A cancelled
/// transaction is classified by its per-action reasons: failed conditions come back as
/// [`StoreError::Changed`] with each item's current state, decoded; but a condition that failed
/// on an item that is not tally's (the reason returns the item, `ALL_OLD`, without tally's type
/// for it) is [`StoreError::NotOwned`], which no re-plan can pass.
pub(crate) fn classify_commit(err: SdkError<TransactWriteItemsError, HttpResponse>, keys: &[ItemKey], codec: &Codec) -> StoreError {
    const OPERATION: &str = "TransactWriteItems";
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
        return classify(OPERATION, err);
    };
    let reasons = cancelled.cancellation_reasons();
    let changed: Result<Vec<Current>, StoreError> = reasons
        .iter()
        .zip(keys)
        .filter(|(reason, _)| reason.code() == Some(CONDITION_FAILED_CODE))
        .map(|(reason, key)| codec.current(key, reason.item()))
        .collect();
    match changed {
        Ok(changed) if !changed.is_empty() => return StoreError::Changed(changed),
        Ok(_) => {}
        Err(corrupt) => return corrupt,
    }
    let any = |codes: &[&str]| reasons.iter().any(|reason| reason.code().is_some_and(|code| codes.contains(&code)));
    let verdict = if any(TRANSIENT_CANCELLATION_CODES) {
        StoreError::Transient
    } else if any(REFUSED_CANCELLATION_CODES) {
        StoreError::Refused
    } else {
        StoreError::Permanent
    };
    let codes: Vec<&str> = reasons.iter().filter_map(CancellationReason::code).filter(|code| *code != "None").collect();
    let message = format!("{}: {}", codes.join(", "), cancelled.message().unwrap_or("transaction cancelled"));
    verdict(Failure::of_sdk(OPERATION, Some(CANCELLED_CODE), message, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
    use aws_sdk_dynamodb::types::error::{ProvisionedThroughputExceededException, TransactionCanceledException};
    use aws_smithy_types::body::SdkBody;

    use crate::items::AggregateWrite;
    use aggregates::{AggregateValues, Rules};

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().expect("a valid status"), SdkBody::empty())
    }

    fn service_error(code: &str, status: u16) -> SdkError<BatchGetItemError, HttpResponse> {
        SdkError::service_error(BatchGetItemError::generic(ErrorMetadata::builder().code(code).message("m").build()), response(status))
    }

    fn cancelled(reasons: Vec<CancellationReason>) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let exception =
            TransactionCanceledException::builder().message("Transaction cancelled").set_cancellation_reasons(Some(reasons)).build();
        SdkError::service_error(TransactWriteItemsError::TransactionCanceledException(exception), response(400))
    }

    fn reason(code: &str) -> CancellationReason {
        CancellationReason::builder().code(code).build()
    }

    fn verdict(err: &StoreError) -> &'static str {
        match err {
            StoreError::Transient(_) => "transient",
            StoreError::Refused(_) => "refused",
            StoreError::Permanent(_) => "permanent",
            StoreError::Changed(_) => "changed",
            StoreError::NotOwned { .. } => "not owned",
            StoreError::Corrupt { .. } => "corrupt",
        }
    }

    fn course(id: &str) -> AggregateKey {
        Rules::university().parse_key(&format!("course#{id}"), "stats").unwrap()
    }

    fn codec() -> Codec {
        Codec::new(std::sync::Arc::new(Rules::university().clone()))
    }

    #[test]
    fn service_errors_are_classified_by_code_and_status() {
        let of = |code, status| verdict(&classify("BatchGetItem", service_error(code, status)));
        assert_eq!(of("ThrottlingException", 400), "transient");
        assert_eq!(of("ProvisionedThroughputExceededException", 400), "transient");
        assert_eq!(of("InternalServerError", 500), "transient");
        assert_eq!(of("SomethingNew", 503), "transient");
        assert_eq!(of("ValidationException", 400), "refused");
        assert_eq!(of("AccessDeniedException", 400), "permanent");
        assert_eq!(of("ResourceNotFoundException", 400), "permanent");
    }

    #[test]
    fn predicates_say_what_retrying_can_do() {
        let throttled = classify("BatchGetItem", service_error("ThrottlingException", 400));
        assert!(throttled.is_retryable());
        let invalid = classify("BatchGetItem", service_error("ValidationException", 400));
        assert!(!invalid.is_retryable() && matches!(invalid, StoreError::Refused(_)));
        let missing = classify("BatchGetItem", service_error("ResourceNotFoundException", 400));
        assert!(missing.is_missing_table() && !missing.is_retryable());
        assert!(!classify("BatchGetItem", service_error("AccessDeniedException", 400)).is_missing_table());
        assert!(StoreError::Changed(Vec::new()).is_retryable());
    }

    #[test]
    fn the_typed_sdk_error_is_kept_for_those_who_need_it() {
        // As the SDK deserializes it: the code travels in the error's metadata.
        let meta = ErrorMetadata::builder().code("ProvisionedThroughputExceededException").message("slow down").build();
        let exception = ProvisionedThroughputExceededException::builder().message("slow down").meta(meta).build();
        let err = SdkError::service_error(BatchGetItemError::ProvisionedThroughputExceededException(exception), response(400));
        let StoreError::Transient(failure) = classify("BatchGetItem", err) else { panic!("throughput exceeded is transient") };
        assert_eq!(failure.code.as_deref(), Some("ProvisionedThroughputExceededException"));
        let typed = failure.sdk_error::<SdkError<BatchGetItemError, HttpResponse>>().expect("the SDK error, typed per operation");
        assert!(typed.as_service_error().is_some_and(BatchGetItemError::is_provisioned_throughput_exceeded_exception));
        assert!(std::error::Error::source(&failure).is_some());
    }

    #[test]
    fn an_error_printed_with_its_causes_says_its_message_once() {
        let err = classify("Scan", service_error("ResourceNotFoundException", 400));
        let mut chain = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(source) = cause {
            chain.push_str(&format!(": {source}"));
            cause = source.source();
        }
        assert_eq!(chain, "DynamoDB rejected Scan: ResourceNotFoundException: m");
    }

    #[test]
    fn failed_conditions_come_back_as_the_items_current_state() {
        let key = course("c1");
        let stored = StoredAggregate { values: AggregateValues::zero(Rules::university(), key.kind), version: 7 };
        let write = AggregateWrite { key: key.clone(), expected_version: Some(7), stored: stored.clone() };
        let item = codec().encode_aggregate(&write, chrono::Utc::now()).item;
        let reasons = vec![
            reason("None"),
            CancellationReason::builder().code("ConditionalCheckFailed").set_item(Some(item)).build(),
            reason("ConditionalCheckFailed"),
        ];
        let keys = [ItemKey::from(&course("c0")), ItemKey::from(&key), codec().ledger_key(&ItemKey { pk: "p".into(), sk: "s".into() })];
        match classify_commit(cancelled(reasons), &keys, &codec()) {
            StoreError::Changed(changed) => assert_eq!(
                changed,
                vec![
                    Current::Aggregate { key, stored: Some(stored) },
                    Current::Ledger { source: ItemKey { pk: "p".into(), sk: "s".into() }, ledger: None }
                ]
            ),
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn cancellations_are_classified_by_their_reasons() {
        let keys = [ItemKey::from(&course("a")), ItemKey::from(&course("b"))];
        let of = |codes: [&str; 2]| verdict(&classify_commit(cancelled(codes.map(reason).to_vec()), &keys, &codec()));
        assert_eq!(of(["None", "TransactionConflict"]), "transient");
        assert_eq!(of(["ThrottlingError", "None"]), "transient");
        assert_eq!(of(["ValidationError", "None"]), "refused");
        assert_eq!(of(["None", "ItemCollectionSizeLimitExceeded"]), "refused");
        assert_eq!(of(["None", "Unknown"]), "permanent");
        let refused = classify_commit(cancelled(vec![reason("ValidationError"), reason("None")]), &keys, &codec());
        assert_eq!(refused.to_string(), "DynamoDB refused TransactWriteItems for its items: ValidationError: Transaction cancelled");
    }

    #[test]
    fn a_condition_that_failed_on_an_item_tally_does_not_own_refuses_its_items() {
        let keys = [ItemKey::from(&course("c0")), ItemKey::from(&course("c1"))];
        let note: SdkItem = [
            ("pk".to_owned(), AttributeValue::S("course#c1".into())),
            ("sk".to_owned(), AttributeValue::S("stats".into())),
            ("entityType".to_owned(), AttributeValue::S("note".into())),
            ("title".to_owned(), AttributeValue::S("a private title".into())),
        ]
        .into();
        let mut untyped = note.clone();
        untyped.remove("entityType");
        for item in [note, untyped] {
            let reasons = vec![reason("None"), CancellationReason::builder().code("ConditionalCheckFailed").set_item(Some(item)).build()];
            let err = classify_commit(cancelled(reasons), &keys, &codec());
            assert_eq!(verdict(&err), "not owned");
            assert!(err.is_permanent_for_its_items() && !err.is_retryable());
            let message = err.to_string();
            assert!(message.contains("pk=`course#c1` sk=`stats`") && message.contains("is not tally's `stats`"), "{message}");
            assert!(!message.contains("note") && !message.contains("private"), "no item values: {message}");
        }
    }

    #[test]
    fn a_failed_condition_on_a_key_that_is_neither_a_ledger_nor_an_aggregate_is_corruption() {
        let keys = [ItemKey { pk: "user#u1".into(), sk: "profile".into() }];
        assert_eq!(verdict(&classify_commit(cancelled(vec![reason("ConditionalCheckFailed")]), &keys, &codec())), "corrupt");
    }
}
