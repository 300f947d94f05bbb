//! One account's poll loop: when to poll, and what a poll's result does to
//! the metrics, the status board and the log (the poll itself is
//! [`crate::cycle::poll`]). Polls of one account never overlap; each
//! account has its own task, so one slow account stalls no other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::api::{ApiClient, ApiError};
use crate::board::StatusBoard;
use crate::clock::{SharedClock, UnixMillis};
use crate::config::{Account, PollConfig};
use crate::cycle::{self, PollRequest, PollResult};
use crate::metrics::Metrics;
use crate::tracker::JobTracker;

/// The settings a poll needs. They can change while the poller runs
/// (SIGHUP) without losing its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSettings {
    pub interval: Duration,
    pub window: Duration,
    pub page_size: u32,
    pub detail_concurrency: usize,
    pub cycle_timeout: Duration,
    /// How often the whole window is read again; in between, scans start at
    /// the oldest job that has not ended. Zero: always read it all.
    pub full_scan_interval: Duration,
}

impl From<&PollConfig> for PollSettings {
    fn from(p: &PollConfig) -> Self {
        Self {
            interval: p.interval,
            window: p.window,
            page_size: p.page_size,
            detail_concurrency: p.detail_concurrency as usize,
            cycle_timeout: p.cycle_timeout,
            full_scan_interval: p.full_scan_interval,
        }
    }
}

/// One account's poller.
pub struct AccountPoller {
    pub account: Account,
    client: ApiClient,
    tracker: JobTracker,
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    clock: SharedClock,
    settings: PollSettings,
    /// Reason of the last failure, to log a new kind of trouble once.
    failing: Option<&'static str>,
    /// When a poll last set out to read the whole window, whether it got
    /// through or not: a failed attempt (say a window too big for the
    /// deadline) waits for the next interval, and the polls in between
    /// stay incremental instead of each trying the whole window again.
    last_full_scan: Option<UnixMillis>,
}

impl AccountPoller {
    pub fn new(
        account: Account,
        client: ApiClient,
        metrics: Arc<Metrics>,
        board: Arc<StatusBoard>,
        clock: SharedClock,
        settings: PollSettings,
    ) -> Self {
        metrics.register_account(&account.name);
        Self {
            account,
            client,
            tracker: JobTracker::new(),
            metrics,
            board,
            clock,
            settings,
            failing: None,
            last_full_scan: None,
        }
    }

    /// One poll at `now`, with nothing applied unless every call succeeded.
    async fn poll_once(&mut self, now: UnixMillis) -> Result<PollResult, ApiError> {
        let full_scan_due = self.settings.full_scan_interval.is_zero()
            || self.last_full_scan.is_none_or(|t| {
                now.saturating_sub(t) >= self.settings.full_scan_interval.as_millis() as i64
            });
        let request = PollRequest::new(
            &self.tracker,
            now,
            self.settings.window,
            full_scan_due,
            self.settings.page_size,
            self.settings.detail_concurrency,
        );
        if request.whole_window {
            self.last_full_scan = Some(now);
        }
        let result = cycle::poll(&mut self.tracker, &self.client, &request).await?;
        tracing::debug!(account = %self.account.name, pages = result.scan_pages, incremental = !request.whole_window, "scanned");
        Ok(result)
    }

    /// Polls once, updates metrics, the status board and the log.
    pub async fn cycle(&mut self) {
        let started = Instant::now();
        let now = self.clock.now_millis();
        let name = self.account.name.clone();
        let timeout = self.settings.cycle_timeout;
        let result = match tokio::time::timeout(timeout, self.poll_once(now)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Deadline { timeout }),
        };
        match result {
            Ok(PollResult {
                outcome, skipped, ..
            }) => {
                let took = started.elapsed();
                self.metrics.apply_outcome(&name, &outcome);
                self.metrics.jobs_skipped(&name, &skipped);
                self.metrics
                    .poll_succeeded(&name, now as f64 / 1000.0, took);
                self.board.record(&name, now, None);
                if self.failing.take().is_some() {
                    tracing::info!(account = %name, "poll succeeded again");
                }
                tracing::debug!(
                    account = %name,
                    took_ms = took.as_millis() as u64,
                    completions = outcome.completions.len(),
                    tracked = outcome.tracked,
                    baseline = outcome.baseline,
                    "poll done"
                );
            }
            Err(e) => {
                let reason = e.reason();
                self.metrics.poll_failed(&name, reason, started.elapsed());
                self.board.record(&name, now, Some(e.to_string()));
                if self.failing != Some(reason) {
                    tracing::warn!(account = %name, reason, error = %e, "poll failed; keeping the last numbers, nexrender_up is 0");
                } else {
                    tracing::debug!(account = %name, reason, error = %e, "poll failed again");
                }
                self.failing = Some(reason);
            }
        }
    }

    /// Polls every `interval` until `stop` turns true, taking new settings
    /// from `settings` as they come. A cycle longer than the interval delays
    /// the next one; cycles never overlap.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut settings: watch::Receiver<PollSettings>,
    ) {
        let ticker_for = |every: Duration| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let mut ticker = ticker_for(self.settings.interval);
        let mut settings_open = true;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
                changed = settings.changed(), if settings_open => {
                    settings_open = changed.is_ok();
                    if settings_open {
                        let new = settings.borrow_and_update().clone();
                        if new.interval != self.settings.interval {
                            ticker = ticker_for(new.interval);
                            ticker.tick().await; // the first tick is immediate; the next poll waits an interval
                        }
                        self.settings = new;
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = self.cycle() => {}
                _ = stop.changed() => return,
            }
        }
    }
}
