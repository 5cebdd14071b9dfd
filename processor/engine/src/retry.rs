//! When to try again: exponential backoff with jitter, bounded by the invocation's deadline.
//!
//! The SDK retries each request on throttling and 5xx (standard mode, 3 attempts). This loop sits
//! above it and owns what the SDK cannot see: conflicting commits, failed conditions, and
//! transient failures that outlast the SDK's attempts. It is the only user of `backon`.
//!
//! The base wait starts at 15 ms and doubles up to 1.5 s; `backon`'s jitter adds a random 0–100 %
//! of it, so the first wait is 15–30 ms and the longest 1.5–3 s (the same bounds as the ±50 %
//! around 20 ms…2 s this had with `backoff`). No attempt or total-time limit: the deadline is it.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

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

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

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
