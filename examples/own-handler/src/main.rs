//! The team's handler served through the Lambda Runtime API (`cargo lambda build` packages it as
//! `bootstrap`).

#![recursion_limit = "256"]

use std::process::ExitCode;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use own_handler::Greeter;
use tally_engine::rules_file::{self, RULES_ENV};
use tally_engine::store::DynamoTable;
use tally_engine::{telemetry, Engine};

/// Greets by logging: a team would call its email service here.
struct LogGreeter;

impl Greeter for LogGreeter {
    fn greet(&self, event_id: &str, course: &str, student: &str) {
        tracing::info!(event_id, course, student, "Welcome sent.");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_logging(true);
    // The rules and the table are set up once, at init, and shared by every invocation.
    let rules_path = std::env::var_os(RULES_ENV).filter(|path| !path.is_empty()).map(std::path::PathBuf::from);
    let rules = match rules_file::load_for_process(rules_path.as_deref()) {
        Ok(rules) => rules,
        Err(err) => {
            tracing::error!(error = %err, "The rules do not load.");
            return ExitCode::from(2);
        }
    };
    let table_name = std::env::var("TABLE_NAME").unwrap_or_else(|_| "university".to_owned());
    let table = DynamoTable::connect(table_name, None, None, rules.clone()).await;
    let engine = &Engine::new(rules, table);
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        own_handler::handle(engine, &LogGreeter, event).await.map_err(|err| Diagnostic {
            error_type: tally_engine::decode::DecodeError::ERROR_TYPE.to_owned(),
            error_message: err.to_string(),
        })
    }))
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "Lambda runtime stopped.");
            ExitCode::from(2)
        }
    }
}
