//! Comparing stored aggregates with a recompute from the source items: the oracle of the tests
//! and the core of `tally verify`.

use std::collections::BTreeMap;

use aggregates::keys::{GRADE_AVERAGE, PK, SK};
use aggregates::{AggregateKey, AggregateValues, KeyOwner, Recompute};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::codec::decode_aggregate;
use crate::store::{SdkItem, StoreError};

/// One field of one aggregate that differs from the recompute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub key: AggregateKey,
    pub field: &'static str,
    /// `None`: the item or attribute is absent.
    pub stored: Option<String>,
    pub expected: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "pk=`{}` sk=`{}` {}: stored {}, expected {}",
            self.key.pk(),
            self.key.sk(),
            self.field,
            show(&self.stored),
            show(&self.expected)
        )
    }
}

/// Splits scanned items into source items (recomputed) and stored aggregate items.
#[derive(Debug, Default)]
pub struct Audit {
    pub recompute: Recompute,
    pub stored: BTreeMap<AggregateKey, (AggregateValues, Option<String>)>,
}

impl Audit {
    pub fn add(&mut self, item: &SdkItem) -> Result<(), StoreError> {
        let text = |name| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.as_str()),
            _ => None,
        };
        if let (Some(pk), Some(sk)) = (text(PK), text(SK)) {
            if KeyOwner::of(pk, sk) == KeyOwner::Aggregate {
                if let Some(key) = AggregateKey::parse(pk, sk) {
                    let stored = decode_aggregate(&key, item)?;
                    let average = match item.get(GRADE_AVERAGE) {
                        Some(AttributeValue::N(text)) => {
                            Some(text.parse::<aggregates::Number>().map(|n| n.to_string()).unwrap_or_else(|_| text.clone()))
                        }
                        _ => None,
                    };
                    self.stored.insert(key, (stored.values, average));
                }
                return Ok(());
            }
        }
        self.recompute.add_item(&serde_dynamo::Item::from(item.clone()));
        Ok(())
    }

    /// Every field where the table and the recompute disagree. A missing aggregate and an
    /// all-zero one are alike.
    pub fn drift(&self) -> Vec<Drift> {
        let expected = self.recompute.aggregates();
        let mut keys: Vec<&AggregateKey> = expected.keys().chain(self.stored.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut drift = Vec::new();
        for key in keys {
            let want = expected.get(key).cloned().unwrap_or_else(|| AggregateValues::zero(key.kind()));
            let (have, have_average) = self.stored.get(key).cloned().unwrap_or_else(|| (AggregateValues::zero(key.kind()), None));
            for field in key.kind().fields() {
                let (stored, wanted) = (have.get(*field), want.get(*field));
                if stored != wanted {
                    drift.push(Drift {
                        key: key.clone(),
                        field: field.attribute(),
                        stored: Some(stored.to_string()),
                        expected: Some(wanted.to_string()),
                    });
                }
            }
            let want_average = want.grade_average().map(|n| n.to_string());
            if key.kind().has_grade_average() && have_average != want_average {
                drift.push(Drift { key: key.clone(), field: GRADE_AVERAGE, stored: have_average, expected: want_average });
            }
        }
        drift
    }
}
