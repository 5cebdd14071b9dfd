//! The `tally` command line: the engine run by hand, with the same code path as the Lambda.
//!
//! One module per command; the long jobs over a table (`tally verify`, `tally backfill`, `tally
//! consume`) are [`tally_jobs`]'s, and their commands here resolve the flags and print what the
//! jobs did. [`failure_queue`] brings records to the engine outside Lambda (`tally redrive`);
//! [`rules`] checks and explains a rules file (`tally rules`).

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![recursion_limit = "256"]
#![deny(missing_docs)]

pub mod backfill;
pub mod consume;
pub mod failure_queue;
pub mod init;
pub mod progress;
pub mod redrive;
pub mod replay;
pub mod report;
pub mod rules;
pub mod seed;
pub mod verify;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use std::sync::Arc;

use aggregates::Rules;
use tally_engine::store::DynamoTable;
use tally_engine::stream::{StreamReader, Streams};

/// Exact aggregates from a DynamoDB stream: the tally engine, run by hand.
#[derive(Debug, Parser)]
#[command(name = "tally", version, propagate_version = true, rename_all = "kebab-case")]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub common: Common,
    /// The command to run.
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
}

/// The commands: those on a table, run under the rules loaded first, and `tally rules`, which
/// loads the rules it reports on itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A command on the table.
    #[command(flatten)]
    Table(TableCommand),
    /// Check a rules file, explain what it makes of an item image, or derive the stream filter
    /// from it; writes nothing and needs no table.
    Rules(rules::Opts),
}

/// The commands that work on a table, under the rules loaded before they run.
#[derive(Debug, Subcommand)]
pub enum TableCommand {
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
}

impl TableCommand {
    /// Runs the command in `ctx`.
    async fn run(self, ctx: &Context) -> anyhow::Result<std::process::ExitCode> {
        match self {
            TableCommand::Init(opts) => init::cmd(ctx, opts).await,
            TableCommand::Replay(opts) => replay::cmd(ctx, opts).await,
            TableCommand::Verify(opts) => verify::cmd(ctx, opts).await,
            TableCommand::Backfill(opts) => backfill::cmd(ctx, opts).await,
            TableCommand::Seed(opts) => seed::cmd(ctx, opts).await,
            TableCommand::Consume(opts) => consume::cmd(ctx, opts).await,
            TableCommand::Redrive(opts) => redrive::cmd(ctx, opts).await,
            TableCommand::Report(opts) => report::cmd(ctx, opts).await,
        }
    }
}

impl Common {
    /// The rules file named by `--rules` or `TALLY_RULES`, unless empty.
    pub fn rules_file(&self) -> Option<&std::path::Path> {
        self.rules.as_deref().filter(|path| !path.is_empty()).map(std::path::Path::new)
    }
}

/// What every command but `tally rules` runs with: the flags resolved once, the rules loaded.
/// Commands take their table and rules from here, never from the flags again.
#[derive(Debug)]
pub struct Context {
    /// The rules the table's items follow.
    pub rules: Arc<Rules>,
    /// The table's name.
    pub table: String,
    endpoint: Option<String>,
    region: Option<String>,
    /// Print one machine-readable JSON summary on stdout instead of text.
    pub json: bool,
}

impl Context {
    /// The context of `common`'s flags, under `rules`.
    pub fn new(common: &Common, rules: Arc<Rules>) -> Self {
        Context { rules, table: common.table.clone(), endpoint: common.endpoint.clone(), region: common.region.clone(), json: common.json }
    }

    /// The rules the command runs under.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The table, through a client configured from the flags and the environment, tally's items
    /// in it encoded by the context's rules.
    pub async fn connect(&self) -> DynamoTable {
        DynamoTable::connect(self.table.clone(), self.endpoint.as_deref(), self.region.as_deref(), Arc::clone(&self.rules)).await
    }

    /// The table, as [`Context::connect`] gives it, once it is known to be keyed as the rules
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

    /// DynamoDB Streams; `--endpoint` applies to it too (DynamoDB Local serves both).
    pub async fn streams(&self) -> Streams {
        Streams::connect(self.endpoint.as_deref(), self.region.as_deref()).await
    }

    /// A reader of the stream `arn`, through [`Context::streams`].
    pub async fn stream_reader(&self, arn: &str) -> StreamReader {
        self.streams().await.reader(arn)
    }
}

/// Backfill reaches the table's stream (for the records still pending) as the other commands do.
impl tally_jobs::backfill::Streams for Context {
    fn reader(&self, arn: &str) -> impl std::future::Future<Output = StreamReader> + Send {
        self.stream_reader(arn)
    }
}

/// Runs a command; the exit code follows `verify`'s convention: 0 ok, 1 drift, 2 error.
/// Rules that do not load stop every command but `tally rules` (which reports on them) with 2,
/// each problem printed as `tally rules check` prints it.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        // `tally rules` reports on the rules it is given, loading them itself.
        Command::Rules(opts) => rules::cmd(&cli.common, opts),
        Command::Table(command) => {
            let rules = match rules::load_or_report(&rules::Origin::choose(None, &cli.common), cli.common.json)? {
                Ok(rules) => rules,
                Err(code) => return Ok(code),
            };
            command.run(&Context::new(&cli.common, rules)).await
        }
    }
}

/// What to do about a batch left partly unapplied, where running `rerun` again is how the
/// records would be delivered again.
pub(crate) fn rerun_advice(failure: &tally_engine::outcome::BatchFailure, rerun: &str) -> String {
    use tally_engine::outcome::Cause;
    match &failure.cause {
        Some(Cause::Deadline { .. }) => format!("{rerun} again to resume"),
        Some(Cause::Store(_)) => format!("running {rerun} again cannot help until that is fixed"),
        None => format!("every other record was applied; running {rerun} again cannot help until what DynamoDB refuses is fixed"),
    }
}

pub(crate) use tally_engine::rules_file::text_bytes;
