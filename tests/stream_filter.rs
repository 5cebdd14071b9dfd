//! The event source mapping's filter in infra/template.yaml is the one the registry derives:
//! tally's own items never invoke the function, and every application item does.

use serde_json::Value;

/// The `Pattern`s under the template's `FilterCriteria`, as written: each is a folded (`>-`)
/// YAML scalar, so its lines join with single spaces.
fn template_patterns() -> Vec<Value> {
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

#[test]
fn the_templates_filter_is_the_one_the_registry_derives() {
    let derived = tally_engine::registry::filter_criteria();
    let derived: Vec<Value> = derived["Filters"]
        .as_array()
        .expect("Filters is a list")
        .iter()
        .map(|filter| serde_json::from_str(filter["Pattern"].as_str().expect("a Pattern is a string")).expect("a Pattern is JSON"))
        .collect();
    assert_eq!(
        template_patterns(),
        derived,
        "infra/template.yaml's FilterCriteria differs from tally_engine::registry::filter_criteria(); update the template"
    );
}
