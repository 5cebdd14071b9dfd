//! When to try again: exponential backoff with jitter, bounded by the invocation's deadline.
//!
//! The SDK retries each request on throttling and 5xx (standard mode, 3 attempts). The loops above
//! it own what the SDK cannot see: conflicting commits, failed conditions, and transient failures
//! that outlast the SDK's attempts. Each acts on [`StoreError::verdict`], and waits with a
//! [`RetryBudget`]; [`retry_until`] is the whole loop for a request sent again as it is. This
//! module is the only user of `backon`.
//!
//! The base wait starts at 15 ms and doubles up to 1.5 s; `backon`'s jitter adds a random 0–100 %
//! of it, so the first wait is 15–30 ms and the longest 1.5–3 s (the same bounds as the ±50 %
//! around 20 ms…2 s this had with `backoff`). No attempt or total-time limit: the deadline is it.

use std::time::{Duration, SystemTime};

use std::future::Future;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::store::{StoreError, Verdict};

/// Waits before retries: 15 ms doubling to 1.5 s, each plus a random 0–100 % jitter.
const BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(15))
    .with_factor(2.0)
    .with_max_delay(Duration::from_millis(1500))
    .with_jitter()
    .without_max_times();

/// Backoff state for one batch.
#[derive(Debug)]
pub struct RetryBudget {
    deadline: Instant,
    backoff: ExponentialBackoff,
}

/// The deadline would pass before the next attempt could finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline reached before the next attempt")]
pub struct DeadlineReached;

impl RetryBudget {
    /// A budget that ends at `deadline`, its first wait a short one.
    pub fn new(deadline: Instant) -> Self {
        RetryBudget { deadline, backoff: BACKOFF.build() }
    }

    /// Retries bounded only by the caller's own count.
    pub fn unbounded() -> Self {
        RetryBudget::within(Duration::from_secs(24 * 3600))
    }

    /// A budget that ends `time` from now.
    pub fn within(time: Duration) -> Self {
        RetryBudget::new(Instant::now() + time)
    }

    /// When the budget ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has come.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Sleeps for the next backoff interval, or fails at once if that would pass the deadline.
    pub async fn pause(&mut self) -> Result<(), DeadlineReached> {
        let delay = self.backoff.next().ok_or(DeadlineReached)?;
        if Instant::now() + delay >= self.deadline {
            return Err(DeadlineReached);
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// After progress, the next failure starts again from a short wait.
    pub fn reset(&mut self) {
        self.backoff = BACKOFF.build();
    }
}

/// Time kept back from a Lambda invocation's deadline to report failures before Lambda ends it.
const MAX_SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// Deadlines below this (in ms) cannot be epoch times (they fall before 2001): runtime emulators,
/// cargo-lambda's among them, send the time budget itself (`600000`) rather than an epoch instant.
const EPOCH_DEADLINE_FLOOR_MS: u64 = 1_000_000_000_000;

/// The instant a Lambda handler stops retrying: the invocation's deadline (epoch ms, the
/// runtime's `Lambda-Runtime-Deadline-Ms`, `lambda_runtime::Context::deadline`) less a margin of
/// a fifth of the time left, at most 3 s, to report what was not applied.
pub fn lambda_deadline(deadline_ms: u64) -> Instant {
    let remaining = if deadline_ms < EPOCH_DEADLINE_FLOOR_MS {
        Duration::from_millis(deadline_ms)
    } else {
        (SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms)).duration_since(SystemTime::now()).unwrap_or_default()
    };
    Instant::now() + remaining - (remaining / 5).min(MAX_SAFETY_MARGIN)
}

/// Why [`retry_until`] stopped without a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RetryError {
    /// A failure that sending the request again cannot mend ([`StoreError::verdict`] is not
    /// [`Verdict::Retry`]).
    #[error(transparent)]
    Failed(StoreError),
    /// Still failing transiently when the budget left no time for another attempt.
    #[error("giving up after retries: {0}: deadline reached before the next attempt")]
    GaveUp(StoreError),
}

impl RetryError {
    /// Whether the budget ran out while the failure was still transient.
    pub fn is_gave_up(&self) -> bool {
        matches!(self, RetryError::GaveUp(_))
    }
}

/// Runs `attempt` until it succeeds or fails with a failure that is not worth sending again as
/// it is, pausing between attempts as `budget` says, and giving up when it leaves no time for
/// another attempt.
///
/// # Errors
/// [`RetryError::Failed`] with a failure whose verdict is not [`Verdict::Retry`];
/// [`RetryError::GaveUp`] with the last transient failure when the budget ran out.
pub async fn retry_until<T, Fut>(budget: &mut RetryBudget, mut attempt: impl FnMut() -> Fut) -> Result<T, RetryError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if err.verdict() == Verdict::Retry => {
                tracing::debug!(error = %err, "Transient DynamoDB failure; retrying.");
                if budget.pause().await.is_err() {
                    return Err(RetryError::GaveUp(err));
                }
            }
            Err(err) => return Err(RetryError::Failed(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_grow_and_stop_at_the_deadline() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(start + Duration::from_secs(10));
        let mut waits = Vec::new();
        loop {
            let before = Instant::now();
            if budget.pause().await.is_err() {
                break;
            }
            waits.push(Instant::now() - before);
        }
        assert!(waits.len() >= 5, "{waits:?}");
        assert!(waits[4] > waits[0]);
        assert!(Instant::now() < start + Duration::from_secs(10));
        assert!(waits.iter().all(|wait| *wait <= Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_until_sends_again_only_what_is_transient_and_stops_at_the_budget() {
        use crate::store::error::Failure;
        let transient = || StoreError::Transient(Failure::new("TransactWriteItems", "throttled"));
        let mut attempts = 0;
        let mut budget = RetryBudget::within(Duration::from_secs(60));
        let landed = retry_until(&mut budget, || {
            attempts += 1;
            let outcome = if attempts < 3 { Err(transient()) } else { Ok(attempts) };
            async move { outcome }
        })
        .await;
        assert_eq!(landed.expect("lands on the third attempt"), 3);

        let mut attempts = 0;
        let refused = retry_until(&mut budget, || {
            attempts += 1;
            async { Err::<(), _>(StoreError::Permanent(Failure::new("TransactWriteItems", "AccessDenied"))) }
        })
        .await;
        assert!(matches!(refused, Err(RetryError::Failed(StoreError::Permanent(_)))), "{refused:?}");
        assert_eq!(attempts, 1, "a permanent failure is not sent again");

        let started = Instant::now();
        let mut budget = RetryBudget::within(Duration::from_secs(5));
        let gave_up = retry_until(&mut budget, || async { Err::<(), _>(transient()) }).await.unwrap_err();
        assert!(gave_up.is_gave_up() && gave_up.to_string().starts_with("giving up after retries: transient"), "{gave_up}");
        assert!(Instant::now() - started < Duration::from_secs(5));
    }

    fn epoch_ms(at: SystemTime) -> u64 {
        at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis() as u64
    }

    #[test]
    fn keeps_a_margin_before_lambdas_deadline() {
        let now = Instant::now();
        let left = lambda_deadline(epoch_ms(SystemTime::now() + Duration::from_secs(60))) - now;
        assert!(left > Duration::from_millis(56_900) && left < Duration::from_millis(57_100), "{left:?}");
        let short = lambda_deadline(epoch_ms(SystemTime::now() + Duration::from_secs(1))) - Instant::now();
        assert!(short <= Duration::from_millis(800), "{short:?}");
        assert!(lambda_deadline(epoch_ms(SystemTime::now() - Duration::from_secs(5))) <= Instant::now());
    }

    #[test]
    fn an_emulators_relative_budget_is_a_budget() {
        let left = lambda_deadline(600_000) - Instant::now();
        assert!(left > Duration::from_millis(596_900) && left <= Duration::from_secs(597), "{left:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn reset_returns_to_short_waits() {
        let mut budget = RetryBudget::new(Instant::now() + Duration::from_secs(60));
        for _ in 0..6 {
            budget.pause().await.unwrap();
        }
        budget.reset();
        let before = Instant::now();
        budget.pause().await.unwrap();
        assert!(Instant::now() - before <= Duration::from_millis(30));
    }
}
