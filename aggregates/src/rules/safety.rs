//! The checks that keep a table safe from its own rules file: what the file itself shows would
//! break exactly-once or make tally write over an application's item.
//!
//! tally writes aggregate items into the application's table and reads every stream record of
//! it. So the keys it writes must be its own: no two aggregates may produce one key (each
//! whole-item write would drop the other's fields), no aggregate a key an entity's item can
//! have (its write would replace the application's item, and the item's records would be
//! skipped as tally's), and no aggregate a key under the bookkeeping prefix. Each is proved
//! from the patterns' literals and capture types ([`Language`]); what cannot be proved is
//! refused. The application's side of the bargain (it writes nothing under the bookkeeping
//! prefix or a reserved prefix) is enforced per image at run time.
//!
//! Also refused: patterns that can never match, and entities whose worst-case write cannot fit
//! one transaction.

use std::ops::Range;

use super::compiled::{Aggregate, Entity, Limits, Table};
use super::errors::Problem;
use super::language::{capture_may_hold, Language};
use super::pattern::{CaptureType, Part, Pattern};
use crate::keys::{MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES, MAX_TRANSACTION_ACTIONS};

/// Most aggregates, and most entities, a file may have: their keys are proved apart pair by
/// pair.
pub(crate) const MAX_CHECKED: usize = 1000;

/// Aggregate keys are read back with empty ids allowed ([`super::Rules::owner`]): their
/// languages must hold those keys too, or another template's key could be read as theirs.
const READ_WITH_EMPTY_IDS: bool = true;

/// Images whose aggregate items one transaction may have to write: a record's old and new
/// image, the ledger's contribution, and the baseline a redriven older record corrects.
const IMAGES_PER_COMMIT: usize = 4;

/// Where a template's parts are written in the file.
#[derive(Debug, Clone)]
pub(crate) struct Places {
    pub name: Range<usize>,
    pub pk: Range<usize>,
    pub sk: Range<usize>,
}

/// Runs every check, reporting each problem at its place. `aggregate_places` and
/// `entity_places` are in the same order as `aggregates` and `entities`.
pub(crate) fn check(
    table: &Table,
    limits: Limits,
    (aggregates, aggregate_places): (&[Aggregate], &[Places]),
    (entities, entity_places): (&[Entity], &[Places]),
    report: &mut dyn FnMut(Range<usize>, Problem),
) {
    // A pattern that did not parse, or never matches, is left out of the pairwise proofs: one
    // mistake, one error.
    let mut aggregate_keys: Vec<Option<Keys<'_>>> = Vec::with_capacity(aggregates.len());
    for (aggregate, places) in aggregates.iter().zip(aggregate_places) {
        let pk = usable(&aggregate.pk, places.pk.clone(), MAX_PARTITION_KEY_BYTES, report);
        let sk = usable(&aggregate.sk, places.sk.clone(), MAX_SORT_KEY_BYTES, report);
        aggregate_keys.push(pk.zip(sk).map(|(pk, sk)| Keys::new(pk, sk, READ_WITH_EMPTY_IDS)));
    }
    let mut entity_keys: Vec<Option<Keys<'_>>> = Vec::with_capacity(entities.len());
    for (entity, places) in entities.iter().zip(entity_places) {
        let mut pk = usable(&entity.pk, places.pk.clone(), limits.source_pk_bytes, report);
        let sk = usable(&entity.sk, places.sk.clone(), limits.source_sk_bytes, report);
        if let Some(prefix) = pk.and_then(|pk| table.reserved_prefixes.iter().find(|prefix| pk.prefix().starts_with(prefix.as_str()))) {
            let problem =
                Problem::EntityUnderReservedPrefix { entity: entity.name.clone(), pattern: entity.pk.source(), prefix: prefix.clone() };
            report(places.pk.clone(), problem);
            pk = None;
        }
        entity_keys.push(pk.zip(sk).map(|(pk, sk)| Keys::new(pk, sk, false)));
        fan_out(entity, places, report);
    }
    for (count, what) in [(aggregates.len(), "aggregates"), (entities.len(), "entities")] {
        if count > MAX_CHECKED {
            report(0..0, Problem::TooManyToCheck { what, count, max: MAX_CHECKED });
            return;
        }
    }
    let aggregates = Templates { of: aggregates, places: aggregate_places, keys: &aggregate_keys };
    in_bookkeeping(table, &aggregates, report);
    overlapping(table, &aggregates, report);
    on_entity_keys(table, &aggregates, (entities, &entity_keys), report);
}

/// The aggregates with where they are written and their keys' languages (`None`: left out).
struct Templates<'a> {
    of: &'a [Aggregate],
    places: &'a [Places],
    keys: &'a [Option<Keys<'a>>],
}

impl Templates<'_> {
    fn usable(&self) -> impl Iterator<Item = (usize, &Keys<'_>)> + '_ {
        self.keys.iter().enumerate().filter_map(|(index, keys)| Some((index, keys.as_ref()?)))
    }
}

/// Aggregate pks that can start with the bookkeeping prefix.
fn in_bookkeeping(table: &Table, aggregates: &Templates<'_>, report: &mut dyn FnMut(Range<usize>, Problem)) {
    let bookkeeping = Language::starting_with(&table.bookkeeping_prefix);
    for (index, keys) in aggregates.usable() {
        // A pk whose literal start is the prefix is reported already ([`Problem::BookkeepingPrefix`]).
        if keys.pk.prefix().starts_with(table.bookkeeping_prefix.as_str()) {
            continue;
        }
        if let Some(key) = keys.pk_language.meet(&bookkeeping) {
            let aggregate = &aggregates.of[index];
            let problem = Problem::AggregateInBookkeeping {
                aggregate: aggregate.name.clone(),
                pattern: aggregate.pk.source(),
                prefix: table.bookkeeping_prefix.clone(),
                key,
            };
            report(aggregates.places[index].pk.clone(), problem);
        }
    }
}

/// Pairs of aggregates that can produce one key, reported at the later one.
fn overlapping(table: &Table, aggregates: &Templates<'_>, report: &mut dyn FnMut(Range<usize>, Problem)) {
    for (second, keys) in aggregates.usable() {
        for (first, earlier) in aggregates.usable().take_while(|(first, _)| *first < second) {
            if let Some((pk, sk)) = earlier.meet(keys) {
                let problem = Problem::OverlappingAggregates {
                    first: aggregates.of[first].name.clone(),
                    second: aggregates.of[second].name.clone(),
                    pk_name: table.pk.clone(),
                    pk,
                    sk_name: table.sk.clone(),
                    sk,
                };
                report(aggregates.places[second].pk.clone(), problem);
            }
        }
    }
}

/// Aggregates that can produce a key an entity's item can have.
fn on_entity_keys(
    table: &Table,
    aggregates: &Templates<'_>,
    (entities, entity_keys): (&[Entity], &[Option<Keys<'_>>]),
    report: &mut dyn FnMut(Range<usize>, Problem),
) {
    for (index, keys) in aggregates.usable() {
        // The application writes nothing under a reserved prefix (enforced per image).
        if table.reserved_prefix_of(keys.pk.prefix()).is_some() {
            continue;
        }
        for (entity, entity_keys) in entities.iter().zip(entity_keys) {
            let Some(entity_keys) = entity_keys else { continue };
            if let Some((pk, sk)) = keys.meet_entity(entity_keys) {
                let problem = Problem::AggregateOnEntityKey {
                    aggregate: aggregates.of[index].name.clone(),
                    entity: entity.name.clone(),
                    pk_name: table.pk.clone(),
                    pk,
                    sk_name: table.sk.clone(),
                    sk,
                };
                report(aggregates.places[index].pk.clone(), problem);
            }
        }
    }
}

/// An entity's worst-case commit must fit one transaction: its ledger and the aggregate items
/// of every image that commit may move between.
fn fan_out(entity: &Entity, places: &Places, report: &mut dyn FnMut(Range<usize>, Problem)) {
    let items = entity.groups.len();
    let actions = 1 + IMAGES_PER_COMMIT * items;
    if actions > MAX_TRANSACTION_ACTIONS {
        let max = (MAX_TRANSACTION_ACTIONS - 1) / IMAGES_PER_COMMIT;
        report(places.name.clone(), Problem::FanOut { entity: entity.name.clone(), items, actions, max });
    }
}

/// `pattern` if it parsed and can match some key of at most `limit` bytes; otherwise reports
/// why it never matches.
fn usable<'p>(
    pattern: &'p Pattern,
    place: Range<usize>,
    limit: usize,
    report: &mut dyn FnMut(Range<usize>, Problem),
) -> Option<&'p Pattern> {
    // A pattern that did not parse is the empty placeholder, reported already.
    pattern.parts().next()?;
    let mut parts = pattern.parts().peekable();
    let mut shortest = 0;
    while let Some(part) = parts.next() {
        match part {
            Part::Literal(literal) => shortest += literal.len(),
            Part::Capture(capture) => {
                shortest += match capture.kind {
                    CaptureType::Id => 1,
                    CaptureType::Date | CaptureType::DateTime => "YYYY-MM-DD".len(),
                };
                let Some(Part::Literal(next)) = parts.peek() else { continue };
                if capture.kind != CaptureType::Id && may_start_inside(capture.kind, next) {
                    let kind = if capture.kind == CaptureType::Date { "date" } else { "date-time" };
                    let problem = Problem::CaptureSwallowsLiteral {
                        pattern: pattern.source(),
                        capture: format!("{{{}}}", capture.name),
                        literal: (*next).to_owned(),
                        kind,
                    };
                    report(place, problem);
                    return None;
                }
            }
        }
    }
    // A limit of 0 is reported already ([`Problem::LimitZero`]).
    if shortest > limit && limit > 0 {
        report(place, Problem::PatternTooLong { pattern: pattern.source(), bytes: shortest, limit });
        return None;
    }
    Some(pattern)
}

/// Whether `literal`, following a capture of `kind`, can first occur inside the capture's value
/// (the capture then ends there, early): when its first `j` characters can end a value and the
/// rest is what the literal itself starts with, or the whole of it fits inside a value. `Z#`
/// after a date-time cannot (no date-time holds `#`); `-` can.
fn may_start_inside(kind: CaptureType, literal: &str) -> bool {
    let chars: Vec<char> = literal.chars().collect();
    (1..=chars.len()).any(|j| chars[..j].iter().all(|c| capture_may_hold(kind, *c)) && chars[j..] == chars[..chars.len() - j])
}

/// A pk and sk pattern with their languages.
struct Keys<'p> {
    pk: &'p Pattern,
    pk_language: Language,
    sk_language: Language,
    /// Literal text the keys must start and end with, for a quick rejection before the walk.
    pk_ends: (&'p str, &'p str),
    sk_ends: (&'p str, &'p str),
}

impl<'p> Keys<'p> {
    fn new(pk: &'p Pattern, sk: &'p Pattern, empty_ids: bool) -> Self {
        Keys {
            pk,
            pk_language: Language::of(pk, empty_ids),
            sk_language: Language::of(sk, empty_ids),
            pk_ends: (pk.prefix(), suffix(pk)),
            sk_ends: (sk.prefix(), suffix(sk)),
        }
    }

    /// A table key both can have, if any: `(pk, sk)`.
    fn meet(&self, other: &Keys<'_>) -> Option<(String, String)> {
        if !ends_agree(self.pk_ends, other.pk_ends) || !ends_agree(self.sk_ends, other.sk_ends) {
            return None;
        }
        Some((self.pk_language.meet(&other.pk_language)?, self.sk_language.meet(&other.sk_language)?))
    }

    /// A key of `entity` that these aggregate keys can also produce, or that falls in this
    /// aggregate's partition when its pk has no parameter ([`super::Rules::owner`] gives such a
    /// partition wholly to tally).
    fn meet_entity(&self, entity: &Keys<'_>) -> Option<(String, String)> {
        if self.pk.constant().is_none() {
            return self.meet(entity);
        }
        if !ends_agree(self.pk_ends, entity.pk_ends) {
            return None;
        }
        let pk = self.pk_language.meet(&entity.pk_language)?;
        let sk = entity.sk_language.meet(&entity.sk_language)?;
        Some((pk, sk))
    }
}

/// The literal text after a pattern's last capture (all of it for a constant pattern).
fn suffix(pattern: &Pattern) -> &str {
    match pattern.parts().last() {
        Some(Part::Literal(literal)) => literal,
        _ => "",
    }
}

/// Whether two patterns' literal starts and ends allow one key: one start must begin the
/// other, and one end finish the other.
fn ends_agree((start, end): (&str, &str), (other_start, other_end): (&str, &str)) -> bool {
    (start.starts_with(other_start) || other_start.starts_with(start)) && (end.ends_with(other_end) || other_end.ends_with(end))
}
