//! One account's poll loop: when to poll, and what a poll's result does to
//! the metrics, the status board and the log (the poll itself is
//! [`crate::poll::poll`]). Polls of one account never overlap; each
//! account has its own task, so one slow account stalls no other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use tokio::sync::{mpsc, watch};

use crate::api::{ApiClient, ApiError, ApiJob, JobId};
use crate::board::StatusBoard;
use crate::clock::{SharedClock, UnixMillis};
use crate::config::{Account, PollConfig};
use crate::metrics::{AccountMetrics, PollNotes};
use crate::poll::{self, PollRequest, PollResult};
use crate::tracker::{Delivered, DeliveryVerdict, JobTracker};

/// What an account's poller keeps from one poll to the next. It lives
/// outside the poller's task, so a poller that dies is restarted with it.
#[derive(Debug, Default)]
struct Bookkeeping {
    tracker: JobTracker,
    /// When a poll last set out to read the whole window, whether it got
    /// through or not: a failed attempt (say a window too big for the
    /// deadline) waits for the next interval, and the polls in between
    /// stay incremental instead of each trying the whole window again.
    last_full_scan: Option<UnixMillis>,
    /// A poll reaching back further than the window to catch up after an
    /// outage ran out of time: later polls read only the window.
    catch_up_given_up: bool,
    /// The API's clock less ours at the last good poll, where it said.
    clock_offset_ms: i64,
    /// The window of the last poll. A wider one (a reload) is read whole at
    /// the next poll, so the jobs it brings into view are in the numbers
    /// at once, not one `full_scan_interval` later.
    window: Option<Duration>,
    /// A poll applied to the tracker whose outcome is not in the metrics
    /// yet. A poller that dies before publishing it leaves it here: the
    /// restarted one publishes it first (its counters at most once: a
    /// death half-way through them loses the rest rather than count
    /// twice). If publishing it kills the poller
    /// twice, the supervisor drops it with the bookkeeping (a fresh
    /// baseline).
    unpublished: Option<Unpublished>,
}

#[derive(Debug)]
struct Unpublished {
    result: PollResult,
    /// The exporter's clock when the poll began.
    at: UnixMillis,
    took: Duration,
    /// Attempts to publish it so far.
    tries: u8,
    /// Its numbers went to the metrics (or began to: a panic half-way is
    /// not repeated, so nothing is counted twice).
    counted: bool,
}

/// One account's poller. A clone shares the bookkeeping (the supervisor
/// restarts a dead poller from a clone).
#[derive(Clone)]
pub struct AccountPoller {
    pub account: Account,
    client: ApiClient,
    /// Locked for the whole of a poll; a poller that panics mid-poll drops
    /// the lock with its task.
    bookkeeping: Arc<tokio::sync::Mutex<Bookkeeping>>,
    metrics: Arc<AccountMetrics>,
    board: Arc<StatusBoard>,
    clock: SharedClock,
    settings: PollConfig,
    /// Reason of the last failure, to log a new kind of trouble once.
    failing: Option<&'static str>,
    /// The last poll found the live listing unfiltered (logged on change).
    live_unfiltered: bool,
    /// When `GET /templates` was last read for names (tried, whatever the
    /// result), by the exporter's clock, and whether that read failed.
    names_read_at: Option<UnixMillis>,
    names_failed: bool,
    /// Webhook deliveries waiting to be counted; taken between polls. The
    /// queue outlives a restarted poller, like the bookkeeping.
    deliveries: Arc<tokio::sync::Mutex<mpsc::Receiver<ApiJob>>>,
    delivery_queue: mpsc::Sender<ApiJob>,
    /// `oldest_jobs.per_status`: the oldest jobs of each status listed.
    oldest_per_status: usize,
}

/// Deliveries taken from the queue and not judged yet: if the poller stops
/// or dies before it judges them, they are counted as `dropped` (answered
/// 202, then never counted by a delivery; the polls count their jobs).
struct InFlight<'a> {
    metrics: &'a AccountMetrics,
    left: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        for _ in 0..self.left {
            self.metrics.webhook_refused("dropped");
        }
    }
}

/// Deliveries counted under one lock of the bookkeeping, at most.
const DELIVERY_BATCH: usize = 256;

/// A template that takes series of its own after the last read of the
/// template list, and has no name, has the list read again, but not sooner
/// than this after the last read.
pub(crate) const TEMPLATE_NAMES_RETRY: Duration = Duration::from_secs(60);

impl AccountPoller {
    /// The account's poller; `metrics` is its handle (the one `client`
    /// reports its requests to).
    pub fn new(
        account: Account,
        client: ApiClient,
        metrics: Arc<AccountMetrics>,
        board: Arc<StatusBoard>,
        clock: SharedClock,
        settings: PollConfig,
        delivery_queue_capacity: usize,
    ) -> Self {
        let (delivery_queue, deliveries) = mpsc::channel(delivery_queue_capacity.max(1));
        Self {
            account,
            client,
            bookkeeping: Arc::default(),
            metrics,
            board,
            clock,
            settings,
            failing: None,
            live_unfiltered: false,
            names_read_at: None,
            names_failed: false,
            deliveries: Arc::new(tokio::sync::Mutex::new(deliveries)),
            delivery_queue,
            oldest_per_status: crate::oldest::DEFAULT_PER_STATUS,
        }
    }

    /// Lists the `n` oldest jobs of each status not ended at each poll
    /// (`oldest_jobs.per_status`; 0: none).
    pub fn listing_oldest(mut self, n: usize) -> Self {
        self.oldest_per_status = n;
        self
    }

    /// The status board it writes to (the landing page's).
    pub fn board(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }

    /// The account's metrics handle.
    pub fn metrics(&self) -> Arc<AccountMetrics> {
        self.metrics.clone()
    }

    /// Where the webhook receiver puts this account's deliveries.
    pub fn delivery_queue(&self) -> mpsc::Sender<ApiJob> {
        self.delivery_queue.clone()
    }

    /// Counts `first` and whatever else is queued (up to a batch). A
    /// delivery that would count is confirmed first by the API (full pages
    /// of the listing for a batch of recent jobs, else `GET /jobs/{id}`, as
    /// many at once as `poll.detail_concurrency`; see
    /// [`poll::confirm_deliveries`]), all within `poll.timeout`, and
    /// counted on the API's word; one that would
    /// not (a duplicate, before the baseline) costs no request. While the
    /// API has asked to wait (429), nothing is looked up: those deliveries
    /// are left to the polls. Deliveries wait while a poll runs (it holds
    /// the bookkeeping), and the look-ups run without holding it.
    async fn take_deliveries(&self, first: ApiJob, queue: &mut mpsc::Receiver<ApiJob>) {
        let mut batch = vec![first];
        while batch.len() < DELIVERY_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut in_flight = InFlight {
            metrics: &self.metrics,
            left: batch.len(),
        };
        let (unconfirmed, clock_offset_ms) = self.judge(batch, &mut in_flight).await;
        if !unconfirmed.is_empty() {
            self.confirm(unconfirmed, clock_offset_ms, &mut in_flight)
                .await;
        }
    }

    /// Judges a batch of deliveries by the bookkeeping alone; returns those
    /// the API must confirm first, and the API's clock offset.
    async fn judge(&self, batch: Vec<ApiJob>, in_flight: &mut InFlight<'_>) -> (Vec<JobId>, i64) {
        let mut unconfirmed: Vec<JobId> = Vec::new();
        let mut bookkeeping = self.bookkeeping.lock().await;
        for job in batch {
            let now = self.clock.now_millis();
            // The tracker's times are the API's: judge by its clock.
            let api_now = now.saturating_add(bookkeeping.clock_offset_ms);
            let mut done = bookkeeping.tracker.deliver(&job, api_now, false);
            if done.verdict == DeliveryVerdict::Unconfirmed
                && !self.account.tags.is_empty()
                && !bookkeeping.tracker.knows(&job.id)
            {
                // A delivery does not say the job's tags, and a look-up
                // does not either: a job no poll of this tag filter has
                // seen may be another pipeline's. Left to the polls.
                done = Delivered::judged(DeliveryVerdict::NotCounted);
            }
            if done.verdict != DeliveryVerdict::Unconfirmed {
                self.delivered(&job.id, &done, now);
                in_flight.left = in_flight.left.saturating_sub(1);
            } else if unconfirmed.contains(&job.id) {
                // The same job twice in one batch: one look-up.
                let dup = Delivered::judged(DeliveryVerdict::Duplicate);
                self.delivered(&job.id, &dup, now);
                in_flight.left = in_flight.left.saturating_sub(1);
            } else {
                unconfirmed.push(job.id);
            }
        }
        (unconfirmed, bookkeeping.clock_offset_ms)
    }

    /// Looks up the deliveries the API must confirm, and counts them on
    /// its answers; without answers (a 429's wait, the deadline), they are
    /// left to the polls.
    async fn confirm(
        &self,
        unconfirmed: Vec<JobId>,
        clock_offset_ms: i64,
        in_flight: &mut InFlight<'_>,
    ) {
        let left_to_polls = |ids: Vec<JobId>, why: &str, in_flight: &mut InFlight| {
            tracing::debug!(account = %self.account.name, deliveries = ids.len(), why, "webhook deliveries left to the polls");
            for id in ids {
                let now = self.clock.now_millis();
                self.delivered(&id, &Delivered::judged(DeliveryVerdict::NotCounted), now);
                in_flight.left = in_flight.left.saturating_sub(1);
            }
        };
        if self.client.blocked_for().is_some() {
            return left_to_polls(unconfirmed, "the API asked to wait (429)", in_flight);
        }
        let now = self.clock.now_millis().saturating_add(clock_offset_ms);
        let lookups = poll::confirm_deliveries(
            &self.client,
            unconfirmed.clone(),
            now,
            self.settings.page_size,
            self.settings.detail_concurrency as usize,
        );
        let Ok(looked_up) = tokio::time::timeout(self.settings.timeout, lookups).await else {
            return left_to_polls(
                unconfirmed,
                "the look-ups took longer than poll.timeout",
                in_flight,
            );
        };
        let mut bookkeeping = self.bookkeeping.lock().await;
        for (id, found) in looked_up {
            let now = self.clock.now_millis();
            let api_now = now.saturating_add(bookkeeping.clock_offset_ms);
            let done = match found {
                Ok(Some(job)) if job.id == id => bookkeeping.tracker.deliver(&job, api_now, true),
                Ok(_) => Delivered::judged(DeliveryVerdict::UnknownJob),
                Err(e) => {
                    tracing::debug!(account = %self.account.name, job = %id, error = %e, "look-up of a delivered job failed; the polls will count it");
                    Delivered::judged(DeliveryVerdict::NotCounted)
                }
            };
            // Not ended by the API's word (its detail behind its webhook):
            // left to the polls.
            let done = if done.verdict == DeliveryVerdict::NotTerminal {
                Delivered::judged(DeliveryVerdict::NotCounted)
            } else {
                done
            };
            self.delivered(&id, &done, now);
            in_flight.left = in_flight.left.saturating_sub(1);
        }
    }

    fn delivered(&self, id: &JobId, done: &Delivered, now: UnixMillis) {
        self.metrics.delivery(done, now);
        tracing::debug!(account = %self.account.name, job = %id, result = done.verdict.label(), "webhook delivery");
    }

    /// This poller with another client (a new client policy), sharing the
    /// bookkeeping: the next poll goes on from the last.
    pub(crate) fn with_client(mut self, client: ApiClient) -> Self {
        client.inherit_wait(&self.client);
        self.client = client;
        self
    }

    pub(crate) fn set_settings(&mut self, settings: PollConfig) {
        self.settings = settings;
    }

    /// One poll at `now`, with nothing applied unless every call succeeded;
    /// what it applied waits in the bookkeeping to be published.
    async fn poll_and_apply(&mut self, now: UnixMillis, started: Instant) -> Result<(), ApiError> {
        let mut bookkeeping = self.bookkeeping.lock().await;
        let bookkeeping = &mut *bookkeeping;
        let settings = &self.settings;
        if bookkeeping.window.is_some_and(|was| settings.window > was) {
            bookkeeping.last_full_scan = None;
        }
        let full_scan_due = settings.full_scan_interval.is_zero()
            || bookkeeping.last_full_scan.is_none_or(|t| {
                now.saturating_sub(t) >= settings.full_scan_interval.as_millis() as i64
            });
        if full_scan_due {
            bookkeeping.last_full_scan = Some(now);
        }
        let mut request = PollRequest::new(settings, now, full_scan_due);
        if bookkeeping.catch_up_given_up {
            request.max_catch_up = Duration::ZERO;
        }
        bookkeeping
            .tracker
            .list_oldest_per_status(self.oldest_per_status);
        let result = poll::poll(&mut bookkeeping.tracker, &self.client, &request).await?;
        bookkeeping.clock_offset_ms = result.now.saturating_sub(now);
        // Only now is the wider window read: a failed read is tried again.
        bookkeeping.window = Some(settings.window);
        bookkeeping.catch_up_given_up = false;
        tracing::debug!(account = %self.account.name, pages = result.scan_pages, live_pages = result.live_pages, whole_window = result.whole_window, "scanned");
        bookkeeping.unpublished = Some(Unpublished {
            result,
            at: now,
            took: started.elapsed(),
            tries: 0,
            counted: false,
        });
        Ok(())
    }

    /// A poll that ran out of time while reaching back past the window to
    /// catch up after an outage: the next polls read only the window, and
    /// what ended in between is not counted (said once in the log).
    async fn give_up_catch_up(&mut self, now: UnixMillis) {
        let mut bookkeeping = self.bookkeeping.lock().await;
        let window = self.settings.window.as_millis() as i64;
        let Some(last) = bookkeeping.tracker.last_poll_at() else {
            return;
        };
        // The last poll's time is the API's: compare it with the API's now.
        let api_now = now.saturating_add(bookkeeping.clock_offset_ms);
        if bookkeeping.catch_up_given_up
            || self.settings.max_catch_up.is_zero()
            || api_now.saturating_sub(last) <= window
        {
            return;
        }
        bookkeeping.catch_up_given_up = true;
        tracing::warn!(
            account = %self.account.name,
            last_good_poll = %crate::timefmt::format_millis(last),
            "catching up after the outage took longer than poll.timeout; reading only the window from now on: jobs that ended between the last good poll and the window's start are not counted"
        );
    }

    /// Reads the template list for display names when due: every
    /// `metrics.templates.names_refresh`, or sooner (not before
    /// [`TEMPLATE_NAMES_RETRY`]) after a failed read or for a template
    /// that came since the last read. Its failure is counted and logged,
    /// and changes no job number.
    async fn refresh_template_names(&mut self, now: UnixMillis) {
        let Some(refresh) = self.metrics.template_names_refresh() else {
            return;
        };
        if self.client.template_names_are_free() {
            // Read with each poll already (see `publish`).
            return;
        }
        let name = &self.account.name;
        let since = |d: Duration| {
            self.names_read_at
                .is_none_or(|at| now.saturating_sub(at) >= d.as_millis() as i64)
        };
        let newcomer = self
            .names_read_at
            .is_some_and(|at| self.metrics.templates_unnamed_since(at));
        let retry = (newcomer || self.names_failed) && since(TEMPLATE_NAMES_RETRY);
        if !(since(refresh) || retry) {
            return;
        }
        self.names_read_at = Some(now);
        let listed = self.client.list_templates().await;
        self.names_failed = listed.is_err();
        match listed {
            Ok(listed) => {
                tracing::debug!(account = %name, templates = listed.len(), "template names read");
                self.metrics.template_names(Some(&listed));
            }
            Err(e) => {
                tracing::warn!(account = %name, error = %e, "reading template names failed; templates keep the names they had (or their ids)");
                self.metrics.template_names(None);
            }
        }
    }

    /// Puts the poll waiting in the bookkeeping into the metrics, the
    /// status board and the log (see [`Bookkeeping::unpublished`]).
    async fn publish(&mut self) {
        let name = self.account.name.clone();
        let mut bookkeeping = self.bookkeeping.lock().await;
        let Some(left) = bookkeeping.unpublished.as_mut() else {
            return;
        };
        left.tries += 1;
        // A fault drill (`--features failpoints`): a panic with the poll
        // applied and its completions not yet published.
        fail::fail_point!("poll-publish");
        let (result, now) = (&left.result, left.at);
        let outcome = &result.outcome;
        if !std::mem::replace(&mut left.counted, true) {
            if self.client.template_names_are_free()
                && self.metrics.template_names_refresh().is_some()
            {
                // A self-hosted server's template names are in the listing
                // the poll read: taken before its completions are counted,
                // so a template's series are named from the start.
                if let Ok(names) = self.client.list_templates().await {
                    self.metrics.template_names(Some(&names));
                }
            }
            let notes = PollNotes {
                lookups_failed: result.lookups_failed,
                lookups_deferred: result.lookups_deferred,
                live_listing_unfiltered: result.live_listing_unfiltered,
                clock_offset_ms: result.clock_offset_ms,
            };
            self.metrics
                .poll_applied(outcome, &result.skipped, &notes, now);
            if let Some(stale) = &result.stale {
                self.metrics.stale_jobs(stale);
            }
        }
        if !outcome.given_up.is_empty() {
            const SHOWN: usize = 10;
            let ids: Vec<String> = outcome
                .given_up
                .iter()
                .take(SHOWN)
                .map(ToString::to_string)
                .collect();
            tracing::warn!(account = %name, jobs = outcome.given_up.len(), ids = %ids.join(","), "look-ups failed 5 polls in a row and were given up: these jobs are decided by the listings alone (an ended one counted without render duration, template or error text)");
        }
        if result.full_pages_undecodable {
            tracing::warn!(account = %name, "a full page of jobs did not decode (a job in it the parser cannot read); its jobs were looked up one by one");
        }
        if result.live_listing_unfiltered != self.live_unfiltered {
            self.live_unfiltered = result.live_listing_unfiltered;
            if self.live_unfiltered {
                tracing::warn!(account = %name, "the API listed ended jobs among the jobs not ended (it ignored exclude_states); polls read from the oldest job still going instead, and jobs older than the window are not seen");
            } else {
                tracing::info!(account = %name, "the API filters the listing of jobs not ended again");
            }
        }
        if result.lookups_failed > 0 {
            tracing::debug!(account = %name, failed = result.lookups_failed, "look-ups failed for their jobs alone; those jobs are looked up again next poll, up to 5 polls in a row");
        }
        self.metrics.poll_succeeded(now, left.took);
        let listed = self.metrics.oldest_listed(outcome);
        self.board.set_oldest(&name, listed);
        tracing::debug!(
            account = %name,
            took_ms = left.took.as_millis() as u64,
            completions = outcome.completions.len(),
            tracked = outcome.tracked,
            baseline = outcome.baseline,
            "poll done"
        );
        bookkeeping.unpublished = None;
        drop(bookkeeping);
        // After the poll, outside its deadline: names are never worth a
        // failed poll.
        self.refresh_template_names(now).await;
        self.board.record(&name, now, None);
        if self.failing.take().is_some() {
            tracing::info!(account = %name, "poll succeeded again");
        }
    }

    /// Polls once, updates metrics, the status board and the log.
    pub async fn poll(&mut self) {
        let started = Instant::now();
        let now = self.clock.now_millis();
        let name = self.account.name.clone();
        let timeout = self.settings.timeout;
        // A fault drill (`--features failpoints`): a panic between polls.
        fail::fail_point!("poll-cycle");
        let result = match tokio::time::timeout(timeout, self.poll_and_apply(now, started)).await {
            Ok(r) => r,
            Err(_) => {
                self.give_up_catch_up(now).await;
                Err(ApiError::Deadline { timeout })
            }
        };
        match result {
            Ok(()) => self.publish().await,
            Err(e) => {
                let reason = e.reason();
                self.metrics.poll_failed(reason, started.elapsed());
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
    /// from `settings` as they come. A poll longer than the interval delays
    /// the next one; polls never overlap.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut settings: watch::Receiver<PollConfig>,
    ) {
        let ticker_for = |every: Duration| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let mut ticker = ticker_for(self.settings.interval);
        let mut settings_open = true;
        let deliveries = self.deliveries.clone();
        // Held for this poller's life; a restarted one takes it over.
        let mut deliveries = deliveries.lock().await;
        // A poll the last incarnation applied and died before publishing.
        self.publish().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
                Some(job) = deliveries.recv() => {
                    tokio::select! {
                        _ = self.take_deliveries(job, &mut deliveries) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
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
                _ = self.poll() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// The first pause before a dead poller is restarted; each death in a row
/// doubles it, up to [`MAX_RESTART_DELAY`].
pub(crate) const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
pub(crate) const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A poller that ran this long before dying starts the pauses over.
const HEALTHY_RUN: Duration = Duration::from_secs(600);

fn restart_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_RESTART_DELAY)
        .with_max_delay(MAX_RESTART_DELAY)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// The text of a panic, for the log and the landing page.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(
            || "a panic without a message".to_owned(),
            |s| (*s).to_owned(),
        ),
    }
}

/// Runs `poller` in its own task until `stop` turns true, and restarts it
/// whenever the task ends any other way (a panic, a bug): the death is
/// logged once, counted in `nexrender_exporter_poller_restarts_total`,
/// shown on `/readyz` and the landing page, and `nexrender_up` is 0 until
/// the restarted poller succeeds. Restarts pause [`FIRST_RESTART_DELAY`],
/// doubling up to [`MAX_RESTART_DELAY`] while deaths come in a row. The
/// bookkeeping is kept, unless the poller died while applying a poll: then
/// the next poll is a fresh baseline (nothing counted twice; completions
/// between the last good poll and that baseline are not counted).
pub(crate) async fn supervise(
    poller: AccountPoller,
    mut stop: watch::Receiver<bool>,
    settings: watch::Receiver<PollConfig>,
) {
    let name = poller.account.name.clone();
    let mut delays = restart_delays();
    loop {
        let mut incarnation = poller.clone();
        incarnation.settings = settings.borrow().clone();
        let started = Instant::now();
        let ended = tokio::spawn(incarnation.run(stop.clone(), settings.clone())).await;
        if *stop.borrow() {
            return;
        }
        let why = match ended {
            Ok(()) => "its task ended".to_owned(),
            Err(e) if e.is_panic() => format!("panic: {}", panic_text(e.into_panic())),
            Err(_) => "its task was cancelled".to_owned(),
        };
        let kept = {
            let mut bookkeeping = poller.bookkeeping.lock().await;
            // A poll whose publishing killed the poller twice is dropped,
            // and the bookkeeping with it.
            let intact = bookkeeping.tracker.is_intact()
                && bookkeeping.unpublished.as_ref().is_none_or(|u| u.tries < 2);
            if !intact {
                *bookkeeping = Bookkeeping::default();
            }
            intact
        };
        poller.metrics.poller_died();
        poller.board.poller_died(&name, &why);
        if started.elapsed() >= HEALTHY_RUN {
            delays = restart_delays();
        }
        let pause = delays.next().unwrap_or(MAX_RESTART_DELAY);
        tracing::error!(
            account = %name,
            reason = %why,
            restart_in = ?pause,
            bookkeeping = if kept { "kept" } else { "lost mid-update: the next poll is a fresh baseline" },
            "poller died; restarting it, nexrender_up is 0"
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}
