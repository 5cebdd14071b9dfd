//! The event source mapping's filter as infra/template.yaml writes it, and as the Lambda API
//! takes it, both as lists of parsed patterns so that they compare field by field.

use serde_json::Value;

/// The `Pattern`s under the template's `FilterCriteria`, as written: each is a folded (`>-`)
/// YAML scalar, so its lines join with single spaces.
pub fn template_patterns() -> Vec<Value> {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/template.yaml")).expect("infra/template.yaml");
    let mut lines = template.lines().skip_while(|line| line.trim() != "FilterCriteria:").skip(1);
    assert_eq!(lines.next().map(str::trim), Some("Filters:"), "FilterCriteria holds Filters");
    let mut patterns: Vec<String> = Vec::new();
    for line in lines {
        let text = line.trim();
        if text == "- Pattern: >-" {
            patterns.push(String::new());
        } else if text.is_empty() || !line.starts_with("              ") {
            break;
        } else if let Some(pattern) = patterns.last_mut() {
            if !pattern.is_empty() {
                pattern.push(' ');
            }
            pattern.push_str(text);
        }
    }
    patterns.iter().map(|pattern| serde_json::from_str(pattern).unwrap_or_else(|err| panic!("pattern {pattern}: {err}"))).collect()
}

/// The patterns of a `FilterCriteria` value, `{"Filters": [{"Pattern": "<JSON>"}, ...]}`.
pub fn criteria_patterns(criteria: &Value) -> Vec<Value> {
    criteria["Filters"]
        .as_array()
        .expect("Filters is a list")
        .iter()
        .map(|filter| serde_json::from_str(filter["Pattern"].as_str().expect("a Pattern is a string")).expect("a Pattern is JSON"))
        .collect()
}
