//! Random histories of source items, the workload of the oracle and of the fault suites: every
//! entity, moves between aggregates, deletes, TTL deletes and invalid images, over few enough
//! keys that histories revisit the same aggregates.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::images::*;
use super::Rec;

pub const SHARDS: usize = 3;
pub const SLOTS: usize = 27;

/// One step of a history: which item, what happens to it, and the values it gets.
#[derive(Debug, Clone)]
pub struct Op {
    pub slot: usize,
    pub action: u8,
    pub values: [u8; 3],
}

pub fn op() -> impl Strategy<Value = Op> {
    (0..SLOTS, any::<u8>(), any::<[u8; 3]>()).prop_map(|(slot, action, values)| Op { slot, action, values })
}

/// The image an op gives its slot. Slots fix each item's key; values vary what the rules see,
/// including invalid images.
pub fn image(slot: usize, [a, b, c]: [u8; 3]) -> Value {
    let course = format!("c{}", slot % 2);
    let day = |v: u8| format!("2026-03-0{}", v % 3 + 1);
    match slot {
        0..=5 => {
            let student = format!("s{}", slot / 2);
            let mut image = enrollment(&course, &student, &format!("{}T23:{:02}:00+01:00", day(a), a % 60));
            match b % 8 {
                0 => drop(image.as_object_mut().unwrap().remove("enrolledAt")),
                1 => image["enrolledAt"] = json!({"S": "last tuesday"}),
                2 => image["studentID"] = json!({"S": ""}),
                // `user#` + 2,043 bytes is the partition key limit exactly; one byte more is key_too_long.
                3 => image["studentID"] = json!({"S": format!("s{}", "x".repeat(2042))}),
                4 => image["studentID"] = json!({"S": format!("s{}", "x".repeat(2043))}),
                _ => {}
            }
            image
        }
        6..=11 => {
            let student = format!("s{}", (slot / 2) % 3);
            let grade = match b % 8 {
                0 | 1 => None,
                2 => Some(json!({"S": "A+"})),
                3 => Some(n("-1")),
                4 => Some(n(&"9".repeat(39))),
                // At the university contract's out_of_range bounds, and one digit past them.
                5 if c % 3 == 0 => Some(n("99999999999999999999.99999999")),
                5 if c % 3 == 1 => Some(n("0.000000001")),
                _ => Some(n(&format!("{}.{}", c % 101, a % 100))),
            };
            let mut image = submission(&course, &format!("a{}", a % 2), &student, &format!("{}T10:00:00Z", day(c)), grade);
            // A stable sk per slot: changing assignmentID moves the submission between aggregates.
            image["sk"] = json!({"S": format!("submission#slot{slot}#{student}")});
            if c % 5 == 0 {
                image.as_object_mut().unwrap().remove("submittedAt");
            }
            // `stats#assignment#` + 1,007 bytes is the sort key limit exactly; one byte more is key_too_long.
            match c % 11 {
                3 => image["assignmentID"] = json!({"S": format!("a{}", "y".repeat(1006))}),
                4 => image["assignmentID"] = json!({"S": format!("a{}", "y".repeat(1007))}),
                _ => {}
            }
            image
        }
        12 | 13 => instructor(&course, "i1"),
        14 | 15 => assignment(&course, "a1"),
        16..=19 => {
            let mut image = order(&format!("u{}", slot % 2), &day(slot as u8 / 2), &format!("o{slot}"), &format!("{}.{:02}", a, b % 100));
            match c % 9 {
                0 => image["amount"] = json!({"S": "19.99"}),
                1 => image["amount"] = n("1E+37"),
                2 => image["amount"] = n("99999999999999999999.99999999"),
                _ => {}
            }
            image
        }
        20..=22 => transaction(&format!("u{}", slot % 2), &day(slot as u8), &format!("t{slot}"), &format!("-{}.{}", a, b % 10)),
        23 => super::images::course(&course),
        24 => user("u0"),
        25 => session("x"),
        _ => json!({"pk": {"S": "course#c0"}, "sk": {"S": "note#1"}, "entityType": {"S": "note"}, "text": {"S": format!("{a}")}}),
    }
}

/// Turns a history into per-shard record lists and the final images.
pub fn records(history: &[Op]) -> (Vec<Vec<Rec>>, Vec<Value>) {
    let mut state = BTreeMap::new();
    let shards = records_after(history, &mut state, 1000);
    (shards, state.into_values().collect())
}

/// The shard DynamoDB would put a partition key in (stand-in hash).
pub fn shard_of(pk: &str) -> usize {
    pk.bytes().map(usize::from).sum::<usize>() % SHARDS
}

/// Continues a history from `state` (each slot's current image), with sequence numbers from
/// `first_sequence`; `state` ends as the items' final images.
pub fn records_after(history: &[Op], state: &mut BTreeMap<usize, Value>, first_sequence: u64) -> Vec<Vec<Rec>> {
    let mut shards: Vec<Vec<Rec>> = vec![Vec::new(); SHARDS];
    for (i, op) in history.iter().enumerate() {
        let sequence = first_sequence + i as u64;
        let new = image(op.slot, op.values);
        let shard = shard_of(new["pk"]["S"].as_str().unwrap());
        let rec = match (state.get(&op.slot).cloned(), op.action % 5) {
            (Some(old), 3) => {
                state.remove(&op.slot);
                Rec::remove(sequence, old)
            }
            (Some(old), 4) => {
                state.remove(&op.slot);
                Rec::ttl_remove(sequence, old)
            }
            (Some(old), _) => {
                state.insert(op.slot, new.clone());
                Rec::modify(sequence, old, new)
            }
            (None, _) => {
                state.insert(op.slot, new.clone());
                Rec::insert(sequence, new)
            }
        };
        shards[shard].push(rec);
    }
    shards
}

/// Deterministic choices drawn from proptest's dice, reused in a cycle.
pub struct Dice<'a> {
    pub faces: &'a [u8],
    pub next: usize,
}

impl Dice<'_> {
    pub fn roll(&mut self, sides: usize) -> usize {
        let face = self.faces[self.next % self.faces.len()];
        self.next += 1;
        face as usize % sides
    }
}
