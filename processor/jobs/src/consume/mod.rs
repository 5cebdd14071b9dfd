//! Consume: a stream consumer that behaves like Lambda's event source mapping, for local
//! development, end-to-end tests and running tally outside Lambda.
//!
//! Shards are read parent before child; records are batched (`batch_size`, `batch_window`) and
//! handed to the same decode + engine path as the Lambda handler. A batch that reports failures
//! is retried from its first failed record; a batch that cannot be decoded (a function error) is
//! bisected; after `max_retries` the batch's positions go to the [`failure_log`], in the shape of
//! Lambda's on-failure destination message, for `tally redrive`. Checkpoints are durable, so a
//! restart resumes after the last applied record; the engine's ledgers make any overlap harmless.

pub mod failure_log;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::dynamodb::EventRecord;
use serde::Serialize;

use crate::error::ConsumeError;
use failure_log::FailureMessage;
use tally_engine::outcome::{Cause, Totals};
use tally_engine::retry::RetryBudget;
use tally_engine::store::checkpoints::{Checkpoint, Checkpoints};
use tally_engine::store::Store;
use tally_engine::stream::{Position, StreamError, StreamReader, EMPTY_PAGES_CAUGHT_UP};
use tally_engine::Engine;

/// How the consumer reads and delivers, as Lambda's event source mapping is configured.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Where to start a shard that has no checkpoint.
    pub from: Position,
    /// Most records in one batch.
    pub batch_size: usize,
    /// How long records are gathered into a batch before a partial one is delivered.
    pub batch_window: Duration,
    /// Retries of a failing batch before its positions go to the failure log.
    pub max_retries: u32,
    /// Time the engine gets per batch attempt (Lambda's function timeout).
    pub batch_timeout: Duration,
    /// Return once every shard is drained, instead of running until stopped.
    pub until_caught_up: bool,
    /// How long to wait before reading the stream again when no shard had anything new.
    pub poll_interval: Duration,
    /// The file positions of batches that exhausted their retries are appended to.
    pub failure_log: PathBuf,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct ConsumeSummary {
    /// Batches delivered to the engine.
    pub batches: u64,
    /// What became of their records.
    #[serde(flatten)]
    pub totals: Totals,
    /// Redeliveries of batches that reported failures.
    pub retries: u64,
    /// Batches split in two because they could not be decoded.
    pub bisections: u64,
    /// Records whose positions went to the failure log.
    pub records_to_failure_log: u64,
    /// Closed shards read to their end.
    pub shards_finished: u64,
}

/// Reads one stream, shard by shard, into an engine, checkpointing as it goes.
pub struct Consumer<'a, T> {
    engine: &'a Engine<T>,
    reader: StreamReader,
    checkpoints: Checkpoints,
    positions: HashMap<String, Checkpoint>,
    options: ConsumeOptions,
    stop: Arc<AtomicBool>,
    summary: ConsumeSummary,
}

impl<T> std::fmt::Debug for Consumer<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("stream", &self.reader.arn()).field("options", &self.options).finish()
    }
}

/// How far [`Consumer::drain`] read a shard.
enum Drained {
    Finished,
    CaughtUp,
    Stopped,
}

impl<'a, T: Store> Consumer<'a, T> {
    /// A consumer of `reader`'s stream into `engine`, resuming from `checkpoints`, that stops
    /// after the batch in flight once `stop` is set.
    pub fn new(
        engine: &'a Engine<T>,
        reader: StreamReader,
        checkpoints: Checkpoints,
        options: ConsumeOptions,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Consumer { engine, reader, checkpoints, positions: HashMap::new(), options, stop, summary: ConsumeSummary::default() }
    }

    /// Runs until caught up (with `until_caught_up`) or until `stop` is set, finishing the batch in flight.
    ///
    /// # Errors
    /// [`ConsumeError`] when the checkpoints or the stream cannot be read or written, the failure
    /// log cannot be written, or a batch is left unapplied for a reason retrying cannot fix
    /// ([`ConsumeError::is_not_applied`]): the checkpoint then stays before it.
    pub async fn run(mut self) -> Result<ConsumeSummary, ConsumeError> {
        self.positions = self.checkpoints.load().await.map_err(ConsumeError::LoadCheckpoints)?;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let shards = self.reader.shards().await?;
            let ids: HashSet<&str> = shards.iter().filter_map(|shard| shard.shard_id()).collect();
            let finished =
                |id: &str, positions: &HashMap<String, Checkpoint>| positions.get(id).is_some_and(|checkpoint| checkpoint.finished);
            // A child waits for its parent, unless the parent has left the stream (trimmed).
            let ready: Vec<String> = shards
                .iter()
                .filter_map(|shard| {
                    let id = shard.shard_id()?;
                    let parent_done =
                        shard.parent_shard_id().is_none_or(|parent| !ids.contains(parent) || finished(parent, &self.positions));
                    (!finished(id, &self.positions) && parent_done).then(|| id.to_owned())
                })
                .collect();
            let mut finished_some = false;
            for shard in &ready {
                match self.drain(shard).await? {
                    Drained::Finished => finished_some = true,
                    Drained::CaughtUp => {}
                    Drained::Stopped => return Ok(self.summary),
                }
            }
            if self.options.until_caught_up && !finished_some {
                break;
            }
            if !finished_some {
                tokio::time::sleep(self.options.poll_interval).await;
            }
        }
        Ok(self.summary)
    }

    /// Reads `shard` from its position, delivering batches, until it ends, is caught up, or the
    /// consumer is stopped.
    async fn drain(&mut self, shard: &str) -> Result<Drained, ConsumeError> {
        let mut position = self.position(shard);
        let mut iterator =
            self.reader.iterator(shard, &position).await.map_err(|source| ConsumeError::OpenShard { shard: shard.to_owned(), source })?;
        let mut buffer: Vec<EventRecord> = Vec::new();
        let mut buffered_since = Instant::now();
        let mut empty_pages = 0;
        loop {
            let Some(current) = iterator.take() else {
                self.flush(shard, &mut buffer).await?;
                self.save(shard, true).await?;
                self.summary.shards_finished += 1;
                return Ok(Drained::Finished);
            };
            let page = match self.reader.page(&current, self.options.batch_size.min(1000) as i32).await {
                Ok(page) => page,
                Err(StreamError::ExpiredIterator) => {
                    self.flush(shard, &mut buffer).await?;
                    position = self.position(shard);
                    iterator = self.reader.iterator(shard, &position).await?;
                    continue;
                }
                Err(source) => return Err(ConsumeError::ReadShard { shard: shard.to_owned(), source }),
            };
            if buffer.is_empty() {
                buffered_since = Instant::now();
            }
            empty_pages = if page.records.is_empty() { empty_pages + 1 } else { 0 };
            buffer.extend(page.records);
            iterator = page.next;
            let window_over = buffered_since.elapsed() >= self.options.batch_window;
            if buffer.len() >= self.options.batch_size || window_over || empty_pages > 0 || iterator.is_none() {
                self.flush(shard, &mut buffer).await?;
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Drained::Stopped);
            }
            if iterator.is_some() && empty_pages >= EMPTY_PAGES_CAUGHT_UP {
                return Ok(Drained::CaughtUp);
            }
        }
    }

    /// Where to read `shard` from: after its checkpoint, or where options say.
    fn position(&self, shard: &str) -> Position {
        match self.positions.get(shard).and_then(|checkpoint| checkpoint.sequence.clone()) {
            Some(sequence) => Position::After(sequence),
            None => self.options.from.clone(),
        }
    }

    /// Saves `shard`'s checkpoint at its position in memory, `finished` once it is read to its end.
    async fn save(&mut self, shard: &str, finished: bool) -> Result<(), ConsumeError> {
        let checkpoint = self.positions.entry(shard.to_owned()).or_default();
        checkpoint.finished |= finished;
        self.checkpoints.save(shard, checkpoint).await.map_err(|source| ConsumeError::SaveCheckpoint { shard: shard.to_owned(), source })
    }

    /// Delivers the buffered records in batches and checkpoints after each.
    ///
    /// A checkpoint write is itself a stream record. A batch of nothing but tally's bookkeeping
    /// records (checkpoints, ledgers) therefore moves the position in memory only: writing a
    /// checkpoint for it would feed the stream a record that asks for another checkpoint, forever.
    async fn flush(&mut self, shard: &str, buffer: &mut Vec<EventRecord>) -> Result<(), ConsumeError> {
        let records = std::mem::take(buffer);
        for batch in records.chunks(self.options.batch_size.max(1)) {
            self.deliver(shard, batch).await?;
            let last = batch.last().and_then(|record| record.change.sequence_number.clone());
            self.positions.entry(shard.to_owned()).or_default().sequence = last;
            if !batch.iter().all(|record| is_bookkeeping(self.engine.rules(), record)) {
                self.save(shard, false).await?;
            }
        }
        Ok(())
    }

    /// One batch, with Lambda's semantics: retry from the reported failure point, bisect on a
    /// function error, and after `max_retries` send the positions to the failure log.
    async fn deliver(&mut self, shard: &str, batch: &[EventRecord]) -> Result<(), ConsumeError> {
        self.summary.batches += 1;
        let mut queue: VecDeque<(usize, usize)> = VecDeque::from([(0, batch.len())]);
        let mut attempts = 0;
        let mut budget = RetryBudget::unbounded();
        while let Some((start, end)) = queue.pop_front() {
            let records = &batch[start..end];
            let outcome = match self.engine.apply(records, tokio::time::Instant::now() + self.options.batch_timeout).await {
                Ok(outcome) => outcome,
                Err(err) if records.len() == 1 => {
                    tracing::error!(shard, error = %err, "Record cannot be identified; its position goes to the failure log.");
                    self.log_failure(shard, records, attempts, &err.to_string())?;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(shard, error = %err, records = records.len(), "Batch cannot be decoded; bisecting.");
                    self.summary.bisections += 1;
                    let middle = start + records.len() / 2;
                    queue.push_front((middle, end));
                    queue.push_front((start, middle));
                    continue;
                }
            };
            self.summary.totals.add(&outcome);
            let Some(failure) = outcome.failure else { continue };
            if let Some(Cause::Store(_)) = &failure.cause {
                // Retrying cannot fix it, and every later batch would fail alike: stop before the
                // checkpoint moves past this batch, so that a run after the fix resumes here.
                return Err(ConsumeError::NotApplied { shard: shard.to_owned(), records: records.len(), failure: Box::new(failure) });
            }
            let failed_from = failure.from;
            attempts += 1;
            let reason = failure.to_string();
            if !failure.is_retryable() || attempts > self.options.max_retries {
                tracing::error!(
                    shard,
                    attempts,
                    failure = reason,
                    "Batch failed for good or after its retries; positions go to the failure log."
                );
                self.log_failure(shard, &records[failed_from..], attempts, &reason)?;
                continue;
            }
            tracing::warn!(shard, attempts, failed_from, failure = reason, "Batch partly applied; retrying from the failure point.");
            self.summary.retries += 1;
            budget.pause().await.ok();
            queue.push_front((start + failed_from, end));
        }
        Ok(())
    }

    /// Appends `records`' positions to the failure log, as Lambda's on-failure destination would
    /// receive them.
    fn log_failure(&mut self, shard: &str, records: &[EventRecord], attempts: u32, reason: &str) -> Result<(), ConsumeError> {
        self.summary.records_to_failure_log += records.len() as u64;
        FailureMessage::new(self.reader.arn(), shard, records, attempts, reason).append_to(&self.options.failure_log)
    }
}

/// Whether `record` is at a key under the bookkeeping prefix (a ledger, a checkpoint...): the
/// checkpoint policy only, by key alone. Whether such an item is tally's is the registry's to say
/// (`tally_engine::registry::own_item`), and the engine asks it; here a batch of nothing but such
/// keys only decides not to write a checkpoint, which would be one more such record.
fn is_bookkeeping(rules: &aggregates::Rules, record: &EventRecord) -> bool {
    let key = |name| match record.change.keys.get(name) {
        Some(serde_dynamo::AttributeValue::S(value)) => value.as_str(),
        _ => "",
    };
    rules.owner(key(rules.table().pk()), key(rules.table().sk())) == aggregates::KeyOwner::Bookkeeping
}
