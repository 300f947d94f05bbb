//! One poll of one account, from the first page to the applied outcome:
//! page through the window, put the scan together, plan the look-ups,
//! choose which to read as full pages, read them, apply.
//!
//! The only I/O is the [`JobSource`] handed in. The poller hands in the API
//! client; the `poll_cycle` benchmark and the `polls` fuzz target hand in
//! answers from memory. All three run this very code, so what is measured
//! and fuzzed is what runs in production. No clock: `now` comes in the
//! [`PollRequest`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::api::{ApiClient, ApiError, ApiJob, JobId, ListPageQuery, Page, SkipReason};
use crate::clock::UnixMillis;
use crate::scan::{ScanBuilder, WindowScan};
use crate::tracker::{Detail, JobTracker, Outcome};

/// An incremental scan starts this much before the oldest job still going.
pub const INCREMENTAL_MARGIN_MS: i64 = 60_000;

/// Pages after the first start this many jobs early, so a job deleted
/// between two page reads (which shifts later offsets left) is not skipped.
pub const PAGE_OVERLAP: usize = 10;

/// Below this many look-ups in a stretch of the window, single `GET
/// /jobs/{id}` calls are cheaper than reading full pages.
const BATCH_MIN: usize = 8;
/// A stretch of the window is read as full pages only when each page
/// replaces at least this many single look-ups.
const LOOKUPS_PER_PAGE: usize = 4;

/// Where a poll reads jobs from: `GET /jobs` pages and `GET /jobs/{id}`.
pub trait JobSource: Sync {
    fn list_jobs(
        &self,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// `Ok(None)`: the job does not exist (404).
    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send;
}

impl JobSource for ApiClient {
    fn list_jobs(
        &self,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send {
        ApiClient::list_jobs(self, query)
    }

    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
        ApiClient::get_job(self, id)
    }
}

/// What one poll is to read, decided before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    pub now: UnixMillis,
    /// `now` less the window: terminal jobs created before it are forgotten.
    pub window_start: UnixMillis,
    /// The scan's `from_date`: the window's start, or for an incremental
    /// scan the oldest job still going (less [`INCREMENTAL_MARGIN_MS`]).
    pub scan_from: UnixMillis,
    /// Reads the whole window, not only its unfinished end.
    pub whole_window: bool,
    pub page_size: u32,
    /// `GET /jobs/{id}` calls in flight at once.
    pub detail_concurrency: usize,
}

impl PollRequest {
    /// The poll to make at `now` with `tracker`'s bookkeeping: the whole
    /// window when `full_scan_due` (or nothing is known yet), else from the
    /// oldest job that has not ended, less a minute against clock
    /// differences between the API's `createdAt` and the id's time.
    pub fn new(
        tracker: &JobTracker,
        now: UnixMillis,
        window: Duration,
        full_scan_due: bool,
        page_size: u32,
        detail_concurrency: usize,
    ) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let window_start = now.saturating_sub(window_ms);
        let incremental = (!full_scan_due)
            .then(|| tracker.scan_from())
            .flatten()
            .map(|from| from.saturating_sub(INCREMENTAL_MARGIN_MS).max(window_start));
        PollRequest {
            now,
            window_start,
            scan_from: incremental.unwrap_or(window_start),
            whole_window: incremental.is_none(),
            page_size,
            detail_concurrency,
        }
    }
}

/// What a poll did, once applied.
#[derive(Debug)]
pub struct PollResult {
    pub outcome: Outcome,
    /// Jobs left out of the scan, by reason.
    pub skipped: Vec<SkipReason>,
    /// Minimal pages read for the scan.
    pub scan_pages: u64,
}

/// One poll: nothing is applied to `tracker` unless every read succeeded.
pub async fn poll(
    tracker: &mut JobTracker,
    source: &impl JobSource,
    request: &PollRequest,
) -> Result<PollResult, ApiError> {
    let PollRequest {
        now,
        window_start,
        scan_from,
        whole_window,
        page_size,
        detail_concurrency,
    } = *request;
    // A whole-window scan is about as long as the last one.
    let expected = if whole_window { tracker.len() } else { 0 };
    let read = scan_window(
        source,
        tracker.scan_builder(page_size as usize, expected),
        scan_from,
        now,
    )
    .await?;
    let mut need = tracker.plan(&read.scan);
    // Many look-ups among recent jobs: read them as full pages instead.
    let mut details = HashMap::new();
    let positions = read.scan.positions(&need);
    if let Some(pos) = batch_start(&positions, read.scan.len(), page_size as usize) {
        let from = read
            .scan
            .get(pos)
            .and_then(|job| job.id.created_hint())
            .map_or(scan_from, |created| {
                created.saturating_sub(INCREMENTAL_MARGIN_MS).max(scan_from)
            });
        let wanted: HashSet<JobId> = need
            .iter()
            .zip(&positions)
            .filter(|(_, at)| at.is_some_and(|at| at >= pos))
            .map(|(id, _)| id.clone())
            .collect();
        details = details_from_pages(source, page_size, from, now, &wanted).await?;
        need.retain(|id| !details.contains_key(id));
    }
    details.extend(fetch_details(source, need, detail_concurrency).await?);
    let outcome = tracker.apply(&read.scan, &details, window_start, now);
    Ok(PollResult {
        outcome,
        skipped: read.skipped,
        scan_pages: read.requests,
    })
}

/// The jobs of one window scan, de-duplicated, oldest first.
#[derive(Debug)]
pub struct ScanRead {
    pub scan: WindowScan,
    pub skipped: Vec<SkipReason>,
    /// Pages read.
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
    source: &impl JobSource,
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
        let page = source
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

/// Reads every minimal page of `[from_date, to_date]` into `builder`,
/// oldest first, with ids de-duplicated. An API that answers the same full
/// pages again whatever the offset is not paging: an error, not an endless
/// loop.
pub async fn scan_window(
    source: &impl JobSource,
    mut builder: ScanBuilder<'_>,
    from_date: UnixMillis,
    to_date: UnixMillis,
) -> Result<ScanRead, ApiError> {
    let page_size = u32::try_from(builder.limit()).unwrap_or(u32::MAX);
    let requests = page_through(
        source,
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
    let (scan, skipped) = builder.finish();
    Ok(ScanRead {
        scan,
        skipped,
        requests,
    })
}

/// Which look-ups to read from full pages rather than one by one: the
/// newest ones, as far back as each page of the stretch (from the oldest of
/// them to the end of the scan) still replaces [`LOOKUPS_PER_PAGE`] look-ups.
/// `positions` are where the jobs to look up are in a scan of `scan_len`
/// jobs. Returns the scan position where that stretch starts, if it is
/// worth it.
fn batch_start(positions: &[Option<usize>], scan_len: usize, page_size: usize) -> Option<usize> {
    let mut positions: Vec<usize> = positions.iter().flatten().copied().collect();
    positions.sort_unstable_by(|a, b| b.cmp(a));
    let mut best = None;
    for (newer, &pos) in positions.iter().enumerate() {
        let count = newer + 1;
        let pages = scan_len.saturating_sub(pos).div_ceil(page_size.max(1));
        if count >= BATCH_MIN && count >= pages * LOOKUPS_PER_PAGE {
            best = Some(pos);
        }
    }
    best
}

/// Reads full (non-minimal) pages of `[from_date, to_date]` and keeps the
/// jobs in `wanted`: many look-ups for the price of a few pages.
async fn details_from_pages(
    source: &impl JobSource,
    page_size: u32,
    from_date: UnixMillis,
    to_date: UnixMillis,
    wanted: &HashSet<JobId>,
) -> Result<HashMap<JobId, Detail>, ApiError> {
    let mut out = HashMap::new();
    page_through(source, false, page_size, from_date, to_date, |page, _| {
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
/// fails the lot (the poll is then retried whole next cycle); the calls
/// still in flight are dropped.
async fn fetch_details(
    source: &impl JobSource,
    ids: Vec<JobId>,
    concurrency: usize,
) -> Result<HashMap<JobId, Detail>, ApiError> {
    let mut answers = stream::iter(ids)
        .map(|id| async move {
            let answer = source.get_job(&id).await;
            (id, answer)
        })
        .buffer_unordered(concurrency.max(1));
    let mut out = HashMap::new();
    while let Some((id, answer)) = answers.next().await {
        let detail = match answer? {
            Some(job) => Detail::Found(job),
            None => Detail::Gone,
        };
        out.insert(id, detail);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::ScanEntry;
    use crate::status::{JobStatus, StatusTable};

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
        WindowScan::new(entries, &mut StatusTable::default()).0
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
        let scan = WindowScan::new(entries, &mut StatusTable::default()).0;
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

    #[test]
    fn an_incremental_poll_starts_a_minute_before_the_oldest_job_still_going() {
        const T0: UnixMillis = 1_767_225_600_000;
        let mut tracker = JobTracker::new();
        let entries = vec![
            ScanEntry {
                id: JobId::Ulid(ulid::Ulid::from_parts(T0 as u64, 1)),
                status: JobStatus::Finished,
            },
            ScanEntry {
                id: JobId::Ulid(ulid::Ulid::from_parts(T0 as u64 + 600_000, 2)),
                status: JobStatus::Queued,
            },
        ];
        let scan = WindowScan::new(entries, &mut StatusTable::default()).0;
        let now = T0 + 3_600_000;
        let day = Duration::from_secs(86_400);
        let first = PollRequest::new(&tracker, now, day, false, 1000, 8);
        assert!(first.whole_window, "nothing known yet: the whole window");
        tracker.apply(&scan, &HashMap::new(), first.window_start, now);
        let next = PollRequest::new(&tracker, now, day, false, 1000, 8);
        assert_eq!(next.scan_from, T0 + 600_000 - INCREMENTAL_MARGIN_MS);
        assert!(!next.whole_window);
        let due = PollRequest::new(&tracker, now, day, true, 1000, 8);
        assert!(due.whole_window);
    }
}
