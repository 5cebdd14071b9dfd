//! `Rules::university()` is the university contract's table (docs/university.md): what one image
//! adds, why one is rejected, and the aggregate keys it writes read back. (That its entities,
//! aggregates, fields and averages are the hand-written rules', and every assessment too, is
//! `rules_match_code.rs`'s.)

use std::collections::HashMap;

use aggregates::rules::{RuleAssessment, Rules};
use serde_dynamo::{AttributeValue, Item};

fn image(attrs: &[(&str, &str)]) -> Item {
    let value = |text: &str| match text.strip_prefix("N:") {
        Some(number) => AttributeValue::N(number.to_owned()),
        None => AttributeValue::S(text.to_owned()),
    };
    Item::from(attrs.iter().map(|(name, text)| ((*name).to_owned(), value(text))).collect::<HashMap<_, _>>())
}

#[test]
fn a_graded_submission_adds_to_its_course_assignment_student_and_day() {
    let rules = Rules::university();
    let submission = image(&[
        ("pk", "course#c1"),
        ("sk", "submission#a9#s9"),
        ("entityType", "submission"),
        ("studentID", "s1"),
        ("assignmentID", "a1"),
        ("submittedAt", "2026-03-01T23:30:00-02:00"),
        ("grade", "N:88.50"),
    ]);
    let RuleAssessment::Source { entity, contribution } = rules.assess(Some(&submission)) else { panic!("a valid submission") };
    assert_eq!(entity.name(), "submission");
    let got: Vec<String> = contribution
        .iter()
        .map(|(aggregate, field, amount)| {
            format!("{} {} {} {} {amount}", rules.aggregate(aggregate.kind).name(), aggregate.pk, aggregate.sk, rules.field_name(field))
        })
        .collect();
    assert_eq!(
        got,
        [
            // The ids in the sk are not the assignment's nor the student's: the attributes are.
            "stats course#c1 stats submissionCount 1",
            "stats course#c1 stats gradedCount 1",
            "stats course#c1 stats gradeSum 88.5",
            "assignment_stats course#c1 stats#assignment#a1 submissionCount 1",
            "assignment_stats course#c1 stats#assignment#a1 gradedCount 1",
            "assignment_stats course#c1 stats#assignment#a1 gradeSum 88.5",
            "academic_stats user#s1 academic_stats submissionCount 1",
            "academic_stats user#s1 academic_stats gradedCount 1",
            "academic_stats user#s1 academic_stats gradeSum 88.5",
            // 23:30 at -02:00 is the next UTC day.
            "daily_stats stats#university day#2026-03-02 submissions 1",
        ]
    );
    assert_eq!(contribution.keys().count(), 4, "one part per aggregate item");
}

#[test]
fn rejections_name_the_entity_reason_and_attribute() {
    let rules = Rules::university();
    let negative = image(&[
        ("pk", "course#c1"),
        ("sk", "submission#a1#s1"),
        ("entityType", "submission"),
        ("grade", "N:-1"),
        // Checked after `grade`, so `grade` is the reason.
        ("studentID", ""),
    ]);
    match rules.assess(Some(&negative)) {
        RuleAssessment::Rejected { entity, violation } => {
            assert_eq!(entity.map(|entity| entity.name()), Some("submission"));
            assert_eq!((violation.reason(), violation.to_string().as_str()), ("negative_grade", "attribute `grade` is negative"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rules.assess(None), RuleAssessment::Absent);
    assert_eq!(rules.assess(Some(&image(&[("pk", "course#c1"), ("sk", "x"), ("entityType", "note")]))), RuleAssessment::Unknown);
}

#[test]
fn daily_keys_outside_four_digit_years_read_back() {
    // Date-times the university contract accepts whose UTC day is in year 10000 or -1: chrono
    // writes a sign.
    let rules = Rules::university();
    for (at, sk) in [("9999-12-31T23:59:59-23:59", "day#+10000-01-01"), ("0000-01-01T00:00:00+00:01", "day#-0001-12-31")] {
        let enrollment =
            image(&[("pk", "course#c1"), ("sk", "student#s1"), ("entityType", "student"), ("studentID", "s1"), ("enrolledAt", at)]);
        let assessment = rules.assess(Some(&enrollment));
        let contribution = assessment.contribution();
        let daily = contribution.keys().find(|key| key.pk == "stats#university").unwrap();
        assert_eq!(daily.sk, sk);
        assert_eq!(rules.parse_key(&daily.pk, &daily.sk).as_ref(), Some(daily));
    }
}

/// The digest stored with every ledger and aggregate tells rule sets apart by what they mean.
#[test]
fn the_digest_follows_the_meaning_not_the_text() {
    let university = Rules::university();
    let digest = |text: &str| Rules::from_toml(text, "copy.toml").unwrap_or_else(|errors| panic!("{errors}")).digest().to_owned();
    // Pinned: every ledger and aggregate a deployment holds carries it, and a new value would
    // flag all of them as written under other rules (`rules_digest.rs` pins every rule set's;
    // the digest is over a canonical encoding, `aggregates/src/rules/digest.rs`). Items carrying
    // the university's digest from before that encoding count as written under these rules.
    assert_eq!(university.digest(), "7fbc2f4f4a0ad62e");
    assert!(university.wrote(Some("9e265a763e0180ce")), "the university's digest before the canonical encoding");
    let commented = format!("# a team's copy, with its own comments\n{}", aggregates::rules::UNIVERSITY.replace("\n\n", "\n\n# ...\n"));
    assert_eq!(digest(&commented), university.digest(), "comments and the file's name are not meaning");
    let no_indexes = aggregates::rules::UNIVERSITY.replace(r#"  { name = "studentID-index", pk = "studentID" },"#, "");
    assert_ne!(no_indexes, aggregates::rules::UNIVERSITY);
    assert_eq!(digest(&no_indexes), university.digest(), "tally reads no index");
    assert!(Rules::from_toml(&commented, "copy.toml").unwrap().is_university());
    for (from, to) in [
        ("places = 4 }\n\n[aggregates.assignment_stats]", "places = 2 }\n\n[aggregates.assignment_stats]"),
        (r#"bookkeeping_prefix = "tally#""#, r#"bookkeeping_prefix = "_tally#""#),
        (r#"negative_reason = "negative_grade""#, r#"negative_reason = "below_zero""#),
        ("source_sk_bytes = 960", "source_sk_bytes = 900"),
    ] {
        let changed = aggregates::rules::UNIVERSITY.replacen(from, to, 1);
        assert_ne!(changed, aggregates::rules::UNIVERSITY, "{from}");
        assert_ne!(digest(&changed), university.digest(), "{from} -> {to} changes what the rules mean");
    }
}
