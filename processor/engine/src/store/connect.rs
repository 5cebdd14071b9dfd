//! Building the SDK client from the standard AWS environment.

use std::sync::Arc;
use std::time::Duration;

use aggregates::Rules;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::Client as DynamoDbClient;

use crate::store::DynamoTable;

/// Per-attempt limit: a hung connection must not eat the invocation's whole budget.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client configured from the environment (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` /
/// `AWS_ENDPOINT_URL_DYNAMODB`); `endpoint` and `region`, when given, override it.
///
/// The SDK retries throttling and 5xx itself (standard mode, 3 attempts); the engine's loop
/// handles what remains.
pub async fn connect(endpoint: Option<&str>, region: Option<&str>) -> DynamoDbClient {
    DynamoDbClient::new(&sdk_config(endpoint, region).await)
}

/// The shared SDK configuration behind [`connect`].
pub async fn sdk_config(endpoint: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::standard().with_max_attempts(3)).timeout_config(
            TimeoutConfig::builder().operation_attempt_timeout(ATTEMPT_TIMEOUT).connect_timeout(Duration::from_secs(3)).build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

impl DynamoTable {
    /// The table `name` through a client from [`connect`]: callers outside the store never hold
    /// the SDK client themselves.
    pub async fn connect(name: impl Into<String>, endpoint: Option<&str>, region: Option<&str>, rules: Arc<Rules>) -> DynamoTable {
        DynamoTable::new(connect(endpoint, region).await, name, rules)
    }
}
