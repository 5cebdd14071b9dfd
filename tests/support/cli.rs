//! Running the real `tally` binary against DynamoDB Local.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `target/debug/tally`, built by `cargo test --workspace` along with this test.
pub fn tally_path() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // deps/
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("tally{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing: build it with `cargo build -p tally-cli` (make test does)", path.display());
    path
}

/// A `tally` command on `table`.
pub fn tally(table: &str) -> Command {
    let mut command = Command::new(tally_path());
    // A rules file in the environment would make every command apply other rules than the university's.
    command.env("TABLE_NAME", table).env_remove("TALLY_RULES").env("RUST_LOG", "warn");
    command
}

/// Runs it and returns (exit code, stdout, stderr).
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("running tally");
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Runs it, expecting success, and parses its `--json` summary.
pub fn json(command: &mut Command) -> serde_json::Value {
    let (code, stdout, stderr) = run(command.arg("--json"));
    assert_eq!(code, 0, "tally failed\nstdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"))
}

/// Where `consume` and the tests that give batches up put `table`'s failure log.
pub fn failure_log(table: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{table}-failures.jsonl"))
}

/// `tally consume --until-caught-up`: the table's stream processed to its end, as the Lambda
/// would; nothing may go to the failure log. Returns the summary.
pub fn consume(table: &str) -> serde_json::Value {
    let summary = json(tally(table).args(["consume", "--until-caught-up", "--failure-log", failure_log(table).to_str().unwrap()]));
    assert_eq!(summary["records_to_failure_log"], 0, "{summary}");
    summary
}

pub fn unique_table() -> String {
    format!("university-{}", uuid::Uuid::new_v4().simple())
}
