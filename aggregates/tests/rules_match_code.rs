//! Differential test: the university rules file, compiled, gives for every image exactly what
//! the hand-written rules give (`reference::deltas::assess`, docs/university.md implemented by
//! hand): the same absent / unknown / rejected / source classification, the same rejection reason
//! and message, the same entity type and the same contribution. And the same owner and aggregate
//! for every table key.
//!
//! The declarations agree too: the file's entities, aggregates, fields and averages are the
//! hand-written rules'.
//!
//! No server. Each property runs `PROPTEST_CASES` cases (256 by default):
//! `PROPTEST_CASES=20000 cargo test --release -p aggregates --test rules_match_code -- --nocapture`
//! prints what the cases covered.
//!
//! The strategies are boxed: unboxed, their debug-build `new_tree` frames can overflow a test
//! thread's stack (as in `tests/decode_hostile.rs`, whose generators these extend).

mod reference;

use std::collections::{BTreeMap, HashMap};

use aggregates::rules::{RuleAssessment, Rules, UNIVERSITY_SOURCE};
use aggregates::{AggregateValues, Deltas, KeyOwner, Number};
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reference::deltas::{assess, Assessment};
use reference::keys::{AggregateKey, AggregateKind, BOOKKEEPING_PK_PREFIX, GRADE_AVERAGE};
use reference::source::ENTITIES;
use serde_dynamo::{AttributeValue, Item};

/// One amount, as both sides can name it: aggregate pk, sk, entityType, field, amount.
type Entry = (String, String, String, String, String);

fn code_entries(deltas: &reference::deltas::Deltas) -> Vec<Entry> {
    let mut entries: Vec<Entry> = deltas
        .iter()
        .map(|(key, field, amount)| {
            (key.pk(), key.sk(), key.kind().entity_type().to_owned(), field.attribute().to_owned(), amount.to_string())
        })
        .collect();
    entries.sort();
    entries
}

fn rules_entries(rules: &Rules, contribution: &Deltas) -> Vec<Entry> {
    let mut entries: Vec<Entry> = contribution
        .iter()
        .map(|(aggregate, field, amount)| {
            let kind = rules.aggregate(aggregate.kind).name().to_owned();
            (aggregate.pk.clone(), aggregate.sk.clone(), kind, rules.field_name(field).to_owned(), amount.to_string())
        })
        .collect();
    entries.sort();
    entries
}

// ---------------------------------------------------------------------------------------------
// The declarations: entities, aggregates, fields, averages.

#[test]
fn the_entities_are_spec_s() {
    let rules = Rules::university();
    assert_eq!(rules.source_name(), UNIVERSITY_SOURCE);
    assert_eq!((rules.table().pk(), rules.table().sk(), rules.table().entity_type()), ("pk", "sk", Some("entityType")));
    assert_eq!(rules.table().bookkeeping_prefix(), BOOKKEEPING_PK_PREFIX);
    let ours: Vec<(&str, &str, bool)> =
        rules.entities().iter().map(|entity| (entity.name(), entity.pk_prefix(), entity.contributes())).collect();
    let code: Vec<(&str, &str, bool)> = ENTITIES.iter().map(|entity| (entity.entity_type, entity.pk_prefix, entity.contributes)).collect();
    assert_eq!(ours, code);
    assert!(rules.entities().iter().all(|entity| !entity.matched_by_keys()));
    assert_eq!(rules.entity("submission").map(|entity| entity.name()), Some("submission"));
    assert!(rules.entity("stats").is_none(), "aggregates are not entities");
}

#[test]
fn the_aggregates_and_fields_are_spec_s() {
    let rules = Rules::university();
    assert_eq!(rules.aggregates().len(), AggregateKind::ALL.len());
    for (aggregate, kind) in rules.aggregates().iter().zip(AggregateKind::ALL) {
        assert_eq!(aggregate.name(), kind.entity_type());
        let mut ours: Vec<&str> = aggregate.fields().map(|field| rules.field_name(field)).collect();
        let mut code: Vec<&str> = kind.fields().iter().map(|field| field.attribute()).collect();
        ours.sort_unstable();
        code.sort_unstable();
        assert_eq!(ours, code, "{}", kind.entity_type());
        let averages: Vec<(&str, &str, &str, u32)> = aggregate
            .averages()
            .iter()
            .map(|average| (average.name(), rules.field_name(average.sum()), rules.field_name(average.count()), average.places()))
            .collect();
        let expected = if kind.has_grade_average() { vec![(GRADE_AVERAGE, "gradeSum", "gradedCount", 4)] } else { vec![] };
        assert_eq!(averages, expected, "{}", kind.entity_type());
    }
    // One field id per name: `orderTotal` is on order_stats and daily_stats.
    let order_total = rules.field("orderTotal").unwrap();
    assert!(rules.aggregates()[3].sums().contains(&order_total) && rules.aggregates()[4].sums().contains(&order_total));
    assert_eq!(rules.field("gradeAverage"), None, "an average is not a field one adds to");
}

proptest! {
    #[test]
    fn averages_are_the_hand_written_grade_average(sum in -10_000_000i64..10_000_000, scale in 0u32..6, count in 0i64..5_000) {
        let rules = Rules::university();
        let course = rules.parse_key("course#c1", "stats").unwrap();
        let sum: Number = bigdecimal::BigDecimal::new(sum.into(), scale.into()).to_string().parse().unwrap();
        let mut values = AggregateValues::zero(rules, course.kind);
        values.fields.insert(rules.field("gradeSum").unwrap(), sum.clone());
        values.fields.insert(rules.field("gradedCount").unwrap(), Number::from(count));
        let ours: Vec<(&str, Option<Number>)> = values.averages(rules).map(|(average, value)| (average.name(), value)).collect();
        // The hand-written rules' `gradeAverage`: `gradeSum / gradedCount` for kinds with grades.
        let code = AggregateKind::CourseStats.has_grade_average().then(|| Number::average(&sum, &Number::from(count))).flatten();
        prop_assert_eq!(ours, vec![(GRADE_AVERAGE, code)]);
    }
}

// ---------------------------------------------------------------------------------------------
// Assessments.

/// Asserts both sides agree on `image`; returns a label of the outcome, for the coverage report.
fn agree(image: Option<&Item>) -> Result<String, TestCaseError> {
    let rules = Rules::university();
    let code = assess(image);
    let data = rules.assess(image);
    let label = match (&code, &data) {
        (Assessment::Absent, RuleAssessment::Absent) => "absent".to_owned(),
        (Assessment::Unknown, RuleAssessment::Unknown) => "unknown".to_owned(),
        (Assessment::Rejected(rejection), RuleAssessment::Rejected { entity, violation }) => {
            prop_assert_eq!(rejection.reason(), violation.reason(), "{:?}", image);
            prop_assert_eq!(rejection.to_string(), violation.to_string(), "{:?}", image);
            let claimed = image.and_then(|image| match image.get("entityType") {
                Some(AttributeValue::S(value)) => Some(value.as_str()),
                _ => None,
            });
            prop_assert_eq!(entity.map(|entity| entity.name()), claimed);
            format!("rejected {}", violation.reason())
        }
        (Assessment::Source { entity_type, contribution }, RuleAssessment::Source { entity, contribution: ours }) => {
            prop_assert_eq!(*entity_type, entity.name());
            prop_assert_eq!(code_entries(contribution), rules_entries(rules, ours), "{:?}", image);
            prop_assert_eq!(entity.contributes(), reference::source::entity_of(entity_type).is_some_and(|known| known.contributes));
            format!("source {entity_type}{}", if contribution.is_empty() { " (nothing)" } else { "" })
        }
        _ => return Err(TestCaseError::fail(format!("code says {code:?}, rules say {data:?}, for {image:?}"))),
    };
    Ok(label)
}

fn cases() -> u32 {
    Config::default().cases
}

/// Runs `test` over `strategy`, then prints how often each outcome came up.
fn run<T: std::fmt::Debug>(name: &str, strategy: impl Strategy<Value = T>, test: impl Fn(T) -> Result<String, TestCaseError>) {
    let started = std::time::Instant::now();
    let seen = std::cell::RefCell::new(BTreeMap::<String, u32>::new());
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&strategy, |input| {
        let label = test(input)?;
        *seen.borrow_mut().entry(label).or_default() += 1;
        Ok(())
    });
    if let Err(err) = outcome {
        panic!("{name}: {err}");
    }
    let seen = seen.into_inner();
    let report: Vec<String> = seen.iter().map(|(label, count)| format!("  {count:>6} {label}")).collect();
    println!("{name}: {} cases in {:.1?}\n{}", cases(), started.elapsed(), report.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Images: valid ones of every entity, then hostile edits.

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(text: &str) -> AttributeValue {
    AttributeValue::N(text.to_owned())
}

/// Ids: mostly short, sometimes odd (`#`, multi-byte), sometimes long enough to pass a limit.
fn id_text() -> BoxedStrategy<String> {
    prop_oneof![
        32 => "[a-z0-9]{1,6}",
        6 => "[a-z#é]{0,5}",
        2 => "\\PC{0,6}",
        1 => (1000usize..1100).prop_map(|length| "x".repeat(length)),
        1 => (2035usize..2050).prop_map(|length| "y".repeat(length)),
        1 => (1990usize..2050).prop_map(|length| "é".repeat(length / 2)),
    ]
    .boxed()
}

/// Dates and date-times, valid and not quite.
fn date_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "2026-09-01", "2026-09-01T23:30:00-02:00", "2026-03-01T10:00:00Z", "2026-03-01T00:30:00+0100", "2026-03-01T23:30",
            "2026-03-01T23:30:00.123456", "0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-23:59",
        ][..])
        .prop_map(str::to_owned),
        2 => "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{0,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?",
        2 => prop::sample::select(&[
            "2026-3-1", "2026-02-30", "26-03-01", "2026-03-01T1:00:00Z", "2026-03-01 10:00:00Z", "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00+1", "2026-03-0é10:00:00Z", "yesterday", "", "2026-13-01", "2026-03-01T24:00:00Z",
        ][..])
        .prop_map(str::to_owned),
        1 => "\\PC{0,20}",
    ]
    .boxed()
}

/// Number text: plain, past 20 integer or 8 fraction digits, past 38 digits, negative, not one.
fn number_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "-?[0-9]{1,4}(\\.[0-9]{1,3})?",
        2 => "-?[0-9]{18,23}(\\.[0-9]{6,10})?0{0,3}",
        1 => "[+-]?[0-9]{0,42}(\\.[0-9]{0,42})?([eE][+-]?[0-9]{1,3})?",
        1 => prop::sample::select(&[
            "-0", "0", "-1", "1E+19", "1E+20", "-1E+30", "2E+35", "1E-8", "1E-9", "0.000000001", "1.100000000000", "NaN", "", " 1 ",
            "1e", "9.9999999999999999999999999999999999999E+125", "1E+126", "1E-131",
        ][..])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// A value of the wrong DynamoDB type for most attributes.
fn odd_value() -> BoxedStrategy<AttributeValue> {
    prop_oneof![
        Just(AttributeValue::Bool(true)),
        Just(AttributeValue::Null(true)),
        Just(AttributeValue::B(vec![1, 2])),
        Just(AttributeValue::Ss(vec!["a".into()])),
        Just(AttributeValue::Ns(vec!["1".into()])),
        Just(AttributeValue::L(vec![s("x")])),
        Just(AttributeValue::M(HashMap::from([("a".to_owned(), n("1"))]))),
        number_text().prop_map(AttributeValue::N),
        id_text().prop_map(AttributeValue::S),
    ]
    .boxed()
}

/// An image's attributes other than its keys and type; `None` leaves one out.
type Attributes<'a> = Vec<(&'a str, Option<AttributeValue>)>;

/// A valid image of one of the university contract's entities (optional attributes present or
/// not), or an aggregate's, or an unknown one.
fn valid_image() -> BoxedStrategy<HashMap<String, AttributeValue>> {
    (0..11usize, id_text(), id_text(), id_text(), date_text(), number_text(), any::<[bool; 3]>())
        .prop_map(|(kind, a, b, c, day, number, [with_date, with_number, same_ids])| {
            let date = with_date.then(|| s(&day));
            let number = with_number.then(|| n(&number));
            let calendar = if day.len() >= 10 && day.is_char_boundary(10) { &day[..10] } else { day.as_str() };
            let (entity_type, pk, sk, rest): (&str, String, String, Attributes<'_>) = match kind {
                0 => ("course", format!("course#{a}"), "metadata".into(), vec![("courseDate", date)]),
                1 => (
                    "student",
                    format!("course#{a}"),
                    format!("student#{b}"),
                    vec![("studentID", Some(s(if same_ids { &b } else { &c }))), ("enrolledAt", date), ("ttl", number)],
                ),
                2 => ("instructor", format!("course#{a}"), format!("instructor#{b}"), vec![("instructorID", Some(s(&b)))]),
                3 => {
                    ("assignment", format!("course#{a}"), format!("assignment#{b}"), vec![("assignmentID", Some(s(&b))), ("dueDate", date)])
                }
                4 => (
                    "submission",
                    format!("course#{a}"),
                    format!("submission#{b}#{c}"),
                    vec![
                        ("assignmentID", Some(s(&b))),
                        ("studentID", Some(s(if same_ids { &c } else { &a }))),
                        ("submittedAt", date),
                        ("grade", number),
                    ],
                ),
                5 => ("user", format!("user#{a}"), "profile".into(), vec![]),
                6 => ("order", format!("user#{a}"), format!("{calendar}#order#{b}"), vec![("amount", number.or(Some(n("19.99"))))]),
                7 => ("transaction", format!("user#{a}"), format!("{calendar}#transaction#{b}"), vec![("amount", number)]),
                8 => ("session", format!("session#{a}"), "session".into(), vec![("ttl", number)]),
                9 => ("stats", format!("course#{a}"), "stats".into(), vec![("enrollmentCount", number)]),
                _ => ("note", format!("course#{a}"), format!("note#{b}"), vec![]),
            };
            let mut image: HashMap<String, AttributeValue> =
                rest.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect();
            image.insert("pk".into(), s(&pk));
            image.insert("sk".into(), s(&sk));
            image.insert("entityType".into(), s(entity_type));
            image
        })
        .boxed()
}

/// Attribute names the rules read, and some they do not.
fn attribute_name() -> BoxedStrategy<String> {
    prop::sample::select(
        &[
            "pk",
            "sk",
            "entityType",
            "studentID",
            "assignmentID",
            "instructorID",
            "grade",
            "amount",
            "enrolledAt",
            "submittedAt",
            "courseDate",
            "dueDate",
            "ttl",
            "title",
        ][..],
    )
    .prop_map(str::to_owned)
    .boxed()
}

/// One hostile edit of an image.
#[derive(Debug, Clone)]
enum Edit {
    Remove(String),
    Set(String, AttributeValue),
    Empty(String),
    EntityType(Option<AttributeValue>),
    /// Keys of another kind of item.
    MoveKeys(String, String),
    /// Pads the pk or sk to about a limit.
    LongKey(&'static str, usize),
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        2 => attribute_name().prop_map(Edit::Remove),
        3 => (attribute_name(), odd_value()).prop_map(|(name, value)| Edit::Set(name, value)),
        2 => (prop::sample::select(&["grade", "amount", "ttl"][..]), number_text()).prop_map(|(name, text)| Edit::Set(name.into(), n(&text))),
        2 => (prop::sample::select(&["enrolledAt", "submittedAt", "courseDate", "dueDate"][..]), date_text())
            .prop_map(|(name, text)| Edit::Set(name.into(), s(&text))),
        1 => attribute_name().prop_map(Edit::Empty),
        1 => prop_oneof![
            Just(None),
            prop::sample::select(&["", "Student", "note", "stats", "daily_stats", "order", "submission"][..]).prop_map(|name| Some(s(name))),
            Just(Some(n("1"))),
        ]
        .prop_map(Edit::EntityType),
        2 => (
            prop::sample::select(&["course#c1", "course#", "user#u1", "user#", "session#x", "stats#university", "tally#ledger#x", "x"][..]),
            prop::sample::select(&[
                "metadata", "student#s1", "student#", "instructor#i1", "assignment#a1", "submission#a1#s1", "submission#a1", "submission##s1",
                "submission#a1#", "profile", "2026-03-01#order#o1", "2026-03-01#order#", "2026-3-1#order#o1", "2026-03-01#transaction#t1",
                "2026-03-01#orders#o1", "session", "stats", "day#2026-03-01", "",
            ][..]),
        )
            .prop_map(|(pk, sk)| Edit::MoveKeys(pk.into(), sk.into())),
        1 => (prop::sample::select(&["pk", "sk"][..]), -3i64..=3).prop_map(|(key, around)| {
            let limit: i64 = if key == "pk" { 1984 } else { 960 };
            Edit::LongKey(key, (limit + around) as usize)
        }),
    ]
    .boxed()
}

fn apply(image: &mut HashMap<String, AttributeValue>, edit: Edit) {
    match edit {
        Edit::Remove(name) => {
            image.remove(&name);
        }
        Edit::Set(name, value) => {
            image.insert(name, value);
        }
        Edit::Empty(name) => {
            image.insert(name, s(""));
        }
        Edit::EntityType(None) => {
            image.remove("entityType");
        }
        Edit::EntityType(Some(value)) => {
            image.insert("entityType".into(), value);
        }
        Edit::MoveKeys(pk, sk) => {
            image.insert("pk".into(), s(&pk));
            image.insert("sk".into(), s(&sk));
        }
        Edit::LongKey(key, bytes) => {
            if let Some(AttributeValue::S(value)) = image.get_mut(key) {
                while value.len() < bytes {
                    value.push('z');
                }
            }
        }
    }
}

fn hostile_image() -> BoxedStrategy<Item> {
    (valid_image(), vec(edit(), 0..4))
        .prop_map(|(mut image, edits)| {
            for edit in edits {
                apply(&mut image, edit);
            }
            Item::from(image)
        })
        .boxed()
}

/// `tests/decode_hostile.rs`'s images: any attribute replaced by any value, nested.
fn any_value() -> BoxedStrategy<AttributeValue> {
    let leaf = prop_oneof![
        4 => prop_oneof![id_text(), date_text(), Just("submission".to_owned()), Just("course#c1".to_owned())].prop_map(AttributeValue::S),
        4 => number_text().prop_map(AttributeValue::N),
        1 => any::<bool>().prop_map(AttributeValue::Bool),
        1 => any::<bool>().prop_map(AttributeValue::Null),
        1 => vec(any::<u8>(), 0..8).prop_map(AttributeValue::B),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(AttributeValue::L),
            hash_map(attribute_name(), inner, 0..3).prop_map(AttributeValue::M)
        ]
    })
    .boxed()
}

fn fuzzed_image() -> BoxedStrategy<Item> {
    (valid_image(), vec((attribute_name(), prop::option::weighted(0.8, any_value())), 0..4))
        .prop_map(|(mut image, edits)| {
            for (name, value) in edits {
                match value {
                    Some(value) => image.insert(name, value),
                    None => image.remove(&name),
                };
            }
            Item::from(image)
        })
        .boxed()
}

#[test]
fn valid_and_hostile_images_get_the_same_assessment() {
    run("valid and hostile images", prop::option::weighted(0.98, hostile_image()), |image| agree(image.as_ref()));
}

#[test]
fn fuzzed_images_get_the_same_assessment() {
    run("fuzzed images", fuzzed_image(), |image| agree(Some(&image)));
}

/// The hand-written rules' owner of a table key, as the library names owners.
fn owner_of(pk: &str, sk: &str) -> KeyOwner {
    match reference::keys::KeyOwner::of(pk, sk) {
        reference::keys::KeyOwner::Aggregate => KeyOwner::Aggregate,
        reference::keys::KeyOwner::Bookkeeping => KeyOwner::Bookkeeping,
        reference::keys::KeyOwner::Application => KeyOwner::Application,
    }
}

/// Table keys: the owner and the aggregate they name.
fn key_part() -> BoxedStrategy<String> {
    (
        prop::sample::select(
            &[
                "course#",
                "user#",
                "stats#university",
                "stats",
                "stats#assignment#",
                "academic_stats",
                "order_stats",
                "day#",
                "tally#",
                "tally#ledger#",
                "session#",
                "metadata",
                "",
            ][..],
        ),
        prop_oneof![Just(String::new()), id_text(), date_text()],
    )
        .prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
        .boxed()
}

#[test]
fn keys_get_the_same_owner_and_aggregate() {
    run("table keys", (key_part(), key_part()), |(pk, sk)| {
        let rules = Rules::university();
        let owner = owner_of(&pk, &sk);
        prop_assert_eq!(&rules.owner(&pk, &sk), &owner, "{} {}", pk, sk);
        let ours = rules.parse_key(&pk, &sk);
        match AggregateKey::parse(&pk, &sk) {
            // Today's parse also reads a day chrono accepts but tally never writes
            // (`day#2026-3-1`): compare where it names the key it was given.
            Some(key) if key.pk() == pk && key.sk() == sk => {
                let ours = ours.ok_or_else(|| TestCaseError::fail(format!("rules name no aggregate for {pk} {sk}")))?;
                prop_assert_eq!(rules.aggregate(ours.kind).name(), key.kind().entity_type());
            }
            Some(_) => prop_assert_eq!(ours, None),
            None => prop_assert_eq!(ours, None, "{} {}", pk, sk),
        }
        Ok(format!("{owner:?}"))
    });
}
