//! `tally rules explain`: what the rules make of one item image, as the processor would see it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aggregates::rules::{RuleAssessment, Rules};
use aggregates::Deltas;
use aggregates::KeyOwner;
use clap::Args;
use serde::Deserialize as _;
use serde_dynamo::{AttributeValue, Item};
use serde_json::{json, Value};

use super::{load_or_report, Origin};
use crate::Common;

#[derive(Debug, Args)]
pub struct Opts {
    /// Rules file (TOML); defaults to --rules / TALLY_RULES, else the embedded university rules.
    pub file: Option<PathBuf>,
    /// One item image in DynamoDB JSON, as a stream record's `NewImage` or `OldImage`:
    /// `{"pk": {"S": "course#c1"}, "grade": {"N": "87.5"}, ...}`; `null` for no image.
    #[arg(value_name = "IMAGE.json")]
    pub image: PathBuf,
}

/// An image file that cannot be explained; names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", .path.display())]
pub struct ImageError {
    pub path: PathBuf,
    pub problem: String,
}

/// How an item image is written, for error messages.
const IMAGE_SHAPE: &str = r#"{"pk": {"S": "course#c1"}, ...}"#;

/// Reads one item image: a JSON object of DynamoDB-typed attributes, or `null` for none.
///
/// # Errors
/// The file cannot be read, is not JSON, holds more than one value, is a Lambda event or a
/// stream record rather than an image (the message says which part to copy), or an attribute
/// is not DynamoDB JSON (the message names it).
pub fn read_image(path: &Path) -> Result<Option<Item>, ImageError> {
    let error = |problem: String| ImageError { path: path.to_owned(), problem };
    let bytes = std::fs::read(path).map_err(|err| error(format!("cannot read: {err}")))?;
    let bytes = crate::text_bytes(&bytes).map_err(error)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Value::deserialize(&mut deserializer).map_err(|err| error(format!("not JSON: {err}")))?;
    deserializer.end().map_err(|err| error(format!("more after the image, which must be the file's only JSON value: {err}")))?;
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        Value::Array(_) => return Err(error(format!("holds a JSON array; an item image is one JSON object, `{IMAGE_SHAPE}`"))),
        other => {
            let kind = match other {
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                _ => "string",
            };
            return Err(error(format!("holds a JSON {kind}; an item image is a JSON object, `{IMAGE_SHAPE}`")));
        }
    };
    if object.contains_key("Records") {
        return Err(error(
            "holds a Lambda event (`Records`), not an item image: copy a record's `dynamodb.NewImage` or `dynamodb.OldImage` \
             into a file of its own"
                .into(),
        ));
    }
    if object.contains_key("dynamodb") && (object.contains_key("eventName") || object.contains_key("eventID")) {
        return Err(error(
            "holds a stream record, not an item image: copy its `dynamodb.NewImage` or `dynamodb.OldImage` into a file of its own".into(),
        ));
    }
    if object.contains_key("NewImage") || object.contains_key("OldImage") {
        return Err(error(
            "holds a stream record's `dynamodb`, not an item image: copy its `NewImage` or `OldImage` into a file of its own".into(),
        ));
    }
    let item: Item = serde_path_to_error::deserialize(Value::Object(object)).map_err(|err| {
        let at = err.path().to_string();
        error(format!(
            "not a DynamoDB item image at `{at}`: {}; each attribute is typed, as `{{\"grade\": {{\"N\": \"87.5\"}}}}`",
            err.into_inner()
        ))
    })?;
    Ok(Some(item))
}

/// Exit status: 0 explained (whatever the verdict), 2 the rules or the image do not load.
pub fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    let origin = Origin::choose(opts.file.as_deref(), common);
    let rules = match load_or_report(&origin, common.json)? {
        Ok(rules) => rules,
        Err(code) => return Ok(code),
    };
    let image = read_image(&opts.image)?;
    let explained = Explained::of(&rules, image.as_ref());
    if common.json {
        println!("{}", explained.to_json(&rules, &origin, &opts.image));
    } else {
        explained.print(&rules, &origin, &opts.image);
    }
    Ok(ExitCode::SUCCESS)
}

/// An image's keys and what the rules make of it.
struct Explained<'r> {
    /// The pk and sk, when both are strings.
    keys: Option<(String, String)>,
    owner: Option<KeyOwner>,
    assessment: RuleAssessment<'r>,
}

impl<'r> Explained<'r> {
    fn of(rules: &'r Rules, image: Option<&Item>) -> Explained<'r> {
        let key = |name: &str| match image?.get(name) {
            Some(AttributeValue::S(key)) => Some(key.clone()),
            _ => None,
        };
        let keys = key(rules.table().pk()).zip(key(rules.table().sk()));
        // The processor sorts records by their keys first: tally's own items are never assessed.
        let owner = keys.as_ref().map(|(pk, sk)| rules.owner(pk, sk));
        Explained { keys, owner, assessment: rules.assess(image) }
    }

    fn kind(&self) -> &'static str {
        match self.assessment {
            RuleAssessment::Absent => "absent",
            RuleAssessment::Unknown => "unknown",
            RuleAssessment::Rejected { .. } => "rejected",
            RuleAssessment::Source { .. } => "source",
        }
    }

    fn entity(&self) -> Option<&'r str> {
        match &self.assessment {
            RuleAssessment::Rejected { entity, .. } => entity.map(|entity| entity.name()),
            RuleAssessment::Source { entity, .. } => Some(entity.name()),
            RuleAssessment::Absent | RuleAssessment::Unknown => None,
        }
    }

    fn to_json(&self, rules: &Rules, origin: &Origin, image: &Path) -> Value {
        let (pk, sk) = match &self.keys {
            Some((pk, sk)) => (Some(pk.as_str()), Some(sk.as_str())),
            None => (None, None),
        };
        let violation = match &self.assessment {
            RuleAssessment::Rejected { violation, .. } => json!({ "reason": violation.reason(), "message": violation.to_string() }),
            _ => Value::Null,
        };
        json!({
            "rules": origin.source_name(),
            "image": image.display().to_string(),
            "pk": pk,
            "sk": sk,
            "owner": self.owner.as_ref().map(owner_name),
            "assessment": self.kind(),
            "entity": self.entity(),
            "violation": violation,
            "contribution": parts_json(rules, self.assessment.contribution()),
        })
    }

    fn print(&self, rules: &Rules, origin: &Origin, image: &Path) {
        println!("rules     {}", origin.describe());
        println!("image     {}", image.display());
        let (pk, sk) = (rules.table().pk(), rules.table().sk());
        match (&self.keys, &self.owner) {
            (Some((pk_value, sk_value)), Some(owner)) => {
                let whose = match owner {
                    KeyOwner::Application => "an application item",
                    KeyOwner::Aggregate => "tally's own aggregate item (the processor skips it without assessing it)",
                    KeyOwner::Bookkeeping => "tally's own bookkeeping item (the processor skips it without assessing it)",
                };
                println!("keys      {pk} `{pk_value}`, {sk} `{sk_value}`: {whose}");
            }
            _ if matches!(self.assessment, RuleAssessment::Absent) => {}
            _ => println!("keys      no string `{pk}` and `{sk}`"),
        }
        match &self.assessment {
            RuleAssessment::Absent => {
                println!("entity    none: no image (an INSERT's old side or a REMOVE's new side)");
                println!("adds      nothing");
            }
            RuleAssessment::Unknown => {
                let by = match rules.table().entity_type() {
                    Some(attribute) => format!("its `{attribute}` or its keys"),
                    None => "its keys".to_owned(),
                };
                println!("entity    unknown: no entity matches {by} (skipped, counted as unknown)");
                println!("adds      nothing");
            }
            RuleAssessment::Rejected { entity, violation } => {
                match entity {
                    Some(entity) => println!("entity    {}", entity.name()),
                    None => println!("entity    none: its entity type is not a string"),
                }
                println!("valid     no: {}: {violation}", violation.reason());
                println!("adds      nothing (counted as rejected, reason `{}`)", violation.reason());
            }
            RuleAssessment::Source { entity, contribution } => {
                println!("entity    {}", entity.name());
                println!("valid     yes");
                print_contribution(rules, contribution);
            }
        }
    }
}

fn owner_name(owner: &KeyOwner) -> &'static str {
    match owner {
        KeyOwner::Application => "application",
        KeyOwner::Aggregate => "aggregate",
        KeyOwner::Bookkeeping => "bookkeeping",
    }
}

/// Each aggregate item with its amounts, exact decimals as strings.
fn parts_json(rules: &Rules, contribution: &Deltas) -> Vec<Value> {
    contribution
        .keys()
        .map(|aggregate| {
            let name = rules.aggregate(aggregate.kind).name();
            let amounts: serde_json::Map<String, Value> = contribution
                .fields(aggregate)
                .map(|(field, amount)| (rules.field_name(field).to_owned(), json!(amount.to_string())))
                .collect();
            json!({
                "aggregate": name,
                "pk": aggregate.pk,
                "sk": aggregate.sk,
                "entityType": name,
                "amounts": amounts,
            })
        })
        .collect()
}

fn print_contribution(rules: &Rules, contribution: &Deltas) {
    let items = contribution.keys().count();
    if items == 0 {
        println!("adds      nothing");
        return;
    }
    println!("adds to   {items} aggregate {}", if items == 1 { "item" } else { "items" });
    let table = rules.table();
    let width = contribution.keys().map(|aggregate| rules.aggregate(aggregate.kind).name().len()).max().unwrap_or(0);
    for aggregate in contribution.keys() {
        let name = rules.aggregate(aggregate.kind).name();
        println!("  {name:<width$}  {} `{}`, {} `{}`", table.pk(), aggregate.pk, table.sk(), aggregate.sk);
        let field_width = contribution.fields(aggregate).map(|(field, _)| rules.field_name(field).len()).max().unwrap_or(0);
        for (field, amount) in contribution.fields(aggregate) {
            let sign = if amount.is_negative() { "" } else { "+" };
            println!("    {:<field_width$}  {sign}{amount}", rules.field_name(field));
        }
    }
}
