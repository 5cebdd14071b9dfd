//! `tally init`: create the table.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::cli::Common;
use crate::store::schema::{create_table, Created};

#[derive(Debug, Args)]
pub struct Opts {}

pub async fn cmd(common: &Common, _opts: Opts) -> anyhow::Result<ExitCode> {
    let client = common.client().await;
    let created = create_table(&client, &common.table).await.with_context(|| format!("creating table `{}`", common.table))?;
    let state = match created {
        Created::New => "created",
        Created::Existing => "exists",
    };
    if common.json {
        println!("{}", serde_json::json!({ "table": common.table, "state": state }));
    } else {
        println!("table `{}` {state} and ACTIVE", common.table);
    }
    Ok(ExitCode::SUCCESS)
}
