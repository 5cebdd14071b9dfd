//! `tally init`: create the table.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::Context;
use tally_engine::store::schema::{create_table, enable_point_in_time_recovery, Created, Recovery};

/// The flags of `tally init`: none but the common ones.
#[derive(Debug, Args)]
pub struct Opts {}

/// Creates the table the rules describe, or checks that the existing one is keyed as they say,
/// and turns on point-in-time recovery where the endpoint has it.
///
/// Exit status: 0 done, 2 error.
pub async fn cmd(ctx: &Context, _opts: Opts) -> anyhow::Result<ExitCode> {
    let table = ctx.connect().await;
    // Keys, indexes, stream and TTL come with the table; encryption at rest is always on
    // (AWS owned key unless infra/ sets a KMS key); PITR is a separate call.
    let created = create_table(&table).await.with_context(|| format!("creating table `{}`", ctx.table))?;
    if created == Created::Existing {
        // An existing table is left as it is: it must be the one these rules describe.
        ctx.check_keys(&table).await?;
    }
    let recovery =
        enable_point_in_time_recovery(&table).await.with_context(|| format!("turning on point-in-time recovery of `{}`", ctx.table))?;
    let state = match created {
        Created::New => "created",
        Created::Existing => "exists",
    };
    let recovery = match recovery {
        Recovery::Enabled => "enabled",
        Recovery::Unsupported => "unsupported",
    };
    if ctx.json {
        println!("{}", serde_json::json!({ "table": ctx.table, "state": state, "point_in_time_recovery": recovery }));
    } else {
        println!("table `{}` {state} and ACTIVE; point-in-time recovery {recovery}", ctx.table);
        if recovery == "unsupported" {
            println!("(this endpoint does not implement point-in-time recovery: DynamoDB Local does not)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
