//! Source items: the application's items, decoded from an image and validated as the
//! university contract (docs/university.md) says.

use chrono::NaiveDate;
use serde_dynamo::{AttributeValue, Item};

use aggregates::number::{Number, NumberError, MAX_FRACTION_DIGITS, MAX_INTEGER_DIGITS};

use super::dates::{calendar_date, utc_day};
use super::keys::{ENTITY_TYPE, MAX_SOURCE_PK_BYTES, MAX_SOURCE_SK_BYTES, PK, SK, TTL};

/// Why an image contributes nothing. Messages name attributes, never their values: images hold
/// personal data and these messages reach the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("attribute `{0}` is missing")]
    Missing(&'static str),
    #[error("attribute `{0}` is empty")]
    Empty(&'static str),
    #[error("attribute `{attribute}` has type {found}, expected {expected}")]
    WrongType { attribute: &'static str, expected: &'static str, found: &'static str },
    #[error("key `{attribute}` does not have the shape `{shape}`")]
    KeyShape { attribute: &'static str, shape: &'static str },
    #[error("attribute `{attribute}` is not a DynamoDB number: {problem}")]
    BadNumber { attribute: &'static str, problem: &'static str },
    #[error("attribute `grade` is negative")]
    NegativeGrade,
    #[error("attribute `{0}` is not an ISO 8601 date or date-time")]
    BadDate(&'static str),
    /// The image's own key leaves no room for its ledger's key.
    #[error("key `{key}` is {bytes} bytes, over the {limit} tally accepts")]
    KeyTooLong { key: &'static str, bytes: usize, limit: usize },
    /// An aggregate the image contributes to would have a key DynamoDB cannot store.
    #[error("the `{aggregate}` item's `{key}` would be {bytes} bytes, over DynamoDB's {limit}")]
    AggregateKeyTooLong { aggregate: &'static str, key: &'static str, bytes: usize, limit: usize },
    #[error("attribute `{0}` has more than {MAX_INTEGER_DIGITS} digits before the decimal point or {MAX_FRACTION_DIGITS} after it")]
    OutOfRange(&'static str),
}

impl Rejection {
    /// A stable, low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing(_) => "missing_attribute",
            Rejection::Empty(_) => "empty_attribute",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::KeyShape { .. } => "key_shape",
            Rejection::BadNumber { problem, .. } if *problem == TOO_PRECISE => "number_too_precise",
            Rejection::BadNumber { .. } => "bad_number",
            Rejection::NegativeGrade => "negative_grade",
            Rejection::BadDate(_) => "bad_date",
            Rejection::KeyTooLong { .. } | Rejection::AggregateKeyTooLong { .. } => "key_too_long",
            Rejection::OutOfRange(_) => "out_of_range",
        }
    }
}

const TOO_PRECISE: &str = "more than 38 significant digits";

/// A validated source item; the variants that contribute nothing still carry their kind so they
/// can be counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceItem {
    Course,
    Enrollment { course_id: String, student_id: String, day: Option<NaiveDate> },
    Instructor { course_id: String },
    Assignment { course_id: String },
    Submission { course_id: String, assignment_id: String, student_id: String, day: Option<NaiveDate>, grade: Option<Number> },
    User,
    Order { user_id: String, day: NaiveDate, amount: Number },
    Transaction { user_id: String, day: NaiveDate, amount: Number },
    Session,
}

/// What an image turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Source(SourceItem),
    /// No `entityType`, or one the university contract does not list.
    Unknown,
}

/// A kind of source item the university contract lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity {
    pub entity_type: &'static str,
    /// What its partition key starts with; the rest is an id.
    pub pk_prefix: &'static str,
    /// Whether an item of it can add to an aggregate. One that cannot needs no ledger.
    pub contributes: bool,
}

const fn entity(entity_type: &'static str, pk_prefix: &'static str, contributes: bool) -> Entity {
    Entity { entity_type, pk_prefix, contributes }
}

/// Every kind of source item the university contract lists.
pub const ENTITIES: [Entity; 9] = [
    entity("course", COURSE_PK_PREFIX, false),
    entity("student", COURSE_PK_PREFIX, true),
    entity("instructor", COURSE_PK_PREFIX, true),
    entity("assignment", COURSE_PK_PREFIX, true),
    entity("submission", COURSE_PK_PREFIX, true),
    entity("user", USER_PK_PREFIX, false),
    entity("order", USER_PK_PREFIX, true),
    entity("transaction", USER_PK_PREFIX, true),
    entity("session", SESSION_PK_PREFIX, false),
];

const COURSE_PK_PREFIX: &str = "course#";
const USER_PK_PREFIX: &str = "user#";
const SESSION_PK_PREFIX: &str = "session#";

/// The kind of source item `entity_type` names, if the university contract lists it.
pub fn entity_of(entity_type: &str) -> Option<&'static Entity> {
    ENTITIES.iter().find(|entity| entity.entity_type == entity_type)
}

/// Parses and validates one image's own attributes and keys. The keys of the aggregates it
/// feeds are checked by [`super::deltas::assess`], which needs its contribution.
pub fn parse(image: &Item) -> Result<Decoded, Rejection> {
    let entity = match image.get(ENTITY_TYPE) {
        None => return Ok(Decoded::Unknown),
        Some(AttributeValue::S(value)) => match entity_of(value) {
            Some(entity) => entity,
            None => return Ok(Decoded::Unknown),
        },
        Some(other) => return Err(wrong_type(ENTITY_TYPE, "S", other)),
    };
    let entity_type = entity.entity_type;
    let attrs = Attrs(image);
    attrs.key_within(PK, MAX_SOURCE_PK_BYTES)?;
    attrs.key_within(SK, MAX_SOURCE_SK_BYTES)?;
    let item = match entity_type {
        "course" => {
            attrs.key_id(PK, entity.pk_prefix)?;
            attrs.key_exact(SK, "metadata")?;
            if let Some(date) = attrs.optional_string("courseDate")? {
                calendar_date(date).ok_or(Rejection::BadDate("courseDate"))?;
            }
            SourceItem::Course
        }
        "student" => {
            let course_id = attrs.key_id(PK, entity.pk_prefix)?;
            attrs.key_id(SK, "student#")?;
            attrs.optional_number(TTL)?;
            SourceItem::Enrollment { course_id, student_id: attrs.id("studentID")?, day: attrs.utc_day("enrolledAt")? }
        }
        "instructor" => {
            let course_id = attrs.key_id(PK, entity.pk_prefix)?;
            attrs.key_id(SK, "instructor#")?;
            attrs.id("instructorID")?;
            SourceItem::Instructor { course_id }
        }
        "assignment" => {
            let course_id = attrs.key_id(PK, entity.pk_prefix)?;
            attrs.key_id(SK, "assignment#")?;
            attrs.id("assignmentID")?;
            attrs.optional_string("dueDate")?;
            SourceItem::Assignment { course_id }
        }
        "submission" => {
            let course_id = attrs.key_id(PK, entity.pk_prefix)?;
            let ids = attrs.key_id(SK, "submission#")?;
            if !ids.split_once('#').is_some_and(|(assignment, student)| !assignment.is_empty() && !student.is_empty()) {
                return Err(Rejection::KeyShape { attribute: SK, shape: prefix_shape("submission#") });
            }
            let grade = attrs.optional_number("grade")?;
            if grade.as_ref().is_some_and(Number::is_negative) {
                return Err(Rejection::NegativeGrade);
            }
            let grade = grade.map(|grade| summable("grade", grade)).transpose()?;
            SourceItem::Submission {
                course_id,
                assignment_id: attrs.id("assignmentID")?,
                student_id: attrs.id("studentID")?,
                day: attrs.utc_day("submittedAt")?,
                grade,
            }
        }
        "user" => {
            attrs.key_id(PK, entity.pk_prefix)?;
            attrs.key_exact(SK, "profile")?;
            SourceItem::User
        }
        "order" | "transaction" => {
            let user_id = attrs.key_id(PK, entity.pk_prefix)?;
            let is_order = entity_type == "order";
            let day = attrs.dated_sk(if is_order { "order" } else { "transaction" })?;
            let amount = summable("amount", attrs.optional_number("amount")?.ok_or(Rejection::Missing("amount"))?)?;
            if is_order {
                SourceItem::Order { user_id, day, amount }
            } else {
                SourceItem::Transaction { user_id, day, amount }
            }
        }
        "session" => {
            attrs.key_id(PK, entity.pk_prefix)?;
            attrs.key_exact(SK, "session")?;
            attrs.optional_number(TTL)?;
            SourceItem::Session
        }
        _ => return Ok(Decoded::Unknown),
    };
    Ok(Decoded::Source(item))
}

/// A value that is summed into aggregates must stay within the university contract's
/// `out_of_range` bounds.
fn summable(attribute: &'static str, value: Number) -> Result<Number, Rejection> {
    if value.is_summable() {
        Ok(value)
    } else {
        Err(Rejection::OutOfRange(attribute))
    }
}

fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::N(_) => "N",
        AttributeValue::S(_) => "S",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::B(_) => "B",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
    }
}

fn wrong_type(attribute: &'static str, expected: &'static str, found: &AttributeValue) -> Rejection {
    Rejection::WrongType { attribute, expected, found: type_name(found) }
}

/// Typed access to an image's attributes, each failure naming the attribute.
struct Attrs<'a>(&'a Item);

impl Attrs<'_> {
    fn optional_string(&self, attribute: &'static str) -> Result<Option<&str>, Rejection> {
        match self.0.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value)),
            Some(other) => Err(wrong_type(attribute, "S", other)),
        }
    }

    /// A required, non-empty id attribute.
    fn id(&self, attribute: &'static str) -> Result<String, Rejection> {
        match self.optional_string(attribute)? {
            None => Err(Rejection::Missing(attribute)),
            Some("") => Err(Rejection::Empty(attribute)),
            Some(value) => Ok(value.to_owned()),
        }
    }

    /// The id that follows `prefix` in a key attribute, which must be non-empty.
    fn key_id(&self, attribute: &'static str, prefix: &'static str) -> Result<String, Rejection> {
        let shape = || Rejection::KeyShape { attribute, shape: prefix_shape(prefix) };
        let value = self.optional_string(attribute)?.ok_or(Rejection::Missing(attribute))?;
        match value.strip_prefix(prefix) {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(shape()),
        }
    }

    /// A key attribute, when it is a string, must be at most `limit` bytes (UTF-8).
    fn key_within(&self, key: &'static str, limit: usize) -> Result<(), Rejection> {
        match self.0.get(key) {
            Some(AttributeValue::S(value)) if value.len() > limit => Err(Rejection::KeyTooLong { key, bytes: value.len(), limit }),
            _ => Ok(()),
        }
    }

    fn key_exact(&self, attribute: &'static str, expected: &'static str) -> Result<(), Rejection> {
        match self.optional_string(attribute)?.ok_or(Rejection::Missing(attribute))? {
            value if value == expected => Ok(()),
            _ => Err(Rejection::KeyShape { attribute, shape: expected }),
        }
    }

    /// An order's or transaction's `sk`: `{YYYY-MM-DD}#{kind}#{id}`; returns the day.
    fn dated_sk(&self, kind: &'static str) -> Result<NaiveDate, Rejection> {
        let shape = if kind == "order" { "{YYYY-MM-DD}#order#{orderId}" } else { "{YYYY-MM-DD}#transaction#{transactionId}" };
        let bad_shape = || Rejection::KeyShape { attribute: SK, shape };
        let sk = self.optional_string(SK)?.ok_or(Rejection::Missing(SK))?;
        let (date, rest) = sk.split_once('#').ok_or_else(bad_shape)?;
        let day = calendar_date(date).ok_or_else(bad_shape)?;
        match rest.strip_prefix(kind).and_then(|rest| rest.strip_prefix('#')) {
            Some(id) if !id.is_empty() => Ok(day),
            _ => Err(bad_shape()),
        }
    }

    fn optional_number(&self, attribute: &'static str) -> Result<Option<Number>, Rejection> {
        match self.0.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::N(text)) => text.parse().map(Some).map_err(|err| Rejection::BadNumber {
                attribute,
                problem: match err {
                    NumberError::NotANumber(_) => "not a number",
                    NumberError::TooPrecise { .. } => TOO_PRECISE,
                    NumberError::OutOfRange(_) => "out of range",
                },
            }),
            Some(other) => Err(wrong_type(attribute, "N", other)),
        }
    }

    /// The UTC day of an optional ISO 8601 attribute; present but unparsable is invalid.
    fn utc_day(&self, attribute: &'static str) -> Result<Option<NaiveDate>, Rejection> {
        self.optional_string(attribute)?.map(|text| utc_day(text).ok_or(Rejection::BadDate(attribute))).transpose()
    }
}

fn prefix_shape(prefix: &'static str) -> &'static str {
    match prefix {
        "course#" => "course#{courseId}",
        "student#" => "student#{studentId}",
        "instructor#" => "instructor#{instructorId}",
        "assignment#" => "assignment#{assignmentId}",
        "submission#" => "submission#{assignmentId}#{studentId}",
        "user#" => "user#{userId}",
        "session#" => "session#{sessionId}",
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn image(attrs: &[(&str, AttributeValue)]) -> Item {
        Item::from(attrs.iter().cloned().map(|(k, v)| (k.to_owned(), v)).collect::<HashMap<_, _>>())
    }

    pub(crate) fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.to_owned())
    }

    pub(crate) fn n(text: &str) -> AttributeValue {
        AttributeValue::N(text.to_owned())
    }

    /// Student s1's submission of assignment a1 in course c1, with `extra` attributes.
    pub(crate) fn submission(extra: &[(&str, AttributeValue)]) -> Item {
        let mut attrs = vec![
            ("pk", s("course#c1")),
            ("sk", s("submission#a1#s1")),
            ("entityType", s("submission")),
            ("studentID", s("s1")),
            ("assignmentID", s("a1")),
        ];
        attrs.extend(extra.iter().cloned());
        image(&attrs)
    }

    #[test]
    fn decodes_every_entity() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let cases = [
            (
                image(&[("pk", s("course#c1")), ("sk", s("metadata")), ("entityType", s("course")), ("courseDate", s("2026-09-01"))]),
                SourceItem::Course,
            ),
            (
                image(&[
                    ("pk", s("course#c1")),
                    ("sk", s("student#s1")),
                    ("entityType", s("student")),
                    ("studentID", s("s1")),
                    ("enrolledAt", s("2026-03-01T23:30:00-00:30")),
                    ("ttl", n("1999999999")),
                ]),
                SourceItem::Enrollment { course_id: "c1".into(), student_id: "s1".into(), day: NaiveDate::from_ymd_opt(2026, 3, 2) },
            ),
            (
                image(&[("pk", s("course#c1")), ("sk", s("instructor#i1")), ("entityType", s("instructor")), ("instructorID", s("i1"))]),
                SourceItem::Instructor { course_id: "c1".into() },
            ),
            (
                image(&[
                    ("pk", s("course#c1")),
                    ("sk", s("assignment#a1")),
                    ("entityType", s("assignment")),
                    ("assignmentID", s("a1")),
                    ("dueDate", s("2026-04-01")),
                ]),
                SourceItem::Assignment { course_id: "c1".into() },
            ),
            (
                submission(&[("submittedAt", s("2026-03-01T10:00:00")), ("grade", n("91.50"))]),
                SourceItem::Submission {
                    course_id: "c1".into(),
                    assignment_id: "a1".into(),
                    student_id: "s1".into(),
                    day: Some(day),
                    grade: Some("91.5".parse().unwrap()),
                },
            ),
            (image(&[("pk", s("user#u1")), ("sk", s("profile")), ("entityType", s("user"))]), SourceItem::User),
            (
                image(&[("pk", s("user#u1")), ("sk", s("2026-03-01#order#o1")), ("entityType", s("order")), ("amount", n("19.99"))]),
                SourceItem::Order { user_id: "u1".into(), day, amount: "19.99".parse().unwrap() },
            ),
            (
                image(&[
                    ("pk", s("user#u1")),
                    ("sk", s("2026-03-01#transaction#t1")),
                    ("entityType", s("transaction")),
                    ("amount", n("-5")),
                ]),
                SourceItem::Transaction { user_id: "u1".into(), day, amount: "-5".parse().unwrap() },
            ),
            (image(&[("pk", s("session#x")), ("sk", s("session")), ("entityType", s("session")), ("ttl", n("1"))]), SourceItem::Session),
        ];
        for (img, expected) in cases {
            assert_eq!(parse(&img), Ok(Decoded::Source(expected)));
        }
    }

    #[test]
    fn unknown_entities() {
        assert_eq!(parse(&image(&[("pk", s("x")), ("sk", s("y"))])), Ok(Decoded::Unknown));
        assert_eq!(parse(&image(&[("pk", s("x")), ("sk", s("y")), ("entityType", s("teacher"))])), Ok(Decoded::Unknown));
    }

    #[test]
    fn rejects_invalid_images_naming_the_problem() {
        let cases = [
            (submission(&[("grade", s("A+"))]), Rejection::WrongType { attribute: "grade", expected: "N", found: "S" }, "wrong_type"),
            (submission(&[("grade", n("-1"))]), Rejection::NegativeGrade, "negative_grade"),
            (
                submission(&[("grade", n(&"1".repeat(39)))]),
                Rejection::BadNumber { attribute: "grade", problem: TOO_PRECISE },
                "number_too_precise",
            ),
            (submission(&[("grade", n("ten"))]), Rejection::BadNumber { attribute: "grade", problem: "not a number" }, "bad_number"),
            (submission(&[("submittedAt", s("yesterday"))]), Rejection::BadDate("submittedAt"), "bad_date"),
            (submission(&[("studentID", s(""))]), Rejection::Empty("studentID"), "empty_attribute"),
            (
                image(&[("pk", s("course#c1")), ("sk", s("submission#a1#s1")), ("entityType", s("submission")), ("studentID", s("s1"))]),
                Rejection::Missing("assignmentID"),
                "missing_attribute",
            ),
            (
                image(&[("pk", s("course#")), ("sk", s("instructor#i1")), ("entityType", s("instructor")), ("instructorID", s("i1"))]),
                Rejection::KeyShape { attribute: "pk", shape: "course#{courseId}" },
                "key_shape",
            ),
            (
                image(&[("pk", s("user#u1")), ("sk", s("2026-13-01#order#o1")), ("entityType", s("order")), ("amount", n("1"))]),
                Rejection::KeyShape { attribute: "sk", shape: "{YYYY-MM-DD}#order#{orderId}" },
                "key_shape",
            ),
            (
                image(&[("pk", s("user#u1")), ("sk", s("2026-3-1#order#o1")), ("entityType", s("order")), ("amount", n("1"))]),
                Rejection::KeyShape { attribute: "sk", shape: "{YYYY-MM-DD}#order#{orderId}" },
                "key_shape",
            ),
            (
                image(&[
                    ("pk", s("course#c1")),
                    ("sk", s("submission#a1")),
                    ("entityType", s("submission")),
                    ("studentID", s("s1")),
                    ("assignmentID", s("a1")),
                ]),
                Rejection::KeyShape { attribute: "sk", shape: "submission#{assignmentId}#{studentId}" },
                "key_shape",
            ),
            (
                image(&[("pk", s("course#c1")), ("sk", s("metadata")), ("entityType", s("course")), ("courseDate", s("2026-9-1"))]),
                Rejection::BadDate("courseDate"),
                "bad_date",
            ),
            (
                image(&[("pk", s("user#u1")), ("sk", s("2026-01-01#order#o1")), ("entityType", s("order")), ("amount", s("19.99"))]),
                Rejection::WrongType { attribute: "amount", expected: "N", found: "S" },
                "wrong_type",
            ),
            (
                image(&[("pk", s("user#u1")), ("sk", s("2026-01-01#transaction#t1")), ("entityType", s("transaction"))]),
                Rejection::Missing("amount"),
                "missing_attribute",
            ),
            (
                image(&[("pk", s("x")), ("entityType", n("1"))]),
                Rejection::WrongType { attribute: "entityType", expected: "S", found: "N" },
                "wrong_type",
            ),
        ];
        for (img, expected, reason) in cases {
            let got = parse(&img).unwrap_err();
            assert_eq!(got, expected);
            assert_eq!(got.reason(), reason);
        }
    }

    #[test]
    fn iso_8601_days_are_utc() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(utc_day("2026-03-01T23:30:00Z"), day(2026, 3, 1));
        assert_eq!(utc_day("2026-03-01T23:30:00-01:00"), day(2026, 3, 2));
        assert_eq!(utc_day("2026-03-01T00:30:00+0100"), day(2026, 2, 28));
        assert_eq!(utc_day("2026-03-01T23:30:00.123456"), day(2026, 3, 1));
        assert_eq!(utc_day("2026-03-01T23:30"), day(2026, 3, 1));
        assert_eq!(utc_day("2026-03-01"), day(2026, 3, 1));
        assert_eq!(utc_day("2026-03-01T23:30:00.5+01:00"), day(2026, 3, 1));
        assert_eq!(utc_day("03/01/2026"), None);
        assert_eq!(utc_day("2026-02-30T00:00:00Z"), None);
        // Not ISO 8601's shape, though chrono's formats alone would take them.
        for loose in [
            "2026-3-1",
            "26-03-01",
            "2026-03-01T1:00:00Z",
            "2026-03-1T10:00",
            "2026-03-01 10:00:00Z",
            "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00+1",
            // A multi-byte character across the date's end is not a date either (nor a panic).
            "2026-03-0é10:00:00Z",
        ] {
            assert_eq!(utc_day(loose), None, "{loose}");
        }
    }
}
