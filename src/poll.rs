//! One poll of one account, from the first page to the applied outcome:
//! page through the window, put the scan together, plan the look-ups,
//! choose which to read as full pages, read them, apply.
//!
//! The only I/O is the [`JobSource`] handed in. The poller hands in the API
//! client; the `poll_cycle` benchmark and the `polls` fuzz target hand in
//! answers from memory. All three run this very code, so what is measured
//! and fuzzed is what runs in production. No clock: `now` comes in the
//! [`PollRequest`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::api::{
    ApiClient, ApiError, ApiJob, JobId, ListFilter, ListPageQuery, MinimalJob, Page, SkipReason,
};
use crate::clock::UnixMillis;
use crate::config::PollConfig;
use crate::scan::{ScanBuilder, ScanError, WindowScan};
use crate::status::JobStatus;
use crate::tracker::{
    Baseline, Detail, JobTracker, Outcome, PollFacts, CLOCK_SKEW_MS, MAX_CLOCK_OFFSET_MS,
};

#[cfg(any(test, feature = "testkit"))]
pub mod memory;

/// An incremental scan starts this much before the oldest job still going.
pub(crate) const INCREMENTAL_MARGIN_MS: i64 = 60_000;

/// Pages after the first start this many jobs early, so a job deleted
/// between two page reads (which shifts later offsets left) is not skipped.
pub(crate) const PAGE_OVERLAP: usize = 10;

/// The same for the listing of jobs not ended, which shrinks from the
/// front as the oldest jobs end: more of them can end between two reads.
pub(crate) const LIVE_PAGE_OVERLAP: usize = 100;

/// A `Date` from the API further than this from the exporter's clock is
/// believed only when the API's own jobs agree with it (the newest job it
/// lists was created within this of its `Date`, and not after it): else it
/// is a proxy's, or a broken clock, and the exporter's clock is used, with
/// the margins it needs. Beyond [`MAX_CLOCK_OFFSET_MS`] it is never believed.
pub(crate) const MAX_TRUSTED_CLOCK_OFFSET_MS: i64 = 3_600_000;

/// Below this many look-ups in a stretch of the window, single `GET
/// /jobs/{id}` calls are cheaper than reading full pages.
const BATCH_MIN: usize = 8;
/// A stretch of the window is read as full pages only when each page
/// replaces at least this many single look-ups.
const LOOKUPS_PER_PAGE: usize = 4;

/// When at least this many look-ups of a poll all fail, the poll fails.
const ALL_FAILED_MIN: usize = 5;

/// Where a poll reads jobs from: `GET /jobs` pages and `GET /jobs/{id}`.
pub trait JobSource: Sync {
    /// A page of whole jobs.
    fn list_jobs(
        &self,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// A page of a minimal listing (`minimal=true`), as the window scan
    /// reads it. By default the page of [`Self::list_jobs`]
    /// cut down to it, for sources that hold whole jobs in memory.
    fn list_minimal(
        &self,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<MinimalJob>, ApiError>> + Send {
        let page = self.list_jobs(query);
        async move { page.await.map(Page::minimal) }
    }

    /// `Ok(None)`: the job does not exist (404).
    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send;

    /// A self-hosted server's jobs not ended that have not moved for the
    /// account's `stale_after`, by status, as the poll's listing showed them;
    /// `None` for the Cloud.
    fn stale_jobs(&self) -> Option<BTreeMap<JobStatus, u64>> {
        None
    }

    /// The poll is over (done, failed or cancelled): what the source held
    /// for it can go (a self-hosted server's listing).
    fn poll_done(&self) {}
}

/// Tells the source its poll is over when dropped: also when the poll's
/// future is dropped unfinished (`poll.timeout`).
struct PollDone<'a, S: JobSource>(&'a S);

impl<S: JobSource> Drop for PollDone<'_, S> {
    fn drop(&mut self) {
        self.0.poll_done();
    }
}

impl JobSource for ApiClient {
    fn list_jobs(
        &self,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send {
        ApiClient::list_jobs(self, query)
    }

    fn list_minimal(
        &self,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<MinimalJob>, ApiError>> + Send {
        ApiClient::list_minimal(self, query)
    }

    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
        ApiClient::get_job(self, id)
    }

    fn stale_jobs(&self) -> Option<BTreeMap<JobStatus, u64>> {
        ApiClient::stale_jobs(self)
    }

    fn poll_done(&self) {
        self.release_listing();
    }
}

/// What a listing's pages hold, and so which of [`JobSource`]'s calls
/// reads them.
trait Listing: Sized {
    fn read(
        source: &impl JobSource,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<Self>, ApiError>> + Send;
}

impl Listing for ApiJob {
    fn read(
        source: &impl JobSource,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send {
        source.list_jobs(query)
    }
}

impl Listing for MinimalJob {
    fn read(
        source: &impl JobSource,
        query: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<MinimalJob>, ApiError>> + Send {
        source.list_minimal(query)
    }
}

/// What one poll is to read.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    /// The exporter's clock at the start of the poll. The poll goes by the
    /// API's clock where the API says it (its `Date` header).
    pub now: UnixMillis,
    /// How far back the window reaches: terminal jobs created before it
    /// are forgotten.
    pub window: Duration,
    /// Read the whole window, not only what changed since the last poll.
    pub full_scan_due: bool,
    pub page_size: u32,
    /// `GET /jobs/{id}` calls in flight at once.
    pub detail_concurrency: usize,
    /// Single `GET /jobs/{id}` calls per poll; the rest wait for the next
    /// poll, so one poll stays bounded however many jobs need a look-up.
    pub max_lookups: usize,
    /// After an outage, a poll reads back to where the last good poll
    /// ended, but never further back than this before now.
    pub max_catch_up: Duration,
}

impl PollRequest {
    /// The poll at `now` that `poll` (the configuration's section) asks for.
    pub fn new(poll: &PollConfig, now: UnixMillis, full_scan_due: bool) -> Self {
        PollRequest {
            now,
            window: poll.window,
            full_scan_due,
            page_size: poll.page_size,
            detail_concurrency: poll.detail_concurrency as usize,
            max_lookups: poll.max_lookups as usize,
            max_catch_up: poll.max_catch_up,
        }
    }
}

/// What a poll did, once applied.
#[derive(Debug)]
pub struct PollResult {
    pub outcome: Outcome,
    /// Jobs left out of the scan, by reason.
    pub skipped: Vec<SkipReason>,
    /// Minimal pages read for the window scan.
    pub scan_pages: u64,
    /// Pages read for the listing of live jobs.
    pub live_pages: u64,
    /// The window scan read the whole window (or more, catching up).
    pub whole_window: bool,
    /// The API answered the listing of live jobs with ended jobs in it
    /// (it did not apply `exclude_states`): the poll did without it.
    pub live_listing_unfiltered: bool,
    /// Look-ups that failed for that job alone (it is tried again next poll).
    pub lookups_failed: u64,
    /// Look-ups put off to the next poll to keep this one bounded.
    pub lookups_deferred: u64,
    /// A full page of jobs wanted did not decode (one job in it the parser
    /// could not read): they were looked up one by one instead.
    pub full_pages_undecodable: bool,
    /// The API's clock less the exporter's, when the API said its time
    /// (believed or not: see [`MAX_TRUSTED_CLOCK_OFFSET_MS`]).
    pub clock_offset_ms: Option<i64>,
    /// The time the poll went by: the API's where it said and was
    /// believed, else the exporter's.
    pub now: UnixMillis,
    /// A self-hosted server's stale jobs by status (see
    /// [`JobSource::stale_jobs`]); `None` for the Cloud.
    pub stale: Option<BTreeMap<JobStatus, u64>>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The `from_date` of a poll's window scan.
fn scan_start(
    tracker: &JobTracker,
    request: &PollRequest,
    live: Option<&WindowScan>,
    now: UnixMillis,
    margin: i64,
) -> (UnixMillis, bool) {
    let window_start = now.saturating_sub(millis(request.window));
    // After an outage, from the last good poll on, within the catch-up limit.
    let reach = |from: UnixMillis| {
        let floor = now.saturating_sub(millis(request.max_catch_up));
        from.max(floor.min(window_start))
    };
    let since_last = tracker.last_poll_at().map(|at| at.saturating_sub(margin));
    let whole = || reach(since_last.map_or(window_start, |at| at.min(window_start)));
    if request.full_scan_due || !tracker.has_baseline() {
        return (whole(), true);
    }
    let changed_from = match live {
        // What ended since the last poll is read where it is in the window
        // (its detail then comes as pages); what ended before the window
        // is looked up by id. Live jobs come from the live listing.
        Some(live) => tracker
            .oldest_ended_since(live)
            .map(|at| at.saturating_sub(margin).max(window_start)),
        // Without a usable live listing, from the oldest job still going.
        None => match tracker.scan_from() {
            Some(at) => Some(at.saturating_sub(margin).max(window_start)),
            None => return (whole(), true),
        },
    };
    let from = match (since_last, changed_from) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(window_start),
    };
    (reach(from), false)
}

/// One poll: nothing is applied to `tracker` unless every read succeeded.
///
/// 1. Every job not ended, whatever its age (`exclude_states`, no dates);
///    the server's `Date` on it gives the API's clock.
/// 2. The window scan: the whole window, or what changed since the last
///    poll (new jobs, and jobs that left the live listing).
/// 3. The look-ups the tracker asks for: as full pages where many are
///    recent, else one by one, at most `max_lookups`; a look-up that fails
///    for that job alone leaves the job as it was, for the next poll.
/// 4. Apply.
pub async fn poll(
    tracker: &mut JobTracker,
    source: &impl JobSource,
    request: &PollRequest,
) -> Result<PollResult, ApiError> {
    let _done = PollDone(source);
    let mut result = read_and_apply(tracker, source, request).await;
    if let Ok(r) = &mut result {
        r.stale = source.stale_jobs();
    }
    result
}

async fn read_and_apply(
    tracker: &mut JobTracker,
    source: &impl JobSource,
    request: &PollRequest,
) -> Result<PollResult, ApiError> {
    let page_size = request.page_size;
    let live = read_pages(
        source,
        tracker.scan_builder(page_size as usize, 0),
        ListFilter::Live,
    )
    .await?;
    let clock = ApiClock::of(&live, request.now);
    let now = clock.now;
    let unfiltered = live.scan.any_terminal();
    let usable_live = (!unfiltered).then_some(&live.scan);
    // A live listing that holds ended jobs says nothing of which were going
    // when the first poll began.
    let baseline = (!tracker.has_baseline()).then(|| match usable_live {
        Some(live) => Baseline::new(live, clock.server_time),
        None => Baseline::default(),
    });
    let (scan_from, whole_window) = scan_start(tracker, request, usable_live, now, clock.margin);
    // Every job created since `scan_from`, however far the API's clock is
    // ahead: a job it does not show yet could not be told from one that
    // ended before the baseline.
    let to_date = now.saturating_add(MAX_CLOCK_OFFSET_MS);
    let read = read_window(source, tracker, page_size, whole_window, scan_from, to_date).await?;
    let api_at_least = clock.at_least(&[&live.scan, &read.scan], request.now);
    let mut scan = read.scan;
    if let Some(live) = usable_live {
        scan.add_live(live);
    }
    let mut need = tracker.plan_poll(&scan, baseline.as_ref(), Some(scan_from));
    let pages = Pages {
        page_size,
        from: scan_from,
        to_date,
        margin: clock.margin,
    };
    let (mut details, full_pages_undecodable) =
        details_as_pages(source, &scan, &mut need, &pages).await?;
    let deferred = defer_lookups(tracker, &mut need, request.max_lookups);
    let mut lookups = fetch_details(source, need, request.detail_concurrency).await?;
    if let Some(e) = lookups.all_failed.take() {
        probe_the_api(source, tracker, &scan, &lookups.details, &deferred, e).await?;
    }
    let lookups = lookups.details;
    let lookups_failed = lookups
        .values()
        .filter(|d| matches!(d, Detail::Failed))
        .count() as u64;
    details.extend(lookups);
    let lookups_deferred = deferred.len() as u64;
    details.extend(deferred.into_iter().map(|id| (id, Detail::Unknown)));
    tracker.set_clock_is_the_apis(clock.server_time.is_some());
    let facts = PollFacts {
        window_start: now.saturating_sub(millis(request.window)),
        now,
        whole_from: whole_window.then_some(scan_from),
        baseline: baseline.as_ref(),
        api_at_least,
    };
    let outcome = tracker.apply_poll(&scan, &details, &facts);
    Ok(PollResult {
        outcome,
        skipped: [live.skipped, read.skipped].concat(),
        scan_pages: read.requests,
        live_pages: live.requests,
        whole_window,
        live_listing_unfiltered: unfiltered,
        lookups_failed,
        lookups_deferred,
        full_pages_undecodable,
        clock_offset_ms: clock.offset_ms,
        now,
        stale: None,
    })
}

/// The time a poll goes by, from the live listing's `Date`.
struct ApiClock {
    /// The API's clock less the exporter's, where its `Date` said.
    offset_ms: Option<i64>,
    /// The API's `Date`, where it said and is believed.
    server_time: Option<UnixMillis>,
    /// `server_time`, else the exporter's clock.
    now: UnixMillis,
    /// How far back of the last poll an incremental scan starts: our clock
    /// may be off the API's by up to [`CLOCK_SKEW_MS`] when the API does
    /// not say its time; its `Date` is exact to the second.
    margin: i64,
}

impl ApiClock {
    fn of(live: &ScanRead, ours: UnixMillis) -> Self {
        let server_time = live
            .server_time
            .filter(|date| believed(*date, ours, live.scan.newest_created()));
        ApiClock {
            offset_ms: live.server_time.map(|at| at.saturating_sub(ours)),
            server_time,
            now: server_time.unwrap_or(ours),
            margin: match server_time {
                Some(_) => INCREMENTAL_MARGIN_MS,
                None => CLOCK_SKEW_MS,
            },
        }
    }

    /// Without the API's time, its newest job says how far its clock is at
    /// least: a job it created up to then is not "in the future" (a clock
    /// ahead of ours would otherwise put every new job there, where nothing
    /// is counted by it). It moves no window and no horizon: one job with a
    /// bogus id cannot move them a day.
    fn at_least(&self, scans: &[&WindowScan], ours: UnixMillis) -> Option<UnixMillis> {
        if self.server_time.is_some() {
            return None;
        }
        scans
            .iter()
            .filter_map(|s| s.newest_created())
            .max()
            .map(|newest| newest.min(ours.saturating_add(MAX_CLOCK_OFFSET_MS)))
    }
}

/// The window scan from `from_date` on.
async fn read_window(
    source: &impl JobSource,
    tracker: &mut JobTracker,
    page_size: u32,
    whole_window: bool,
    from_date: UnixMillis,
    to_date: UnixMillis,
) -> Result<ScanRead, ApiError> {
    // A whole-window scan is about as long as the last one, or a little
    // longer: the room to spare is only reserved, never touched unless
    // used, and growing a list of a million ids would copy it.
    let expected = if whole_window {
        tracker.len() + tracker.len() / 8 + page_size as usize
    } else {
        0
    };
    read_pages(
        source,
        tracker.scan_builder(page_size as usize, expected),
        ListFilter::Created { from_date, to_date },
    )
    .await
}

/// Where full pages of the window scan's jobs are read from.
struct Pages {
    page_size: u32,
    from: UnixMillis,
    to_date: UnixMillis,
    margin: i64,
}

/// Many look-ups among recent jobs: read as full pages instead, and taken
/// out of `need`. Jobs added from the live listing are older than the
/// window scan: never in its pages. Says whether a full page did not
/// decode (its jobs are then left in `need`, to be looked up one by one).
async fn details_as_pages(
    source: &impl JobSource,
    scan: &WindowScan,
    need: &mut Vec<JobId>,
    pages: &Pages,
) -> Result<(HashMap<JobId, Detail>, bool), ApiError> {
    let live_from = scan.live_from();
    let positions: Vec<Option<usize>> = scan
        .positions(need)
        .into_iter()
        .map(|at| at.filter(|at| *at < live_from))
        .collect();
    let Some(pos) = batch_start(&positions, scan.len(), pages.page_size as usize) else {
        return Ok((HashMap::new(), false));
    };
    let from = scan
        .get(pos)
        .and_then(|job| job.id.created_hint())
        .map_or(pages.from, |created| {
            created.saturating_sub(pages.margin).max(pages.from)
        });
    let wanted: HashSet<JobId> = need
        .iter()
        .zip(&positions)
        .filter(|(_, at)| at.is_some_and(|at| at >= pos))
        .map(|(id, _)| id.clone())
        .collect();
    // One job whose full JSON cannot be read fails the page, not the
    // poll: the jobs wanted from it are looked up one by one instead,
    // where that one job fails alone.
    let read = details_from_pages(
        source,
        pages.page_size,
        from,
        pages.to_date,
        &wanted,
        usize::MAX,
    );
    match read.await {
        Ok(found) => {
            need.retain(|id| !found.contains_key(id));
            Ok((found, false))
        }
        Err(ApiError::Decode { detail, .. }) => {
            tracing::debug!(error = %detail, "a full page did not decode; its jobs are looked up one by one");
            Ok((HashMap::new(), true))
        }
        Err(e) => Err(e),
    }
}

/// At most `max` look-ups stay in `need`; the rest, returned, wait for the
/// next poll, in turn: the first look-up of this poll is a later one at
/// each poll, so none is always left out.
fn defer_lookups(tracker: &JobTracker, need: &mut Vec<JobId>, max: usize) -> Vec<JobId> {
    if need.len() > max {
        let turn = tracker.lookup_turn().wrapping_mul(max) % need.len();
        need.rotate_left(turn);
    }
    need.split_off(need.len().min(max))
}

/// Every one of many look-ups failed, or one failed the API's way and
/// none got through (`failed`): the API's trouble (a broken endpoint, a
/// token that may list but not read, a gateway), or theirs? The newest
/// job listed and not looked up says: if its look-up fails too, the poll
/// fails; if it answers, those jobs are broken, not the API, and the poll
/// goes on without them.
async fn probe_the_api(
    source: &impl JobSource,
    tracker: &JobTracker,
    scan: &WindowScan,
    looked_up: &HashMap<JobId, Detail>,
    deferred: &[JobId],
    failed: ApiError,
) -> Result<(), ApiError> {
    let asked = |id: &JobId| looked_up.contains_key(id) || deferred.contains(id);
    let probe = (0..scan.len())
        .rev()
        .filter_map(|pos| scan.get(pos))
        .map(|job| job.id.clone())
        .find(|id| !asked(id))
        .or_else(|| tracker.newest_known(asked));
    let Some(probe) = probe else {
        return Err(failed);
    };
    match source.get_job(&probe).await {
        Ok(Some(job)) if job.id == probe => Ok(()),
        Ok(_) => Err(failed),
        Err(probed) if probed.is_about_one_job() => Err(failed),
        Err(probed) => Err(probed),
    }
}

/// Whether the API's `Date` is its clock, to go by: within
/// [`MAX_TRUSTED_CLOCK_OFFSET_MS`] of ours, or further (up to
/// [`MAX_CLOCK_OFFSET_MS`]) when its newest job (`newest`, by its id) was
/// created within that of its `Date` and not after it (then ours is the
/// clock that is off).
fn believed(date: UnixMillis, ours: UnixMillis, newest: Option<UnixMillis>) -> bool {
    let offset = date.saturating_sub(ours).abs();
    let agrees = newest.is_some_and(|newest| {
        newest <= date.saturating_add(CLOCK_SKEW_MS)
            && newest >= date.saturating_sub(MAX_TRUSTED_CLOCK_OFFSET_MS)
    });
    offset <= MAX_TRUSTED_CLOCK_OFFSET_MS || (offset <= MAX_CLOCK_OFFSET_MS && agrees)
}

/// The jobs of one listing, de-duplicated, oldest first.
#[derive(Debug)]
pub struct ScanRead {
    pub scan: WindowScan,
    pub skipped: Vec<SkipReason>,
    /// Pages read.
    pub requests: u64,
    /// The server's clock on the first page, if it said.
    pub server_time: Option<UnixMillis>,
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
async fn page_through<J: Listing>(
    source: &impl JobSource,
    page_size: u32,
    filter: ListFilter,
    mut each: impl FnMut(Page<J>, usize) -> Result<Next, ApiError>,
) -> Result<u64, ApiError> {
    let limit = page_size as usize;
    let overlap = match filter {
        ListFilter::Live => LIVE_PAGE_OVERLAP,
        ListFilter::Created { .. } => PAGE_OVERLAP,
    }
    .min(limit / 2);
    let mut next = 0usize;
    let mut requests = 0;
    loop {
        let start = next.saturating_sub(if next == 0 { 0 } else { overlap });
        let page = J::read(
            source,
            &ListPageQuery {
                from: start,
                limit: page_size,
                filter,
            },
        )
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
/// pages again whatever the offset is not paging, and pages that moved by
/// more than the overlap between two reads may have hidden jobs: both are
/// errors, not a scan to trust.
pub async fn scan_window(
    source: &impl JobSource,
    builder: ScanBuilder<'_>,
    from_date: UnixMillis,
    to_date: UnixMillis,
) -> Result<ScanRead, ApiError> {
    read_pages(source, builder, ListFilter::Created { from_date, to_date }).await
}

/// Reads every minimal page of a listing into `builder`.
async fn read_pages(
    source: &impl JobSource,
    mut builder: ScanBuilder<'_>,
    filter: ListFilter,
) -> Result<ScanRead, ApiError> {
    let page_size = u32::try_from(builder.limit()).unwrap_or(u32::MAX);
    let mut server_time = None;
    let requests = page_through(
        source,
        page_size,
        filter,
        |page: Page<MinimalJob>, repeats| {
            server_time = server_time.or(page.server_time);
            builder.add_page(page, repeats).map_err(|e| match e {
                ScanError::NotPaging { .. } => ApiError::Decode {
                    endpoint: "list_jobs",
                    detail: e.to_string(),
                },
                ScanError::Shifted { .. } => ApiError::IncompleteScan {
                    detail: e.to_string(),
                },
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
        server_time,
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
    max_pages: usize,
) -> Result<HashMap<JobId, Detail>, ApiError> {
    let mut out = HashMap::new();
    let filter = ListFilter::Created { from_date, to_date };
    let mut page_ends = HashSet::new();
    let mut pages = 0;
    page_through(source, page_size, filter, |page: Page, _| {
        pages += 1;
        // As for minimal pages: the same full page again is not paging.
        if page.raw_len >= page_size as usize {
            if let Some(last) = page.jobs.last() {
                if !page_ends.insert(last.id.clone()) {
                    return Err(ApiError::Decode {
                        endpoint: "list_jobs",
                        detail: "full pages came round again: the API is not paging".into(),
                    });
                }
            }
        }
        for job in page.jobs {
            if wanted.contains(&job.id) {
                out.insert(job.id.clone(), Detail::Found(job));
            }
        }
        Ok(if out.len() == wanted.len() || pages >= max_pages {
            Next::Stop
        } else {
            Next::More
        })
    })
    .await?;
    Ok(out)
}

/// Page reads that confirm deliveries start this much before the oldest
/// job's id time: a `createdAt` earlier than that by more is not on those
/// pages, and the job is looked up alone.
const CONFIRM_MARGIN_MS: i64 = 1000;

/// How far back from the newest of a batch of delivered jobs their
/// confirmation reads full pages; older ones are looked up one by one.
const CONFIRM_SPAN_MS: i64 = 10 * 60_000;

/// The API's own record of each delivered job in `ids`, for the webhook
/// receiver: `Ok(Some(job))`, `Ok(None)` for a 404, or the error. When at
/// least 8 of them were created (by their ULID) within 10 minutes of the
/// newest, that stretch is read as full pages of the listing (pages of
/// about twice as many jobs as wanted, at most `page_size`, and no more
/// pages than one for every 4 jobs wanted); jobs not found there, and the rest, are
/// `GET /jobs/{id}` each, `concurrency` at a time. A failed page read fails
/// those jobs, without single calls (the API is down or said to wait).
pub(crate) async fn confirm_deliveries(
    source: &impl JobSource,
    ids: Vec<JobId>,
    now: UnixMillis,
    page_size: u32,
    concurrency: usize,
) -> Vec<(JobId, Result<Option<ApiJob>, ApiError>)> {
    let newest = ids.iter().filter_map(JobId::created_hint).max();
    let (recent, mut singles): (Vec<JobId>, Vec<JobId>) = ids.into_iter().partition(|id| {
        matches!((id.created_hint(), newest), (Some(at), Some(n)) if at >= n - CONFIRM_SPAN_MS)
    });
    let mut out = Vec::new();
    if recent.len() >= BATCH_MIN {
        let from_date = recent
            .iter()
            .filter_map(JobId::created_hint)
            .min()
            .unwrap_or(now)
            .saturating_sub(CONFIRM_MARGIN_MS);
        let to_date = now.saturating_add(CLOCK_SKEW_MS).max(newest.unwrap_or(now));
        let wanted: HashSet<JobId> = recent.iter().cloned().collect();
        let max_pages = (recent.len() / LOOKUPS_PER_PAGE).max(1);
        // Pages about twice the batch: the jobs wanted are usually the
        // newest of their stretch, and a smaller page is cheaper to send
        // and to read than the poll's 1000.
        // Not `clamp`: a page_size under 32 is allowed, and clamp panics
        // when its floor is above its ceiling.
        let limit = (recent.len() as u32 * 2)
            .max(BATCH_MIN as u32 * 4)
            .min(page_size.max(1));
        match details_from_pages(source, limit, from_date, to_date, &wanted, max_pages).await {
            Ok(mut found) => {
                for id in recent {
                    match found.remove(&id) {
                        Some(Detail::Found(job)) => out.push((id, Ok(Some(job)))),
                        _ => singles.push(id),
                    }
                }
            }
            Err(e) => {
                for id in recent {
                    out.push((id, Err(e.clone())));
                }
                return out;
            }
        }
    } else {
        singles.extend(recent);
    }
    let answers: Vec<_> = stream::iter(singles)
        .map(|id| async move {
            let answer = source.get_job(&id).await;
            (id, answer)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    out.extend(answers);
    out
}

/// What [`fetch_details`] found.
struct Lookups {
    details: HashMap<JobId, Detail>,
    /// Every one of at least [`ALL_FAILED_MIN`] look-ups failed, or a
    /// look-up failed the API's way (a timeout, a gateway error, a lost
    /// connection) and none got through: the first failure, for the caller
    /// to tell whose trouble it is.
    all_failed: Option<ApiError>,
}

/// `GET /jobs/{id}` for each id, `concurrency` at a time. A failure that
/// concerns that job alone (an error status or an answer that is not a
/// job) makes its detail [`Detail::Failed`]. A refused token or rate
/// limiting fails the lot, and the calls still in flight are dropped; so
/// do [`ALL_FAILED_MIN`] failures the API's way (a timeout, a gateway
/// error, a lost connection) before any look-up got through. One such
/// failure among look-ups that got through is that job's: one job whose
/// look-up always times out does not fail every poll.
async fn fetch_details(
    source: &impl JobSource,
    ids: Vec<JobId>,
    concurrency: usize,
) -> Result<Lookups, ApiError> {
    let mut answers = stream::iter(ids)
        .map(|id| async move {
            let answer = source.get_job(&id).await;
            (id, answer)
        })
        .buffer_unordered(concurrency.max(1));
    let mut out = HashMap::new();
    let mut first_failure = None;
    let mut api_failure = None;
    let (mut answered, mut api_failures) = (false, 0);
    while let Some((id, answer)) = answers.next().await {
        let detail = match answer {
            Ok(Some(job)) => {
                answered = true;
                Detail::Found(job)
            }
            Ok(None) => {
                answered = true;
                Detail::Gone
            }
            Err(e) if e.is_about_one_job() => {
                tracing::debug!(job = %id, error = %e, "look-up failed for this job");
                first_failure.get_or_insert(e);
                Detail::Failed
            }
            Err(e @ (ApiError::Unauthorized { .. } | ApiError::RateLimited { .. })) => {
                return Err(e)
            }
            Err(e) => {
                api_failures += 1;
                if !answered && api_failures >= ALL_FAILED_MIN {
                    return Err(e);
                }
                tracing::debug!(job = %id, error = %e, "look-up failed the API's way");
                api_failure.get_or_insert(e);
                Detail::Failed
            }
        };
        out.insert(id, detail);
    }
    let failed = out.values().filter(|d| matches!(d, Detail::Failed)).count();
    let all_failed = failed == out.len() && failed >= ALL_FAILED_MIN;
    Ok(Lookups {
        all_failed: match api_failure {
            Some(e) if !answered => Some(e),
            _ => first_failure.filter(|_| all_failed),
        },
        details: out,
    })
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryApi;
    use super::*;
    use crate::api::MinimalJob;
    use crate::status::{JobStatus, StatusTable};

    fn id(i: usize) -> JobId {
        JobId::Ulid(ulid::Ulid::from_parts(1_767_225_600_000 + i as u64, 7))
    }

    fn scan(n: usize) -> WindowScan {
        let entries = (0..n)
            .map(|i| MinimalJob {
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
            .map(|i| MinimalJob {
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
    fn a_poll_reads_what_changed_since_the_last_one_and_catches_up_after_an_outage() {
        const T0: UnixMillis = 1_767_225_600_000;
        const HOUR: i64 = 3_600_000;
        let day = Duration::from_secs(86_400);
        let job = |at: i64, n: u128, status| MinimalJob {
            id: JobId::Ulid(ulid::Ulid::from_parts(at as u64, n)),
            status,
        };
        let mut tracker = JobTracker::new();
        let request = PollRequest {
            now: T0,
            window: day,
            ..PollRequest::new(&PollConfig::default(), 0, false)
        };
        let (from, whole) = scan_start(&tracker, &request, None, T0, 60_000);
        assert_eq!((from, whole), (T0 - 24 * HOUR, true), "nothing known yet");
        // A job rendering for two days (older than the window), one queued.
        let stuck = job(T0 - 48 * HOUR, 1, JobStatus::Rendering);
        let queued = job(T0 - HOUR, 2, JobStatus::Queued);
        let mut table = StatusTable::default();
        let live = WindowScan::new(vec![stuck.clone(), queued.clone()], &mut table).0;
        let mut scan = WindowScan::new(vec![queued.clone()], &mut table).0;
        scan.add_live(&live);
        tracker.apply(&scan, &HashMap::new(), T0 - 24 * HOUR, T0);

        // A minute later both still go: only the last minute (and margin).
        let now = T0 + 60_000;
        let (from, whole) = scan_start(&tracker, &request, Some(&live), now, 60_000);
        assert_eq!(
            (from, whole),
            (T0 - 60_000, false),
            "the stuck job costs nothing"
        );
        // The queued job left the live listing: from where it is.
        let only_stuck = WindowScan::new(vec![stuck], &mut table).0;
        let (from, _) = scan_start(&tracker, &request, Some(&only_stuck), now, 60_000);
        assert_eq!(from, T0 - HOUR - 60_000);
        // Without a usable live listing: from the oldest job still going,
        // which is older than the window, so the window's start.
        let (from, _) = scan_start(&tracker, &request, None, now, 60_000);
        assert_eq!(from, now - 24 * HOUR);
        // Thirty hours later, after an outage: back to the last good poll.
        let now = T0 + 30 * HOUR;
        let (from, _) = scan_start(&tracker, &request, Some(&live), now, 60_000);
        assert_eq!(from, T0 - 60_000, "reads the outage, not only the window");
        let full = PollRequest {
            full_scan_due: true,
            ..request.clone()
        };
        assert_eq!(
            scan_start(&tracker, &full, Some(&live), now, 60_000),
            (T0 - 60_000, true)
        );
        // ... but never further back than max_catch_up.
        let bounded = PollRequest {
            max_catch_up: Duration::from_secs(26 * 3600),
            ..request
        };
        let (from, _) = scan_start(&tracker, &bounded, Some(&live), now, 60_000);
        assert_eq!(from, now - 26 * HOUR);
    }

    const NOW: UnixMillis = 1_767_225_600_000 + 3_600_000;

    fn job(i: usize, status: JobStatus, created_at: UnixMillis) -> ApiJob {
        ApiJob {
            id: JobId::Ulid(ulid::Ulid::from_parts(created_at as u64, i as u128)),
            status,
            created_at: Some(created_at),
            started_at: None,
            finished_at: None,
            error_at: None,
            render_duration: None,
            template_id: None,
            error: None,
        }
    }

    fn request(now: UnixMillis) -> PollRequest {
        PollRequest {
            now,
            window: Duration::from_secs(3600),
            page_size: 50,
            ..PollRequest::new(&PollConfig::default(), 0, false)
        }
    }

    /// A baseline over `n` queued jobs, after which all of them end.
    async fn baseline_then_all_end(n: usize) -> (MemoryApi, JobTracker) {
        let mut api = MemoryApi::new(
            (0..n)
                .map(|i| job(i, JobStatus::Queued, NOW - 60_000))
                .collect(),
        );
        let mut tracker = JobTracker::new();
        poll(&mut tracker, &api, &request(NOW)).await.unwrap();
        for j in &mut api.jobs {
            j.status = JobStatus::Finished;
        }
        (api, tracker)
    }

    /// The poll that sees `n` jobs end, with every look-up answering 500.
    async fn n_ends_whose_look_ups_fail(n: usize) -> Result<PollResult, ApiError> {
        let (mut api, mut tracker) = baseline_then_all_end(n).await;
        api.look_ups_fail = true;
        poll(&mut tracker, &api, &request(NOW + 60_000)).await
    }

    #[tokio::test]
    async fn every_one_of_five_look_ups_failing_fails_the_poll_but_four_stay_local() {
        let err = n_ends_whose_look_ups_fail(5).await.unwrap_err();
        assert_eq!(err.reason(), "server_error");
        let result = n_ends_whose_look_ups_fail(4).await.unwrap();
        assert_eq!(result.lookups_failed, 4);
        assert!(
            result.outcome.completions.is_empty(),
            "counted once they answer"
        );
    }

    /// A source whose every answer never comes, counting the polls it was
    /// told are over.
    #[derive(Default)]
    struct Hanging(std::sync::atomic::AtomicUsize);

    impl JobSource for Hanging {
        fn list_jobs(
            &self,
            _: &ListPageQuery,
        ) -> impl Future<Output = Result<Page, ApiError>> + Send {
            std::future::pending()
        }

        fn get_job(
            &self,
            _: &JobId,
        ) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
            std::future::pending()
        }

        fn poll_done(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_poll_cut_short_still_lets_its_source_go() {
        // What `poll.timeout` does to a poll: drops it, unfinished.
        let source = Hanging::default();
        let mut tracker = JobTracker::new();
        let request = request(NOW);
        {
            let cut_short = std::pin::pin!(poll(&mut tracker, &source, &request));
            let waker = std::task::Waker::noop();
            let pending = cut_short.poll(&mut std::task::Context::from_waker(waker));
            assert!(pending.is_pending());
            assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        }
        assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_date_an_hour_off_is_shown_but_not_believed() {
        let mut api = MemoryApi::new(vec![job(1, JobStatus::Queued, NOW - 60_000)]);
        api.date = Some(NOW + 2 * 3_600_000);
        let result = poll(&mut JobTracker::new(), &api, &request(NOW))
            .await
            .unwrap();
        assert_eq!(result.clock_offset_ms, Some(2 * 3_600_000));
        let asked = api.listed.lock().unwrap().clone();
        assert_eq!(
            asked[1],
            ListFilter::Created {
                from_date: NOW - 3_600_000,
                to_date: NOW + MAX_CLOCK_OFFSET_MS,
            },
            "the window by the exporter's clock, to a day past it"
        );
        // Two hours off, and the API's newest job agrees with its Date:
        // the exporter's clock is the one that is off.
        let mut api = MemoryApi::new(vec![job(
            1,
            JobStatus::Queued,
            NOW + 2 * 3_600_000 - 60_000,
        )]);
        api.date = Some(NOW + 2 * 3_600_000);
        let result = poll(&mut JobTracker::new(), &api, &request(NOW))
            .await
            .unwrap();
        assert_eq!(result.now, NOW + 2 * 3_600_000, "the API's Date believed");
        // Ten minutes off is believed.
        api.date = Some(NOW + 600_000);
        api.listed.lock().unwrap().clear();
        poll(&mut JobTracker::new(), &api, &request(NOW))
            .await
            .unwrap();
        let asked = api.listed.lock().unwrap().clone();
        assert!(
            matches!(asked[1], ListFilter::Created { from_date, .. } if from_date == NOW + 600_000 - 3_600_000),
            "{asked:?}"
        );
    }

    #[tokio::test]
    async fn a_live_listing_with_ended_jobs_in_it_is_not_used() {
        // A job waiting for two hours (older than the window) and one ended.
        let mut api = MemoryApi::new(vec![
            job(1, JobStatus::Queued, NOW - 2 * 3_600_000),
            job(2, JobStatus::Finished, NOW - 60_000),
        ]);
        let mut tracker = JobTracker::new();
        let result = poll(&mut tracker, &api, &request(NOW)).await.unwrap();
        assert!(!result.live_listing_unfiltered);
        assert_eq!(result.outcome.jobs_by_status[&JobStatus::Queued], 1);
        api.unfiltered = true;
        let result = poll(&mut JobTracker::new(), &api, &request(NOW))
            .await
            .unwrap();
        assert!(result.live_listing_unfiltered);
        assert_eq!(
            result.outcome.jobs_by_status.get(&JobStatus::Queued),
            None,
            "without the filter, a job older than the window is not seen after a start"
        );
    }

    #[tokio::test]
    async fn look_ups_past_max_lookups_wait_for_the_next_poll_and_count_once() {
        let (api, mut tracker) = baseline_then_all_end(5).await;
        let bounded = |now| PollRequest {
            max_lookups: 2,
            ..request(now)
        };
        let mut counted = 0;
        for (n, deferred) in [3, 1, 0].into_iter().enumerate() {
            let now = NOW + 60_000 * (n as i64 + 1);
            let result = poll(&mut tracker, &api, &bounded(now)).await.unwrap();
            assert_eq!(result.lookups_deferred, deferred, "poll {n}");
            counted += result.outcome.completions.len();
        }
        assert_eq!(counted, 5, "each counted once, two a poll");
    }

    #[tokio::test]
    async fn a_batch_of_recent_deliveries_is_confirmed_by_a_page_and_the_rest_one_by_one() {
        // 20 jobs ended in the last minutes, one ended long ago, one unknown.
        let mut jobs: Vec<ApiJob> = (0..20)
            .map(|i| job(i, JobStatus::Finished, NOW - 300_000 + i as i64 * 1000))
            .collect();
        jobs.push(job(100, JobStatus::Finished, NOW - 86_400_000));
        let api = MemoryApi::new(jobs.clone());
        let forged = JobId::Ulid(ulid::Ulid::from_parts(NOW as u64, 999));
        let mut ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
        ids.push(forged.clone());
        let got = confirm_deliveries(&api, ids, NOW, 1000, 4).await;
        assert_eq!(got.len(), 22);
        // The forged id is the newest: the batch starts from it, and the
        // page read finds the 20; the old job and the forged one go alone.
        assert_eq!(
            api.listed.lock().unwrap().len(),
            1,
            "one page for the batch"
        );
        for (id, answer) in &got {
            match answer {
                Ok(Some(found)) => assert_eq!(&found.id, id),
                Ok(None) => assert_eq!(id, &forged),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_batch_of_deliveries_is_confirmed_with_any_allowed_page_size() {
        // poll.page_size may be anything from 1: the batch's pages are no
        // larger, and every delivery is still confirmed.
        let jobs: Vec<ApiJob> = (0..12)
            .map(|i| job(i, JobStatus::Finished, NOW - 60_000 + i as i64 * 1000))
            .collect();
        let api = MemoryApi::new(jobs.clone());
        for page_size in [1, 7, 31, 32, 1000] {
            let ids: Vec<JobId> = jobs.iter().map(|j| j.id.clone()).collect();
            let got = confirm_deliveries(&api, ids, NOW, page_size, 4).await;
            assert_eq!(got.len(), 12, "page_size {page_size}");
            assert!(
                got.iter()
                    .all(|(id, a)| matches!(a, Ok(Some(j)) if &j.id == id)),
                "page_size {page_size}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_page_that_does_not_decode_is_read_as_single_look_ups() {
        // Twelve jobs end at once: read as a full page, which one of them
        // makes undecodable; the others are looked up one by one and
        // counted, the bad one fails alone.
        let (mut api, mut tracker) = baseline_then_all_end(12).await;
        api.poisoned = HashSet::from([api.jobs[3].id.clone()]);
        let result = poll(&mut tracker, &api, &request(NOW + 60_000))
            .await
            .unwrap();
        assert!(result.full_pages_undecodable);
        assert_eq!(result.outcome.completions.len(), 11);
        assert_eq!(result.lookups_failed, 1);
    }

    #[tokio::test]
    async fn a_first_poll_whose_live_listing_holds_ended_jobs_counts_none_of_them() {
        // The API ignores exclude_states: the live listing shows every job.
        let mut api = MemoryApi::new(
            (0..10)
                .map(|i| job(i, JobStatus::Finished, NOW - 600_000 + i as i64 * 1000))
                .collect(),
        );
        api.unfiltered = true;
        api.date = Some(NOW);
        let result = poll(&mut JobTracker::new(), &api, &request(NOW))
            .await
            .unwrap();
        assert!(result.live_listing_unfiltered);
        assert!(
            result.outcome.completions.is_empty(),
            "{:?}",
            result.outcome.completions
        );
    }

    #[tokio::test]
    async fn one_job_with_an_id_years_ahead_moves_no_window_and_no_horizon() {
        // No Date; one job's id says 2030, its createdAt says now.
        let mut bogus = job(1, JobStatus::Queued, NOW - 60_000);
        bogus.id = JobId::Ulid(ulid::Ulid::from_parts(1_900_000_000_000, 1));
        let mut api = MemoryApi::new(vec![job(2, JobStatus::Queued, NOW - 30_000), bogus]);
        let mut tracker = JobTracker::new();
        let result = poll(&mut tracker, &api, &request(NOW)).await.unwrap();
        assert_eq!(result.now, NOW, "the poll goes by the exporter's clock");
        // A job created and ended after the start is counted.
        api.jobs.push(job(3, JobStatus::Finished, NOW + 10_000));
        let result = poll(&mut tracker, &api, &request(NOW + 60_000))
            .await
            .unwrap();
        assert_eq!(result.outcome.completions.len(), 1);
        assert_eq!(result.now, NOW + 60_000);
    }

    #[tokio::test]
    async fn one_look_up_that_times_out_among_answered_ones_is_that_jobs_trouble() {
        let (mut api, mut tracker) = baseline_then_all_end(3).await;
        api.date = Some(NOW + 60_000);
        api.timing_out = HashSet::from([api.jobs[0].id.clone()]);
        let result = poll(&mut tracker, &api, &request(NOW + 60_000))
            .await
            .unwrap();
        assert_eq!(result.outcome.completions.len(), 2);
        assert_eq!(result.lookups_failed, 1);
        // Alone, it is tried against a probe of another job, which answers.
        api.jobs[1].status = JobStatus::Finished;
        let result = poll(&mut tracker, &api, &request(NOW + 120_000))
            .await
            .unwrap();
        assert_eq!(result.lookups_failed, 1);
        // With every look-up timing out, the API is down: the poll fails.
        api.timing_out = api.jobs.iter().map(|j| j.id.clone()).collect();
        let err = poll(&mut tracker, &api, &request(NOW + 180_000))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "timeout");
    }

    #[tokio::test]
    async fn a_probe_that_finds_its_job_gone_does_not_vouch_for_the_api() {
        // Six jobs end; every look-up of them fails. The probe is the
        // newest job remembered and not looked up: deleted meanwhile, its
        // look-up says 404, which says nothing of whether look-ups work.
        let mut jobs: Vec<ApiJob> = (0..6)
            .map(|i| job(i, JobStatus::Queued, NOW - 60_000))
            .collect();
        jobs.push(job(9, JobStatus::Finished, NOW - 30_000));
        let mut api = MemoryApi::new(jobs);
        let mut tracker = JobTracker::new();
        poll(&mut tracker, &api, &request(NOW)).await.unwrap();
        api.jobs.pop();
        for j in &mut api.jobs {
            j.status = JobStatus::Finished;
        }
        api.failing = api.jobs.iter().map(|j| j.id.clone()).collect();
        let err = poll(&mut tracker, &api, &request(NOW + 60_000))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "server_error");
        // The probe answering with its own job: those six are broken.
        api.jobs.push(job(9, JobStatus::Finished, NOW - 30_000));
        let result = poll(&mut tracker, &api, &request(NOW + 120_000))
            .await
            .unwrap();
        assert_eq!(result.lookups_failed, 6);
    }

    #[tokio::test]
    async fn a_few_deliveries_are_looked_up_one_by_one() {
        let jobs: Vec<ApiJob> = (0..3)
            .map(|i| job(i, JobStatus::Error, NOW - 1000))
            .collect();
        let api = MemoryApi::new(jobs.clone());
        let got = confirm_deliveries(
            &api,
            jobs.iter().map(|j| j.id.clone()).collect(),
            NOW,
            1000,
            4,
        )
        .await;
        assert!(api.listed.lock().unwrap().is_empty(), "no page read");
        assert!(got.iter().all(|(_, a)| matches!(a, Ok(Some(_)))));
    }
}
