//! The AWS boundary, enforced: only adapter modules talk to AWS.
//!
//! Every SDK call, its error classification and its item or message layout live in one adapter
//! module per service, so the engine's logic, the jobs, the Lambda, the CLI's commands and a
//! team's own handler see tally's domain types only:
//! - `processor/engine/src/store/`: DynamoDB (and the shared SDK configuration);
//! - `processor/engine/src/stream/`: DynamoDB Streams;
//! - `processor/cli/src/failure_queue.rs`: SQS, where Lambda's on-failure destination leaves
//!   what `tally redrive` reads.
//!
//! A source file anywhere else that names an AWS SDK crate (`aws_sdk_*`, `aws_config`,
//! `aws_smithy_*`), or a manifest that depends on one beyond what its adapters need, fails this
//! test with its path and line. A new service (S3, Step Functions) gets an adapter module and an
//! entry here. Needs no server.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The adapter modules: the only sources allowed to name an AWS SDK crate.
const ADAPTERS: &[&str] = &["processor/engine/src/store", "processor/engine/src/stream", "processor/cli/src/failure_queue.rs"];

/// The AWS packages each crate may depend on, for its adapters; every other crate none.
const SDK_DEPENDENCIES: &[(&str, &[&str])] = &[
    (
        "processor/engine",
        &[
            "aws-config",
            "aws-sdk-dynamodb",
            "aws-sdk-dynamodbstreams",
            "aws-smithy-types",
            "aws-sdk-dynamodbstreams+1",
            "aws-sdk-dynamodb+1",
        ],
    ),
    ("processor/cli", &["aws-sdk-sqs", "aws-smithy-types"]),
];

/// The crates the workspace is made of: a layout change must update the rules above.
const CRATES: &[&str] = &["aggregates", "processor/engine", "processor/jobs", "processor/lambda", "processor/cli", "examples/own-handler"];

/// Crate names (Rust identifiers) and package names (manifests) that are AWS SDK crates.
fn is_sdk_identifier(word: &str) -> bool {
    word.starts_with("aws_sdk_") || word == "aws_config" || word.starts_with("aws_smithy_")
}

fn is_sdk_package(word: &str) -> bool {
    word.starts_with("aws-sdk-") || word == "aws-config" || word.starts_with("aws-smithy-")
}

/// The words of `line`: runs of identifier characters (and `-`, `+`, for package names).
fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+')).filter(|word| !word.is_empty())
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

/// Every crate of the workspace: the root manifest's `members`.
fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("reading the root Cargo.toml");
    let members = manifest.lines().find_map(|line| line.trim().strip_prefix("members")).expect("the workspace lists its members");
    let mut dirs: Vec<PathBuf> = members.split('"').skip(1).step_by(2).map(|member| root.join(member)).collect();
    assert!(!dirs.is_empty(), "no members read from `members{members}`");
    dirs.sort();
    dirs
}

/// `path:line: text` of every line of `file` that names an AWS SDK crate.
fn mentions(root: &Path, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|err| panic!("reading {}: {err}", file.display()));
    let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
    text.lines()
        .enumerate()
        .filter(|(_, line)| words(line).any(is_sdk_identifier))
        .map(|(index, line)| format!("{shown}:{}: {}", index + 1, line.trim()))
        .collect()
}

/// `path:line: text` of every line in a dependency table of `manifest` that names an AWS SDK
/// package outside `allowed`: as a dependency, or as a feature of another (serde_dynamo's
/// `aws-sdk-dynamodb+1` conversions). A line-wise reading of TOML, enough for this workspace.
fn sdk_dependencies(root: &Path, manifest: &Path, allowed: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|err| panic!("reading {}: {err}", manifest.display()));
    let shown = manifest.strip_prefix(root).unwrap_or(manifest).display().to_string();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line.contains("dependencies") && !line.contains("dev-dependencies");
        }
        let named = |word: &str| is_sdk_package(word) && !allowed.contains(&word);
        if in_dependencies && !line.starts_with('#') && words(line).any(named) {
            found.push(format!("{shown}:{}: {line}", index + 1));
        }
    }
    found
}

#[test]
fn the_crates_are_the_ones_these_rules_know() {
    let root = Path::new(ROOT);
    let found: Vec<String> = crate_dirs(root).iter().map(|dir| dir.strip_prefix(root).unwrap_or(dir).display().to_string()).collect();
    let mut expected: Vec<String> = CRATES.iter().map(|dir| (*dir).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected, "the workspace's crates changed: say in this test which may talk to AWS");
    for adapter in ADAPTERS {
        assert!(root.join(adapter).exists(), "the adapter {adapter} is gone: has the layout changed?");
    }
}

#[test]
fn only_the_adapters_name_an_aws_sdk() {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    for dir in crate_dirs(root) {
        rust_files(&dir.join("src"), &mut files);
    }
    let adapters: Vec<PathBuf> = ADAPTERS.iter().map(|adapter| root.join(adapter)).collect();
    let outside: Vec<&PathBuf> = files.iter().filter(|file| !adapters.iter().any(|adapter| file.starts_with(adapter))).collect();
    assert!(outside.len() > 20, "found only {} source files outside the adapters: has the layout changed?", outside.len());
    let violations: Vec<String> = outside.into_iter().flat_map(|file| mentions(root, file)).collect();
    assert!(
        violations.is_empty(),
        "only the adapter modules ({}) may name an AWS SDK crate; move these behind one:\n{}",
        ADAPTERS.join(", "),
        violations.join("\n")
    );
}

#[test]
fn only_the_crates_of_the_adapters_depend_on_an_aws_sdk() {
    let root = Path::new(ROOT);
    let violations: Vec<String> = crate_dirs(root)
        .iter()
        .flat_map(|dir| {
            let shown = dir.strip_prefix(root).unwrap_or(dir).display().to_string();
            let allowed = SDK_DEPENDENCIES.iter().find(|(crate_dir, _)| *crate_dir == shown).map_or(&[][..], |(_, allowed)| *allowed);
            sdk_dependencies(root, &dir.join("Cargo.toml"), allowed)
        })
        .collect();
    assert!(violations.is_empty(), "these crates must reach AWS through the adapters:\n{}", violations.join("\n"));
}

#[test]
fn sdk_names_are_told_apart_from_longer_ones() {
    let named = |line: &str| words(line).any(is_sdk_identifier);
    assert!(named("use aws_sdk_dynamodb::types::AttributeValue;"));
    assert!(named("    aws_sdk_s3::Client::new(&config)"));
    assert!(named("use aws_smithy_types::error::display::DisplayErrorContext;"));
    assert!(named("aws_config::defaults(BehaviorVersion::latest())"));
    assert!(!named("my_aws_sdk_dynamodb_wrapper"));
    assert!(!named("// the SDK's configuration"));
    let package = |line: &str| words(line).any(is_sdk_package);
    assert!(package("aws-sdk-dynamodb.workspace = true"));
    assert!(package(r#"serde_dynamo = { workspace = true, features = ["aws-sdk-dynamodb+1"] }"#));
    assert!(package("aws-config = { workspace = true }"));
    assert!(!package("aws_lambda_events.workspace = true"));
}
