//! Source item images in DynamoDB JSON, as the application writes them.

use serde_json::{json, Value};

pub fn course(course: &str) -> Value {
    json!({"pk": {"S": format!("course#{course}")}, "sk": {"S": "metadata"}, "entityType": {"S": "course"}, "courseDate": {"S": "2026-09-01"}})
}

pub fn enrollment(course: &str, student: &str, enrolled_at: &str) -> Value {
    json!({
        "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("student#{student}")}, "entityType": {"S": "student"},
        "studentID": {"S": student}, "enrolledAt": {"S": enrolled_at}
    })
}

pub fn instructor(course: &str, instructor: &str) -> Value {
    json!({"pk": {"S": format!("course#{course}")}, "sk": {"S": format!("instructor#{instructor}")}, "entityType": {"S": "instructor"}, "instructorID": {"S": instructor}})
}

pub fn assignment(course: &str, assignment: &str) -> Value {
    json!({
        "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("assignment#{assignment}")}, "entityType": {"S": "assignment"},
        "assignmentID": {"S": assignment}, "dueDate": {"S": "2026-12-01"}
    })
}

/// A submission; `grade` is DynamoDB JSON (`{"N": "90"}`, or a wrong type to make it invalid).
pub fn submission(course: &str, assignment: &str, student: &str, submitted_at: &str, grade: Option<Value>) -> Value {
    let mut image = json!({
        "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("submission#{assignment}#{student}")}, "entityType": {"S": "submission"},
        "studentID": {"S": student}, "assignmentID": {"S": assignment}, "submittedAt": {"S": submitted_at}
    });
    if let Some(grade) = grade {
        image["grade"] = grade;
    }
    image
}

pub fn user(user: &str) -> Value {
    json!({"pk": {"S": format!("user#{user}")}, "sk": {"S": "profile"}, "entityType": {"S": "user"}})
}

pub fn order(user: &str, day: &str, order: &str, amount: &str) -> Value {
    json!({"pk": {"S": format!("user#{user}")}, "sk": {"S": format!("{day}#order#{order}")}, "entityType": {"S": "order"}, "amount": {"N": amount}})
}

pub fn transaction(user: &str, day: &str, transaction: &str, amount: &str) -> Value {
    json!({"pk": {"S": format!("user#{user}")}, "sk": {"S": format!("{day}#transaction#{transaction}")}, "entityType": {"S": "transaction"}, "amount": {"N": amount}})
}

pub fn session(session: &str) -> Value {
    json!({"pk": {"S": format!("session#{session}")}, "sk": {"S": "session"}, "entityType": {"S": "session"}, "ttl": {"N": "1763769600"}})
}

pub fn n(text: &str) -> Value {
    json!({"N": text})
}
