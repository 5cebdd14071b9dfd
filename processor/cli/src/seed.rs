//! `tally seed`: write a realistic, reproducible university workload to the table, as the
//! application would, for demos and benchmarks. The stream then carries it to the engine.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_dynamo::AttributeValue;

use crate::progress::Progress;
use crate::Context;
use tally_engine::items::ItemKey;

/// The flags of `tally seed`.
#[derive(Debug, Args)]
pub struct Opts {
    /// Number of writes and deletes after the courses and users are set up.
    #[arg(long, default_value_t = 1000)]
    pub ops: u64,
    /// Random seed: the same seed writes the same workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn item(pairs: impl IntoIterator<Item = (&'static str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// A write the application makes.
enum Write {
    Put(Item),
    Delete(ItemKey),
}

/// The workload, generated up front from the seed.
struct Workload {
    rng: StdRng,
    courses: Vec<String>,
    students: Vec<String>,
    users: Vec<String>,
    enrollments: Vec<(String, String)>,
    submissions: Vec<(String, String, String, String)>,
    writes: Vec<(&'static str, Write)>,
}

impl Workload {
    fn day(&mut self) -> String {
        format!("2026-09-{:02}", self.rng.random_range(1..=14))
    }

    fn timestamp(&mut self) -> String {
        let day = self.day();
        let (hour, minute) = (self.rng.random_range(0..24), self.rng.random_range(0..60));
        // Some clients write offsets: the daily item is the UTC day.
        match self.rng.random_range(0..4) {
            0 => format!("{day}T{hour:02}:{minute:02}:00+02:00"),
            1 => format!("{day}T{hour:02}:{minute:02}:00"),
            _ => format!("{day}T{hour:02}:{minute:02}:00Z"),
        }
    }

    fn setup(&mut self, ops: u64) {
        let course_count = (ops / 40).clamp(3, 500);
        self.courses = (1..=course_count).map(|i| format!("c{i:03}")).collect();
        self.students = (1..=(ops / 8).clamp(10, 5000)).map(|i| format!("s{i:04}")).collect();
        self.users = (1..=(ops / 25).clamp(5, 2000)).map(|i| format!("u{i:03}")).collect();
        for course in self.courses.clone() {
            let start = self.day();
            self.writes.push((
                "course",
                Write::Put(item([
                    ("pk", s(format!("course#{course}"))),
                    ("sk", s("metadata")),
                    ("entityType", s("course")),
                    ("courseDate", s(start)),
                ])),
            ));
            self.writes.push((
                "instructor",
                Write::Put(item([
                    ("pk", s(format!("course#{course}"))),
                    ("sk", s(format!("instructor#i{course}"))),
                    ("entityType", s("instructor")),
                    ("instructorID", s(format!("i{course}"))),
                ])),
            ));
            for a in 1..=3 {
                let due = self.day();
                self.writes.push((
                    "assignment",
                    Write::Put(item([
                        ("pk", s(format!("course#{course}"))),
                        ("sk", s(format!("assignment#a{a}"))),
                        ("entityType", s("assignment")),
                        ("assignmentID", s(format!("a{a}"))),
                        ("dueDate", s(due)),
                    ])),
                ));
            }
        }
        for user in self.users.clone() {
            self.writes
                .push(("user", Write::Put(item([("pk", s(format!("user#{user}"))), ("sk", s("profile")), ("entityType", s("user"))]))));
        }
    }

    fn operation(&mut self) {
        let roll = self.rng.random_range(0..100);
        let course = self.courses.choose(&mut self.rng).expect("courses are set up").clone();
        let student = self.students.choose(&mut self.rng).expect("students are set up").clone();
        let user = self.users.choose(&mut self.rng).expect("users are set up").clone();
        match roll {
            0..=34 => {
                let mut enrollment = item([
                    ("pk", s(format!("course#{course}"))),
                    ("sk", s(format!("student#{student}"))),
                    ("entityType", s("student")),
                    ("studentID", s(&student)),
                    ("enrolledAt", s(self.timestamp())),
                ]);
                if self.rng.random_bool(0.2) {
                    // Trial enrollments expire in a week (DynamoDB's TTL sweep deletes them).
                    enrollment.insert("ttl".into(), n(chrono::Utc::now().timestamp() + 7 * 24 * 3600));
                }
                self.enrollments.push((course, student));
                self.writes.push(("enrollment", Write::Put(enrollment)));
            }
            35..=59 => {
                let assignment = format!("a{}", self.rng.random_range(1..=3));
                let at = self.timestamp();
                self.submissions.push((course.clone(), assignment.clone(), student.clone(), at.clone()));
                self.writes.push(("submission", Write::Put(self.submission(&course, &assignment, &student, &at, None))));
            }
            60..=74 if !self.submissions.is_empty() => {
                let (course, assignment, student, at) = self.submissions.choose(&mut self.rng).expect("not empty").clone();
                let grade = format!("{}.{:02}", self.rng.random_range(50..100), self.rng.random_range(0..100));
                self.writes.push(("grade", Write::Put(self.submission(&course, &assignment, &student, &at, Some(grade)))));
            }
            75..=84 => {
                let day = self.day();
                let amount = format!("{}.{:02}", self.rng.random_range(5..250), self.rng.random_range(0..100));
                let id = self.rng.random_range(0..1_000_000);
                self.writes.push((
                    "order",
                    Write::Put(item([
                        ("pk", s(format!("user#{user}"))),
                        ("sk", s(format!("{day}#order#o{id}"))),
                        ("entityType", s("order")),
                        ("amount", n(amount)),
                    ])),
                ));
            }
            85..=92 => {
                let day = self.day();
                let amount = format!("{}.{:02}", self.rng.random_range(-100..100), self.rng.random_range(0..100));
                let id = self.rng.random_range(0..1_000_000);
                self.writes.push((
                    "transaction",
                    Write::Put(item([
                        ("pk", s(format!("user#{user}"))),
                        ("sk", s(format!("{day}#transaction#t{id}"))),
                        ("entityType", s("transaction")),
                        ("amount", n(amount)),
                    ])),
                ));
            }
            93..=96 if !self.enrollments.is_empty() => {
                let (course, student) = self.enrollments.swap_remove(self.rng.random_range(0..self.enrollments.len()));
                self.writes.push(("drop", Write::Delete(ItemKey { pk: format!("course#{course}"), sk: format!("student#{student}") })));
            }
            97..=99 if !self.submissions.is_empty() => {
                let (course, assignment, student, _) = self.submissions.swap_remove(self.rng.random_range(0..self.submissions.len()));
                self.writes.push((
                    "withdraw",
                    Write::Delete(ItemKey { pk: format!("course#{course}"), sk: format!("submission#{assignment}#{student}") }),
                ));
            }
            _ => {
                let session = self.rng.random_range(0..1_000_000);
                self.writes.push((
                    "session",
                    Write::Put(item([
                        ("pk", s(format!("session#{session}"))),
                        ("sk", s("session")),
                        ("entityType", s("session")),
                        ("ttl", n(chrono::Utc::now().timestamp() + 3600)),
                    ])),
                ));
            }
        }
    }

    fn submission(&self, course: &str, assignment: &str, student: &str, at: &str, grade: Option<String>) -> Item {
        let mut submission = item([
            ("pk", s(format!("course#{course}"))),
            ("sk", s(format!("submission#{assignment}#{student}"))),
            ("entityType", s("submission")),
            ("studentID", s(student)),
            ("assignmentID", s(assignment)),
            ("submittedAt", s(at)),
        ]);
        if let Some(grade) = grade {
            submission.insert("grade".into(), n(grade));
        }
        submission
    }
}

/// Generates the workload from `--seed` (courses and users, then `--ops` writes and deletes)
/// and writes it to the table; university rules only.
///
/// Exit status: 0 done, 2 error (rules other than the university's included).
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let rules = ctx.rules();
    anyhow::ensure!(
        rules.is_university(),
        "tally seed writes the university workload (docs/university.md), and the rules ({}) describe another table: \
         seed is university-only (the example rule sets' workload generators live in their tests, aggregates/tests/examples_support/)",
        rules.source_name()
    );
    let started = Instant::now();
    let mut workload = Workload {
        rng: StdRng::seed_from_u64(opts.seed),
        courses: Vec::new(),
        students: Vec::new(),
        users: Vec::new(),
        enrollments: Vec::new(),
        submissions: Vec::new(),
        writes: Vec::new(),
    };
    workload.setup(opts.ops);
    for _ in 0..opts.ops {
        workload.operation();
    }
    let table = ctx.open().await?;
    let progress = Progress::new(workload.writes.len() as u64, "writes", ctx.json);
    let mut by_kind: std::collections::BTreeMap<&str, u64> = Default::default();
    for (kind, write) in workload.writes {
        let result = match write {
            Write::Put(item) => table.put_source(item.into()).await,
            Write::Delete(key) => table.delete_source(&key).await,
        };
        result.with_context(|| format!("writing the workload to `{}`", ctx.table))?;
        *by_kind.entry(kind).or_default() += 1;
        progress.advance(1);
    }
    progress.finish();
    let total: u64 = by_kind.values().sum();
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "writes": total, "by_kind": by_kind, "seed": opts.seed, "elapsed_ms": started.elapsed().as_millis() })
        );
    } else {
        let kinds: Vec<String> = by_kind.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        println!(
            "wrote {total} changes to `{}` (seed {}) in {} ms: {}",
            ctx.table,
            opts.seed,
            started.elapsed().as_millis(),
            kinds.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
