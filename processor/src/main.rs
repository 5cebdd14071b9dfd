//! `tally`: the Lambda function when run by Lambda, the command-line tool otherwise.

#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser as _;
use lambda_runtime::{service_fn, LambdaEvent};

use processor::cli::{self, Cli};
use processor::engine::Engine;
use processor::store::{connect, DynamoTable};
use processor::{handler, telemetry};

const DEFAULT_TABLE: &str = "university";

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return match run_lambda().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "Lambda runtime stopped.");
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::parse();
    telemetry::init_logging(false);
    match cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tally: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Serves Lambda invocations. The client is built once, at init, and shared by every invocation.
async fn run_lambda() -> anyhow::Result<()> {
    telemetry::init_logging(true);
    let table_name = std::env::var("TABLE_NAME").unwrap_or_else(|_| DEFAULT_TABLE.to_owned());
    let metrics = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(telemetry::NAMESPACE)
        .with_dimension("TableName", table_name.clone())
        .init()
        .map_err(|err| anyhow::anyhow!("installing the metrics recorder: {err}"))?;
    telemetry::describe();
    let engine = Engine::new(DynamoTable::new(connect(None, None).await, table_name.clone()));
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
    .map_err(|err| anyhow::anyhow!("lambda runtime: {err}"))
}
