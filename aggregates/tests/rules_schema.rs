//! The JSON Schema for editors (`aggregates/rules/rules.schema.json`) and the loader agree: the
//! university file and the example files validate, and files of the wrong shape fail both.
//!
//! The validator here knows the keywords the schema uses (`$ref`, `type`, `properties`,
//! `required`, `additionalProperties`, `items`, `enum`, `minimum`, `maximum`, `minLength`) and
//! refuses any other, so the schema cannot drift onto keywords this test ignores; `pattern` and
//! the annotations (`title`, `description`, `$schema`, `$defs`) are not checked.

use aggregates::rules::{Problem, Rules, UNIVERSITY};
use serde_json::Value;

const SCHEMA: &str = include_str!("../rules/rules.schema.json");
const LEARNING: &str = include_str!("../../examples/rules/learning.toml");
const MARKETPLACE: &str = include_str!("../../examples/rules/marketplace.toml");

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

/// The problems `value` has against `schema` (the root schema is `root`, for `$ref`).
fn validate(root: &Value, schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(keywords) = schema.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    for (keyword, argument) in keywords {
        match keyword.as_str() {
            "$ref" => {
                let target = argument.as_str().and_then(|reference| reference.strip_prefix("#/$defs/"));
                match target.and_then(|name| root["$defs"].get(name)) {
                    Some(target) => validate(root, target, value, path, problems),
                    None => problems.push(format!("{path}: unresolved $ref {argument}")),
                }
            }
            "type" => {
                let types: Vec<&str> = match argument {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                let fits = |kind: &str| match kind {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "boolean" => value.is_boolean(),
                    _ => false,
                };
                if !types.iter().any(|kind| fits(kind)) {
                    problems.push(format!("{path}: {value} is not {types:?}"));
                }
            }
            "properties" => {
                for (name, property) in argument.as_object().into_iter().flatten() {
                    if let Some(inner) = value.get(name) {
                        validate(root, property, inner, &format!("{path}.{name}"), problems);
                    }
                }
            }
            "required" => {
                for name in argument.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if value.is_object() && value.get(name).is_none() {
                        problems.push(format!("{path}: `{name}` is required"));
                    }
                }
            }
            "additionalProperties" => {
                let known = keywords.get("properties").and_then(Value::as_object);
                for (name, inner) in value.as_object().into_iter().flatten() {
                    if known.is_some_and(|known| known.contains_key(name)) {
                        continue;
                    }
                    match argument {
                        Value::Bool(false) => problems.push(format!("{path}: `{name}` is not allowed")),
                        Value::Object(_) => validate(root, argument, inner, &format!("{path}.{name}"), problems),
                        _ => {}
                    }
                }
            }
            "items" => {
                for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                    validate(root, argument, item, &format!("{path}[{index}]"), problems);
                }
            }
            "enum" => {
                if !argument.as_array().is_some_and(|values| values.contains(value)) {
                    problems.push(format!("{path}: {value} is not one of {argument}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(bound), Some(number)) = (argument.as_i64(), value.as_i64()) {
                    if (keyword == "minimum" && number < bound) || (keyword == "maximum" && number > bound) {
                        problems.push(format!("{path}: {number} is past the {keyword} {bound}"));
                    }
                }
            }
            "minLength" => {
                if let (Some(bound), Some(text)) = (argument.as_u64(), value.as_str()) {
                    if (text.chars().count() as u64) < bound {
                        problems.push(format!("{path}: `{text}` is shorter than {bound}"));
                    }
                }
            }
            "pattern" | "title" | "description" | "$schema" | "$defs" => {}
            other => problems.push(format!("{path}: the test does not know the keyword `{other}`")),
        }
    }
}

fn schema_problems(toml_text: &str) -> Vec<String> {
    let document: Value = toml::from_str(toml_text).expect("the document is TOML");
    let root = schema();
    let mut problems = Vec::new();
    validate(&root, &root, &document, "$", &mut problems);
    problems
}

#[test]
fn the_university_file_fits_the_schema() {
    assert_eq!(schema_problems(UNIVERSITY), Vec::<String>::new());
}

#[test]
fn the_example_files_fit_the_schema() {
    // `learning.toml` names its TTL attribute (`ttl = "expiresAt"`). That both load is
    // `rules_examples.rs`'s.
    for (name, text) in [("learning", LEARNING), ("marketplace", MARKETPLACE)] {
        assert_eq!(schema_problems(text), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn the_schema_has_the_files_top_level_keys() {
    let root = schema();
    let mut properties: Vec<&str> = root["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    properties.sort_unstable();
    assert_eq!(properties, ["aggregates", "entities", "limits", "table"]);
    assert_eq!(root["required"], serde_json::json!(["table"]));
    assert_eq!(root["additionalProperties"], Value::Bool(false));
    // Every definition is used, every reference defined.
    for name in root["$defs"].as_object().unwrap().keys() {
        assert!(SCHEMA.contains(&format!("\"#/$defs/{name}\"")), "`{name}` is defined but never used");
    }
}

#[test]
fn files_of_the_wrong_shape_fail_the_schema_and_the_loader() {
    let minimal = "[table]\npk = \"pk\"\nsk = \"sk\"\nbookkeeping_prefix = \"tally#\"\n";
    let aggregate = "[aggregates.a]\npk = \"A#{id}\"\nsk = \"S\"\ncounters = [\"n\"]\n";
    let entity = "[entities.e]\npk = \"A#{id}\"\nsk = \"E\"\n";
    let cases = [
        ("unknown top-level key", format!("{minimal}[tables]\n")),
        ("unknown table key", minimal.replace("[table]\n", "[table]\nprefix = \"x\"\n")),
        ("ttl not a name", minimal.replace("[table]\n", "[table]\nttl = 3\n")),
        ("index without pk", minimal.replace("[table]\n", "[table]\nindexes = [{ name = \"by-owner\" }]\n")),
        ("missing table key", minimal.replace("sk = \"sk\"\n", "")),
        ("no table", aggregate.to_owned()),
        ("counters not a list", format!("{minimal}{}", aggregate.replace("[\"n\"]", "\"n\""))),
        ("unknown aggregate key", format!("{minimal}{aggregate}fields = [\"x\"]\n")),
        ("average without places", format!("{minimal}{aggregate}averages.m = {{ sum = \"s\", count = \"n\" }}\n")),
        ("unknown match", format!("{minimal}{}", entity.replace("[entities.e]\n", "[entities.e]\nmatch = \"prefix\"\n"))),
        ("unknown attribute type", format!("{minimal}{entity}attributes.x = {{ type = \"integer\" }}\n")),
        ("attribute without a type", format!("{minimal}{entity}attributes.x = {{ optional = true }}\n")),
        ("to not a name", format!("{minimal}{entity}[[entities.e.contributions]]\nto = 3\nadd = {{ n = 1 }}\n")),
        ("contribution without add", format!("{minimal}{entity}[[entities.e.contributions]]\nto = \"a\"\n")),
        (
            "unknown when",
            format!("{minimal}{entity}[[entities.e.contributions]]\nto = \"a\"\nwhen = {{ absent = \"x\" }}\nadd = {{ n = 1 }}\n"),
        ),
        ("add of a boolean", format!("{minimal}{entity}[[entities.e.contributions]]\nto = \"a\"\nadd = {{ n = true }}\n")),
    ];
    for (name, text) in cases {
        assert!(!schema_problems(&text).is_empty(), "{name}: the schema accepts\n{text}");
        let errors = Rules::from_toml(&text, "case.toml").expect_err(name);
        assert!(matches!(errors.errors.as_slice(), [error] if matches!(error.problem, Problem::Toml(_))), "{name}: {errors}");
    }
}
