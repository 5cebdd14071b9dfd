//! The set of keys a pattern can stand for, as a small automaton over characters: what
//! `rules check` proves two key templates disjoint with, or finds a key both can produce.
//!
//! A pattern's language is a sequence of *atoms*: one character of a class, or one or more of
//! it. A literal is its characters; an `id` capture is one or more of anything; a `date` or
//! `datetime` capture is one or more of the characters such values are written with. Those
//! classes over-approximate the values (a date is not any run of digits and dashes), which
//! keeps every verdict sound: when the over-approximations do not meet, the keys cannot either.
//! Two languages meet when a breadth-first walk over pairs of positions reaches both ends, each
//! step consuming one character both atoms admit; the walk's path spells a key both produce.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use super::pattern::{CaptureType, Part, Pattern};

/// Characters a date is written with in a key, a sign included (years past 9999 render `+10000`).
const DATE_CHARS: &str = "0123456789-+";
/// Characters an ISO 8601 date-time is written with (`2026-03-01T10:00:00.5+01:00`, `...Z`).
const DATE_TIME_CHARS: &str = "0123456789-+T:.Z";

/// What one character of a key may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Char(char),
    Date,
    DateTime,
    Any,
}

impl Class {
    fn admits(self, c: char) -> bool {
        match self {
            Class::Char(own) => own == c,
            Class::Date => DATE_CHARS.contains(c),
            Class::DateTime => DATE_TIME_CHARS.contains(c),
            Class::Any => true,
        }
    }

    /// A character both classes admit, if there is one.
    fn meet(self, other: Class) -> Option<char> {
        match (self, other) {
            (Class::Char(c), other) | (other, Class::Char(c)) => other.admits(c).then_some(c),
            (Class::Any, Class::Any) => Some('x'),
            _ => Some('1'),
        }
    }
}

/// Whether a capture of `kind` can hold `c`: a literal starting with such a character may occur
/// inside the capture's value, and then the capture, running to the literal's first occurrence,
/// would end early.
pub(crate) fn capture_may_hold(kind: CaptureType, c: char) -> bool {
    match kind {
        CaptureType::Id => true,
        CaptureType::Date => Class::Date.admits(c),
        CaptureType::DateTime => Class::DateTime.admits(c),
    }
}

#[derive(Debug, Clone, Copy)]
struct Atom {
    class: Class,
    /// One or more, rather than exactly one.
    repeats: bool,
    /// May also be skipped: zero or more, with `repeats`.
    skippable: bool,
}

/// A position in each of two languages being walked together.
type State = (usize, usize);

/// How the walk reached a state: from which, taking which character (none for a skipped atom).
#[derive(Debug, Clone, Copy)]
struct Step {
    from: State,
    taken: Option<char>,
}

/// The keys a pattern (or a prefix) stands for.
#[derive(Debug, Clone)]
pub(crate) struct Language {
    atoms: Vec<Atom>,
    /// Anything may follow the atoms: a prefix's language.
    open_end: bool,
}

impl Language {
    /// The keys `pattern` stands for. With `empty_ids`, an `id` capture may also be empty: an
    /// aggregate's keys are read back that way ([`super::Rules::owner`]), so a template's
    /// language must hold what it reads as well as what it writes.
    pub(crate) fn of(pattern: &Pattern, empty_ids: bool) -> Language {
        let mut atoms = Vec::new();
        for part in pattern.parts() {
            match part {
                Part::Literal(text) => atoms.extend(text.chars().map(|c| Atom { class: Class::Char(c), repeats: false, skippable: false })),
                Part::Capture(capture) => {
                    let class = match capture.kind {
                        CaptureType::Id => Class::Any,
                        CaptureType::Date => Class::Date,
                        CaptureType::DateTime => Class::DateTime,
                    };
                    atoms.push(Atom { class, repeats: true, skippable: empty_ids && capture.kind == CaptureType::Id });
                }
            }
        }
        Language { atoms, open_end: false }
    }

    /// Every key that starts with `prefix`.
    pub(crate) fn starting_with(prefix: &str) -> Language {
        Language {
            atoms: prefix.chars().map(|c| Atom { class: Class::Char(c), repeats: false, skippable: false }).collect(),
            open_end: true,
        }
    }

    /// The steps the language may take from `position`: a class of character consumed (`None`
    /// for skipping an atom, consuming nothing), and where each leads.
    fn steps(&self, position: usize) -> impl Iterator<Item = (Option<Class>, usize)> + '_ {
        let end = self.atoms.len();
        let atom = self.atoms.get(position);
        let forward = atom.map(|atom| (Some(atom.class), position + 1));
        let skip = atom.filter(|atom| atom.skippable).map(|_| (None, position + 1));
        let again =
            position.checked_sub(1).map(|last| self.atoms[last]).filter(|atom| atom.repeats).map(|atom| (Some(atom.class), position));
        let beyond = (position == end && self.open_end).then_some((Some(Class::Any), end));
        forward.into_iter().chain(skip).chain(again).chain(beyond)
    }

    /// A key both languages hold, if any. The walk visits at most one state per pair of
    /// positions.
    pub(crate) fn meet(&self, other: &Language) -> Option<String> {
        let end = (self.atoms.len(), other.atoms.len());
        // Each state reached, with how: none for the start.
        let mut reached: HashMap<State, Option<Step>> = HashMap::new();
        let mut queue = VecDeque::from([(0, 0)]);
        reached.insert((0, 0), None);
        while let Some(state) = queue.pop_front() {
            if state == end {
                let mut key = Vec::new();
                let mut at = state;
                while let Some(Some(Step { from, taken })) = reached.get(&at) {
                    key.extend(*taken);
                    at = *from;
                }
                return Some(key.into_iter().rev().collect());
            }
            // One side skips an atom while the other stays, or both consume one character.
            let skips = self.steps(state.0).filter(|(class, _)| class.is_none()).map(|(_, next)| ((next, state.1), None));
            let other_skips = other.steps(state.1).filter(|(class, _)| class.is_none()).map(|(_, next)| ((state.0, next), None));
            let mut moves: Vec<(State, Option<char>)> = skips.chain(other_skips).collect();
            for (mine, next_mine) in self.steps(state.0) {
                for (theirs, next_theirs) in other.steps(state.1) {
                    let (Some(mine), Some(theirs)) = (mine, theirs) else { continue };
                    if let Some(c) = mine.meet(theirs) {
                        moves.push(((next_mine, next_theirs), Some(c)));
                    }
                }
            }
            for (next, c) in moves {
                if let Entry::Vacant(slot) = reached.entry(next) {
                    slot.insert(Some(Step { from: state, taken: c }));
                    queue.push_back(next);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn language(text: &str) -> Language {
        Language::of(&Pattern::parse(text).unwrap(), false)
    }

    fn meet(a: &str, b: &str) -> Option<String> {
        language(a).meet(&language(b))
    }

    #[test]
    fn templates_that_can_produce_one_key_meet_on_it() {
        assert_eq!(meet("STATS#{tag}", "STATS#{day:date}").as_deref(), Some("STATS#1"));
        assert_eq!(meet("CONV#{id}", "CONV#{conversationId}").as_deref(), Some("CONV#x"));
        assert_eq!(meet("METADATA", "METADATA").as_deref(), Some("METADATA"));
        assert_eq!(meet("{orgId}", "ORG#{x}").as_deref(), Some("ORG#x"));
        assert_eq!(meet("SALES#{c}#{d:date}", "SALES#{c}").as_deref(), Some("SALES#x#1"));
        assert!(meet("a{x}b", "{y}").is_some());
    }

    #[test]
    fn templates_apart_by_literals_or_capture_types_do_not_meet() {
        assert_eq!(meet("STATS", "PROFILE"), None);
        assert_eq!(meet("order_stats", "{day:date}#order#{orderId}"), None);
        assert_eq!(meet("stats#assignment#{a}", "submission#{a}#{s}"), None);
        assert_eq!(meet("day#{d:date}", "day#{d:date}#x"), None);
        assert_eq!(meet("USER#{id}", "CONV#{id}"), None);
        assert_eq!(meet("x{a}", "x"), None, "a capture is never empty");
    }

    #[test]
    fn an_aggregate_template_also_holds_the_keys_it_reads_with_empty_ids() {
        let read = Language::of(&Pattern::parse("X#{a}").unwrap(), true);
        assert_eq!(read.meet(&language("X#")).as_deref(), Some("X#"));
        assert_eq!(read.meet(&language("X#{b}#y")).as_deref(), Some("X#x#y"));
        let read = Language::of(&Pattern::parse("{a}#{b}").unwrap(), true);
        assert_eq!(read.meet(&language("#")).as_deref(), Some("#"));
    }

    #[test]
    fn a_prefix_language_holds_every_key_that_starts_with_it() {
        let bookkeeping = Language::starting_with("_tally#");
        assert_eq!(language("{orgId}").meet(&bookkeeping).as_deref(), Some("_tally#"));
        assert_eq!(language("_t{x}").meet(&bookkeeping).as_deref(), Some("_tally#"));
        assert_eq!(language("_tally#{x}#y").meet(&bookkeeping).as_deref(), Some("_tally#x#y"));
        assert_eq!(language("ORG#{orgId}").meet(&bookkeeping), None);
        assert_eq!(language("_tal").meet(&bookkeeping), None);
    }

    #[test]
    fn dates_hold_digits_and_dashes_only() {
        assert!(capture_may_hold(CaptureType::DateTime, '-'));
        assert!(capture_may_hold(CaptureType::DateTime, 'T'));
        assert!(!capture_may_hold(CaptureType::DateTime, '#'));
        assert!(capture_may_hold(CaptureType::Date, '0'));
        assert!(!capture_may_hold(CaptureType::Date, 'T'));
        assert!(capture_may_hold(CaptureType::Id, '#'));
    }
}
