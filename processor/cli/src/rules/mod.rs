//! `tally rules`: work with a rules file (`aggregates::rules`) before deploying it: check it,
//! see what it makes of one item image, and derive the event source mapping's filter from it.
//!
//! Every subcommand takes the rules file as its first positional argument, else the global
//! `--rules` / `TALLY_RULES`, else the university rules compiled into tally. A file that does
//! not load prints each of its problems as `FILE:line:col: message`, one per line on stderr,
//! the way compilers do (editors jump to them), and exits 2.

mod check;
mod explain;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use aggregates::rules::{Rules, UNIVERSITY_SOURCE};
use clap::{Args, Subcommand};
use tally_engine::rules_file::{self, LoadError};

use crate::Common;

/// The flags of `tally rules`: its subcommand.
#[derive(Debug, Args)]
pub struct Opts {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// The subcommands of `tally rules`.
#[derive(Debug, Subcommand)]
#[command(rename_all = "kebab-case")]
pub enum RulesCommand {
    /// Load a rules file and summarise its entities, aggregates and fields; a file that does not
    /// load gets every problem as `FILE:line:col: message` and exit 2.
    Check(check::Opts),
    /// Show what the rules make of one item image (DynamoDB JSON): its entity, whether it is
    /// valid (the rejection reason and message), and what it adds to which aggregate items.
    #[command(allow_missing_positional = true)]
    Explain(explain::Opts),
    /// Print the event source mapping's `FilterCriteria` (JSON) for the rules: what keeps
    /// tally's own writes from invoking the function.
    Filter(FilterOpts),
}

/// The flags of `tally rules filter`.
#[derive(Debug, Args)]
pub struct FilterOpts {
    /// Rules file (TOML); defaults to --rules / TALLY_RULES, else the embedded university rules.
    pub file: Option<PathBuf>,
}

/// Where the rules came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file, as named on the command line or in `TALLY_RULES`.
    File(PathBuf),
    /// [`Rules::university`], compiled into tally.
    Embedded,
}

impl Origin {
    /// A positional `file`, else the global `--rules` / `TALLY_RULES`, else the embedded rules.
    pub fn choose(file: Option<&Path>, common: &Common) -> Origin {
        match file.or(common.rules_file()) {
            Some(path) => Origin::File(path.to_owned()),
            None => Origin::Embedded,
        }
    }

    /// The name errors and summaries give the rules.
    pub fn source_name(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::Embedded => UNIVERSITY_SOURCE.to_owned(),
        }
    }

    /// As a summary names it: the path, or "embedded university rules (its source)".
    pub fn describe(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::Embedded => format!("embedded university rules ({UNIVERSITY_SOURCE})"),
        }
    }
}

/// Reads and compiles the rules `origin` names.
///
/// # Errors
/// As [`rules_file::load`].
pub fn load(origin: &Origin) -> Result<Arc<Rules>, LoadError> {
    rules_file::load_for_process(match origin {
        Origin::File(path) => Some(path),
        Origin::Embedded => None,
    })
}

/// Loads the rules, or prints why they do not load: each problem on stderr and, with `--json`,
/// `{"rules", "ok": false, "errors": [{"line", "column", "message", "reason"?}]}` on stdout
/// (`reason` for a refusal that keeps the table safe, [`aggregates::rules::Problem::safety_reason`]). `Err` is the
/// exit code then (2); a file that cannot be read is the command's error.
pub(crate) fn load_or_report(origin: &Origin, json: bool) -> anyhow::Result<Result<Arc<Rules>, ExitCode>> {
    match load(origin) {
        Ok(rules) => Ok(Ok(rules)),
        Err(LoadError::Invalid(errors)) => {
            eprintln!("{errors}");
            if json {
                let listed: Vec<_> = errors
                    .errors
                    .iter()
                    .map(|error| {
                        let mut listed = serde_json::json!({
                            "line": error.position.line,
                            "column": error.position.column,
                            "message": error.problem.to_string(),
                        });
                        if let Some(reason) = error.problem.safety_reason() {
                            listed["reason"] = reason.into();
                        }
                        listed
                    })
                    .collect();
                println!("{}", serde_json::json!({ "rules": errors.source_name, "ok": false, "errors": listed }));
            }
            Ok(Err(ExitCode::from(2)))
        }
        Err(read) => Err(read.into()),
    }
}

/// Exit status: 0 done, 2 the rules (or the image) do not load.
pub fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    match opts.command {
        RulesCommand::Check(opts) => check::cmd(common, opts),
        RulesCommand::Explain(opts) => explain::cmd(common, opts),
        RulesCommand::Filter(opts) => filter(common, opts),
    }
}

/// `tally rules filter`: the `FilterCriteria` as the Lambda API takes it, `{"Filters": [{"Pattern":
/// "..."}]}` (`aws lambda update-event-source-mapping --filter-criteria file://...`); pretty
/// unless `--json`.
fn filter(common: &Common, opts: FilterOpts) -> anyhow::Result<ExitCode> {
    let origin = Origin::choose(opts.file.as_deref(), common);
    let rules = match load_or_report(&origin, common.json)? {
        Ok(rules) => rules,
        Err(code) => return Ok(code),
    };
    let criteria = tally_engine::registry::filter_criteria_for(&rules);
    if common.json {
        println!("{criteria}");
    } else {
        println!("{}", serde_json::to_string_pretty(&criteria)?);
    }
    Ok(ExitCode::SUCCESS)
}
