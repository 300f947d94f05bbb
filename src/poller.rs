//! One account's poll loop: scan the window, ask the tracker what needs
//! detail, fetch it, apply, update metrics. Polls of one account never
//! overlap; each account has its own task, so one slow account stalls no
//! other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::api::{ApiClient, ApiError, JobId, ListPageQuery, Page, SkipReason};
use crate::clock::{SharedClock, UnixMillis};
use crate::config::{Account, PollConfig};
use crate::metrics::Metrics;
use crate::scan::{ScanBuilder, WindowScan};
use crate::tracker::{Detail, JobTracker, Outcome};

/// An incremental scan starts this much before the oldest job still going.
pub const INCREMENTAL_MARGIN_MS: i64 = 60_000;

/// Pages after the first start this many jobs early, so a job deleted
/// between two page reads (which shifts later offsets left) is not skipped.
pub const PAGE_OVERLAP: usize = 10;

/// What the landing page and `/readyz` know of an account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountState {
    pub name: String,
    pub attempts: u64,
    pub last_attempt: Option<UnixMillis>,
    pub last_success: Option<UnixMillis>,
    /// The last poll's error; `None` when it succeeded.
    pub last_error: Option<String>,
}

/// Shared between the pollers and the HTTP server.
#[derive(Debug, Default)]
pub struct StatusBoard {
    accounts: RwLock<Vec<AccountState>>,
}

impl StatusBoard {
    /// Starts showing an account (added by a reload).
    pub fn add(&self, name: &str) {
        if let Ok(mut accounts) = self.accounts.write() {
            if !accounts.iter().any(|a| a.name == name) {
                accounts.push(AccountState {
                    name: name.to_owned(),
                    ..AccountState::default()
                });
            }
        }
    }

    /// Stops showing an account (removed by a reload).
    pub fn remove(&self, name: &str) {
        if let Ok(mut accounts) = self.accounts.write() {
            accounts.retain(|a| a.name != name);
        }
    }

    pub fn new(names: &[String]) -> Arc<Self> {
        Arc::new(Self {
            accounts: RwLock::new(
                names
                    .iter()
                    .map(|n| AccountState {
                        name: n.clone(),
                        ..AccountState::default()
                    })
                    .collect(),
            ),
        })
    }

    pub fn snapshot(&self) -> Vec<AccountState> {
        self.accounts.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// Every account has finished its first poll attempt.
    pub fn ready(&self) -> bool {
        self.snapshot().iter().all(|a| a.attempts > 0)
    }

    fn record(&self, name: &str, at: UnixMillis, error: Option<String>) {
        if let Ok(mut accounts) = self.accounts.write() {
            if let Some(a) = accounts.iter_mut().find(|a| a.name == name) {
                a.attempts += 1;
                a.last_attempt = Some(at);
                if error.is_none() {
                    a.last_success = Some(at);
                }
                a.last_error = error;
            }
        }
    }
}

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

/// The jobs of one window scan, de-duplicated, oldest first.
#[derive(Debug, Default)]
pub struct Scan {
    pub jobs: WindowScan,
    pub skipped: Vec<SkipReason>,
    pub requests: u64,
}

/// Whether [`page_through`] should read on.
enum Next {
    More,
    Stop,
}

/// Reads the pages of `[from_date, to_date]`, oldest first, handing each to
/// `each` with the number of its first jobs that repeat the previous page.
/// The window is fixed for the whole read, so new jobs cannot shift offsets;
/// pages after the first start [`PAGE_OVERLAP`] jobs early, so a job deleted
/// between two reads cannot push another out of reach. A page shorter than
/// the limit is the end. Returns the number of requests.
async fn page_through(
    client: &ApiClient,
    minimal: bool,
    page_size: u32,
    from_date: UnixMillis,
    to_date: UnixMillis,
    mut each: impl FnMut(Page, usize) -> Result<Next, ApiError>,
) -> Result<u64, ApiError> {
    let limit = page_size as usize;
    let overlap = PAGE_OVERLAP.min(limit / 2);
    let mut next = 0usize;
    let mut requests = 0;
    loop {
        let start = next.saturating_sub(if next == 0 { 0 } else { overlap });
        let page = client
            .list_jobs(&ListPageQuery {
                minimal,
                from: start,
                limit: page_size,
                from_date,
                to_date,
            })
            .await?;
        requests += 1;
        let raw_len = page.raw_len;
        if let Next::Stop = each(page, next - start)? {
            return Ok(requests);
        }
        if raw_len < limit {
            return Ok(requests);
        }
        next = start + raw_len;
    }
}

/// Reads every page of `[from_date, to_date]` (minimal jobs), oldest first,
/// with ids de-duplicated; `expected` is how many jobs to make room for.
/// An API that answers the same full pages again
/// whatever the offset is not paging: an error, not an endless loop.
pub async fn scan_window(
    client: &ApiClient,
    page_size: u32,
    from_date: UnixMillis,
    to_date: UnixMillis,
    expected: usize,
) -> Result<Scan, ApiError> {
    let mut builder = ScanBuilder::new(page_size as usize, expected);
    let requests = page_through(
        client,
        true,
        page_size,
        from_date,
        to_date,
        |page, repeats| {
            builder
                .add_page(page, repeats)
                .map_err(|e| ApiError::Decode {
                    endpoint: "list_jobs",
                    detail: e.to_string(),
                })?;
            Ok(Next::More)
        },
    )
    .await?;
    let (jobs, skipped) = builder.finish();
    Ok(Scan {
        jobs,
        skipped,
        requests,
    })
}

/// Below this many look-ups in a stretch of the window, single `GET
/// /jobs/{id}` calls are cheaper than reading full pages.
pub const BATCH_MIN: usize = 8;
/// A stretch of the window is read as full pages only when each page
/// replaces at least this many single look-ups.
pub const LOOKUPS_PER_PAGE: usize = 4;

/// Which look-ups to read from full pages rather than one by one: the
/// newest ones, as far back as each page of the stretch (from the oldest of
/// them to the end of the scan) still replaces [`LOOKUPS_PER_PAGE`] look-ups.
/// `positions` are where the jobs to look up are in a scan of `scan_len`
/// jobs. Returns the scan position where that stretch starts, if it is
/// worth it.
pub fn batch_start(
    positions: &[Option<usize>],
    scan_len: usize,
    page_size: usize,
) -> Option<usize> {
    let mut positions: Vec<usize> = positions.iter().flatten().copied().collect();
    positions.sort_unstable_by(|a, b| b.cmp(a));
    let mut best = None;
    for (n, &pos) in positions.iter().enumerate() {
        let count = n + 1;
        let pages = scan_len.saturating_sub(pos).div_ceil(page_size.max(1));
        if count >= BATCH_MIN && count >= pages * LOOKUPS_PER_PAGE {
            best = Some(pos);
        }
    }
    best
}

/// Reads full (non-minimal) pages of `[from_date, to_date]` and keeps the
/// jobs in `wanted`: many look-ups for the price of a few pages.
pub async fn details_from_pages(
    client: &ApiClient,
    page_size: u32,
    from_date: UnixMillis,
    to_date: UnixMillis,
    wanted: &HashSet<JobId>,
) -> Result<HashMap<JobId, Detail>, ApiError> {
    let mut out = HashMap::new();
    page_through(client, false, page_size, from_date, to_date, |page, _| {
        for job in page.jobs {
            if wanted.contains(&job.id) {
                out.insert(job.id.clone(), Detail::Found(job));
            }
        }
        Ok(if out.len() == wanted.len() {
            Next::Stop
        } else {
            Next::More
        })
    })
    .await?;
    Ok(out)
}

/// `GET /jobs/{id}` for each id, `concurrency` at a time. The first failure
/// fails the lot (the poll is then retried whole next cycle).
pub async fn fetch_details(
    client: &ApiClient,
    ids: Vec<JobId>,
    concurrency: usize,
) -> Result<HashMap<JobId, Detail>, ApiError> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for id in ids {
        let client = client.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = client.get_job(&id).await;
            (id, r)
        });
    }
    let mut out = HashMap::new();
    while let Some(joined) = set.join_next().await {
        let Ok((id, r)) = joined else { continue };
        match r {
            Ok(Some(job)) => {
                out.insert(id, Detail::Found(job));
            }
            Ok(None) => {
                out.insert(id, Detail::Gone);
            }
            Err(e) => {
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(out)
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
    pub async fn poll_once(
        &mut self,
        now: UnixMillis,
    ) -> Result<(Outcome, Vec<SkipReason>), ApiError> {
        let window_start = now - self.settings.window.as_millis() as i64;
        let full_due = self.settings.full_scan_interval.is_zero()
            || self
                .last_full_scan
                .is_none_or(|t| now - t >= self.settings.full_scan_interval.as_millis() as i64);
        // Incremental: from the oldest job still going, less a minute against
        // clock differences between the API's createdAt and the id's time.
        let incremental = (!full_due)
            .then(|| self.tracker.scan_from())
            .flatten()
            .map(|from| (from - INCREMENTAL_MARGIN_MS).max(window_start));
        let scan_from = incremental.unwrap_or(window_start);
        if incremental.is_none() {
            self.last_full_scan = Some(now);
        }
        // A whole-window scan is about as long as the last one.
        let expected = if incremental.is_some() {
            0
        } else {
            self.tracker.len()
        };
        let scan = scan_window(
            &self.client,
            self.settings.page_size,
            scan_from,
            now,
            expected,
        )
        .await?;
        let mut need = self.tracker.plan(&scan.jobs);
        // Many look-ups among recent jobs: read them as full pages instead.
        let mut details = HashMap::new();
        let positions = scan.jobs.positions(&need);
        let page_size = self.settings.page_size as usize;
        if let Some(pos) = batch_start(&positions, scan.jobs.len(), page_size) {
            let from = scan
                .jobs
                .get(pos)
                .and_then(|j| j.id.created_hint())
                .map_or(scan_from, |c| (c - INCREMENTAL_MARGIN_MS).max(scan_from));
            let wanted: HashSet<JobId> = need
                .iter()
                .zip(&positions)
                .filter(|(_, p)| p.is_some_and(|p| p >= pos))
                .map(|(id, _)| id.clone())
                .collect();
            details = details_from_pages(&self.client, self.settings.page_size, from, now, &wanted)
                .await?;
            need.retain(|id| !details.contains_key(id));
        }
        details.extend(fetch_details(&self.client, need, self.settings.detail_concurrency).await?);
        let outcome = self.tracker.apply(&scan.jobs, &details, window_start, now);
        tracing::debug!(account = %self.account.name, pages = scan.requests, incremental = incremental.is_some(), "scanned");
        Ok((outcome, scan.skipped))
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
            Ok((outcome, skipped)) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::ScanEntry;
    use crate::status::JobStatus;

    fn id(i: usize) -> JobId {
        JobId::Ulid(ulid::Ulid::from_parts(1_767_225_600_000 + i as u64, 7))
    }

    fn scan(n: usize) -> WindowScan {
        let entries = (0..n)
            .map(|i| ScanEntry {
                id: id(i),
                status: JobStatus::Queued,
            })
            .collect();
        WindowScan::new(entries).0
    }

    fn ids(range: impl Iterator<Item = usize>) -> Vec<JobId> {
        range.map(id).collect()
    }

    fn start(scan: &WindowScan, need: &[JobId]) -> Option<usize> {
        batch_start(&scan.positions(need), scan.len(), 1000)
    }

    #[test]
    fn jobs_without_a_ulid_are_batched_the_same() {
        let entries = (0..10_000)
            .map(|i| ScanEntry {
                id: JobId::Other(format!("j{i}").into()),
                status: JobStatus::Queued,
            })
            .collect();
        let scan = WindowScan::new(entries).0;
        let need: Vec<JobId> = (9_900..10_000)
            .map(|i| JobId::Other(format!("j{i}").into()))
            .collect();
        assert_eq!(start(&scan, &need), Some(9_900));
    }

    #[test]
    fn a_few_look_ups_stay_single_calls() {
        assert_eq!(start(&scan(10_000), &ids(9_990..9_997)), None);
    }

    #[test]
    fn many_recent_look_ups_are_read_as_the_last_pages() {
        // 400 jobs to look up among the newest 1500 of 100,000: two pages.
        let need = ids((98_500..100_000).step_by(4));
        assert_eq!(start(&scan(100_000), &need), Some(98_500));
    }

    #[test]
    fn an_old_straggler_is_left_to_a_single_call() {
        // The newest 40 are worth one page; the one 50,000 jobs back is not
        // worth 50 pages.
        let mut need = ids(99_960..100_000);
        need.extend(ids(50_000..50_001));
        assert_eq!(start(&scan(100_000), &need), Some(99_960));
    }
}
