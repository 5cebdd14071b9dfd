//! `tally report`: a short view of the aggregates, as the rules declare them. Per aggregate,
//! one row per item with its key parameters, fields and averages: the top items by the
//! aggregate's first field, or every day for an aggregate kept per day.

use std::process::ExitCode;

use aggregates::rules::Aggregate;
use aggregates::{AggregateId, AggregateKey, AggregateValues, Rules};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::Context;

/// The flags of `tally report`.
#[derive(Debug, Args)]
pub struct Opts {
    /// Items to show per aggregate (the top ones by its first field); per-day aggregates show
    /// every day.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Only these aggregates (their names, as the rules file has them); all by default.
    #[arg(long = "aggregate", value_name = "NAME")]
    pub aggregates: Vec<String>,
}

/// One aggregate's rows, as shown.
struct Section<'r> {
    aggregate: &'r Aggregate,
    /// Column headers: key parameters, then fields, then averages.
    columns: Vec<&'r str>,
    rows: Vec<Vec<String>>,
}

/// Prints the aggregates chosen, one section each; writes nothing.
///
/// Exit status: 0 done, 2 error (an unknown `--aggregate` included).
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let rules = ctx.rules();
    let kinds = chosen(rules, &opts.aggregates)?;
    let table = ctx.open().await?;
    let mut items: Vec<Vec<(AggregateKey, AggregateValues)>> = vec![Vec::new(); rules.aggregates().len()];
    for (key, stored) in table.scan_aggregates(&kinds).await? {
        items[key.kind.index()].push((key, stored.values));
    }
    let sections: Vec<Section<'_>> =
        kinds.iter().map(|kind| section(rules, *kind, std::mem::take(&mut items[kind.index()]), opts.top)).collect();
    if ctx.json {
        let mut report = Map::new();
        for section in &sections {
            let rows = section.rows.iter().map(|row| {
                Value::Object(section.columns.iter().zip(row).map(|(column, value)| ((*column).to_owned(), json!(value))).collect())
            });
            report.insert(section.aggregate.name().to_owned(), Value::Array(rows.collect()));
        }
        println!("{}", Value::Object(report));
        return Ok(ExitCode::SUCCESS);
    }
    for (index, section) in sections.iter().enumerate() {
        if index > 0 {
            println!();
        }
        print_section(section);
    }
    Ok(ExitCode::SUCCESS)
}

/// The aggregates named, in the rules' order; every one when none is.
fn chosen(rules: &Rules, names: &[String]) -> anyhow::Result<Vec<AggregateId>> {
    let all = rules.aggregate_ids();
    if names.is_empty() {
        return Ok(all.collect());
    }
    if let Some(unknown) = names.iter().find(|name| !rules.aggregates().iter().any(|aggregate| aggregate.name() == name.as_str())) {
        let known: Vec<&str> = rules.aggregates().iter().map(Aggregate::name).collect();
        anyhow::bail!(
            "--aggregate `{unknown}`: the rules ({}) have no such aggregate; they have {}",
            rules.source_name(),
            known.join(", ")
        );
    }
    Ok(all.filter(|kind| names.iter().any(|name| name == rules.aggregate(*kind).name())).collect())
}

fn section(rules: &Rules, kind: AggregateId, mut items: Vec<(AggregateKey, AggregateValues)>, top: usize) -> Section<'_> {
    let aggregate = rules.aggregate(kind);
    let fields: Vec<_> = aggregate.fields().collect();
    if aggregate.by_day() {
        items.sort_by(|(a, _), (b, _)| a.cmp(b));
    } else {
        // Biggest first by the first field; ties by key, so the report is stable.
        let first = fields.first().copied();
        items.sort_by(|(a_key, a), (b_key, b)| {
            first.map_or(std::cmp::Ordering::Equal, |field| b.get(field).cmp(&a.get(field))).then_with(|| a_key.cmp(b_key))
        });
        items.truncate(top);
    }
    let mut columns: Vec<&str> = Vec::new();
    let rows = items
        .iter()
        // A scanned key of this aggregate's kind always fits its templates.
        .filter_map(|(key, values)| Some((aggregate.parameters(key)?, values)))
        .map(|(parameters, values)| {
            if columns.is_empty() {
                columns = parameters.iter().map(|(name, _)| *name).collect();
                columns.extend(fields.iter().map(|field| rules.field_name(*field)));
                columns.extend(aggregate.averages().iter().map(|average| average.name()));
            }
            let mut row: Vec<String> = parameters.into_iter().map(|(_, value)| value.to_owned()).collect();
            row.extend(fields.iter().map(|field| values.get(*field).to_string()));
            row.extend(values.averages(rules).map(|(_, value)| value.map_or_else(|| "-".to_owned(), |value| value.to_string())));
            row
        })
        .collect();
    Section { aggregate, columns, rows }
}

fn print_section(section: &Section<'_>) {
    let name = section.aggregate.name();
    if section.rows.is_empty() {
        println!("{name}: none yet");
        return;
    }
    println!("{name}");
    let widths: Vec<usize> = section
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| section.rows.iter().map(|row| row[index].chars().count()).max().unwrap_or(0).max(column.chars().count()))
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:>width$}")).collect();
        println!("  {}", padded.join("  "));
    };
    line(section.columns.clone());
    for row in &section.rows {
        line(row.iter().map(String::as_str).collect());
    }
}
