//! `tally`: the engine run by hand.

use std::process::ExitCode;

use clap::Parser as _;

use tally_cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_broken_pipe();
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

/// `tally ... | head` closes the pipe before tally is done: the reader's choice, not an error of
/// tally's. Rust ignores SIGPIPE, so the write fails and `println!` panics; exit instead as a
/// process SIGPIPE ends does (128 + 13), without a panic message. Progress goes to stderr, so
/// this can only cut short what a command prints once its work is done.
fn quiet_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|message| message.starts_with("failed printing to stdout") && message.contains("Broken pipe")) {
            std::process::exit(141);
        }
        report(info);
    }));
}
