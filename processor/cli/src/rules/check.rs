//! `tally rules check`: load a rules file and summarise it.

use std::path::PathBuf;
use std::process::ExitCode;

use aggregates::rules::{Aggregate, Rules};
use clap::Args;
use serde_json::{json, Value};

use super::{load_or_report, Origin};
use crate::Common;

#[derive(Debug, Args)]
pub struct Opts {
    /// Rules file (TOML); defaults to --rules / TALLY_RULES, else the embedded university rules.
    pub file: Option<PathBuf>,
}

/// Exit status: 0 the rules load, 2 they do not (every problem printed).
pub fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    let origin = Origin::choose(opts.file.as_deref(), common);
    let rules = match load_or_report(&origin, common.json)? {
        Ok(rules) => rules,
        Err(code) => return Ok(code),
    };
    if common.json {
        println!("{}", summary(&rules, &origin));
    } else {
        print_text(&rules, &origin);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every counter and sum name, once, in the aggregates' order.
fn field_names(rules: &Rules) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    rules.aggregates().iter().flat_map(Aggregate::fields).filter(|field| seen.insert(*field)).map(|field| rules.field_name(field)).collect()
}

/// The `--json` summary.
fn summary(rules: &Rules, origin: &Origin) -> Value {
    let table = rules.table();
    let limits = rules.limits();
    let names = |fields: &[aggregates::rules::FieldId]| fields.iter().map(|field| rules.field_name(*field)).collect::<Vec<_>>();
    let entities: Vec<Value> = rules
        .entities()
        .iter()
        .map(|entity| {
            json!({
                "name": entity.name(),
                "matched_by": if entity.matched_by_keys() { "keys" } else { "type" },
                "pk_prefix": entity.pk_prefix(),
                "contributes": entity.contributes(),
            })
        })
        .collect();
    let aggregates: Vec<Value> = rules
        .aggregates()
        .iter()
        .map(|aggregate| {
            let averages: Vec<Value> = aggregate
                .averages()
                .iter()
                .map(|average| {
                    json!({
                        "name": average.name(),
                        "sum": rules.field_name(average.sum()),
                        "count": rules.field_name(average.count()),
                        "places": average.places(),
                    })
                })
                .collect();
            json!({
                "name": aggregate.name(),
                "counters": names(aggregate.counters()),
                "sums": names(aggregate.sums()),
                "averages": averages,
            })
        })
        .collect();
    let indexes: Vec<Value> =
        table.indexes().iter().map(|index| json!({ "name": index.name(), "pk": index.pk(), "sk": index.sk() })).collect();
    json!({
        "rules": rules.source_name(),
        "embedded": *origin == Origin::Embedded,
        "ok": true,
        "digest": rules.digest(),
        "table": {
            "pk": table.pk(),
            "sk": table.sk(),
            "entity_type": table.entity_type(),
            "bookkeeping_prefix": table.bookkeeping_prefix(),
            "ttl": table.ttl(),
            "indexes": indexes,
            "reserved_prefixes": table.reserved_prefixes(),
        },
        "limits": { "source_pk_bytes": limits.source_pk_bytes, "source_sk_bytes": limits.source_sk_bytes },
        "entities": entities,
        "aggregates": aggregates,
        "fields": field_names(rules),
    })
}

fn print_text(rules: &Rules, origin: &Origin) {
    let table = rules.table();
    let limits = rules.limits();
    println!("rules       {}", origin.describe());
    let typed = match table.entity_type() {
        Some(attribute) => format!("entity type `{attribute}`"),
        None => "no entity-type attribute (entities matched by keys)".to_owned(),
    };
    println!("table       pk `{}`, sk `{}`, {typed}, bookkeeping prefix `{}`", table.pk(), table.sk(), table.bookkeeping_prefix());
    let indexes: Vec<String> = table
        .indexes()
        .iter()
        .map(|index| match index.sk() {
            Some(sk) => format!("{} ({}, {sk})", index.name(), index.pk()),
            None => format!("{} ({})", index.name(), index.pk()),
        })
        .collect();
    let indexes = if indexes.is_empty() { "no indexes".to_owned() } else { format!("indexes {}", indexes.join(", ")) };
    println!("            TTL on `{}`, {indexes}; digest {}", table.ttl(), rules.digest());
    if !table.reserved_prefixes().is_empty() {
        let reserved: Vec<String> = table.reserved_prefixes().iter().map(|prefix| format!("`{prefix}`")).collect();
        println!("            the application never writes pk prefixes {}", reserved.join(", "));
    }
    println!("limits      source items' own keys up to {} bytes (pk) and {} bytes (sk)", limits.source_pk_bytes, limits.source_sk_bytes);
    let width = rules.entities().iter().map(|entity| entity.name().len()).chain(rules.aggregates().iter().map(|a| a.name().len()));
    let width = width.max().unwrap_or(0);
    println!("entities    {}", rules.entities().len());
    for entity in rules.entities() {
        let by = match (entity.matched_by_keys(), table.entity_type()) {
            (false, Some(attribute)) => format!("by {attribute}"),
            _ => "by keys".to_owned(),
        };
        let pk = match entity.pk_prefix() {
            "" => "pk starts with a capture".to_owned(),
            prefix => format!("pk prefix `{prefix}`"),
        };
        let adds = if entity.contributes() { "" } else { ", adds nothing" };
        println!("  {:<width$}  {by}, {pk}{adds}", entity.name());
    }
    println!("aggregates  {}", rules.aggregates().len());
    for aggregate in rules.aggregates() {
        let list =
            |fields: &[aggregates::rules::FieldId]| fields.iter().map(|field| rules.field_name(*field)).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !aggregate.counters().is_empty() {
            parts.push(format!("counters {}", list(aggregate.counters())));
        }
        if !aggregate.sums().is_empty() {
            parts.push(format!("sums {}", list(aggregate.sums())));
        }
        for average in aggregate.averages() {
            parts.push(format!(
                "{} = {} / {} to {} places",
                average.name(),
                rules.field_name(average.sum()),
                rules.field_name(average.count()),
                average.places()
            ));
        }
        println!("  {:<width$}  {}", aggregate.name(), parts.join("; "));
    }
    let fields = field_names(rules);
    println!("fields      {}: {}", fields.len(), fields.join(", "));
    println!("ok: {} entities, {} aggregates, {} fields", rules.entities().len(), rules.aggregates().len(), fields.len());
}
