//! The store boundary, enforced: only `processor/engine/src/store/` talks to DynamoDB.
//!
//! Every SDK call, its error classification and its item layout live in the store module, so the
//! engine, the Lambda and the CLI see tally's domain types only (STYLE, "Pure core vs I/O edge").
//! A file outside the store that names the `aws_sdk_dynamodb` crate, or a Lambda or CLI manifest
//! that depends on `aws-sdk-dynamodb`, fails this test with its path and line. The DynamoDB
//! Streams SDK (`aws_sdk_dynamodbstreams`, in `processor/engine/src/stream/` and the CLI) is
//! another crate and is not matched. Needs no server.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The one directory allowed to name the DynamoDB SDK.
const STORE: &str = "processor/engine/src/store";
const SDK_CRATE: &str = "aws_sdk_dynamodb";
const SDK_PACKAGE: &str = "aws-sdk-dynamodb";
/// Crates that must reach DynamoDB through the engine's store only.
const STORE_CLIENTS: &[&str] = &["processor/lambda", "processor/cli"];

/// Whether `line` names `name` itself, not a longer identifier that starts with it
/// (`aws_sdk_dynamodbstreams`).
fn names(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + name.len()..].chars().next();
        let continues = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        !continues(before) && !continues(after)
    })
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|err| panic!("listing {}: {err}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// `path:line: text` of every line of `file` that names the DynamoDB SDK crate.
fn mentions(root: &Path, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|err| panic!("reading {}: {err}", file.display()));
    let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
    text.lines()
        .enumerate()
        .filter(|(_, line)| names(line, SDK_CRATE))
        .map(|(index, line)| format!("{shown}:{}: {}", index + 1, line.trim()))
        .collect()
}

/// `path:line: text` of every line in a dependency table of `manifest` that names the DynamoDB
/// SDK package: as a dependency, or as a feature of another (serde_dynamo's `aws-sdk-dynamodb+1`
/// conversions). A line-wise reading of TOML, enough for the manifests of this workspace.
fn dependencies_on_the_sdk(root: &Path, manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|err| panic!("reading {}: {err}", manifest.display()));
    let shown = manifest.strip_prefix(root).unwrap_or(manifest).display().to_string();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line.contains("dependencies");
        }
        if in_dependencies && !line.starts_with('#') && names(line, SDK_PACKAGE) {
            found.push(format!("{shown}:{}: {line}", index + 1));
        }
    }
    found
}

#[test]
fn only_the_store_names_the_dynamodb_sdk() {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    for crate_dir in std::fs::read_dir(root.join("processor")).expect("listing processor/") {
        let src = crate_dir.expect("listing processor/").path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let store = root.join(STORE);
    assert!(files.iter().any(|file| file.starts_with(&store)), "found no source under {STORE}: has the layout changed?");
    let outside: Vec<&PathBuf> = files.iter().filter(|file| !file.starts_with(&store)).collect();
    assert!(outside.len() > 10, "found only {} source files outside {STORE}: has the layout changed?", outside.len());
    let violations: Vec<String> = outside.into_iter().flat_map(|file| mentions(root, file)).collect();
    assert!(violations.is_empty(), "only {STORE}/ may use `{SDK_CRATE}`; move these behind the store's API:\n{}", violations.join("\n"));
}

#[test]
fn the_lambda_and_the_cli_do_not_depend_on_the_dynamodb_sdk() {
    let root = Path::new(ROOT);
    let violations: Vec<String> =
        STORE_CLIENTS.iter().flat_map(|crate_dir| dependencies_on_the_sdk(root, &root.join(crate_dir).join("Cargo.toml"))).collect();
    assert!(violations.is_empty(), "these crates must reach DynamoDB through tally-engine's store:\n{}", violations.join("\n"));
}

#[test]
fn the_streams_sdk_is_another_crate() {
    assert!(names("use aws_sdk_dynamodb::types::AttributeValue;", SDK_CRATE));
    assert!(names("    aws_sdk_dynamodb::Client::new(&config)", SDK_CRATE));
    assert!(!names("use aws_sdk_dynamodbstreams::Client as StreamsClient;", SDK_CRATE));
    assert!(!names("my_aws_sdk_dynamodb_wrapper", SDK_CRATE));
    assert!(names("aws-sdk-dynamodb.workspace = true", SDK_PACKAGE));
    assert!(names(r#"serde_dynamo = { workspace = true, features = ["aws-sdk-dynamodb+1"] }"#, SDK_PACKAGE));
    assert!(!names("aws-sdk-dynamodbstreams.workspace = true", SDK_PACKAGE));
}
