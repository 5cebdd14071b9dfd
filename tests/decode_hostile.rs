//! Hostile input to the event decoder and the rules: no panic, no unbounded allocation, and every
//! bad input gets its exact error (naming the record and field) or its counted skip.
//!
//! Runs in plain `cargo test`: no DynamoDB is involved.
//!
//! Fuzzing is **proptest** over arbitrary bytes, arbitrary JSON shaped like Lambda DynamoDB
//! events and arbitrary `serde_dynamo::Item`s. It runs on the stable toolchain; cargo-fuzz
//! (libFuzzer) needs nightly, which this toolchain does not have. Each property runs 256 cases by
//! default; set `TALLY_FUZZ_CASES` for more (`TALLY_FUZZ_CASES=20000 cargo test --release --test
//! decode_hostile`). Failures are not persisted to files: proptest prints the minimal input.
//!
//! "No unbounded allocation": every strategy bounds its sizes, and this binary counts heap bytes
//! per thread (a wrapper around the system allocator) so the properties assert that parsing an
//! input holds at most a fixed multiple of its size, plus a constant.
//!
//! This suite found that `aggregates::Number` parsed numbers by arithmetic first: a 13-byte number
//! took seconds and a gigabyte, 22-byte ones panicked, a 15-byte one aborted the process and a
//! 400 KB one was parsed in quadratic time. It now checks the text first; the `hostile_number_*`
//! tests keep it so, and the fuzz draws exponents of any length.
//!
//! The strategies are boxed: unboxed, their debug-build `new_tree` frames overflow a test
//! thread's 2 MiB stack.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aggregates::{KeyOwner, RuleAssessment, Rules};
use aws_lambda_events::event::dynamodb::Event;
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use serde_dynamo::{AttributeValue, Item};
use serde_json::{json, Value};
use tally_cli::replay;
use tally_engine::decode::{decode_batch, Change, Origin};
use tally_engine::outcome::RecordClass;

const TABLE: &str = "university";
const ARN: &str = "arn:aws:dynamodb:eu-west-1:123456789012:table/university/stream/2026-09-01T00:00:00.000";
const OTHER_ARN: &str = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-09-01T00:00:00.000";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/events");

// ---------------------------------------------------------------------------------------------
// Heap accounting, per thread.

/// The system allocator, counting the bytes each thread holds and the most it has held.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // Const-initialised, destructor-free thread locals: reading them never allocates.
    let held = HELD.with(|held| {
        held.set(held.get() + delta);
        held.get()
    });
    PEAK.with(|peak| peak.set(peak.get().max(held)));
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap it held above what was held before (the
/// result itself included).
fn peak_heap<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = f();
    let peak = PEAK.with(Cell::get) - base;
    (result, peak.max(0) as usize)
}

/// What parsing `input_len` bytes may hold at most: a generous multiple, plus room for the
/// parsers' fixed buffers. Measured: 6.9× for a 10,000-record event (6 MB), through replay.
fn heap_bound(input_len: usize) -> usize {
    64 * input_len + (1 << 20)
}

// ---------------------------------------------------------------------------------------------
// Inputs and outcomes.

/// A file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("tally-decode-hostile-{}-{}.json", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).expect("writing a temp file");
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn s(text: &str) -> Value {
    json!({ "S": text })
}

fn n(text: &str) -> Value {
    json!({ "N": text })
}

/// An INSERT of `new_image` into the `university` table, keyed by the image's own pk / sk.
fn insert(seq: u64, new_image: Value) -> Value {
    let keys = json!({ "pk": new_image["pk"], "sk": new_image["sk"] });
    json!({
        "eventID": format!("e{seq}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "eventSourceARN": ARN,
        "dynamodb": {
            "ApproximateCreationDateTime": 1788220800,
            "Keys": keys,
            "NewImage": new_image,
            "SequenceNumber": format!("1{seq:020}"),
            "SizeBytes": 128,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

fn enrollment(student: u64) -> Value {
    json!({
        "pk": s("course#c1"), "sk": s(&format!("student#s{student}")), "entityType": s("student"),
        "studentID": s(&format!("s{student}")), "enrolledAt": s("2026-09-01T10:00:00Z")
    })
}

/// Student s1's submission of assignment a1, with `grade`.
fn graded(grade: Value) -> Value {
    json!({
        "pk": s("course#c1"), "sk": s("submission#a1#s1"), "entityType": s("submission"),
        "studentID": s("s1"), "assignmentID": s("a1"), "submittedAt": s("2026-09-02T10:00:00Z"), "grade": grade
    })
}

/// Student s1's enrollment with `ttl`: `ttl` is read as a number but, unlike `grade` and
/// `amount`, has no range rule of its own, so its rejection reason depends only on the parse.
fn expiring(ttl: Value) -> Value {
    let mut image = enrollment(1);
    image["ttl"] = ttl;
    image
}

fn event(records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Records": records })).unwrap()
}

/// `record` with `edit` applied.
fn edited(mut record: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut record);
    record
}

/// `record` without the field at `path`.
fn without(mut record: Value, path: &[&str]) -> Value {
    let (field, parents) = path.split_last().unwrap();
    walk(&mut record, parents).expect("the field's parent").remove(*field).expect("the field");
    record
}

/// What the rules made of the records: counts by origin, then every rejection.
fn describe(changes: &[Change]) -> String {
    let mut origins = BTreeMap::<&str, usize>::new();
    let mut rejections = Vec::new();
    for change in changes {
        *origins.entry(RecordClass::of(change.origin).map_or("source", RecordClass::as_str)).or_default() += 1;
        for (side, assessment) in [("old", &change.old), ("new", &change.new)] {
            if let RuleAssessment::Rejected { violation, .. } = assessment {
                rejections.push(format!("; record {} {side} image rejected {}: {violation}", change.index, violation.reason()));
            }
        }
    }
    let origins = origins.iter().map(|(origin, count)| format!("{origin} {count}")).collect::<Vec<_>>().join(", ");
    format!("{} records ({origins}){}", changes.len(), rejections.concat())
}

/// `tally replay`'s outcome for a file holding `input`: `error: {problem}` or `ok: ...`.
fn replay_outcome(input: &[u8]) -> String {
    let file = TempFile::new(input);
    match replay::load(file.path(), TABLE, Rules::university()) {
        Ok(batch) => {
            assert_eq!(batch.path, file.path());
            assert_eq!(batch.written_at.len(), batch.changes.len());
            format!("ok: {}", describe(&batch.changes))
        }
        Err(err) => {
            assert_eq!(err.path, file.path());
            assert_eq!(err.to_string(), format!("{}: {}", file.path().display(), err.problem), "Display is `{{path}}: {{problem}}`");
            format!("error: {}", err.problem)
        }
    }
}

/// The Lambda path's outcome for a payload: lambda_runtime deserializes the first JSON value of
/// the body (`serde_json::Deserializer::from_slice`, trailing data unread; it also prefixes the
/// serde error with its path, which this omits), then the handler calls `decode_batch`.
fn lambda_outcome(input: &[u8]) -> String {
    let event = match serde_json::Deserializer::from_slice(input).into_iter::<Event>().next() {
        None => return "runtime refuses: no JSON value".to_owned(),
        Some(Err(err)) => return format!("runtime refuses: {err}"),
        Some(Ok(event)) => event,
    };
    match decode_batch(&event.records, TABLE, Rules::university()) {
        Ok(changes) => format!("ok: {}", describe(&changes)),
        Err(err) => format!("batch fails: {err}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The table of bad inputs.

struct Row {
    name: &'static str,
    input: Vec<u8>,
    /// `replay::load`'s outcome: `error: {problem}` (the message after `{path}: `) or `ok: ...`.
    replay: Expect,
    /// The Lambda path's outcome.
    lambda: Expect,
}

enum Expect {
    Is(String),
    /// For a rule another change is adding (the university contract's `out_of_range`): this, or
    /// any outcome that starts with the prefix (its message is not settled yet).
    IsOrStartsWith(String, String),
}

impl Expect {
    fn admits(&self, got: &str) -> bool {
        match self {
            Expect::Is(expected) => got == expected,
            Expect::IsOrStartsWith(expected, prefix) => got == expected || got.starts_with(prefix.as_str()),
        }
    }
}

fn is(text: impl Into<String>) -> Expect {
    Expect::Is(text.into())
}

/// `current`, or record 0's new image rejected `out_of_range`.
fn or_out_of_range(current: String) -> Expect {
    Expect::IsOrStartsWith(current, "ok: 1 records (source 1); record 0 new image rejected out_of_range: ".to_owned())
}

fn rows() -> Vec<Row> {
    let good = || insert(1, enrollment(1));
    let second = |record: Value| event(vec![good(), record]);
    let good_event = event(vec![good()]);
    let other_table_keys = edited(insert(1, json!({ "id": n("1"), "entityType": s("student") })), |record| {
        record["eventSourceARN"] = json!(OTHER_ARN);
        record["dynamodb"]["Keys"] = json!({ "id": n("1") });
    });
    let nested = {
        let mut value = s("bottom");
        for _ in 0..300 {
            value = json!({ "M": { "a": value } });
        }
        value
    };
    let ten_thousand: Vec<Value> = (0..10_000).map(|i| insert(i, enrollment(i))).collect();
    let mut invalid_utf8 = event(vec![insert(1, expiring(s("X")))]);
    let at = invalid_utf8.windows(3).position(|window| window == b"\"X\"").unwrap();
    invalid_utf8[at + 1] = 0xff;
    let nines = "9".repeat(39);
    let source_one = "ok: 1 records (source 1)".to_owned();
    let rejected = |reason: &str, message: &str| format!("ok: 1 records (source 1); record 0 new image rejected {reason}: {message}");
    let grade_39 = rejected("number_too_precise", "attribute `grade` is not a DynamoDB number: more than 38 significant digits");
    let grade_1e200 = rejected("bad_number", "attribute `grade` is not a DynamoDB number: out of range");

    vec![
        Row {
            name: "not JSON",
            input: b"Records: none".to_vec(),
            replay: is("error: not JSON: expected value at line 1 column 1"),
            lambda: is("runtime refuses: expected value at line 1 column 1"),
        },
        Row {
            name: "an empty file",
            input: Vec::new(),
            replay: is(r#"error: not JSON: EOF while parsing a value at line 1 column 0"#),
            lambda: is(r#"runtime refuses: no JSON value"#),
        },
        Row {
            name: "truncated JSON",
            input: good_event[..good_event.len() / 2].to_vec(),
            replay: is(r#"error: not JSON: EOF while parsing a string at line 1 column 295"#),
            lambda: is(r#"runtime refuses: EOF while parsing a string at line 1 column 295"#),
        },
        Row {
            name: "a UTF-8 byte order mark",
            input: [b"\xef\xbb\xbf".as_slice(), &good_event].concat(),
            replay: is(r#"ok: 1 records (source 1)"#),
            lambda: is(r#"runtime refuses: expected value at line 1 column 1"#),
        },
        Row {
            name: "JSON null",
            input: b"null".to_vec(),
            replay: is(r#"error: not a Lambda DynamoDB event at `.`: invalid type: null, expected struct Event at line 1 column 4"#),
            lambda: is(r#"runtime refuses: invalid type: null, expected struct Event at line 1 column 4"#),
        },
        Row {
            name: "a top-level array of records",
            input: serde_json::to_vec(&json!([good()])).unwrap(),
            replay: is(r#"error: the file holds a JSON array; an event is one JSON object, `{"Records": [...]}`"#),
            lambda: is(r#"runtime refuses: invalid type: map, expected a sequence at line 1 column 1"#),
        },
        Row {
            name: "no `Records`",
            input: b"{}".to_vec(),
            replay: is(r#"error: not a Lambda DynamoDB event at `.`: missing field `Records` at line 1 column 2"#),
            lambda: is(r#"runtime refuses: missing field `Records` at line 1 column 2"#),
        },
        Row {
            name: "an empty `Records`",
            input: event(vec![]),
            replay: is(r#"error: `Records` is empty"#),
            lambda: is(r#"ok: 0 records ()"#),
        },
        Row {
            name: "an SQS event",
            input: serde_json::to_vec(&json!({ "Records": [{
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": "test", "attributes": {}, "messageAttributes": {}, "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:my-queue", "awsRegion": "us-east-1"
            }]}))
            .unwrap(),
            replay: is(r#"error: not a Lambda DynamoDB event at `Records[0]`: missing field `dynamodb` at line 1 column 328"#),
            lambda: is(r#"runtime refuses: missing field `dynamodb` at line 1 column 328"#),
        },
        Row {
            name: "a Kinesis event",
            input: serde_json::to_vec(&json!({ "Records": [{
                "kinesis": {
                    "kinesisSchemaVersion": "1.0", "partitionKey": "1",
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==", "approximateArrivalTimestamp": 1545084650.987
                },
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-2",
                "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
            }]}))
            .unwrap(),
            replay: is(r#"error: not a Lambda DynamoDB event at `Records[0]`: missing field `dynamodb` at line 1 column 511"#),
            lambda: is(r#"runtime refuses: missing field `dynamodb` at line 1 column 511"#),
        },
        Row {
            name: "a record without `dynamodb`",
            input: event(vec![without(good(), &["dynamodb"])]),
            replay: is(r#"error: not a Lambda DynamoDB event at `Records[0]`: missing field `dynamodb` at line 1 column 230"#),
            lambda: is(r#"runtime refuses: missing field `dynamodb` at line 1 column 230"#),
        },
        Row {
            name: "a record without `Keys`",
            input: event(vec![without(good(), &["dynamodb", "Keys"])]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.Keys.pk` is missing"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.Keys.pk` is missing"#),
        },
        Row {
            name: "`Keys` null",
            input: event(vec![edited(good(), |record| record["dynamodb"]["Keys"] = Value::Null)]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.Keys.pk` is missing"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.Keys.pk` is missing"#),
        },
        Row {
            name: "a record without `Keys.sk`",
            input: event(vec![without(good(), &["dynamodb", "Keys", "sk"])]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.Keys.sk` is missing"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.Keys.sk` is missing"#),
        },
        Row {
            name: "a record without `SequenceNumber`",
            input: event(vec![without(good(), &["dynamodb", "SequenceNumber"])]),
            replay: is(r#"error: record 0 (eventID `e1`): missing `dynamodb.SequenceNumber`"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): missing `dynamodb.SequenceNumber`"#),
        },
        Row {
            name: "sequence number `12x`",
            input: event(vec![edited(good(), |record| record["dynamodb"]["SequenceNumber"] = json!("12x"))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.SequenceNumber` `12x` is not a string of digits"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.SequenceNumber` `12x` is not a string of digits"#),
        },
        Row {
            name: "sequence number `-5`",
            input: event(vec![edited(good(), |record| record["dynamodb"]["SequenceNumber"] = json!("-5"))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.SequenceNumber` `-5` is not a string of digits"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.SequenceNumber` `-5` is not a string of digits"#),
        },
        Row {
            name: "an empty sequence number",
            input: event(vec![edited(good(), |record| record["dynamodb"]["SequenceNumber"] = json!(""))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.SequenceNumber` `` is not a string of digits"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.SequenceNumber` `` is not a string of digits"#),
        },
        Row {
            name: "a sequence number that is a JSON number",
            input: event(vec![edited(good(), |record| record["dynamodb"]["SequenceNumber"] = json!(12))]),
            replay: is(
                r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb.SequenceNumber`: invalid type: integer `12`, expected a string at line 1 column 319"#,
            ),
            lambda: is(r#"runtime refuses: invalid type: integer `12`, expected a string at line 1 column 319"#),
        },
        Row {
            name: "`Keys.pk` of type N",
            input: event(vec![edited(good(), |record| record["dynamodb"]["Keys"]["pk"] = n("1"))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.Keys.pk` is not a string"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.Keys.pk` is not a string"#),
        },
        Row {
            name: "`Keys` that disagree with the image's own pk",
            input: event(vec![edited(good(), |record| record["dynamodb"]["Keys"]["pk"] = s("course#c2"))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.pk` differs from `dynamodb.Keys.pk`"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `dynamodb.NewImage.pk` differs from `dynamodb.Keys.pk`"#),
        },
        Row {
            name: "a record without `SizeBytes`",
            input: event(vec![without(good(), &["dynamodb", "SizeBytes"])]),
            replay: is(r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb`: missing field `SizeBytes` at line 1 column 379"#),
            lambda: is(r#"runtime refuses: missing field `SizeBytes` at line 1 column 379"#),
        },
        Row {
            name: "`ApproximateCreationDateTime` 1e300",
            input: event(vec![edited(good(), |record| record["dynamodb"]["ApproximateCreationDateTime"] = json!(1e300))]),
            replay: is(format!(
                r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb.ApproximateCreationDateTime`: value is not a legal timestamp: {} at line 1 column 85"#,
                1e300f64
            )),
            lambda: is(format!(r#"runtime refuses: value is not a legal timestamp: {} at line 1 column 85"#, 1e300f64)),
        },
        Row {
            name: "an unknown eventName",
            input: event(vec![edited(good(), |record| record["eventName"] = json!("UPSERT"))]),
            replay: is(r#"ok: 1 records (source 1)"#),
            lambda: is(r#"ok: 1 records (source 1)"#),
        },
        Row {
            name: "grade `NaN`",
            input: event(vec![insert(1, graded(n("NaN")))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.grade`: `NaN` is not a number"#),
            lambda: is(
                r#"ok: 1 records (source 1); record 0 new image rejected bad_number: attribute `grade` is not a DynamoDB number: not a number"#,
            ),
        },
        Row {
            name: "grade `Infinity`",
            input: event(vec![insert(1, graded(n("Infinity")))]),
            replay: is(r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.grade`: `Infinity` is not a number"#),
            lambda: is(
                r#"ok: 1 records (source 1); record 0 new image rejected bad_number: attribute `grade` is not a DynamoDB number: not a number"#,
            ),
        },
        Row {
            name: "ttl `1E+200`",
            input: event(vec![insert(1, expiring(n("1E+200")))]),
            replay: is(
                r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.ttl`: `1E+200` is outside DynamoDB's number range (1E-130 to 9.9999999999999999999999999999999999999E+125)"#,
            ),
            lambda: is(
                r#"ok: 1 records (source 1); record 0 new image rejected bad_number: attribute `ttl` is not a DynamoDB number: out of range"#,
            ),
        },
        Row {
            name: "grade `1E+200`",
            input: event(vec![insert(1, graded(n("1E+200")))]),
            replay: is(
                r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.grade`: `1E+200` is outside DynamoDB's number range (1E-130 to 9.9999999999999999999999999999999999999E+125)"#,
            ),
            lambda: or_out_of_range(grade_1e200),
        },
        Row {
            name: "ttl of 39 digits",
            input: event(vec![insert(1, expiring(n(&nines)))]),
            replay: is(
                r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.ttl`: `999999999999999999999999999999999999999` has 39 significant digits, more than DynamoDB's 38"#,
            ),
            lambda: is(
                r#"ok: 1 records (source 1); record 0 new image rejected number_too_precise: attribute `ttl` is not a DynamoDB number: more than 38 significant digits"#,
            ),
        },
        Row {
            name: "grade of 39 digits",
            input: event(vec![insert(1, graded(n(&nines)))]),
            replay: is(
                r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.grade`: `999999999999999999999999999999999999999` has 39 significant digits, more than DynamoDB's 38"#,
            ),
            lambda: or_out_of_range(grade_39),
        },
        Row {
            name: "39 digits in an attribute the rules do not read",
            input: event(vec![insert(1, edited(enrollment(1), |image| image["title"] = n(&nines)))]),
            replay: is(
                r#"error: record 0 (eventID `e1`): `dynamodb.NewImage.title`: `999999999999999999999999999999999999999` has 39 significant digits, more than DynamoDB's 38"#,
            ),
            lambda: is(source_one.clone()),
        },
        Row {
            name: "a negative grade",
            input: event(vec![insert(1, graded(n("-1")))]),
            replay: is(rejected("negative_grade", "attribute `grade` is negative")),
            lambda: is(rejected("negative_grade", "attribute `grade` is negative")),
        },
        Row {
            name: "an attribute value with two types",
            input: event(vec![insert(1, expiring(json!({ "N": "1", "S": "x" })))]),
            replay: is(
                r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb.NewImage.ttl`: Expected exactly one key in the object, found multiple keys at line 1 column 317"#,
            ),
            lambda: is(r#"runtime refuses: Expected exactly one key in the object, found multiple keys at line 1 column 317"#),
        },
        Row {
            name: "an attribute value with no type",
            input: event(vec![insert(1, expiring(json!({})))]),
            replay: is(
                r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb.NewImage.ttl`: Expected exactly one key in the object, found none at line 1 column 307"#,
            ),
            lambda: is(r#"runtime refuses: Expected exactly one key in the object, found none at line 1 column 307"#),
        },
        Row {
            name: "an attribute value of an unknown type",
            input: event(vec![insert(1, expiring(json!({ "X": "1" })))]),
            replay: is(
                r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb.NewImage.ttl`: The key 'X' is not a known DynamoDB prefix at line 1 column 309"#,
            ),
            lambda: is(r#"runtime refuses: The key 'X' is not a known DynamoDB prefix at line 1 column 309"#),
        },
        Row {
            name: "an attribute that appears twice",
            input: serde_json::to_string(&json!({ "Records": [insert(1, graded(n("1")))] }))
                .unwrap()
                .replace(r#""grade":{"N":"1"}"#, r#""grade":{"N":"1"},"grade":{"N":"-1"}"#)
                .into_bytes(),
            replay: is(r#"ok: 1 records (source 1); record 0 new image rejected negative_grade: attribute `grade` is negative"#),
            lambda: is(r#"ok: 1 records (source 1); record 0 new image rejected negative_grade: attribute `grade` is negative"#),
        },
        Row {
            name: "nesting 300 deep",
            input: event(vec![insert(1, edited(enrollment(1), |image| image["notes"] = nested))]),
            replay: is(
                r#"error: nested deeper than the 128 levels a Lambda event may have: recursion limit exceeded at line 1 column 848"#,
            ),
            lambda: is(r#"runtime refuses: recursion limit exceeded at line 1 column 848"#),
        },
        Row {
            name: "invalid UTF-8 in a string",
            input: invalid_utf8,
            replay: is(r#"error: not JSON: invalid unicode code point at line 1 column 312"#),
            lambda: is(r#"runtime refuses: invalid unicode code point at line 1 column 312"#),
        },
        Row {
            name: "bad base64",
            input: event(vec![insert(1, edited(enrollment(1), |image| image["photo"] = json!({ "B": "not base64!!" })))]),
            replay: is(
                r#"error: not a Lambda DynamoDB event at `Records[0].dynamodb.NewImage.photo`: Failed to decode base64: Invalid byte 32, offset 3. at line 1 column 257"#,
            ),
            lambda: is(r#"runtime refuses: Failed to decode base64: Invalid byte 32, offset 3. at line 1 column 257"#),
        },
        Row {
            name: "a good record, then one without a sequence number",
            input: second(without(insert(2, enrollment(2)), &["dynamodb", "SequenceNumber"])),
            replay: is(r#"error: record 1 (eventID `e2`): missing `dynamodb.SequenceNumber`"#),
            lambda: is(r#"batch fails: record 1 (eventID `e2`): missing `dynamodb.SequenceNumber`"#),
        },
        Row {
            name: "a good record, then one without `dynamodb`",
            input: second(without(insert(2, enrollment(2)), &["dynamodb"])),
            replay: is(r#"error: not a Lambda DynamoDB event at `Records[1]`: missing field `dynamodb` at line 1 column 808"#),
            lambda: is(r#"runtime refuses: missing field `dynamodb` at line 1 column 808"#),
        },
        Row {
            name: "a good record, then one with an unstorable number",
            input: second(insert(2, graded(n("NaN")))),
            replay: is(r#"error: record 1 (eventID `e2`): `dynamodb.NewImage.grade`: `NaN` is not a number"#),
            lambda: is(
                r#"ok: 2 records (source 2); record 1 new image rejected bad_number: attribute `grade` is not a DynamoDB number: not a number"#,
            ),
        },
        Row {
            name: "two events in one file",
            input: [good_event.clone(), good_event.clone()].concat(),
            replay: is(
                r#"error: more after the event, which must be the file's only JSON value: trailing characters at line 1 column 592"#,
            ),
            lambda: is(r#"ok: 1 records (source 1)"#),
        },
        Row {
            name: "two events, one per line",
            input: [good_event.clone(), b"\n".to_vec(), good_event.clone()].concat(),
            replay: is(r#"error: more after the event, which must be the file's only JSON value: trailing characters at line 2 column 1"#),
            lambda: is(r#"ok: 1 records (source 1)"#),
        },
        Row {
            name: "10,000 records in one event",
            input: event(ten_thousand),
            replay: is(r#"ok: 10000 records (source 10000)"#),
            lambda: is(r#"ok: 10000 records (source 10000)"#),
        },
        Row {
            name: "another table's record keyed `id` (N)",
            input: event(vec![other_table_keys]),
            replay: is(r#"ok: 1 records (other_table 1)"#),
            lambda: is(r#"ok: 1 records (other_table 1)"#),
        },
        Row {
            name: "another table's record without a sequence number",
            input: event(vec![without(
                edited(good(), |record| record["eventSourceARN"] = json!(OTHER_ARN)),
                &["dynamodb", "SequenceNumber"],
            )]),
            replay: is(r#"ok: 1 records (other_table 1)"#),
            lambda: is(r#"ok: 1 records (other_table 1)"#),
        },
        Row {
            name: "an `eventSourceARN` that is not an ARN",
            input: event(vec![edited(good(), |record| record["eventSourceARN"] = json!("university"))]),
            replay: is(r#"error: record 0 (eventID `e1`): `eventSourceARN` `university` is not a DynamoDB stream ARN"#),
            lambda: is(r#"batch fails: record 0 (eventID `e1`): `eventSourceARN` `university` is not a DynamoDB stream ARN"#),
        },
        Row {
            name: "a record without `eventSourceARN`",
            input: event(vec![without(good(), &["eventSourceARN"])]),
            replay: is(source_one.clone()),
            lambda: is(source_one),
        },
    ]
}

#[test]
fn each_bad_input_gets_its_exact_error_or_counted_skip() {
    let started = Instant::now();
    let mut wrong = Vec::new();
    for row in rows() {
        let input_len = row.input.len();
        let (replay, replay_heap) = peak_heap(|| replay_outcome(&row.input));
        let (lambda, lambda_heap) = peak_heap(|| lambda_outcome(&row.input));
        for (path, got, expected, heap) in [("replay", &replay, &row.replay, replay_heap), ("lambda", &lambda, &row.lambda, lambda_heap)] {
            if !expected.admits(got) {
                wrong.push(format!("{} [{path}]\n    got: {got:?}", row.name));
            }
            if heap > heap_bound(input_len) {
                wrong.push(format!("{} [{path}]: held {heap} bytes of heap for a {input_len}-byte input", row.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{} outcomes differ:\n{}", wrong.len(), wrong.join("\n"));
    eprintln!("bad-input table: {:?}", started.elapsed());
}

#[test]
fn ten_thousand_records_load_and_decode_in_bounded_memory() {
    let records: Vec<Value> = (0..10_000)
        .map(|i| match i % 4 {
            0 => insert(i, enrollment(i)),
            1 => insert(i, graded(n(&format!("{}.5", i % 100)))),
            2 => edited(insert(i, enrollment(i)), |record| record["eventSourceARN"] = json!(OTHER_ARN)),
            _ => insert(i, graded(n("-1"))),
        })
        .collect();
    let input = event(records);
    let file = TempFile::new(&input);
    let started = Instant::now();
    let (batch, heap) = peak_heap(|| replay::load(file.path(), TABLE, Rules::university()).expect("10,000 records load"));
    let load_time = started.elapsed();
    assert_eq!(batch.changes.len(), 10_000);
    assert_eq!(batch.changes.iter().filter(|change| change.origin == Origin::OtherTable).count(), 2_500);
    assert_eq!(batch.changes.iter().flat_map(Change::rejections).count(), 2_500);
    assert!(batch.changes.iter().enumerate().all(|(index, change)| change.index == index));
    assert!(heap <= heap_bound(input.len()), "held {heap} bytes for {} bytes of input", input.len());
    let event: Event = serde_json::from_slice(&input).unwrap();
    let started = Instant::now();
    let changes = decode_batch(&event.records, TABLE, Rules::university()).unwrap();
    let decode_time = started.elapsed();
    assert_eq!(changes.len(), 10_000);
    eprintln!(
        "10,000 records, {} bytes: replay::load {load_time:?} (peak heap {heap} bytes, {:.1}× the input); decode_batch alone {decode_time:?}",
        input.len(),
        heap as f64 / input.len() as f64
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile numbers: refused on every path, without a panic, in bounded memory.

/// Every way of reaching `Number::from_str` with `text`: replay's check, the rules on an image,
/// and `Number` itself. Returns what went wrong, if anything.
fn number_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let shown =
        if text.len() > 40 { format!("{}… ({} bytes)", text.chars().take(40).collect::<String>(), text.len()) } else { text.to_owned() };
    let parse = catch_unwind(|| text.parse::<aggregates::Number>().map(drop).map_err(|err| err.to_string()));
    match parse {
        Err(_) => problems.push(format!("`{shown}`.parse::<Number>() panicked")),
        Ok(Ok(())) => problems.push(format!("`{shown}` parsed as a DynamoDB number")),
        Ok(Err(_)) => {}
    }
    let image: Item = serde_json::from_value(graded(n(text))).unwrap();
    match catch_unwind(AssertUnwindSafe(|| Rules::university().assess(Some(&image)))) {
        Err(_) => problems.push(format!("assess(grade `{shown}`) panicked")),
        Ok(RuleAssessment::Rejected { .. }) => {}
        Ok(other) => problems.push(format!("assess(grade `{shown}`) gave {other:?}")),
    }
    match catch_unwind(|| replay_outcome(&event(vec![insert(1, graded(n(text)))]))) {
        Err(_) => problems.push(format!("replay::load(grade `{shown}`) panicked")),
        Ok(outcome) if outcome.starts_with("error: record 0 (eventID `e1`): `dynamodb.NewImage.grade`: ") => {}
        Ok(outcome) => problems.push(format!("replay::load(grade `{shown}`): {}", outcome.chars().take(200).collect::<String>())),
    }
    problems
}

#[test]
fn hostile_numbers_with_extreme_exponents_are_refused_without_panicking() {
    let problems: Vec<String> = ["1E+9223372036854775807", "1E-9223372036854775807", "1E+9223372036854775808", "10E+9223372036854775808"]
        .iter()
        .flat_map(|text| number_problems(text))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn hostile_number_with_a_large_exponent_is_refused_in_bounded_memory() {
    let text = "1E+1000000000";
    let (problems, heap) = peak_heap(|| number_problems(text));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(heap < 1 << 20, "refusing `{text}` held {heap} bytes");
}

#[test]
fn hostile_number_of_400_kb_is_refused_in_bounded_memory() {
    let text = "7".repeat(400_000);
    let (problems, heap) = peak_heap(|| number_problems(&text));
    assert!(heap < 4 << 20, "refusing a 400 KB number held {heap} bytes");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn hostile_number_of_15_bytes_does_not_exhaust_memory() {
    let problems = number_problems("1E+100000000000");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn cases() -> u32 {
    std::env::var("TALLY_FUZZ_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), max_shrink_iters: 2_000, failure_persistence: None, ..ProptestConfig::default() }
}

/// Every `entityType` the rules know (source items and aggregates), and some they do not.
fn entity_types() -> Vec<&'static str> {
    let rules = Rules::university();
    let aggregates = rules.aggregates().iter().map(|aggregate| aggregate.name());
    rules.entities().iter().map(|entity| entity.name()).chain(aggregates).chain(["", "Student", "note"]).collect()
}

/// Attribute names: those the rules read, the processor's own, and random ones.
fn attribute_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "pk", "sk", "entityType", "studentID", "assignmentID", "instructorID", "grade", "amount", "enrolledAt", "submittedAt",
            "courseDate", "dueDate", "ttl", "updatedAt", "gradeSum", "gradedCount", "enrollmentCount", "title", "",
        ][..])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

/// Text that DynamoDB may or may not call a number, exponents of any length included.
fn number_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<i64>().prop_map(|value| value.to_string()),
        4 => "-?[0-9]{1,20}(\\.[0-9]{1,8})?",
        2 => "[+-]?[0-9]{0,42}(\\.[0-9]{0,42})?([eE][+-]?[0-9]{1,4})?",
        1 => "[+-]?[0-9]{0,3}(\\.[0-9]{0,3})?[eE][+-]?[0-9]{5,40}",
        1 => prop::sample::select(&[
            "NaN", "Infinity", "-Infinity", "inf", "1E+200", "1E-131", "1E-130", "9.9999999999999999999999999999999999999E+125",
            "1E+126", "0", "-0", "0.0", "", " ", " 1 ", "+1", "1_000", "0x10", "1e", "e5", ".", "-", "1..2", "--1", "1e+-5", "٣", "１",
            "00000000000000000000000000000000000000000001", "0.00000000000000000000000000000000000000000001",
        ][..])
        .prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// An id, or the rest of a key: mostly plain, sometimes odd, rarely long enough to pass
/// DynamoDB's key limits.
fn id_text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-z0-9]{1,8}",
        2 => "\\PC{0,10}",
        1 => "[#é]{0,4}",
        1 => "[a-zé]{900,2100}",
    ]
    .boxed()
}

fn date_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just("2026-09-01".to_owned()),
        3 => Just("2026-09-01T23:30:00-02:00".to_owned()),
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{0,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?",
        1 => "\\PC{0,30}",
        1 => prop::sample::select(&["2026-02-30", "2026-3-1", "2026-03-0é10:00:00Z", "9999-12-31T23:59:59-23:59", "0000-01-01"][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

fn string_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(entity_types()).prop_map(str::to_owned),
        2 => (prop::sample::select(&["course#", "student#", "submission#", "user#", "session#", "stats#", "tally#ledger#", ""][..]),
              id_text())
            .prop_map(|(prefix, id)| format!("{prefix}{id}")),
        1 => prop::sample::select(&["metadata", "profile", "session", "stats", "academic_stats", "order_stats"][..])
            .prop_map(str::to_owned),
        1 => date_text(),
        1 => (date_text(), prop::sample::select(&["order", "transaction"][..]), id_text())
            .prop_map(|(day, kind, id)| format!("{day}#{kind}#{id}")),
    ]
    .boxed()
}

/// Any DynamoDB attribute value, nested a few levels.
fn attribute_value() -> BoxedStrategy<AttributeValue> {
    let leaf = prop_oneof![
        4 => string_text().prop_map(AttributeValue::S),
        4 => number_text().prop_map(AttributeValue::N),
        1 => any::<bool>().prop_map(AttributeValue::Bool),
        1 => any::<bool>().prop_map(AttributeValue::Null),
        1 => vec(any::<u8>(), 0..16).prop_map(AttributeValue::B),
        1 => vec(string_text(), 0..4).prop_map(AttributeValue::Ss),
        1 => vec(number_text(), 0..4).prop_map(AttributeValue::Ns),
        1 => vec(vec(any::<u8>(), 0..8), 0..3).prop_map(AttributeValue::Bs),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
            hash_map(attribute_name(), inner, 0..4).prop_map(AttributeValue::M),
        ]
    })
    .boxed()
}

/// A valid image of a random kind (the university contract's source items, an aggregate, an
/// unknown one).
fn template() -> BoxedStrategy<HashMap<String, AttributeValue>> {
    (0..12usize, id_text(), id_text(), id_text(), date_text(), number_text())
        .prop_map(|(kind, a, b, c, day, number)| {
            let text = |value: &str| AttributeValue::S(value.to_owned());
            let number = AttributeValue::N(number);
            let (entity_type, pk, sk, rest): (&str, String, String, Vec<(&str, AttributeValue)>) = match kind {
                0 => ("course", format!("course#{a}"), "metadata".into(), vec![("courseDate", text(&day))]),
                1 => (
                    "student",
                    format!("course#{a}"),
                    format!("student#{b}"),
                    vec![("studentID", text(&b)), ("enrolledAt", text(&day)), ("ttl", number)],
                ),
                2 => ("instructor", format!("course#{a}"), format!("instructor#{b}"), vec![("instructorID", text(&b))]),
                3 => (
                    "assignment",
                    format!("course#{a}"),
                    format!("assignment#{b}"),
                    vec![("assignmentID", text(&b)), ("dueDate", text(&day))],
                ),
                4 => (
                    "submission",
                    format!("course#{a}"),
                    format!("submission#{b}#{c}"),
                    vec![("assignmentID", text(&b)), ("studentID", text(&c)), ("submittedAt", text(&day)), ("grade", number)],
                ),
                5 => ("user", format!("user#{a}"), "profile".into(), vec![]),
                6 => ("order", format!("user#{a}"), format!("{day}#order#{b}"), vec![("amount", number)]),
                7 => ("transaction", format!("user#{a}"), format!("{day}#transaction#{b}"), vec![("amount", number)]),
                8 => ("session", format!("session#{a}"), "session".into(), vec![("ttl", number)]),
                9 => ("stats", format!("course#{a}"), "stats".into(), vec![("enrollmentCount", number)]),
                10 => ("note", format!("course#{a}"), format!("note#{b}"), vec![]),
                _ => ("", a, b, vec![]),
            };
            let mut image: HashMap<String, AttributeValue> = rest
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .chain([("pk".into(), text(&pk)), ("sk".into(), text(&sk))])
                .collect();
            if !entity_type.is_empty() {
                image.insert("entityType".into(), text(entity_type));
            }
            image
        })
        .boxed()
}

/// An image: a valid one of a random kind, with a few attributes replaced or removed.
fn item() -> BoxedStrategy<Item> {
    (template(), vec((attribute_name(), prop::option::weighted(0.8, attribute_value())), 0..4))
        .prop_map(|(mut image, edits)| {
            for (name, value) in edits {
                match value {
                    Some(value) => image.insert(name, value),
                    None => image.remove(&name),
                };
            }
            Item::from(image)
        })
        .boxed()
}

/// `{"M": {"a": ... }}` `depth` times around a string.
fn nested(depth: usize) -> Value {
    (0..depth).fold(s("bottom"), |value, level| if level % 2 == 0 { json!({ "M": { "a": value } }) } else { json!({ "L": [value] }) })
}

/// JSON where a DynamoDB attribute value should be, shaped wrong.
fn wrong_attribute_json() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::sample::select(vec![
            json!({}),
            json!({ "S": 1 }),
            json!({ "N": 1 }),
            json!({ "N": "1", "S": "x" }),
            json!({ "X": "y" }),
            json!({ "B": "not base64!!" }),
            json!({ "BS": ["AA==", "%%"] }),
            json!({ "M": [] }),
            json!({ "L": {} }),
            json!({ "NULL": "yes" }),
            json!({ "SS": "x" }),
            json!("bare"),
            json!(1.5),
            json!([]),
            Value::Null,
        ]),
        1 => (0..100usize).prop_map(nested),
    ]
    .boxed()
}

/// An image in DynamoDB JSON: a valid image of a random kind, edited, or random attributes.
fn image_json() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => item().prop_map(|item| serde_json::to_value(item).unwrap()),
        1 => hash_map(attribute_name(), attribute_value(), 0..6).prop_map(|attrs| serde_json::to_value(Item::from(attrs)).unwrap()),
    ]
    .boxed()
}

fn sequence_text() -> BoxedStrategy<String> {
    prop_oneof![
        60 => "[0-9]{1,40}",
        1 => prop::sample::select(&["12x", "-5", "", " 1", "١٢", "+1", "1e5"][..]).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// A record as Lambda sends it, every field well formed but its values hostile: odd keys,
/// images of every kind, odd sequence numbers, other tables, TTL identities.
fn well_formed_record() -> BoxedStrategy<Value> {
    let keys = prop_oneof![
        60 => Just(None),
        2 => hash_map(attribute_name(), attribute_value(), 0..3).prop_map(|keys| Some(serde_json::to_value(Item::from(keys)).unwrap())),
        1 => Just(Some(json!({ "id": { "N": "1" } }))),
        1 => Just(Some(Value::Null)),
    ];
    let dynamodb = (
        keys,
        prop::option::weighted(0.8, image_json()),
        prop::option::weighted(0.5, image_json()),
        prop::option::weighted(0.99, sequence_text()),
        any::<i64>(),
        prop_oneof![
            6 => Just(json!(1788220800)),
            1 => (-1e11f64..1e11).prop_map(Value::from),
            1 => (0..4_102_444_800i64).prop_map(Value::from),
        ],
        prop::option::weighted(0.9, prop::sample::select(&["NEW_AND_OLD_IMAGES", "KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE"][..])),
    )
        .prop_map(|(keys, new_image, old_image, sequence, size, created, view)| {
            // Keys usually are the image's own pk / sk, as DynamoDB sends them.
            let image_keys = || {
                let image = new_image.as_ref().or(old_image.as_ref());
                let key = |name: &str, default: &str| image.and_then(|image| image.get(name)).cloned().unwrap_or_else(|| s(default));
                Some(json!({ "pk": key("pk", "course#c1"), "sk": key("sk", "student#s1") }))
            };
            let fields = [
                ("Keys", keys.or_else(image_keys)),
                ("NewImage", new_image),
                ("OldImage", old_image),
                ("SequenceNumber", sequence.map(Value::from)),
                ("SizeBytes", Some(json!(size))),
                ("ApproximateCreationDateTime", Some(created)),
                ("StreamViewType", view.map(Value::from)),
            ];
            Value::Object(fields.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect())
        });
    (
        prop_oneof![4 => "[a-f0-9]{1,32}", 1 => "\\PC{0,8}"],
        prop::sample::select(&["INSERT", "MODIFY", "REMOVE", "UPSERT", ""][..]),
        prop_oneof![
            8 => Just(Some(ARN)),
            2 => Just(None),
            1 => prop::sample::select(vec![
                Some(OTHER_ARN),
                Some("university"),
                Some(":table/"),
                Some("arn:aws:dynamodb:eu-west-1:123456789012:table/university"),
            ]),
        ],
        prop::option::weighted(
            0.2,
            prop::sample::select(vec![
                json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" }),
                json!({ "type": "Service" }),
                json!({ "type": "User", "principalId": "dynamodb.amazonaws.com" }),
            ]),
        ),
        dynamodb,
    )
        .prop_map(|(event_id, event_name, arn, identity, dynamodb)| {
            let fields = [
                ("eventID", Some(json!(event_id))),
                ("eventName", Some(json!(event_name))),
                ("eventVersion", Some(json!("1.1"))),
                ("eventSource", Some(json!("aws:dynamodb"))),
                ("awsRegion", Some(json!("eu-west-1"))),
                ("eventSourceARN", arn.map(Value::from)),
                ("userIdentity", identity),
                ("dynamodb", Some(dynamodb)),
            ];
            Value::Object(fields.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect())
        })
        .boxed()
}

/// One structural defect to give a record.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Remove this field, a path of names.
    Remove(&'static [&'static str]),
    /// Set this field to a value of the wrong JSON type.
    Set(&'static [&'static str], fn() -> Value),
    /// Give the new image an attribute shaped wrong.
    BadAttribute,
}

const DAMAGES: &[Damage] = &[
    Damage::Remove(&["eventID"]),
    Damage::Remove(&["eventName"]),
    Damage::Remove(&["awsRegion"]),
    Damage::Remove(&["dynamodb"]),
    Damage::Remove(&["dynamodb", "SizeBytes"]),
    Damage::Set(&["eventID"], || json!(7)),
    Damage::Set(&["eventSourceARN"], || json!(1)),
    Damage::Set(&["userIdentity"], || json!("dynamodb.amazonaws.com")),
    Damage::Set(&["dynamodb", "SequenceNumber"], || json!(12)),
    Damage::Set(&["dynamodb", "SizeBytes"], || json!("128")),
    Damage::Set(&["dynamodb", "ApproximateCreationDateTime"], || json!("2026-09-01")),
    Damage::Set(&["dynamodb", "ApproximateCreationDateTime"], || json!(1e300)),
    Damage::Set(&["dynamodb", "StreamViewType"], || json!("ALL")),
    Damage::Set(&["dynamodb", "Keys"], || json!([])),
    Damage::Set(&["dynamodb", "NewImage"], || json!("image")),
    Damage::BadAttribute,
];

fn damage(record: &mut Value, damage: Damage, wrong: Value) {
    match damage {
        Damage::Remove(path) => {
            if let Some(map) = walk(record, &path[..path.len() - 1]) {
                map.remove(path[path.len() - 1]);
            }
        }
        Damage::Set(path, value) => {
            if let Some(map) = walk(record, &path[..path.len() - 1]) {
                map.insert(path[path.len() - 1].to_owned(), value());
            }
        }
        Damage::BadAttribute => {
            if let Some(map) = walk(record, &["dynamodb", "NewImage"]) {
                map.insert("grade".to_owned(), wrong);
            }
        }
    }
}

/// The object at `path` under `value`, if there is one.
fn walk<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut serde_json::Map<String, Value>> {
    path.iter().try_fold(value, |at, name| at.get_mut(*name))?.as_object_mut()
}

/// A record: usually well formed, sometimes with one structural defect.
fn record_json() -> BoxedStrategy<Value> {
    (well_formed_record(), prop::option::weighted(0.05, (prop::sample::select(DAMAGES), wrong_attribute_json())))
        .prop_map(|(mut record, defect)| {
            if let Some((which, wrong)) = defect {
                damage(&mut record, which, wrong);
            }
            record
        })
        .boxed()
}

fn event_json() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(json!({ "Records": [] })),
        24 => vec(record_json(), 1..6).prop_map(|records| json!({ "Records": records })),
        1 => vec(record_json(), 0..3).prop_map(|records| json!({ "Records": records, "extra": true })),
        1 => record_json().prop_map(|record| json!({ "Records": record })),
        1 => Just(json!({ "records": [] })),
    ]
    .boxed()
}

/// The bytes of a real event file with a few bytes changed, inserted or removed, or cut short.
fn mutated_fixture() -> BoxedStrategy<Vec<u8>> {
    let fixtures: Vec<Vec<u8>> = std::fs::read_dir(FIXTURES)
        .expect("the fixture events")
        .map(|entry| entry.expect("a fixture entry").path())
        // The university's files; the example rule sets' are in folders of their own.
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .map(|path| std::fs::read(path).expect("a fixture file"))
        .chain([event(vec![insert(1, graded(n("91.5"))), insert(2, expiring(n("1999999999")))])])
        .collect();
    let byte = prop_oneof![3 => prop::sample::select(b"{}[]\":,0123456789-+.eE SNMLBtrufalsn\\".to_vec()), 1 => any::<u8>()];
    let edit = (any::<prop::sample::Index>(), 0..4u8, byte);
    (prop::sample::select(fixtures), vec(edit, 1..6))
        .prop_map(|(mut bytes, edits)| {
            for (at, kind, byte) in edits {
                let at = at.index(bytes.len().max(1)).min(bytes.len());
                match kind {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => drop(bytes.remove(at)),
                    2 if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.truncate(at),
                }
            }
            bytes
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// Runs both paths on `input` and checks they agree: what replay loads, the Lambda path decodes
/// alike; what replay refuses after a good parse names a record; neither holds too much heap.
fn check_both_paths(input: &[u8]) -> Result<(), TestCaseError> {
    let file = TempFile::new(input);
    let (loaded, heap) = peak_heap(|| replay::load(file.path(), TABLE, Rules::university()));
    prop_assert!(heap <= heap_bound(input.len()), "replay::load held {} bytes for {} bytes of input", heap, input.len());
    let (parsed, heap) = peak_heap(|| serde_json::from_slice::<Event>(input));
    prop_assert!(heap <= heap_bound(input.len()), "serde_json held {} bytes for {} bytes of input", heap, input.len());
    let decoded = parsed.as_ref().ok().map(|event| {
        for record in &event.records {
            let _ = Rules::university().assess(Some(&record.change.new_image));
            let _ = Rules::university().assess(Some(&record.change.old_image));
        }
        decode_batch(&event.records, TABLE, Rules::university())
    });
    match (&loaded, &decoded) {
        (Ok(batch), Some(Ok(changes))) => {
            prop_assert_eq!(batch.changes.len(), changes.len());
            for (replayed, decoded) in batch.changes.iter().zip(changes) {
                prop_assert_eq!(&replayed.event_id, &decoded.event_id);
                prop_assert_eq!(&replayed.sequence, &decoded.sequence);
                prop_assert_eq!(&replayed.key, &decoded.key);
                prop_assert_eq!(replayed.origin, decoded.origin);
                prop_assert_eq!(&replayed.old, &decoded.old);
                prop_assert_eq!(&replayed.new, &decoded.new);
                prop_assert_eq!(replayed.ttl_deletion, decoded.ttl_deletion);
            }
        }
        // A file saved with a UTF-8 byte order mark is read by replay; Lambda never sends one.
        (Ok(_), None) if input.starts_with(b"\xEF\xBB\xBF") => {}
        (Ok(_), _) => prop_assert!(false, "replay loaded what the Lambda path refuses: {:?}", decoded),
        // Replay checks numbers before it decodes, so it may name an earlier problem.
        (Err(err), Some(Err(decode_err))) => prop_assert!(
            err.problem == decode_err.to_string() || (err.problem.starts_with("record ") && err.problem.contains("`dynamodb.")),
            "replay: {}; decode_batch: {}",
            err.problem,
            decode_err
        ),
        (Err(err), Some(Ok(changes))) => {
            // Parsed and decoded, yet refused: an unstorable number (naming the record and the
            // attribute), an empty `Records`, or something after the event.
            let named = err.problem.starts_with("record ") && err.problem.contains("`dynamodb.");
            let allowed = named || err.problem == "`Records` is empty" || err.problem.starts_with("more after the event");
            prop_assert!(allowed, "unexpected refusal of {} decodable records: {}", changes.len(), err.problem);
        }
        (Err(err), None) => prop_assert!(
            err.problem.starts_with("not JSON: ")
                || err.problem.starts_with("not a Lambda DynamoDB event at `")
                || err.problem.starts_with("nested deeper than the 128 levels")
                || err.problem.starts_with("the file holds a JSON array")
                || err.problem == "the file is UTF-16: save it as UTF-8"
                || err.problem.starts_with("cannot read: "),
            "{}",
            err.problem
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// (a) Arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        check_both_paths(&bytes)?;
    }

    /// (a) Real event files, damaged.
    #[test]
    fn damaged_event_files_never_panic(bytes in mutated_fixture()) {
        check_both_paths(&bytes)?;
    }

    /// (b) JSON shaped like events, with attribute values of every type and wrong shapes.
    #[test]
    fn event_shaped_json_never_panics(event in event_json()) {
        check_both_paths(&serde_json::to_vec(&event).unwrap())?;
    }

    /// (c) Images, through the rules.
    #[test]
    fn the_rules_never_panic(image in item()) {
        let rules = Rules::university();
        let assessment = rules.assess(Some(&image));
        prop_assert_eq!(&assessment, &rules.assess(Some(&image)), "assess is a function of the image");
        // Every university entity is matched by its `entityType`: the entity an assessment names
        // is the one the image claims. (The rules file against the hand-written rules, on
        // hostile and fuzzed images, is aggregates/tests/rules_match_code.rs.)
        let claimed = match image.get("entityType") {
            Some(AttributeValue::S(name)) => Some(name.as_str()),
            _ => None,
        };
        match &assessment {
            RuleAssessment::Source { entity, contribution } => {
                prop_assert_eq!(Some(entity.name()), claimed);
                for (key, _, amount) in contribution.iter() {
                    prop_assert!(amount.check_fits().is_ok(), "{} in {:?}", amount, key);
                    // The key tally writes is one it reads back as its own aggregate item.
                    let parsed = rules.parse_key(&key.pk, &key.sk);
                    prop_assert_eq!(parsed.as_ref(), Some(key));
                    prop_assert_eq!(rules.owner(&key.pk, &key.sk), KeyOwner::Aggregate, "{:?}", key);
                }
            }
            RuleAssessment::Rejected { entity, violation } => {
                prop_assert!(!violation.reason().is_empty() && !violation.to_string().is_empty());
                match entity {
                    Some(entity) => prop_assert_eq!(Some(entity.name()), claimed),
                    None => prop_assert!(
                        matches!(image.get("entityType"), Some(value) if !matches!(value, AttributeValue::S(_))),
                        "no entity only for an `entityType` that is not a string: {:?}", violation
                    ),
                }
            }
            RuleAssessment::Unknown => prop_assert!(
                claimed.is_none_or(|name| rules.entity(name).is_none()),
                "unknown, yet its `entityType` names an entity"
            ),
            RuleAssessment::Absent => prop_assert!(false, "a present image is never absent"),
        }
    }
}
