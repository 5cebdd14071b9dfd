//! Progress of long commands on stderr: a bar on a terminal, plain lines otherwise (CI logs, pipes).
//! [`Stages`] shows a job of [`tally_jobs`] that way, one stage after another.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

/// The progress of one count of work (files, writes, items) toward a total, if known.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Plain lines when there is no bar and the command is not quiet.
    plain: bool,
    unit: &'static str,
    total: u64,
    done: AtomicU64,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// `total` 0 means unknown. With `quiet` nothing is shown.
    pub fn new(total: u64, unit: &'static str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = if total > 0 { ProgressBar::new(total) } else { ProgressBar::new_spinner() };
            let template = if total > 0 {
                "{elapsed_precise} [{bar:40}] {pos}/{len} {msg} ({per_sec})"
            } else {
                "{elapsed_precise} {spinner} {pos} {msg} ({per_sec})"
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
            bar.set_message(unit);
            bar
        });
        let plain = !quiet && bar.is_none();
        Progress { bar, plain, unit, total, done: AtomicU64::new(0), last_line: Mutex::new(Instant::now()) }
    }

    /// Counts `by` more done: on the bar, or in a plain line at most every 2 s.
    pub fn advance(&self, by: u64) {
        let done = self.done.fetch_add(by, Ordering::Relaxed) + by;
        if let Some(bar) = &self.bar {
            bar.inc(by);
            return;
        }
        if !self.plain {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.elapsed() >= PLAIN_INTERVAL {
            *last = Instant::now();
            self.line(done);
        }
    }

    /// Clears the bar, or prints the last plain line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        } else if self.plain {
            self.line(self.done.load(Ordering::Relaxed));
        }
    }

    fn line(&self, done: u64) {
        if self.total > 0 {
            eprintln!("progress: {done}/{} {}", self.total, self.unit);
        } else {
            eprintln!("progress: {done} {}", self.unit);
        }
    }
}

/// The progress of a job of [`tally_jobs`]: each stage it begins shown as a [`Progress`] of its
/// own, finished when the stage is.
#[derive(Debug)]
pub struct Stages {
    quiet: bool,
    current: Mutex<Option<Progress>>,
}

impl Stages {
    /// With `quiet` nothing is shown.
    pub fn new(quiet: bool) -> Self {
        Stages { quiet, current: Mutex::new(None) }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Progress>> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl tally_jobs::Progress for Stages {
    fn begin(&self, total: u64, unit: &'static str) {
        *self.current() = Some(Progress::new(total, unit, self.quiet));
    }

    fn advance(&self, steps: u64) {
        if let Some(progress) = self.current().as_ref() {
            progress.advance(steps);
        }
    }

    fn finish(&self) {
        if let Some(progress) = self.current().take() {
            progress.finish();
        }
    }
}
