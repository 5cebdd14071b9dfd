//! `tally`: the engine run by hand.

use std::process::ExitCode;

use clap::Parser as _;

use tally_cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tally_engine::telemetry::init_logging(false);
    match tally_cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tally: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
