//! Attribute names, the aggregate items of the university contract (docs/university.md) and how
//! a table key says who owns an item.

use chrono::NaiveDate;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const ENTITY_TYPE: &str = "entityType";
pub const TTL: &str = "ttl";
pub const GRADE_AVERAGE: &str = "gradeAverage";

/// Partition-key prefix of every bookkeeping item tally writes (ledgers, checkpoints).
pub const BOOKKEEPING_PK_PREFIX: &str = "tally#";

/// DynamoDB's limits on a key, in UTF-8 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// The longest source keys tally accepts (the university contract): the margin below DynamoDB's
/// limits leaves room for the prefix of the item's ledger key (`tally#ledger#{pk}`).
pub const MAX_SOURCE_PK_BYTES: usize = 1984;
pub const MAX_SOURCE_SK_BYTES: usize = 960;

const DAILY_PK: &str = "stats#university";
const DAY_SK_PREFIX: &str = "day#";
const COURSE_PK_PREFIX: &str = "course#";
const USER_PK_PREFIX: &str = "user#";
const COURSE_STATS_SK: &str = "stats";
const ASSIGNMENT_STATS_SK_PREFIX: &str = "stats#assignment#";
const ACADEMIC_STATS_SK: &str = "academic_stats";
const ORDER_STATS_SK: &str = "order_stats";

/// A counter or sum kept on an aggregate item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    EnrollmentCount,
    InstructorCount,
    AssignmentCount,
    SubmissionCount,
    GradedCount,
    GradeSum,
    OrderCount,
    OrderTotal,
    TransactionCount,
    TransactionBalance,
    Enrollments,
    Submissions,
    Orders,
}

impl Field {
    /// The attribute name on the aggregate item.
    pub fn attribute(self) -> &'static str {
        match self {
            Field::EnrollmentCount => "enrollmentCount",
            Field::InstructorCount => "instructorCount",
            Field::AssignmentCount => "assignmentCount",
            Field::SubmissionCount => "submissionCount",
            Field::GradedCount => "gradedCount",
            Field::GradeSum => "gradeSum",
            Field::OrderCount => "orderCount",
            Field::OrderTotal => "orderTotal",
            Field::TransactionCount => "transactionCount",
            Field::TransactionBalance => "transactionBalance",
            Field::Enrollments => "enrollments",
            Field::Submissions => "submissions",
            Field::Orders => "orders",
        }
    }
}

/// The five kinds of aggregate item.
// Named after the university contract's aggregate items; clippy lets a library's public enum keep
// the shared `Stats`, not a test's.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AggregateKind {
    CourseStats,
    AssignmentStats,
    AcademicStats,
    OrderStats,
    DailyStats,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 5] = [
        AggregateKind::CourseStats,
        AggregateKind::AssignmentStats,
        AggregateKind::AcademicStats,
        AggregateKind::OrderStats,
        AggregateKind::DailyStats,
    ];

    pub fn entity_type(self) -> &'static str {
        match self {
            AggregateKind::CourseStats => "stats",
            AggregateKind::AssignmentStats => "assignment_stats",
            AggregateKind::AcademicStats => "academic_stats",
            AggregateKind::OrderStats => "order_stats",
            AggregateKind::DailyStats => "daily_stats",
        }
    }

    /// The counters and sums the item carries, all of them, even when zero.
    pub fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            AggregateKind::CourseStats => &[EnrollmentCount, InstructorCount, AssignmentCount, SubmissionCount, GradedCount, GradeSum],
            AggregateKind::AssignmentStats => &[SubmissionCount, GradedCount, GradeSum],
            AggregateKind::AcademicStats => &[EnrollmentCount, SubmissionCount, GradedCount, GradeSum],
            AggregateKind::OrderStats => &[OrderCount, OrderTotal, TransactionCount, TransactionBalance],
            AggregateKind::DailyStats => &[Enrollments, Submissions, Orders, OrderTotal],
        }
    }

    /// Whether the item carries `gradeAverage` = `gradeSum / gradedCount`.
    pub fn has_grade_average(self) -> bool {
        self.fields().contains(&Field::GradeSum)
    }
}

/// The key of one aggregate item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AggregateKey {
    Course { course_id: String },
    Assignment { course_id: String, assignment_id: String },
    Academic { student_id: String },
    Orders { user_id: String },
    Daily { day: NaiveDate },
}

impl AggregateKey {
    pub fn kind(&self) -> AggregateKind {
        match self {
            AggregateKey::Course { .. } => AggregateKind::CourseStats,
            AggregateKey::Assignment { .. } => AggregateKind::AssignmentStats,
            AggregateKey::Academic { .. } => AggregateKind::AcademicStats,
            AggregateKey::Orders { .. } => AggregateKind::OrderStats,
            AggregateKey::Daily { .. } => AggregateKind::DailyStats,
        }
    }

    pub fn pk(&self) -> String {
        match self {
            AggregateKey::Course { course_id } | AggregateKey::Assignment { course_id, .. } => {
                format!("{COURSE_PK_PREFIX}{course_id}")
            }
            AggregateKey::Academic { student_id: id } | AggregateKey::Orders { user_id: id } => {
                format!("{USER_PK_PREFIX}{id}")
            }
            AggregateKey::Daily { .. } => DAILY_PK.to_owned(),
        }
    }

    pub fn sk(&self) -> String {
        match self {
            AggregateKey::Course { .. } => COURSE_STATS_SK.to_owned(),
            AggregateKey::Assignment { assignment_id, .. } => format!("{ASSIGNMENT_STATS_SK_PREFIX}{assignment_id}"),
            AggregateKey::Academic { .. } => ACADEMIC_STATS_SK.to_owned(),
            AggregateKey::Orders { .. } => ORDER_STATS_SK.to_owned(),
            AggregateKey::Daily { day } => format!("{DAY_SK_PREFIX}{}", day.format("%Y-%m-%d")),
        }
    }

    /// The aggregate a table key names, if it names one.
    pub fn parse(pk: &str, sk: &str) -> Option<AggregateKey> {
        if pk == DAILY_PK {
            let day = sk.strip_prefix(DAY_SK_PREFIX)?;
            return NaiveDate::parse_from_str(day, "%Y-%m-%d").ok().map(|day| AggregateKey::Daily { day });
        }
        if let Some(course_id) = pk.strip_prefix(COURSE_PK_PREFIX) {
            if sk == COURSE_STATS_SK {
                return Some(AggregateKey::Course { course_id: course_id.to_owned() });
            }
            let assignment_id = sk.strip_prefix(ASSIGNMENT_STATS_SK_PREFIX)?;
            return Some(AggregateKey::Assignment { course_id: course_id.to_owned(), assignment_id: assignment_id.to_owned() });
        }
        let id = pk.strip_prefix(USER_PK_PREFIX)?.to_owned();
        match sk {
            ACADEMIC_STATS_SK => Some(AggregateKey::Academic { student_id: id }),
            ORDER_STATS_SK => Some(AggregateKey::Orders { user_id: id }),
            _ => None,
        }
    }
}

/// Who an item belongs to, judged from its table key alone (a REMOVE carries no new image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    /// An aggregate item tally writes.
    Aggregate,
    /// A bookkeeping item tally writes (ledger, checkpoint).
    Bookkeeping,
    /// Anything else: the application's items.
    Application,
}

impl KeyOwner {
    pub fn of(pk: &str, sk: &str) -> KeyOwner {
        if pk.starts_with(BOOKKEEPING_PK_PREFIX) {
            KeyOwner::Bookkeeping
        } else if pk == DAILY_PK || AggregateKey::parse(pk, sk).is_some() {
            KeyOwner::Aggregate
        } else {
            KeyOwner::Application
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = [
            AggregateKey::Course { course_id: "c#1".into() },
            AggregateKey::Assignment { course_id: "c1".into(), assignment_id: "a#9".into() },
            AggregateKey::Academic { student_id: "s1".into() },
            AggregateKey::Orders { user_id: "u1".into() },
            AggregateKey::Daily { day: NaiveDate::from_ymd_opt(2026, 2, 28).unwrap() },
        ];
        for key in keys {
            assert_eq!(AggregateKey::parse(&key.pk(), &key.sk()), Some(key.clone()), "{key:?}");
        }
    }

    #[test]
    fn spec_keys() {
        let daily = AggregateKey::Daily { day: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap() };
        assert_eq!((daily.pk().as_str(), daily.sk().as_str()), ("stats#university", "day#2026-01-05"));
        let assignment = AggregateKey::Assignment { course_id: "c1".into(), assignment_id: "a1".into() };
        assert_eq!((assignment.pk().as_str(), assignment.sk().as_str()), ("course#c1", "stats#assignment#a1"));
    }

    #[test]
    fn ownership_from_keys() {
        assert_eq!(KeyOwner::of("course#c1", "stats"), KeyOwner::Aggregate);
        assert_eq!(KeyOwner::of("course#c1", "stats#assignment#a1"), KeyOwner::Aggregate);
        assert_eq!(KeyOwner::of("user#u1", "academic_stats"), KeyOwner::Aggregate);
        assert_eq!(KeyOwner::of("user#u1", "order_stats"), KeyOwner::Aggregate);
        assert_eq!(KeyOwner::of("stats#university", "day#2026-01-01"), KeyOwner::Aggregate);
        assert_eq!(KeyOwner::of("stats#university", "anything"), KeyOwner::Aggregate);
        assert_eq!(KeyOwner::of("tally#ledger#course#c1", "student#s1"), KeyOwner::Bookkeeping);
        assert_eq!(KeyOwner::of("course#c1", "student#s1"), KeyOwner::Application);
        assert_eq!(KeyOwner::of("user#u1", "2026-01-01#order#o1"), KeyOwner::Application);
    }
}
