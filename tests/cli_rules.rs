//! `tally rules` as a user runs it: the real binary on the rules files and item images under
//! fixtures/rules/. No table and no DynamoDB: these run everywhere.

#[allow(dead_code)] // cli.rs also serves the tests against DynamoDB Local
#[path = "support/cli.rs"]
mod cli;
#[path = "support/template.rs"]
mod template;

use std::process::Command;

use aggregates::Rules;
use serde_json::{json, Value};

/// `tally ARGS...` from the workspace root (paths in messages are as given), with no
/// `TALLY_RULES` of the environment's.
fn tally(args: &[&str]) -> Command {
    let mut command = Command::new(cli::tally_path());
    command.current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("TALLY_RULES").env("RUST_LOG", "warn").args(args);
    command
}

/// `tally rules ARGS...`.
fn rules(args: &[&str]) -> Command {
    tally(&[&["rules"], args].concat())
}

fn run(args: &[&str]) -> (i32, String, String) {
    cli::run(&mut rules(args))
}

/// Runs it, expecting exit 0 and nothing on stderr; returns stdout.
fn stdout(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    assert_eq!((code, stderr.as_str()), (0, ""), "tally rules {args:?}\nstdout: {stdout}");
    stdout
}

/// Runs it with `--json`, expecting exit 0, and parses stdout.
fn json(args: &[&str]) -> Value {
    let stdout = stdout(&[args, &["--json"]].concat());
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"))
}

const BROKEN: &str = "fixtures/rules/broken";
const IMAGES: &str = "fixtures/rules/images";
const UNIVERSITY: &str = "aggregates/rules/university.toml";
const CHAT: &str = "fixtures/rules/chat.toml";
const LEARNING: &str = "examples/rules/learning.toml";
/// An address nothing listens on: a command that reached DynamoDB would fail there, naming it.
const NO_DYNAMODB: &str = "http://127.0.0.1:9";

/// The digest of the rules file at `path` (relative to the workspace), as the library computes it.
fn digest(path: &str) -> String {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("the rules file");
    Rules::from_toml(&text, path).expect("the rules load").digest().to_owned()
}

#[test]
fn broken_rule_files_get_every_problem_at_its_place_and_exit_2() {
    let cases: &[(&str, &[&str])] = &[
        (
            "unknown-names.toml",
            &[
                "19:20: entity `student` has no capture or attribute `course`",
                "20:9: aggregate `stats` has no field `enrolmentCount`",
                "23:6: unknown aggregate `course_stats`",
            ],
        ),
        ("unfed-aggregate.toml", &["13:13: no entity contributes to aggregate `daily_stats`"]),
        ("template-capture.toml", &["20:20: entity `student` has no capture or attribute `courseId`"]),
        ("average-missing-sum.toml", &["13:33: average `gradeAverage`: `gradeTotal` is not a sum of `stats`"]),
        ("not-toml.toml", &["1:1: invalid key-value pair, expected key"]),
        ("not-utf8.toml", &["2:1: not UTF-8 text: a rules file is TOML"]),
        ("duplicate-names.toml", &["13:11: `stats` names both an entity and an aggregate"]),
        ("duplicate-table.toml", &["12:11: duplicate key"]),
        (
            "bad-capture-type.toml",
            &["15:6: pattern `{day:day}#order#{orderId}`: capture `day` has unknown type `day` (expected `id`, `date` or `datetime`)"],
        ),
        (
            "many-errors.toml",
            &[
                "4:6: `table.pk` and `table.sk` are both `pk`",
                "12:33: average `gradeAverage`: `gradeSum` is not a sum of `stats`",
                "12:81: average `gradeAverage`: `places` is 6, expected 0 to 4",
                "15:6: pattern `tally#{courseId}` starts with the bookkeeping prefix `tally#`",
                "21:27: `enrollmentCount` of `stats` is a counter: it adds 1",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (file, problems) in cases {
        let path = format!("{BROKEN}/{file}");
        let expected: String = problems.iter().map(|problem| format!("{path}:{problem}\n")).collect();
        let got = run(&["check", &path]);
        if got != (2, String::new(), expected.clone()) {
            failures.push(format!("{file}:\n  expected exit 2, no stdout, stderr {expected:?}\n  got {got:?}"));
        }
    }
    // A file that cannot be read is the command's error, as `tally replay` reports one.
    let missing = format!("{BROKEN}/missing.toml");
    let expected = format!("tally: error: {missing}: cannot read: No such file or directory (os error 2)\n");
    let got = run(&["check", &missing]);
    if got != (2, String::new(), expected.clone()) {
        failures.push(format!("missing.toml:\n  expected exit 2, stderr {expected:?}\n  got {got:?}"));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn unsafe_rules_are_refused_with_a_reason_each() {
    let path = "fixtures/rules/unsafe/helpdesk.toml";
    let (code, stdout, stderr) = run(&["check", path, "--json"]);
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].starts_with(&format!("{path}:32:6: pattern `MSG#{{sentAt:datetime}}-{{messageId}}`: `{{sentAt}}` is followed by `-`")));
    assert!(
        lines[1].starts_with(&format!("{path}:20:6: aggregates `by_tag` and `by_day` can have the same key (as PK `TAGS#1`, SK `TOTAL`)"))
    );
    assert!(lines[2].starts_with(&format!(
        "{path}:9:6: aggregate `conversation_stats` can have the key of entity `conversation` (as PK `CONV#x`, SK `METADATA`)"
    )));
    let summary: Value = serde_json::from_str(stdout.trim()).expect("JSON on stdout");
    let reasons: Vec<&str> = summary["errors"].as_array().expect("errors").iter().filter_map(|error| error["reason"].as_str()).collect();
    assert_eq!(reasons, ["never_matches", "overlapping_aggregates", "aggregate_on_entity_key"]);
}

#[test]
fn every_subcommand_refuses_rules_that_do_not_load() {
    let path = format!("{BROKEN}/unfed-aggregate.toml");
    let expected = format!("{path}:13:13: no entity contributes to aggregate `daily_stats`\n");
    let image = format!("{IMAGES}/submission.json");
    for args in [vec!["filter", path.as_str()], vec!["explain", path.as_str(), image.as_str()]] {
        assert_eq!(run(&args), (2, String::new(), expected.clone()), "{args:?}");
    }
}

#[test]
fn check_json_lists_every_problem() {
    let path = format!("{BROKEN}/average-missing-sum.toml");
    let (code, stdout, stderr) = run(&["check", &path, "--json"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr, format!("{path}:13:33: average `gradeAverage`: `gradeTotal` is not a sum of `stats`\n"));
    let summary: Value = serde_json::from_str(stdout.trim()).expect("JSON on stdout");
    assert_eq!(
        summary,
        json!({
            "rules": path,
            "ok": false,
            "errors": [{ "line": 13, "column": 33, "message": "average `gradeAverage`: `gradeTotal` is not a sum of `stats`" }],
        })
    );
}

#[test]
fn the_university_file_checks() {
    let text = stdout(&["check", UNIVERSITY]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"rules       aggregates/rules/university.toml"), "{text}");
    assert_eq!(lines.get(1), Some(&"table       pk `pk`, sk `sk`, entity type `entityType`, bookkeeping prefix `tally#`"), "{text}");
    let table_line = format!(
        "            TTL on `ttl`, indexes studentID-index (studentID), entityType-courseDate-index (entityType, courseDate); digest {}",
        Rules::university().digest()
    );
    assert_eq!(lines.get(2), Some(&table_line.as_str()), "{text}");
    assert_eq!(digest(UNIVERSITY), Rules::university().digest(), "the embedded rules are the file");
    assert!(lines.contains(&"  submission        by entityType, pk prefix `course#`"), "{text}");
    assert!(lines.contains(&"  session           by entityType, pk prefix `session#`, adds nothing"), "{text}");
    assert!(lines.contains(&"  order_stats       counters orderCount, transactionCount; sums orderTotal, transactionBalance"), "{text}");
    assert_eq!(lines.last(), Some(&"ok: 9 entities, 5 aggregates, 13 fields"), "{text}");

    // Without a file: the embedded rules, which are the same file.
    let embedded = stdout(&["check"]);
    assert_eq!(embedded.lines().next(), Some("rules       embedded university rules (aggregates/rules/university.toml)"));
    assert_eq!(embedded.lines().skip(1).collect::<Vec<_>>(), lines[1..]);

    let summary = json(&["check", UNIVERSITY]);
    assert_eq!((&summary["rules"], &summary["embedded"], &summary["ok"]), (&json!(UNIVERSITY), &json!(false), &json!(true)));
    assert_eq!(summary["digest"], json!(Rules::university().digest()));
    assert_eq!(
        summary["table"],
        json!({
            "pk": "pk", "sk": "sk", "entity_type": "entityType", "bookkeeping_prefix": "tally#", "ttl": "ttl",
            "indexes": [
                { "name": "studentID-index", "pk": "studentID", "sk": null },
                { "name": "entityType-courseDate-index", "pk": "entityType", "sk": "courseDate" },
            ],
            "reserved_prefixes": [],
        })
    );
    assert_eq!(summary["limits"], json!({ "source_pk_bytes": 1984, "source_sk_bytes": 960 }));
    let names = |list: &Value| list.as_array().unwrap().iter().map(|entry| entry["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(
        names(&summary["entities"]),
        ["course", "student", "instructor", "assignment", "submission", "user", "order", "transaction", "session"]
    );
    assert_eq!(names(&summary["aggregates"]), ["stats", "assignment_stats", "academic_stats", "order_stats", "daily_stats"]);
    assert_eq!(summary["entities"][4], json!({ "name": "submission", "matched_by": "type", "pk_prefix": "course#", "contributes": true }));
    assert_eq!(
        summary["aggregates"][1],
        json!({
            "name": "assignment_stats",
            "counters": ["submissionCount", "gradedCount"],
            "sums": ["gradeSum"],
            "averages": [{ "name": "gradeAverage", "sum": "gradeSum", "count": "gradedCount", "places": 4 }],
        })
    );
    assert_eq!(summary["fields"].as_array().map(Vec::len), Some(13));
    let mut embedded = json(&["check"]);
    assert_eq!(embedded["embedded"], true);
    embedded["embedded"] = json!(false);
    assert_eq!(embedded, summary, "the embedded rules are aggregates/rules/university.toml");
}

#[test]
fn a_table_matched_by_keys_checks() {
    let text = stdout(&["check", CHAT]);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "rules       fixtures/rules/chat.toml",
            "table       pk `PK`, sk `SK`, no entity-type attribute (entities matched by keys), bookkeeping prefix `tally#`",
            &format!("            TTL on `ttl`, no indexes; digest {}", digest(CHAT)),
            "limits      source items' own keys up to 1984 bytes (pk) and 960 bytes (sk)",
            "entities    2",
            "  message             by keys, pk prefix `CONV#`",
            "  profile             by keys, pk prefix `USER#`, adds nothing",
            "aggregates  1",
            "  conversation_stats  counters messages; sums bytes; meanBytes = bytes / messages to 2 places",
            "fields      2: messages, bytes",
            "ok: 2 entities, 1 aggregates, 2 fields",
        ]
    );
}

#[test]
fn the_rules_come_from_the_argument_then_the_option_then_the_environment() {
    let first_line = |command: &mut Command| {
        let (code, stdout, stderr) = cli::run(command);
        match code {
            0 => stdout.lines().next().unwrap_or_default().to_owned(),
            _ => stderr.lines().next().unwrap_or_default().to_owned(),
        }
    };
    let broken = format!("{BROKEN}/unfed-aggregate.toml");
    let unfed = format!("{broken}:13:13: no entity contributes to aggregate `daily_stats`");
    assert_eq!(first_line(rules(&["check"]).env("TALLY_RULES", &broken)), unfed);
    assert_eq!(first_line(rules(&["check", "--rules", CHAT]).env("TALLY_RULES", &broken)), "rules       fixtures/rules/chat.toml");
    // A global option: before the command too.
    assert_eq!(first_line(&mut tally(&["--rules", CHAT, "rules", "check"])), "rules       fixtures/rules/chat.toml");
    assert_eq!(
        first_line(rules(&["check", UNIVERSITY, "--rules", &broken]).env("TALLY_RULES", CHAT)),
        "rules       aggregates/rules/university.toml"
    );
    // explain's one positional is the image; its rules come from the option.
    let image = format!("{IMAGES}/message.json");
    assert_eq!(first_line(&mut rules(&["explain", &image, "--rules", CHAT])), "rules     fixtures/rules/chat.toml");
    assert_eq!(first_line(&mut rules(&["explain", &image])), "rules     embedded university rules (aggregates/rules/university.toml)");
}

#[test]
fn explain_a_valid_submission() {
    let image = format!("{IMAGES}/submission.json");
    assert_eq!(
        stdout(&["explain", UNIVERSITY, &image]).lines().collect::<Vec<_>>(),
        [
            "rules     aggregates/rules/university.toml",
            "image     fixtures/rules/images/submission.json",
            "keys      pk `course#c1`, sk `submission#a1#s1`: an application item",
            "entity    submission",
            "valid     yes",
            "adds to   4 aggregate items",
            "  stats             pk `course#c1`, sk `stats`",
            "    submissionCount  +1",
            "    gradedCount      +1",
            "    gradeSum         +87.5",
            "  assignment_stats  pk `course#c1`, sk `stats#assignment#a1`",
            "    submissionCount  +1",
            "    gradedCount      +1",
            "    gradeSum         +87.5",
            "  academic_stats    pk `user#s1`, sk `academic_stats`",
            "    submissionCount  +1",
            "    gradedCount      +1",
            "    gradeSum         +87.5",
            "  daily_stats       pk `stats#university`, sk `day#2026-03-01`",
            "    submissions  +1",
        ]
    );
    let graded = json!({ "submissionCount": "1", "gradedCount": "1", "gradeSum": "87.5" });
    assert_eq!(
        json(&["explain", &image]),
        json!({
            "rules": UNIVERSITY,
            "image": image,
            "pk": "course#c1",
            "sk": "submission#a1#s1",
            "owner": "application",
            "assessment": "source",
            "entity": "submission",
            "violation": null,
            "contribution": [
                { "aggregate": "stats", "pk": "course#c1", "sk": "stats", "entityType": "stats", "amounts": graded },
                { "aggregate": "assignment_stats", "pk": "course#c1", "sk": "stats#assignment#a1", "entityType": "assignment_stats", "amounts": graded },
                { "aggregate": "academic_stats", "pk": "user#s1", "sk": "academic_stats", "entityType": "academic_stats", "amounts": graded },
                { "aggregate": "daily_stats", "pk": "stats#university", "sk": "day#2026-03-01", "entityType": "daily_stats", "amounts": { "submissions": "1" } },
            ],
        })
    );
}

#[test]
fn explain_a_rejected_submission() {
    let image = format!("{IMAGES}/negative-grade.json");
    assert_eq!(
        stdout(&["explain", &image]).lines().skip(2).collect::<Vec<_>>(),
        [
            "keys      pk `course#c1`, sk `submission#a1#s1`: an application item",
            "entity    submission",
            "valid     no: negative_grade: attribute `grade` is negative",
            "adds      nothing (counted as rejected, reason `negative_grade`)",
        ]
    );
    let explained = json(&["explain", &image]);
    assert_eq!(explained["assessment"], "rejected");
    assert_eq!(explained["entity"], "submission");
    assert_eq!(explained["violation"], json!({ "reason": "negative_grade", "message": "attribute `grade` is negative" }));
    assert_eq!(explained["contribution"], json!([]));
}

#[test]
fn explain_an_unknown_image_and_one_of_tallys_own() {
    let unknown = format!("{IMAGES}/unknown.json");
    assert_eq!(
        stdout(&["explain", &unknown]).lines().skip(2).collect::<Vec<_>>(),
        [
            "keys      pk `course#c1`, sk `announcement#1`: an application item",
            "entity    unknown: no entity matches its `entityType` or its keys (skipped, counted as unknown)",
            "adds      nothing",
        ]
    );
    let explained = json(&["explain", &unknown]);
    assert_eq!(
        (&explained["assessment"], &explained["entity"], &explained["owner"]),
        (&json!("unknown"), &Value::Null, &json!("application"))
    );

    let stats = format!("{IMAGES}/course-stats.json");
    assert_eq!(
        stdout(&["explain", &stats]).lines().nth(2),
        Some("keys      pk `course#c1`, sk `stats`: tally's own aggregate item (the processor skips it without assessing it)")
    );
    assert_eq!(json(&["explain", &stats])["owner"], "aggregate");
}

#[test]
fn explain_an_image_of_a_table_matched_by_keys() {
    let image = format!("{IMAGES}/message.json");
    assert_eq!(
        stdout(&["explain", CHAT, &image]).lines().skip(2).collect::<Vec<_>>(),
        [
            "keys      PK `CONV#c1`, SK `MSG#2026-03-01T10:15:00Z`: an application item",
            "entity    message",
            "valid     yes",
            "adds to   1 aggregate item",
            "  conversation_stats  PK `CONV#c1`, SK `STATS`",
            "    messages  +1",
            "    bytes     +120",
        ]
    );
    assert_eq!(
        json(&["explain", CHAT, &image])["contribution"],
        json!([{ "aggregate": "conversation_stats", "pk": "CONV#c1", "sk": "STATS", "entityType": "conversation_stats", "amounts": { "messages": "1", "bytes": "120" } }])
    );
}

#[test]
fn malformed_images_are_refused_naming_the_file_and_the_problem() {
    let cases = [
        (
            "plain-json.json",
            "not a DynamoDB item image at `sk`: invalid type: string \"submission#a1#s1\", expected an object with a single key \"N\", \
             \"S\", \"BOOL\", \"B\", \"NULL\", \"M\", \"L\", \"SS\", \"NS\", or \"BS\"; each attribute is typed, as `{\"grade\": {\"N\": \"87.5\"}}`",
        ),
        (
            "event.json",
            "holds a Lambda event (`Records`), not an item image: copy a record's `dynamodb.NewImage` or `dynamodb.OldImage` into a file \
             of its own",
        ),
        ("record.json", "holds a stream record, not an item image: copy its `dynamodb.NewImage` or `dynamodb.OldImage` into a file of its own"),
        ("truncated.json", "not JSON: EOF while parsing an object at line 3 column 0"),
        ("missing.json", "cannot read: No such file or directory (os error 2)"),
    ];
    let mut failures = Vec::new();
    for (file, problem) in cases {
        let path = format!("{IMAGES}/{file}");
        let expected = format!("tally: error: {path}: {problem}\n");
        let got = run(&["explain", &path]);
        if got != (2, String::new(), expected.clone()) {
            failures.push(format!("{file}:\n  expected exit 2, stderr {expected:?}\n  got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_university_filter_is_the_templates() {
    let derived = json(&["filter", UNIVERSITY]);
    assert_eq!(derived, tally_engine::registry::filter_criteria(), "the compiled-in university filter");
    assert_eq!(
        template::criteria_patterns(&derived),
        template::template_patterns(),
        "infra/template.yaml's FilterCriteria differs from `tally rules filter aggregates/rules/university.toml`"
    );
    // Text mode is the same JSON, indented; without a file, the embedded rules.
    let pretty: Value = serde_json::from_str(&stdout(&["filter"])).expect("JSON");
    assert_eq!(pretty, derived);
}

#[test]
fn a_table_matched_by_keys_is_filtered_by_its_source_prefixes() {
    let prefixes = json!([{ "prefix": "CONV#" }, { "prefix": "USER#" }]);
    assert_eq!(
        template::criteria_patterns(&json(&["filter", CHAT])),
        [
            json!({ "dynamodb": { "NewImage": { "PK": { "S": prefixes } } } }),
            json!({ "dynamodb": { "OldImage": { "PK": { "S": prefixes } } } }),
        ]
    );
}

#[test]
fn seed_refuses_rules_other_than_the_university_s() {
    // Seed's workload is the university contract's (docs/university.md): under other rules it
    // refuses, before any table is touched.
    for from_env in [false, true] {
        let mut command = tally(&["--endpoint", NO_DYNAMODB, "--table", "never-created"]);
        match from_env {
            false => command.args(["--rules", LEARNING]),
            true => command.env("TALLY_RULES", LEARNING),
        };
        let (code, stdout, stderr) = cli::run(command.arg("seed"));
        assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
        assert!(stderr.starts_with("tally: error: ") && stderr.contains("seed is university-only"), "{stderr}");
        assert!(stderr.contains(LEARNING), "names the rules: {stderr}");
        assert!(!stderr.contains("DynamoDB"), "refused before reaching DynamoDB: {stderr}");
    }
}

#[test]
fn commands_refuse_rules_that_do_not_load_as_rules_check_reports_them() {
    // Every problem at its line and column, as `tally rules check` prints them, and nothing else:
    // the command stops before DynamoDB (which, at NO_DYNAMODB, would be a connection error), so
    // nothing is written.
    let check = |path: &str| run(&["check", path]);
    for file in ["unfed-aggregate.toml", "many-errors.toml", "not-toml.toml"] {
        let path = format!("{BROKEN}/{file}");
        let (check_code, check_stdout, problems) = check(&path);
        assert_eq!((check_code, check_stdout.as_str()), (2, ""), "{problems}");
        assert!(!problems.is_empty() && problems.lines().all(|line| line.starts_with(&format!("{path}:"))), "{problems}");
        let replay = ["--endpoint", NO_DYNAMODB, "--rules", &path, "replay", "fixtures/events/01-term-opens.json"];
        assert_eq!(cli::run(&mut tally(&replay)), (2, String::new(), problems.clone()), "{replay:?}");
        // From the environment, on a replay that would otherwise write (`--allow-stale`).
        let mut from_env = tally(&["--endpoint", NO_DYNAMODB, "replay", "--allow-stale", "fixtures/events/01-term-opens.json"]);
        from_env.env("TALLY_RULES", &path);
        assert_eq!(cli::run(&mut from_env), (2, String::new(), problems), "TALLY_RULES={path}");
    }
    let problem = "fixtures/rules/broken/unfed-aggregate.toml:13:13: no entity contributes to aggregate `daily_stats`\n";
    let replay = [
        "--endpoint",
        NO_DYNAMODB,
        "--rules",
        "fixtures/rules/broken/unfed-aggregate.toml",
        "replay",
        "fixtures/events/01-term-opens.json",
    ];
    assert_eq!(cli::run(&mut tally(&replay)), (2, String::new(), problem.to_owned()));
}

/// `tally ... | head`: a reader that stops early ends tally quietly, as SIGPIPE ends a process
/// (exit 141), not with a panic and its backtrace on stderr.
#[test]
fn a_closed_stdout_ends_tally_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = tally(&["rules", "check"]).stdout(writer).output().expect("running tally");
    assert_eq!(output.status.code(), Some(141));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}
