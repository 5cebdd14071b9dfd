//! `Rules::university()` declares what today's code hard-wires: SPEC's entities, aggregates,
//! fields and averages, and what one image adds.

use std::collections::HashMap;

use aggregates::rules::{RuleAssessment, Rules, UNIVERSITY_SOURCE};
use aggregates::{AggregateKind, AggregateValues, Number};
use proptest::prelude::*;
use serde_dynamo::{AttributeValue, Item};

fn image(attrs: &[(&str, &str)]) -> Item {
    let value = |text: &str| match text.strip_prefix("N:") {
        Some(number) => AttributeValue::N(number.to_owned()),
        None => AttributeValue::S(text.to_owned()),
    };
    Item::from(attrs.iter().map(|(name, text)| ((*name).to_owned(), value(text))).collect::<HashMap<_, _>>())
}

#[test]
fn the_entities_are_spec_s() {
    let rules = Rules::university();
    assert_eq!(rules.source_name(), UNIVERSITY_SOURCE);
    assert_eq!((rules.table().pk(), rules.table().sk(), rules.table().entity_type()), ("pk", "sk", Some("entityType")));
    assert_eq!(rules.table().bookkeeping_prefix(), aggregates::keys::BOOKKEEPING_PK_PREFIX);
    let ours: Vec<(&str, &str, bool)> =
        rules.entities().iter().map(|entity| (entity.name(), entity.pk_prefix(), entity.contributes())).collect();
    let code: Vec<(&str, &str, bool)> =
        aggregates::source::ENTITIES.iter().map(|entity| (entity.entity_type, entity.pk_prefix, entity.contributes)).collect();
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
        let expected =
            if kind.has_grade_average() { vec![(aggregates::keys::GRADE_AVERAGE, "gradeSum", "gradedCount", 4)] } else { vec![] };
        assert_eq!(averages, expected, "{}", kind.entity_type());
    }
    // One field id per name: `orderTotal` is on order_stats and daily_stats.
    let order_total = rules.field("orderTotal").unwrap();
    assert!(rules.aggregates()[3].sums().contains(&order_total) && rules.aggregates()[4].sums().contains(&order_total));
    assert_eq!(rules.field("gradeAverage"), None, "an average is not a field one adds to");
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
    assert_eq!(contribution.parts().len(), 4, "one part per aggregate item");
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

proptest! {
    #[test]
    fn averages_are_today_s_grade_average(sum in -10_000_000i64..10_000_000, scale in 0u32..6, count in 0i64..5_000) {
        let rules = Rules::university();
        let average = &rules.aggregates()[0].averages()[0];
        let sum: Number = bigdecimal::BigDecimal::new(sum.into(), scale.into()).to_string().parse().unwrap();
        let mut values = AggregateValues::zero(AggregateKind::CourseStats);
        values.fields.insert(aggregates::Field::GradeSum, sum.clone());
        values.fields.insert(aggregates::Field::GradedCount, Number::from(count));
        prop_assert_eq!(average.value(&sum, &Number::from(count)), values.grade_average());
    }
}

#[test]
fn daily_keys_outside_four_digit_years_read_back() {
    // SPEC-valid date-times whose UTC day is in year 10000 or -1: chrono writes a sign.
    let rules = Rules::university();
    for (at, sk) in [("9999-12-31T23:59:59-23:59", "day#+10000-01-01"), ("0000-01-01T00:00:00+00:01", "day#-0001-12-31")] {
        let enrollment =
            image(&[("pk", "course#c1"), ("sk", "student#s1"), ("entityType", "student"), ("studentID", "s1"), ("enrolledAt", at)]);
        let contribution = rules.assess(Some(&enrollment)).contribution().cloned().unwrap();
        let daily = contribution.parts().iter().map(|part| part.aggregate()).find(|key| key.pk == "stats#university").unwrap();
        assert_eq!(daily.sk, sk);
        assert_eq!(rules.parse_key(&daily.pk, &daily.sk).as_ref(), Some(daily));
    }
}
