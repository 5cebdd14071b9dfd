//! `bootstrap`: the Lambda function, served through the Lambda Runtime API.

#![recursion_limit = "256"]

use std::process::ExitCode;

use lambda_runtime::{service_fn, LambdaEvent};

use tally_engine::engine::Engine;
use tally_engine::store::DynamoTable;
use tally_engine::telemetry;
use tally_lambda::handler;

const DEFAULT_TABLE: &str = "university";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = ?err, "Lambda runtime stopped.");
            ExitCode::from(2)
        }
    }
}

/// Serves Lambda invocations. The client is built once, at init, and shared by every invocation.
async fn run() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging(true);
    let table_name = std::env::var("TABLE_NAME").unwrap_or_else(|_| DEFAULT_TABLE.to_owned());
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(telemetry::NAMESPACE)
        .with_dimension("TableName", table_name.clone())
        .init()
        .map_err(|err| format!("installing the metrics recorder: {err}"))?;
    telemetry::describe();
    let engine = Engine::new(DynamoTable::connect(table_name.clone(), None, None).await);
    let engine = &engine;
    let table_name = table_name.as_str();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let response = handler::handle(engine, table_name, event).await;
        // Losing metrics must not turn an applied batch into a function error.
        if let Err(err) = metrics.flush(std::io::stdout()) {
            tracing::error!(error = %err, "Flushing metrics failed.");
        }
        response.map_err(lambda_runtime::Error::from)
    }))
    .await
}
