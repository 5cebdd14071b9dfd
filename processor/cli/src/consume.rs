//! `tally consume`: read the table's stream like Lambda's event source mapping and apply it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::Context;
use tally_engine::store::checkpoints::Checkpoints;
use tally_engine::stream::{Position, StreamError};
use tally_engine::Engine;
use tally_jobs::backfill::in_progress;
use tally_jobs::consume::{ConsumeOptions, Consumer};

/// Where `--from` starts a shard that has no checkpoint yet.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum From {
    /// The oldest record still in the stream (24 h).
    TrimHorizon,
    /// Only records written from now on.
    Latest,
}

/// The flags of `tally consume`.
#[derive(Debug, Args)]
pub struct Opts {
    /// Where to start a shard that has no checkpoint yet.
    #[arg(long, value_enum, default_value = "trim-horizon")]
    pub from: From,
    /// Most records in one batch (1 to 10000, as for Lambda's event source mapping).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,
    /// Milliseconds to gather records into a batch before delivering a partial one.
    #[arg(long, default_value_t = 500)]
    pub batch_window: u64,
    /// Retries of a failing batch before its positions go to the failure log.
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// Seconds the engine gets for one batch attempt.
    #[arg(long, default_value_t = 60)]
    pub batch_timeout: u64,
    /// Exit once every shard is drained, instead of running until SIGINT/SIGTERM.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Where positions of batches that exhausted their retries are written, one JSON message per
    /// line in the shape of Lambda's on-failure destination (input to `tally redrive`).
    #[arg(long, default_value = "tally-failures.jsonl")]
    pub failure_log: PathBuf,
    /// Stream ARN; by default the table's latest stream.
    #[arg(long)]
    pub stream_arn: Option<String>,
}

/// Applies the stream's batches from each shard's checkpoint (a shard without one from `--from`),
/// until SIGINT/SIGTERM or, with `--until-caught-up`, until every shard is drained.
///
/// Exit status: 0 done, 1 records sent to the failure log, 2 error (a failure retrying cannot fix
/// included; the checkpoint stays before its batch).
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let table = ctx.open().await?;
    let arn = match opts.stream_arn {
        Some(arn) => arn,
        None => table.latest_stream_arn().await?.ok_or_else(|| StreamError::NoStream(ctx.table.clone()))?,
    };
    let reader = ctx.stream_reader(&arn).await;
    let checkpoints = Checkpoints::new(table.clone(), &arn);
    let engine = Engine::new(Arc::clone(&ctx.rules), table);
    in_progress::ensure_finished(engine.store()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_signal(stop.clone()));
    let options = ConsumeOptions {
        from: match opts.from {
            From::TrimHorizon => Position::TrimHorizon,
            From::Latest => Position::Latest,
        },
        batch_size: usize::from(opts.batch_size),
        batch_window: Duration::from_millis(opts.batch_window),
        max_retries: opts.max_retries,
        batch_timeout: Duration::from_secs(opts.batch_timeout),
        until_caught_up: opts.until_caught_up,
        poll_interval: Duration::from_secs(1),
        failure_log: opts.failure_log.clone(),
    };
    let summary = Consumer::new(&engine, reader, checkpoints, options, stop).run().await?;
    if ctx.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("consumed {} records in {} batches from {arn}", summary.totals.records, summary.batches);
        for (class, count) in &summary.totals.by_class {
            println!("  {class:<16} {count}");
        }
        for (reason, count) in &summary.totals.rejected {
            println!("  rejected {reason:<10} {count}");
        }
        println!("retries {}, bisections {}, shards finished {}", summary.retries, summary.bisections, summary.shards_finished);
        if summary.records_to_failure_log > 0 {
            println!(
                "{} record(s) sent to {} (replay them with `tally redrive`)",
                summary.records_to_failure_log,
                opts.failure_log.display()
            );
        }
    }
    Ok(if summary.records_to_failure_log > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Sets `stop` on SIGINT or SIGTERM; the consumer finishes the batch in flight and returns.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("Stopping after the batch in flight.");
    stop.store(true, Ordering::Relaxed);
}
