//! Crashes: `tally consume`, `tally replay` and `tally backfill` killed with `kill -9` (SIGKILL,
//! no clean stop) at random points, many times over one workload, and restarted each time. After
//! the last, uninterrupted run, every aggregate equals a recompute (`tally verify`; for replay,
//! also the oracle over the replayed images): no crash point loses an update or counts one twice,
//! nothing goes to the failure log, and no command is left unable to resume.
//!
//! The default is short, for `make test`. For a longer soak, raise the kills (the workload grows
//! with them); each run draws its own seed:
//!
//! ```sh
//! TALLY_CRASH_KILLS=60 scripts/with-dynamodb-local.sh cargo test --features dynamodb-local --test cli_crashes -- --nocapture
//! ```
//!
//! - `TALLY_CRASH_KILLS` (default 8): kills per test;
//! - `TALLY_CRASH_OPS` (default 50 per kill, at least 400): operations in the workload (replay
//!   turns each into two records; the backfill test seeds half as many);
//! - `TALLY_CRASH_SEED`: the seed of the workload and of the kill points (default: drawn at
//!   random, and printed in each test's summary line).
#![cfg(feature = "dynamodb-local")]

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aggregates::Rules;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client as DynamoDbClient;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::cli::{failure_log, json, run, tally, unique_table};
use support::images::{assignment, course, enrollment, instructor, n, order, submission, transaction, user};
use support::Rec;
use tally_engine::items::ItemKey;
use tally_engine::registry;
use tally_engine::store::{connect, DynamoTable, SdkItem};

const KILLS_VAR: &str = "TALLY_CRASH_KILLS";
const OPS_VAR: &str = "TALLY_CRASH_OPS";
const SEED_VAR: &str = "TALLY_CRASH_SEED";
const DEFAULT_KILLS: usize = 8;
/// Workload operations per kill, so that a longer run still has work left to interrupt.
const OPS_PER_KILL: u64 = 50;
const MIN_OPS: u64 = 400;
/// Small batches: many checkpoints and commits for a kill to fall between.
const BATCH_SIZE: &str = "25";
/// The kill comes this long after the spawn, drawn uniformly.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 50..=1500;
/// How much later the kills of a restarted replay come, per kill that found no new work applied.
const STALL_STEP: Duration = Duration::from_millis(250);
/// The signal `Child::kill` sends on unix (9 everywhere), without a libc dependency.
const SIGKILL: i32 = 9;

/// The suite's knobs, read from the environment.
#[derive(Debug, Clone, Copy)]
struct Settings {
    kills: usize,
    ops: u64,
    seed: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let var =
            |name: &str| std::env::var(name).ok().map(|text| text.parse::<u64>().unwrap_or_else(|err| panic!("{name}=`{text}`: {err}")));
        let kills = var(KILLS_VAR).map_or(DEFAULT_KILLS, |kills| kills as usize);
        let ops = var(OPS_VAR).unwrap_or((kills as u64 * OPS_PER_KILL).max(MIN_OPS));
        // A short seed is easy to paste back into TALLY_CRASH_SEED.
        let seed = var(SEED_VAR).unwrap_or_else(|| u64::from(rand::random::<u32>()));
        Settings { kills, ops, seed }
    }
}

/// What a crash loop did.
#[derive(Debug, Default)]
struct Crashes {
    /// Runs that SIGKILL ended.
    kills: usize,
    /// Runs that ended on their own before their kill came (each exited 0).
    finished: usize,
    /// The last line each killed run wrote to stderr (its progress), `""` if none.
    last_lines: Vec<String>,
    /// With a [`Markers`] probe: how many files were applied after each kill.
    progress: Vec<usize>,
}

impl Crashes {
    fn runs(&self) -> usize {
        self.kills + self.finished
    }
}

/// Spawns `command()` again and again, SIGKILLing each run after a random delay, until `kills`
/// runs were killed. A run that ends before its kill must have succeeded; with
/// `stop_when_finished` (the work is done, so later runs would have nothing to interrupt) the
/// loop then ends early. Each run's stderr is kept in `scratch` and must show no panic.
///
/// Delays are drawn from [`KILL_AFTER_MS`]; after a run that finished before its kill, the upper
/// bound drops to 90 % of that run's time, so that later kills land inside a run. With
/// `progress`, a command that redoes its earlier work on restart (replay) is measured after each
/// kill; a kill that found no new work applied pushes later kills [`STALL_STEP`] further out, so
/// that they keep landing past the redone part as it grows.
async fn crash_repeatedly(
    what: &str,
    mut command: impl FnMut() -> Command,
    kills: usize,
    rng: &mut StdRng,
    scratch: &Path,
    stop_when_finished: bool,
    progress: Option<(&Markers, &DynamoTable)>,
) -> Crashes {
    let mut crashes = Crashes::default();
    let mut max_delay = *KILL_AFTER_MS.end();
    let mut offset = Duration::ZERO;
    // A bound, not a target: every run that is not killed must succeed.
    let attempts = kills * 4 + 4;
    for attempt in 0..attempts {
        if crashes.kills == kills {
            break;
        }
        let stderr_path = scratch.join(format!("{what}-{attempt}.stderr"));
        let stderr = File::create(&stderr_path).expect("creating a stderr file");
        let mut child = command().stdout(Stdio::null()).stderr(stderr).spawn().unwrap_or_else(|err| panic!("spawning {what}: {err}"));
        let delay = offset + Duration::from_millis(rng.random_range(*KILL_AFTER_MS.start()..=max_delay.max(*KILL_AFTER_MS.start())));
        let started = Instant::now();
        let mut exited = None;
        while started.elapsed() < delay {
            if let Some(status) = child.try_wait().expect("polling the child") {
                exited = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = match exited {
            Some(status) => status,
            None => {
                // SIGKILL on unix. If the run exits between the poll and the kill, `kill` still
                // succeeds on the unreaped child and the status below says it was not a kill.
                child.kill().unwrap_or_else(|err| panic!("killing {what}: {err}"));
                child.wait().expect("reaping the killed child")
            }
        };
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(!stderr.contains("panicked"), "{what} run {attempt} panicked:\n{stderr}");
        if status.signal() == Some(SIGKILL) {
            crashes.kills += 1;
            crashes.last_lines.push(stderr.lines().last().unwrap_or_default().to_owned());
            if let Some((markers, table)) = progress {
                let applied = markers.files_applied(table).await;
                if applied <= crashes.progress.last().copied().unwrap_or(0) {
                    offset += STALL_STEP;
                }
                crashes.progress.push(applied);
            }
        } else {
            assert!(status.success(), "{what} run {attempt} failed on its own ({status}) before its kill:\n{stderr}");
            crashes.finished += 1;
            if stop_when_finished {
                break;
            }
            max_delay = (started.elapsed().as_millis() as u64 * 9 / 10).max(*KILL_AFTER_MS.start());
        }
    }
    crashes
}

fn scratch_dir(table: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{table}-crashes"));
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

/// `tally verify --json`: exit 0 and no drifted field. Returns the summary.
fn verify_no_drift(table: &str) -> Value {
    let summary = json(tally(table).arg("verify"));
    assert_eq!(summary["drift"], json!([]), "{summary}");
    summary
}

/// `tally consume --until-caught-up` on the suite's small batches, writing its failure log to `log`.
fn consume_command(table: &str, log: &Path) -> Command {
    let mut command = tally(table);
    command.args(["consume", "--until-caught-up", "--batch-size", BATCH_SIZE, "--failure-log", log.to_str().unwrap()]);
    command
}

/// Consumes to the end without interruption; nothing may reach the failure log.
fn consume_to_completion(table: &str, log: &Path) -> Value {
    let summary = json(&mut consume_command(table, log));
    assert_eq!(summary["records_to_failure_log"], 0, "{summary}");
    assert_failure_log_empty(log);
    summary
}

fn assert_failure_log_empty(log: &Path) {
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    assert!(logged.trim().is_empty(), "batches went to the failure log {}:\n{logged}", log.display());
}

fn seed(table: &str, ops: u64, seed: u64) -> u64 {
    let summary = json(tally(table).args(["seed", "--ops", &ops.to_string(), "--seed", &seed.to_string()]));
    summary["writes"].as_u64().expect("seed reports its writes")
}

/// A new table made by `tally init`, a scratch directory and an empty failure log for it.
fn fresh_table() -> (String, PathBuf, PathBuf) {
    let name = unique_table();
    let scratch = scratch_dir(&name);
    let log = failure_log(&name);
    let _ = std::fs::remove_file(&log);
    json(tally(&name).arg("init"));
    (name, scratch, log)
}

#[tokio::test]
async fn consume_killed_at_random_points_resumes_exactly() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let (name, scratch, log) = fresh_table();
    let writes = seed(&name, settings.ops, settings.seed);

    let mut rng = StdRng::seed_from_u64(settings.seed);
    let crashes = crash_repeatedly("consume", || consume_command(&name, &log), settings.kills, &mut rng, &scratch, true, None).await;
    assert_failure_log_empty(&log);
    let last = consume_to_completion(&name, &log);
    let verified = verify_no_drift(&name);
    eprintln!(
        "consume crashes: seed {}, {} ops ({writes} writes): {} kills survived, {} run(s) finished before their kill, {} restarts; \
         the last run applied {} of {} records ({} already applied); {} source items verified; {:.1} s",
        settings.seed,
        settings.ops,
        crashes.kills,
        crashes.finished,
        crashes.runs(),
        last["by_class"]["applied"].as_u64().unwrap_or(0),
        last["records"],
        last["by_class"]["already_applied"].as_u64().unwrap_or(0),
        verified["source_items"],
        started.elapsed().as_secs_f64()
    );
    assert!(crashes.kills > 0, "no kill landed: the workload is too small for the kill delays");
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&log);
}

/// A replay workload: the stream of a university table as Lambda event files, with the final
/// images of its items (the oracle's input).
struct Workload {
    files: Vec<Vec<Rec>>,
    finals: Vec<Value>,
}

/// `records` stream records over a few courses, students and users: enrollments, submissions
/// graded and regraded (some invalid, some moved to another assignment), instructors,
/// assignments, orders and transactions rewritten with new amounts, deletes and TTL deletes. Cut
/// into files of 10 to 60 records, so a file's batch sometimes needs several transactions.
fn replay_workload(rng: &mut StdRng, records: usize) -> Workload {
    let courses: Vec<String> = (1..=6).map(|i| format!("c{i:02}")).collect();
    let students: Vec<String> = (1..=(records / 12).max(10)).map(|i| format!("s{i:03}")).collect();
    let users: Vec<String> = (1..=(records / 40).max(5)).map(|i| format!("u{i:02}")).collect();
    let day = |rng: &mut StdRng| format!("2026-09-{:02}", rng.random_range(1..=5));
    let key = |image: &Value| (image["pk"]["S"].as_str().unwrap().to_owned(), image["sk"]["S"].as_str().unwrap().to_owned());
    let mut live: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut recs = Vec::with_capacity(records);
    for sequence in 1000..1000 + records as u64 {
        let course_id = courses.choose(rng).unwrap().clone();
        let student = students.choose(rng).unwrap().clone();
        let user_id = users.choose(rng).unwrap().clone();
        let roll = rng.random_range(0..100);
        let deletable: Vec<(String, String)> = if roll >= 88 { live.keys().cloned().collect() } else { Vec::new() };
        if let Some(doomed) = deletable.choose(rng) {
            let old = live.remove(doomed).unwrap();
            recs.push(if roll >= 96 { Rec::ttl_remove(sequence, old) } else { Rec::remove(sequence, old) });
            continue;
        }
        let new = match roll {
            0..=2 => course(&course_id),
            3..=4 => user(&user_id),
            5..=8 => instructor(&course_id, &format!("i{}", rng.random_range(1..=2))),
            9..=12 => assignment(&course_id, &format!("a{}", rng.random_range(1..=3))),
            13..=35 => enrollment(&course_id, &student, &format!("{}T{:02}:30:00+02:00", day(rng), rng.random_range(0..24))),
            36..=65 => {
                let grade = match rng.random_range(0..10) {
                    0..=2 => None,
                    3 => Some(json!({"S": "A+"})),
                    _ => Some(n(&format!("{}.{:02}", rng.random_range(40..=100), rng.random_range(0..100)))),
                };
                let assignment_id = format!("a{}", rng.random_range(1..=3));
                let mut image = submission(&course_id, &assignment_id, &student, &format!("{}T10:00:00Z", day(rng)), grade);
                // One sk per student and course: a resubmission may move it to another assignment.
                image["sk"] = json!({"S": format!("submission#{student}")});
                image
            }
            66..=76 => order(
                &user_id,
                &day(rng),
                &format!("o{}", rng.random_range(0..20)),
                &format!("{}.{:02}", rng.random_range(1..300), rng.random_range(0..100)),
            ),
            _ => transaction(
                &user_id,
                &day(rng),
                &format!("t{}", rng.random_range(0..20)),
                &format!("{}.{:02}", rng.random_range(-150..150), rng.random_range(0..100)),
            ),
        };
        recs.push(match live.insert(key(&new), new.clone()) {
            Some(old) => Rec::modify(sequence, old, new),
            None => Rec::insert(sequence, new),
        });
    }
    let mut files = Vec::new();
    let mut rest = recs.as_slice();
    while !rest.is_empty() {
        let (file, after) = rest.split_at(rng.random_range(10..=60).min(rest.len()));
        files.push(file.to_vec());
        rest = after;
    }
    Workload { files, finals: live.into_values().collect() }
}

/// Where a replay has got to, read from the ledgers: per file, its last record of an item that
/// always writes a ledger (a valid enrollment, instructor, assignment, order or transaction), as
/// the file's index, the ledger key and the record's sequence number. The file is applied once
/// that ledger holds the sequence number or a later one. (A file without such a record, rare, has
/// no marker: it counts as applied with the next file that has one.)
struct Markers(Vec<(usize, ItemKey, String)>);

impl Markers {
    fn of(files: &[Vec<Rec>]) -> Markers {
        const COUNTED: [&str; 5] = ["student", "instructor", "assignment", "order", "transaction"];
        let marker = |recs: &Vec<Rec>| {
            recs.iter().rev().find_map(|rec| {
                let image = rec.new.as_ref().or(rec.old.as_ref())?;
                if !COUNTED.contains(&image["entityType"]["S"].as_str()?) {
                    return None;
                }
                let item = ItemKey { pk: image["pk"]["S"].as_str()?.to_owned(), sk: image["sk"]["S"].as_str()?.to_owned() };
                Some((registry::ledger_key(Rules::university().table(), &item), rec.sequence_number()))
            })
        };
        Markers(files.iter().enumerate().filter_map(|(index, recs)| marker(recs).map(|(key, sequence)| (index, key, sequence))).collect())
    }

    /// How many files, from the first, are applied: a binary search over the markers, since
    /// replay applies the files in order and a ledger's sequence number only grows.
    async fn files_applied(&self, table: &DynamoTable) -> usize {
        // Markers below `applied` are applied; from `unknown` on, they are not.
        let (mut applied, mut unknown) = (0, self.0.len());
        while applied < unknown {
            let middle = (applied + unknown) / 2;
            let (_, key, sequence) = &self.0[middle];
            // `aggregate` reads any item by key, consistently.
            let ledger = support::aggregate(table, &key.pk, &key.sk).await;
            let stored = ledger.as_ref().and_then(|item| item.get("sequenceNumber")).and_then(|value| value.as_s().ok());
            // Same-length sequence numbers (`Rec::sequence_number`) compare as text.
            if stored.is_some_and(|stored| stored >= sequence) {
                applied = middle + 1;
            } else {
                unknown = middle;
            }
        }
        applied.checked_sub(1).map_or(0, |last| self.0[last].0 + 1)
    }
}

/// Writes the event files, `0000.json` on, each record dated now: replay refuses records older
/// than the stream's retention.
fn write_event_files(dir: &Path, table: &str, files: &[Vec<Rec>]) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_secs() as f64;
    for (index, recs) in files.iter().enumerate() {
        let records: Vec<Value> = recs
            .iter()
            .map(|rec| {
                let mut record = rec.to_json(table);
                record["dynamodb"]["ApproximateCreationDateTime"] = json!(now);
                record
            })
            .collect();
        std::fs::write(dir.join(format!("{index:04}.json")), json!({ "Records": records }).to_string()).expect("writing an event file");
    }
}

/// Puts `images` into the table as the application would have, so `tally verify` sees them.
async fn put_items(client: &DynamoDbClient, table: &str, images: &[Value]) {
    for chunk in images.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|image| {
                let item: serde_dynamo::Item = serde_json::from_value(image.clone()).expect("test images are DynamoDB JSON");
                let item: SdkItem = item.into();
                WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().unwrap()).build()
            })
            .collect();
        while !requests.is_empty() {
            let output = client.batch_write_item().request_items(table, requests).send().await.expect("writing the source items");
            requests = output.unprocessed_items.and_then(|mut left| left.remove(table)).unwrap_or_default();
        }
    }
}

#[tokio::test]
async fn replay_killed_at_random_points_resumes_exactly() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let (name, scratch, _) = fresh_table();
    let events = scratch.join("events");
    std::fs::create_dir_all(&events).unwrap();
    let mut rng = StdRng::seed_from_u64(settings.seed);
    // Two records per operation: replay has no seeding to pay for.
    let records = settings.ops as usize * 2;
    let workload = replay_workload(&mut rng, records);
    write_event_files(&events, &name, &workload.files);

    let replay = || {
        let mut command = tally(&name);
        command.arg("replay").arg(&events);
        command
    };
    let table = DynamoTable::new(connect(None, None).await, name.clone(), support::university());
    let markers = Markers::of(&workload.files);
    let crashes = crash_repeatedly("replay", replay, settings.kills, &mut rng, &scratch, true, Some((&markers, &table))).await;
    // Every file again, from the first: those applied before a kill are no-ops by their ledgers.
    let last = json(&mut replay());
    assert_eq!(last["failure"], Value::Null, "{last}");
    assert_eq!(last["records"], records, "{last}");

    let drift = support::drift(&table, Rules::university(), &workload.finals).await;
    assert!(drift.is_empty(), "drift after {} kills of replay:\n{drift:#?}", crashes.kills);
    put_items(&support::client().await, &name, &workload.finals).await;
    let verified = verify_no_drift(&name);
    eprintln!(
        "replay crashes: seed {}, {records} records in {} files, {} final items: {} kills survived (files applied at each: \
         {:?}), {} run(s) finished before their kill, {} restarts; the last run applied {} records, {} already applied; {} \
         source items verified; {:.1} s",
        settings.seed,
        workload.files.len(),
        workload.finals.len(),
        crashes.kills,
        crashes.progress,
        crashes.finished,
        crashes.runs(),
        last["by_class"]["applied"].as_u64().unwrap_or(0),
        last["by_class"]["already_applied"].as_u64().unwrap_or(0),
        verified["source_items"],
        started.elapsed().as_secs_f64()
    );
    assert!(crashes.kills > 0, "no kill landed: the workload is too small for the kill delays");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Overwrites fields of a few aggregates, as an operator's mistake or a bug would: the enrollment
/// count of up to three courses, and one day's order total. Returns how many fields it changed.
async fn corrupt_aggregates(client: &DynamoDbClient, table: &str) -> usize {
    let items = support::scan(client, table).await;
    let text = |item: &SdkItem, name: &str| item.get(name).and_then(|value| value.as_s().ok()).cloned().unwrap_or_default();
    let course_stats = items.iter().filter(|item| text(item, "pk").starts_with("course#") && text(item, "sk") == "stats").take(3);
    let day = items.iter().filter(|item| text(item, "pk") == "stats#university" && item.contains_key("orderTotal")).take(1);
    let targets: Vec<(&SdkItem, &str, &str)> =
        course_stats.map(|item| (item, "enrollmentCount", "999")).chain(day.map(|item| (item, "orderTotal", "123456.78"))).collect();
    for (item, field, value) in &targets {
        client
            .update_item()
            .table_name(table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .update_expression("SET #field = :value")
            .expression_attribute_names("#field", *field)
            .expression_attribute_values(":value", AttributeValue::N((*value).to_owned()))
            .send()
            .await
            .expect("corrupting an aggregate");
    }
    targets.len()
}

#[tokio::test]
async fn backfill_killed_at_random_points_repairs_exactly() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let (name, scratch, log) = fresh_table();
    // Half the workload: a backfill of it still takes seconds, and its setup (seed, consume) dominates.
    let mut writes = seed(&name, settings.ops / 2, settings.seed);
    consume_to_completion(&name, &log);
    // More writes that nothing has consumed yet: backfill counts them from the scan, and the
    // ledgers it leaves must keep their pending stream records from counting again.
    writes += seed(&name, settings.ops / 8, settings.seed + 1);
    let client = connect(None, None).await;
    let corrupted = corrupt_aggregates(&client, &name).await;
    assert!(corrupted >= 2, "the workload has course and daily aggregates to corrupt");
    let (code, stdout, stderr) = run(tally(&name).arg("verify"));
    assert_eq!(code, 1, "the corruption and the unconsumed writes show as drift\n{stdout}\n{stderr}");

    let mut rng = StdRng::seed_from_u64(settings.seed);
    let backfill = || {
        let mut command = tally(&name);
        command.args(["backfill", "--force"]);
        command
    };
    // A finished backfill is no reason to stop: the next run scans, compares, checks its ledgers
    // and reads the pending records again, and a kill can land in any of those.
    let crashes = crash_repeatedly("backfill", backfill, settings.kills, &mut rng, &scratch, false, None).await;
    // Where the kills landed, by the progress lines on stderr: backfill scans, writes the
    // aggregates (`n/m writes`), then the ledgers, then reads the stream's pending records.
    let before_writes = crashes.last_lines.iter().filter(|line| !line.contains(" writes")).count();
    let repaired = json(&mut backfill());
    verify_no_drift(&name);
    let consumed = consume_to_completion(&name, &log);
    let verified = verify_no_drift(&name);
    eprintln!(
        "backfill crashes: seed {}, {} seeded writes, {corrupted} fields corrupted: {} kills survived ({before_writes} before \
         the aggregates were written, {} after), {} run(s) finished before their kill, {} restarts; the last backfill wrote {} \
         aggregates and {} ledgers; consume then took {} records ({} applied); {} source items verified; {:.1} s",
        settings.seed,
        writes,
        crashes.kills,
        crashes.kills - before_writes,
        crashes.finished,
        crashes.runs(),
        repaired["aggregates_written"],
        repaired["ledgers_written"],
        consumed["records"],
        consumed["by_class"]["applied"].as_u64().unwrap_or(0),
        verified["source_items"],
        started.elapsed().as_secs_f64()
    );
    assert!(crashes.kills > 0, "no kill landed: the workload is too small for the kill delays");
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&log);
}
