//! Support for `rules_examples.rs`: the example rules files, hand-written images, the
//! seed-style workload generators of both tables, at-least-once delivery and the oracle.

pub mod delivery;
pub mod dice;
pub mod learning;
pub mod marketplace;
pub mod oracle;
pub mod workload;

use std::collections::HashMap;
use std::sync::OnceLock;

use aggregates::rules::{RuleAssessment, Rules};
use serde_dynamo::{AttributeValue, Item};

pub const LEARNING: &str = include_str!("../../../examples/rules/learning.toml");
pub const LEARNING_SOURCE: &str = "examples/rules/learning.toml";
pub const MARKETPLACE: &str = include_str!("../../../examples/rules/marketplace.toml");
pub const MARKETPLACE_SOURCE: &str = "examples/rules/marketplace.toml";

fn load(text: &str, source: &str) -> Rules {
    match Rules::from_toml(text, source) {
        Ok(rules) => rules,
        Err(errors) => panic!("{errors}"),
    }
}

pub fn learning() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| load(LEARNING, LEARNING_SOURCE))
}

pub fn marketplace() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| load(MARKETPLACE, MARKETPLACE_SOURCE))
}

/// An image from `name, value` pairs: `N:12.5` is a number, anything else a string.
pub fn image(attrs: &[(&str, &str)]) -> Item {
    let value = |text: &str| match text.strip_prefix("N:") {
        Some(number) => AttributeValue::N(number.to_owned()),
        None => AttributeValue::S(text.to_owned()),
    };
    Item::from(attrs.iter().map(|(name, text)| ((*name).to_owned(), value(text))).collect::<HashMap<_, _>>())
}

/// `entity: aggregate pk sk field amount; ...`, or `entity rejected reason: message`, or
/// `unknown`.
pub fn outcome(rules: &Rules, image: &Item) -> String {
    match rules.assess(Some(image)) {
        RuleAssessment::Source { entity, contribution } => {
            let amounts: Vec<String> = contribution
                .iter()
                .map(|(aggregate, field, amount)| {
                    format!(
                        "{} {} {} {} {amount}",
                        rules.aggregate(aggregate.kind).name(),
                        aggregate.pk,
                        aggregate.sk,
                        rules.field_name(field)
                    )
                })
                .collect();
            format!("{}: {}", entity.name(), amounts.join("; "))
        }
        RuleAssessment::Rejected { entity, violation } => {
            format!("{} rejected {}: {violation}", entity.map_or("-", |entity| entity.name()), violation.reason())
        }
        RuleAssessment::Unknown => "unknown".to_owned(),
        RuleAssessment::Absent => "absent".to_owned(),
    }
}
