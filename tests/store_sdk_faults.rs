//! SDK-level faults: the oracle's workload through a proxy that fails a fifth of DynamoDB's
//! data-plane requests, and every aggregate must still equal a recompute.
//!
//! The proxy (`support::proxy`) throttles, answers `InternalServerError`, resets connections,
//! holds answers past the client's attempt timeout and loses the answers of applied writes. The
//! engine's client points at it with a short attempt timeout and the SDK's standard retries, so
//! the SDK's own retries, its `ClientRequestToken` on a retried `TransactWriteItems`, its timeouts
//! and its retry quota all meet the faults first; the engine's loop handles what outlasts them.
//! Each shard is delivered concurrently, as in the oracle, by a simulated event source mapping:
//! some invocations get a short deadline, a batch the engine reports failed is redelivered from
//! `failed_from`, successful batches are sometimes delivered again whole, stale batches come back
//! after newer ones, and two invocations sometimes take the same batch at once. The final drift
//! check reads DynamoDB Local directly. The run fails unless every kind of fault struck.
//!
//! `TALLY_SDK_FAULT_CASES` sets the number of workloads (default 5), `TALLY_SDK_FAULT_SEED`
//! the seed (default fixed), `TALLY_SDK_FAULT_OPS` the longest history (default 80).
#![cfg(feature = "dynamodb-local")]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aggregates::Rules;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client as DynamoDbClient;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::history::{op, records, SHARDS};
use support::proxy::{FaultPlan, FaultProxy};
use support::{drift, drop_table, fresh_table, Rec};
use tally_engine::decode::decode_batch;
use tally_engine::outcome::BatchOutcome;
use tally_engine::outcome::RecordClass;
use tally_engine::store::DynamoTable;
use tally_engine::Engine;

/// A fifth of data-plane requests meet a fault.
const FAULT_RATE: f64 = 0.2;
/// The proxied client's limit per attempt: short, so that held answers time out quickly.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(800);
/// How long the proxy holds a delayed answer: past the attempt timeout.
const HELD_ANSWER: Duration = Duration::from_millis(1300);
/// Standard retry mode, with more attempts than production's 3 and a short first backoff, so that
/// most faults are absorbed by the SDK without the test taking long.
const SDK_MAX_ATTEMPTS: u32 = 4;
const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// An ordinary invocation's time.
const DEADLINE: Duration = Duration::from_secs(20);
/// The range of a short invocation's time, in milliseconds: from less than one round trip (the
/// deadline cuts a commit in flight) to about one attempt timeout (a held answer uses it up).
const SHORT_DEADLINE_MS: std::ops::RangeInclusive<u64> = 10..=1000;
/// Invocations of one batch before the test gives up on it (Lambda would retry until the
/// records expire; this bounds the run).
const MAX_INVOCATIONS: usize = 30;

/// Deliveries made over the run.
#[derive(Debug, Default)]
struct Deliveries {
    invocations: AtomicU64,
    records: AtomicU64,
    /// Invocations that reported `failed_from`, and were redelivered from there.
    partial: AtomicU64,
    whole_redeliveries: AtomicU64,
    stale_redeliveries: AtomicU64,
    concurrent: AtomicU64,
    engine_retries: AtomicU64,
}

impl Deliveries {
    fn add(counter: &AtomicU64, count: usize) {
        counter.fetch_add(count as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Display for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        write!(
            f,
            "{} invocations of {} records; {} reported failed_from and were redelivered from there; {} whole-batch \
             redeliveries, {} stale redeliveries, {} batches taken by two invocations at once; {} retries by the engine past the \
             SDK's own",
            load(&self.invocations),
            load(&self.records),
            load(&self.partial),
            load(&self.whole_redeliveries),
            load(&self.stale_redeliveries),
            load(&self.concurrent),
            load(&self.engine_retries),
        )
    }
}

/// A client of DynamoDB Local through the proxy: the environment's configuration with a short
/// attempt timeout, and the SDK's standard retries.
async fn proxied_client(proxy: &FaultProxy) -> DynamoDbClient {
    let sdk_config = tally_engine::store::sdk_config(Some(&proxy.url()), None).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config)
        .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(ATTEMPT_TIMEOUT).connect_timeout(ATTEMPT_TIMEOUT).build())
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS).with_initial_backoff(SDK_INITIAL_BACKOFF))
        .build();
    DynamoDbClient::from_conf(config)
}

/// One invocation: `recs` through the engine, which gives up at `deadline` from now.
async fn invoke(engine: &Engine<DynamoTable>, table: &str, recs: &[Rec], deadline: Duration, deliveries: &Deliveries) -> BatchOutcome {
    let changes = decode_batch(&support::records(recs, table), table, Rules::university()).expect("test records decode");
    let outcome = engine.process(&changes, tokio::time::Instant::now() + deadline).await;
    Deliveries::add(&deliveries.invocations, 1);
    Deliveries::add(&deliveries.records, recs.len());
    Deliveries::add(&deliveries.engine_retries, outcome.retries as usize);
    outcome
}

/// Delivers `batch` until all of it is applied, as Lambda does: after a reported failure, again
/// from the first unapplied record. Returns how many records the engine applied over all tries.
async fn deliver(engine: &Engine<DynamoTable>, table: &str, batch: &[Rec], first_deadline: Duration, deliveries: &Deliveries) -> u64 {
    let mut from = 0;
    let mut deadline = first_deadline;
    let mut applied = 0;
    for _ in 0..MAX_INVOCATIONS {
        let outcome = invoke(engine, table, &batch[from..], deadline, deliveries).await;
        applied += outcome.count_of(RecordClass::Applied);
        match outcome.failed_from() {
            None => return applied,
            Some(failed_from) => {
                assert!(failed_from < batch.len() - from, "failed_from points past the batch: {outcome:?}");
                Deliveries::add(&deliveries.partial, 1);
                from += failed_from;
                deadline = DEADLINE;
            }
        }
    }
    panic!("a batch of {} records still fails after {MAX_INVOCATIONS} invocations", batch.len());
}

/// Feeds one shard to its engines (two, for batches taken by two invocations at once).
async fn deliver_shard(
    engines: &[Engine<DynamoTable>; 2],
    table: &str,
    recs: &[Rec],
    rng: &mut StdRng,
    max_batch: usize,
    deliveries: &Deliveries,
) {
    let mut position = 0;
    let mut delivered: Vec<(usize, usize)> = Vec::new();
    while position < recs.len() {
        let end = (position + rng.random_range(1..=max_batch)).min(recs.len());
        let batch = &recs[position..end];
        match rng.random_range(0..9) {
            // A short invocation: its time may run out mid-call, and the rest is redelivered.
            0 | 1 => {
                let deadline = Duration::from_millis(rng.random_range(SHORT_DEADLINE_MS));
                deliver(&engines[0], table, batch, deadline, deliveries).await;
            }
            // The whole batch again after it succeeded (its response to Lambda was lost).
            2 => {
                deliver(&engines[0], table, batch, DEADLINE, deliveries).await;
                let applied = deliver(&engines[0], table, batch, DEADLINE, deliveries).await;
                assert_eq!(applied, 0, "a batch delivered again applies nothing");
                Deliveries::add(&deliveries.whole_redeliveries, 1);
            }
            // A stale batch, delivered again after newer ones were applied.
            3 if !delivered.is_empty() => {
                let (from, to) = delivered[rng.random_range(0..delivered.len())];
                let applied = deliver(&engines[0], table, &recs[from..to], DEADLINE, deliveries).await;
                assert_eq!(applied, 0, "a stale batch applies nothing");
                Deliveries::add(&deliveries.stale_redeliveries, 1);
                continue;
            }
            // Two invocations on the same batch at once (the event source mapping and a redrive).
            4 => {
                let (first, second) = futures::join!(
                    deliver(&engines[0], table, batch, DEADLINE, deliveries),
                    deliver(&engines[1], table, batch, DEADLINE, deliveries),
                );
                let records = batch.len() as u64;
                assert!(first + second <= records, "two invocations applied {first} + {second} of {records} records");
                Deliveries::add(&deliveries.concurrent, 1);
            }
            _ => {
                deliver(&engines[0], table, batch, DEADLINE, deliveries).await;
            }
        }
        delivered.push((position, end));
        position = end;
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_stay_exact_through_sdk_level_faults() {
    let cases: u64 = env_number("TALLY_SDK_FAULT_CASES", 5);
    let seed: u64 = env_number("TALLY_SDK_FAULT_SEED", 20_260_322);
    let max_ops: usize = env_number("TALLY_SDK_FAULT_OPS", 80);
    eprintln!("SDK faults: {cases} case(s), seed {seed} (TALLY_SDK_FAULT_SEED), fault rate {FAULT_RATE}");
    let started = std::time::Instant::now();
    let proxy = FaultProxy::in_front_of_dynamodb_local(FaultPlan { rate: FAULT_RATE, seed, delay: HELD_ANSWER }).await;
    let client = proxied_client(&proxy).await;
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(ProptestConfig::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let deliveries = Deliveries::default();
    for case in 0..cases {
        let history = prop::collection::vec(op(), max_ops / 2..=max_ops).new_tree(&mut runner).expect("histories generate").current();
        let (shards, finals) = records(&history);
        // Some cases make one batch several commits, so that faults fall between them.
        let transaction_limit = [100, 3, 8][case as usize % 3];
        let max_batch = 2 + (seed + case) as usize % 10;
        let direct = fresh_table().await;
        let proxied = DynamoTable::new(client.clone(), direct.name(), support::university());
        let before = proxy.counts();
        let runs = shards.iter().enumerate().map(|(shard, recs)| {
            let engines = [(); 2].map(|_| Engine::new(support::university(), proxied.clone()).with_transaction_limit(transaction_limit));
            let deliveries = &deliveries;
            let name = direct.name().to_owned();
            async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (case << 8) ^ shard as u64);
                deliver_shard(&engines, &name, recs, &mut rng, max_batch, deliveries).await;
            }
        });
        futures::future::join_all(runs).await;
        assert_eq!(shards.len(), SHARDS);
        // Straight to DynamoDB Local: the check itself must not meet faults.
        let drift = drift(&direct, Rules::university(), &finals).await;
        drop_table(&direct).await;
        eprintln!(
            "case {case}: {} records over {SHARDS} shards, transactions of at most {transaction_limit} puts, batches of at most \
             {max_batch}: {}",
            history.len(),
            proxy.counts() - before
        );
        assert!(
            drift.is_empty(),
            "case {case} (seed {seed}) drifted:\n{}",
            drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        );
    }
    let counts = proxy.counts();
    eprintln!("SDK faults over the run: {counts}");
    eprintln!("deliveries over the run: {deliveries}");
    eprintln!("took {:.1?}", started.elapsed());
    assert!(
        counts.missing().is_empty(),
        "some faults never struck, so the run proves nothing about them: {:?} ({counts})",
        counts.missing()
    );
    // Not asserted: replays of applied writes average about 5 a default run, and a run without one
    // would fail for want of luck, not for a fault in tally. Long runs show dozens.
    assert!(deliveries.partial.load(Ordering::Relaxed) > 0, "no invocation reported failed_from: {deliveries}");
}
