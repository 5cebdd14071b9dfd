//! The `tally` command line: the engine run by hand, with the same code path as the Lambda.
//!
//! One module per command; [`consumer`] and [`failure_queue`] bring records to the engine
//! outside Lambda (`tally consume`, `tally redrive`); [`audit`] compares the table with a recompute;
//! [`rules`] checks and explains a rules file (`tally rules`).

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![recursion_limit = "256"]

pub mod audit;
pub mod backfill;
pub mod consume;
pub mod consumer;
pub mod failure_queue;
pub mod init;
pub mod progress;
pub mod redrive;
pub mod replay;
pub mod report;
pub mod rules;
mod scan;
pub mod seed;
pub mod verify;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use aggregates::Rules;
use tally_engine::store::DynamoTable;

/// Exact aggregates from a DynamoDB stream: the tally engine, run by hand.
#[derive(Debug, Parser)]
#[command(name = "tally", version, propagate_version = true, rename_all = "kebab-case")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Table to work on.
    #[arg(long, global = true, env = "TABLE_NAME", default_value = "university")]
    pub table: String,
    /// DynamoDB endpoint; defaults to the SDK's AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL.
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// AWS region; defaults to the SDK's AWS_REGION / profile.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Print one machine-readable JSON summary on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Rules file (TOML, as aggregates/rules/university.toml): the table's entities and
    /// aggregates. Without it (or empty, as the Lambda's TALLY_RULES may be), the university
    /// rules built into tally.
    #[arg(long, global = true, env = "TALLY_RULES", value_name = "FILE", value_parser = clap::builder::ValueParser::os_string())]
    rules: Option<std::ffi::OsString>,
    /// The rules every command but `tally rules` runs under, loaded by [`run`] before it runs.
    #[arg(skip)]
    pub loaded_rules: Option<&'static Rules>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the table the rules describe (keys, GSIs, TTL, stream NEW_AND_OLD_IMAGES); idempotent.
    Init(init::Opts),
    /// Apply Lambda DynamoDB event files through the engine, exactly as the Lambda does; a
    /// malformed file fails the command before anything is written.
    Replay(replay::Opts),
    /// Recompute every aggregate from the table and compare, writing nothing; exits 1 on drift.
    Verify(verify::Opts),
    /// Recompute every aggregate from a scan and write what differs (and reset the ledgers).
    Backfill(backfill::Opts),
    /// Write a realistic, reproducible university workload to the table (for demos and benchmarks);
    /// university rules only.
    Seed(seed::Opts),
    /// Read the table's stream like Lambda's event source mapping and apply it.
    Consume(consume::Opts),
    /// Re-apply the stream ranges named by Lambda's on-failure destination messages.
    Redrive(redrive::Opts),
    /// Show the aggregates: per aggregate of the rules, its top items (or every day), with their
    /// fields and averages.
    Report(report::Opts),
    /// Check a rules file, explain what it makes of an item image, or derive the stream filter
    /// from it; writes nothing and needs no table.
    Rules(rules::Opts),
}

impl Common {
    /// The rules file named by `--rules` or `TALLY_RULES`, unless empty.
    pub fn rules_file(&self) -> Option<&std::path::Path> {
        self.rules.as_deref().filter(|path| !path.is_empty()).map(std::path::Path::new)
    }

    /// The rules the command runs under: `--rules` as [`run`] loaded it, else the university's.
    pub fn rules(&self) -> &'static Rules {
        self.loaded_rules.unwrap_or_else(Rules::university)
    }

    /// The table, through a client configured from these flags and the environment, its items
    /// read and written by [`Common::rules`].
    pub async fn connect(&self) -> DynamoTable {
        DynamoTable::connect(self.table.clone(), self.endpoint.as_deref(), self.region.as_deref(), self.rules()).await
    }

    /// The table, as [`Common::connect`] gives it, once it is known to be keyed as the rules
    /// say: rules for another table would miss every key tally reads and writes.
    pub async fn open(&self) -> anyhow::Result<DynamoTable> {
        let table = self.connect().await;
        self.check_keys(&table).await?;
        Ok(table)
    }

    /// Fails naming both when `table` is keyed by other attributes than the rules'.
    pub async fn check_keys(&self, table: &DynamoTable) -> anyhow::Result<()> {
        let other = tally_engine::store::schema::other_keys(table)
            .await
            .with_context(|| format!("reading the key schema of table `{}`", self.table))?;
        if let Some(other) = other {
            let rules = self.rules();
            anyhow::bail!(
                "table `{}` is keyed by `{}`/`{}`, but the rules ({}) name `{}`/`{}`: run with the rules the table was made for \
                 (--rules / TALLY_RULES)",
                self.table,
                other.pk,
                other.sk.as_deref().unwrap_or("(no sort key)"),
                rules.source_name(),
                rules.table().pk(),
                rules.table().sk()
            );
        }
        Ok(())
    }

    /// A DynamoDB Streams client; `--endpoint` applies to it too (DynamoDB Local serves both).
    pub async fn streams_client(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&tally_engine::store::sdk_config(self.endpoint.as_deref(), self.region.as_deref()).await)
    }
}

/// Runs a command; the exit code follows `verify`'s convention: 0 ok, 1 drift, 2 error.
/// Rules that do not load stop every command but `tally rules` (which reports on them) with 2,
/// each problem printed as `tally rules check` prints it.
pub async fn run(mut cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    if !matches!(cli.command, Command::Rules(_)) {
        match rules::load_or_report(&rules::Origin::choose(None, &cli.common), &cli.common)? {
            Ok(loaded) => cli.common.loaded_rules = Some(loaded),
            Err(code) => return Ok(code),
        }
    }
    match cli.command {
        Command::Init(opts) => init::cmd(&cli.common, opts).await,
        Command::Replay(opts) => replay::cmd(&cli.common, opts).await,
        Command::Verify(opts) => verify::cmd(&cli.common, opts).await,
        Command::Backfill(opts) => backfill::cmd(&cli.common, opts).await,
        Command::Seed(opts) => seed::cmd(&cli.common, opts).await,
        Command::Consume(opts) => consume::cmd(&cli.common, opts).await,
        Command::Redrive(opts) => redrive::cmd(&cli.common, opts).await,
        Command::Report(opts) => report::cmd(&cli.common, opts).await,
        Command::Rules(opts) => rules::cmd(&cli.common, opts),
    }
}

/// What to do about a batch left partly unapplied, where running `rerun` again is how the
/// records would be delivered again.
pub(crate) fn rerun_advice(failure: &tally_engine::engine::BatchFailure, rerun: &str) -> String {
    use tally_engine::engine::Cause;
    match &failure.cause {
        Some(Cause::Deadline { .. }) => format!("{rerun} again to resume"),
        Some(Cause::Store(_)) => format!("running {rerun} again cannot help until that is fixed"),
        None => format!("every other record was applied; running {rerun} again cannot help until what DynamoDB refuses is fixed"),
    }
}

pub(crate) use tally_engine::rules_file::text_bytes;
