//! `bootstrap`: the Lambda function, served through the Lambda Runtime API.

#![recursion_limit = "256"]

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};

use tally_engine::rules_file::{self, RULES_ENV};
use tally_engine::store::DynamoTable;
use tally_engine::telemetry;
use tally_engine::Engine;
use tally_lambda::handler;

const DEFAULT_TABLE: &str = "university";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "Lambda runtime stopped.");
            ExitCode::from(2)
        }
    }
}

/// Serves Lambda invocations. The rules and the client are built once, at init, and shared by
/// every invocation; rules that do not load fail init, before any record is taken.
async fn run() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging(true);
    let table_name = std::env::var("TABLE_NAME").unwrap_or_else(|_| DEFAULT_TABLE.to_owned());
    // A path relative to the package: the function runs in it (`LAMBDA_TASK_ROOT`).
    let rules_path = std::env::var_os(RULES_ENV).filter(|path| !path.is_empty()).map(std::path::PathBuf::from);
    let rules = rules_file::load_for_process(rules_path.as_deref()).map_err(|err| format!("loading the rules ({RULES_ENV}): {err}"))?;
    tracing::info!(rules = rules.source_name(), digest = rules.digest(), "Rules loaded.");
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(telemetry::NAMESPACE)
        .with_dimension("TableName", table_name.clone())
        .init()
        .map_err(|err| format!("installing the metrics recorder: {err}"))?;
    telemetry::describe();
    let table = DynamoTable::connect(table_name, None, None, Arc::clone(&rules)).await;
    let engine = &Engine::new(rules, table);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let response = handler::handle(engine, event).await;
        // Losing metrics must not turn an applied batch into a function error.
        if let Err(err) = metrics.flush(std::io::stdout()) {
            tracing::error!(error = %err, "Flushing metrics failed.");
        }
        response.map_err(|err| handler::function_error(&err))
    }))
    .await
}
