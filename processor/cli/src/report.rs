//! `tally report`: a short view of the aggregates: top courses by enrollment, and daily totals.

use std::process::ExitCode;

use aggregates::{AggregateKey, AggregateKind, Field, Number};
use clap::Args;

use crate::Common;

#[derive(Debug, Args)]
pub struct Opts {
    /// Courses to show.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
}

pub async fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    let table = common.connect().await;
    let mut courses = Vec::new();
    let mut days = Vec::new();
    for (key, stored) in table.scan_aggregates(&[AggregateKind::CourseStats, AggregateKind::DailyStats]).await? {
        match key {
            AggregateKey::Course { course_id } => courses.push((course_id, stored.values)),
            AggregateKey::Daily { day } => days.push((day, stored.values)),
            _ => {}
        }
    }
    courses.sort_by(|(a_id, a), (b_id, b)| b.get(Field::EnrollmentCount).cmp(&a.get(Field::EnrollmentCount)).then_with(|| a_id.cmp(b_id)));
    courses.truncate(opts.top);
    days.sort_by_key(|(day, _)| *day);
    let average = |values: &aggregates::AggregateValues| values.grade_average().map_or_else(|| "-".to_owned(), |n: Number| n.to_string());
    if common.json {
        let courses: Vec<_> = courses
            .iter()
            .map(|(id, v)| serde_json::json!({"course": id, "enrollmentCount": v.get(Field::EnrollmentCount).to_string(), "submissionCount": v.get(Field::SubmissionCount).to_string(), "gradeAverage": v.grade_average().map(|n| n.to_string())}))
            .collect();
        let days: Vec<_> = days
            .iter()
            .map(|(day, v)| serde_json::json!({"day": day.to_string(), "enrollments": v.get(Field::Enrollments).to_string(), "submissions": v.get(Field::Submissions).to_string(), "orders": v.get(Field::Orders).to_string(), "orderTotal": v.get(Field::OrderTotal).to_string()}))
            .collect();
        println!("{}", serde_json::json!({ "top_courses": courses, "days": days }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<10} {:>11} {:>12} {:>12} {:>13}", "course", "enrollments", "instructors", "submissions", "grade average");
    for (id, values) in &courses {
        println!(
            "{id:<10} {:>11} {:>12} {:>12} {:>13}",
            values.get(Field::EnrollmentCount).to_string(),
            values.get(Field::InstructorCount).to_string(),
            values.get(Field::SubmissionCount).to_string(),
            average(values)
        );
    }
    println!();
    println!("{:<10} {:>11} {:>12} {:>7} {:>12}", "day (UTC)", "enrollments", "submissions", "orders", "order total");
    for (day, values) in &days {
        println!(
            "{:<10} {:>11} {:>12} {:>7} {:>12}",
            day.to_string(),
            values.get(Field::Enrollments).to_string(),
            values.get(Field::Submissions).to_string(),
            values.get(Field::Orders).to_string(),
            values.get(Field::OrderTotal).to_string()
        );
    }
    Ok(ExitCode::SUCCESS)
}
