//! The job tracker: what changed since the last poll, and which jobs reached
//! a terminal status. Counting exactly once happens here and nowhere else.
//!
//! A poll is two pure steps around the network:
//! 1. [`JobTracker::plan`]: given the window scan, which jobs need detail
//!    (`GET /jobs/{id}`).
//! 2. [`JobTracker::apply`]: given the scan, the details and the time, update
//!    the bookkeeping and return what to count and observe.
//!
//! If anything in between fails, `apply` is not called and nothing changes,
//! so the next good poll counts what happened in the meantime exactly once.
//!
//! Memory and time follow the jobs in the window, so both are kept small:
//! jobs with ULID ids (all of them, on the real API) live in one vector
//! sorted by id, 32 bytes each, and a poll walks it beside the scan's own id
//! order (a merge, no hashing, memory read in order).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::api::{ApiJob, JobId};
use crate::clock::UnixMillis;
use crate::oldest::{OldJob, OldestKeeper, Spotlight};
use crate::scan::{ScanBuilder, ScanJob, WindowScan};
use crate::status::{JobStatus, StatusByte, StatusTable};

/// The answer to a detail look-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Found(ApiJob),
    /// 404: the job no longer exists.
    Gone,
    /// The look-up was put off to keep the poll bounded: the job stays as
    /// it was (a job not yet remembered stays unknown), and is looked up
    /// again next poll.
    Unknown,
    /// The look-up failed for this job alone (an error status, an answer
    /// that is not a job): as [`Detail::Unknown`], and one more failure.
    /// After [`MAX_LOOKUP_FAILURES`] polls in a row the look-up is given up
    /// and the job decided by the listings alone.
    Failed,
}

impl Detail {
    /// No answer to go by this poll: put off, or failed.
    fn is_unknown(&self) -> bool {
        matches!(self, Detail::Unknown | Detail::Failed)
    }
}

/// Polls in a row whose look-up of a job failed, after which the look-up
/// is given up: an ended job is counted from what the listing shows (its
/// status, without render duration or template), a job that left the
/// listing of jobs not ended is forgotten (a whole-window read that shows
/// it ended brings it back), and a queue wait is not observed.
pub(crate) const MAX_LOOKUP_FAILURES: u8 = 5;

/// The widest offset between the API's clock and the exporter's that the
/// counting copes with: a time this far ahead is still a time (a job that
/// far in the future is kept, not forgotten), and scans reach this far
/// past now.
pub(crate) const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;

/// No creation time known.
const UNKNOWN: UnixMillis = i64::MIN;
/// Its completion has been counted (or it was terminal at the first poll).
const COUNTED: u8 = 1;
/// Its queue wait is still to be observed: it was seen waiting, or first
/// seen after the first poll, and its start has not been measured yet.
const WAIT_PENDING: u8 = 2;
/// The API said 404 after its completion was counted: no longer in the
/// numbers, remembered (until older than the window) only so that it is
/// not counted again if it comes back.
const GONE: u8 = 4;
/// Shown ended, but its look-up failed or was put off: its completion
/// (counted or not, with what observations) waits for its detail, which is
/// asked for every poll until it comes.
const LOOKUP: u8 = 8;
/// First seen already ended: whether it ended since the baseline is decided
/// once its detail is read (see `counts_as_new`).
const FIRST_ENDED: u8 = 16;
/// Left the listing of jobs not ended, and its look-up failed: it is no
/// longer waiting or running, but how it ended is unknown. Out of the
/// numbers, and looked up every poll until it answers (or a listing shows
/// it again).
const LEFT: u8 = 32;
/// Its terminal status came from a webhook delivery (confirmed by the API):
/// the next listing that shows it waiting or running (read before it ended,
/// or behind) does not take it back. Cleared by the next listing.
const DELIVERED: u8 = 64;
/// Ended, and looked up (or its look-up given up) without a `createdAt`:
/// not looked up again for one (see `plan_poll`).
const NO_CREATED_AT: u8 = 128;

/// What is remembered of one job: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct JobState {
    created_at: UnixMillis,
    status: StatusByte,
    flags: u8,
    /// Polls in a row whose look-up of it failed (see [`Detail::Failed`]).
    failures: u8,
}

impl JobState {
    fn created(&self, id: &JobId) -> Option<UnixMillis> {
        (self.created_at != UNKNOWN)
            .then_some(self.created_at)
            .or_else(|| id.created_hint())
    }

    /// The latest of its creation times (its `createdAt`, its id's time
    /// unless that is later than `latest`, or `seen_by`): it is forgotten
    /// only once all of them are older than the window, so that a job that
    /// comes back into view is older than the counting horizon by every
    /// account of its age (see `counts_as_new`). `latest` is a day past
    /// now ([`MAX_CLOCK_OFFSET_MS`]): an id ahead of the exporter's clock
    /// is the API's clock ahead, and such a job is kept, not forgotten
    /// while a listing can still show it.
    fn created_latest(
        &self,
        id: &JobId,
        latest: UnixMillis,
        seen_by: Option<UnixMillis>,
    ) -> Option<UnixMillis> {
        let created_at = (self.created_at != UNKNOWN).then_some(self.created_at);
        let hint = id.created_hint().filter(|at| *at <= latest);
        [created_at, hint].into_iter().flatten().max().or(seen_by)
    }

    /// Still waiting or running, as far as is known.
    fn going(&self) -> bool {
        !self.status.is_terminal() && !self.has(GONE) && !self.has(LEFT)
    }

    /// Waiting for a look-up before it can be settled.
    fn unresolved(&self) -> bool {
        self.has(LOOKUP) || self.has(LEFT)
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag
        } else {
            self.flags &= !flag
        }
    }
}

/// A job with a ULID id: the id as a 128-bit number, and its state.
#[derive(Debug, Clone, Copy)]
struct UlidJob {
    key: u128,
    tracked: JobState,
}

impl UlidJob {
    fn id(&self) -> JobId {
        JobId::Ulid(ulid::Ulid(self.key))
    }
}

/// A job id that is not a ULID, as the tracker keeps it: up to 22 bytes in
/// place (a self-hosted server's uids are 21-character nanoids), longer
/// ones on the heap. 24 bytes either way, where a `Box<str>` takes 16 and
/// a heap block of 32 more for a nanoid: a self-hosted farm's jobs are all
/// such ids.
#[derive(Clone)]
enum IdText {
    /// The text, then its length in the last byte.
    Inline([u8; 23]),
    Heap(Box<str>),
}

impl IdText {
    const INLINE: usize = 22;

    fn new(text: &str) -> Self {
        if text.len() <= Self::INLINE {
            let mut bytes = [0u8; 23];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            bytes[Self::INLINE] = text.len() as u8;
            IdText::Inline(bytes)
        } else {
            IdText::Heap(text.into())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Made from a `&str` cut at its own length: always UTF-8.
            IdText::Inline(b) => {
                std::str::from_utf8(&b[..usize::from(b[Self::INLINE])]).unwrap_or("")
            }
            IdText::Heap(s) => s,
        }
    }

    fn id(&self) -> JobId {
        JobId::Other(self.as_str().into())
    }
}

impl std::fmt::Debug for IdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq for IdText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for IdText {}

impl std::hash::Hash for IdText {
    /// As the text hashes, so that a map keyed by it is searched by `&str`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for IdText {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// A job whose id is not a ULID, so the id tells nothing of its creation.
#[derive(Debug, Clone, Copy)]
struct OtherJob {
    tracked: JobState,
    /// When a scan last showed it: it was created no later than that, so
    /// once this is older than the window, so is the job.
    seen_at: UnixMillis,
}

/// The remembered jobs: ULID ids (all, on the real API) sorted by id, any
/// other id by its text.
#[derive(Debug, Clone, Default)]
struct Jobs {
    ulids: Vec<UlidJob>,
    others: HashMap<IdText, OtherJob>,
}

impl Jobs {
    fn get(&self, id: &JobId) -> Option<&JobState> {
        match id {
            JobId::Ulid(u) => self
                .ulids
                .binary_search_by_key(&u.0, |e| e.key)
                .ok()
                .map(|i| &self.ulids[i].tracked),
            JobId::Other(s) => self.others.get(&**s).map(|o| &o.tracked),
        }
    }

    fn get_mut(&mut self, id: &JobId) -> Option<&mut JobState> {
        match id {
            JobId::Ulid(u) => self
                .ulids
                .binary_search_by_key(&u.0, |e| e.key)
                .ok()
                .map(|i| &mut self.ulids[i].tracked),
            JobId::Other(text) => self.others.get_mut(&**text).map(|o| &mut o.tracked),
        }
    }

    /// Remembers a job not remembered yet; `seen_at` as for [`OtherJob`].
    fn insert(&mut self, id: &JobId, tracked: JobState, seen_at: UnixMillis) {
        match id {
            JobId::Ulid(u) => {
                let at = self.ulids.partition_point(|e| e.key < u.0);
                self.ulids.insert(at, UlidJob { key: u.0, tracked });
            }
            JobId::Other(text) => {
                self.others
                    .insert(IdText::new(text), OtherJob { tracked, seen_at });
            }
        }
    }

    fn len(&self) -> usize {
        self.ulids.len() + self.others.len()
    }
}

/// Walks two id-ordered sequences together, yielding each id once with
/// what each side has for it.
struct Merge<L: Iterator, R: Iterator> {
    l: std::iter::Peekable<L>,
    r: std::iter::Peekable<R>,
}

fn merge<A, B, L, R>(l: L, r: R) -> Merge<L::IntoIter, R::IntoIter>
where
    L: IntoIterator<Item = (u128, A)>,
    R: IntoIterator<Item = (u128, B)>,
{
    Merge {
        l: l.into_iter().peekable(),
        r: r.into_iter().peekable(),
    }
}

impl<A, B, L, R> Iterator for Merge<L, R>
where
    L: Iterator<Item = (u128, A)>,
    R: Iterator<Item = (u128, B)>,
{
    type Item = (u128, Option<A>, Option<B>);

    fn next(&mut self) -> Option<Self::Item> {
        let lk = self.l.peek().map(|x| x.0);
        let rk = self.r.peek().map(|x| x.0);
        match (lk, rk) {
            (None, None) => None,
            (Some(a), Some(b)) if a == b => {
                let (k, x) = self.l.next()?;
                let (_, y) = self.r.next()?;
                Some((k, Some(x), Some(y)))
            }
            (Some(a), b) if b.is_none_or(|b| a < b) => {
                self.l.next().map(|(k, x)| (k, Some(x), None))
            }
            _ => self.r.next().map(|(k, y)| (k, None, Some(y))),
        }
    }
}

/// A job seen reaching a terminal status.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: JobId,
    pub status: JobStatus,
    /// `stats.renderDuration` of a finished job, when the API gave one.
    pub render_duration: Option<f64>,
    /// Its `templateId`, from the full job read when it ended (a look-up,
    /// a full page or a delivery). Not kept per job between polls: every
    /// completion and queue wait is observed with that full job in hand,
    /// so the tracker's 16 bytes a job stay as they are.
    pub template: Option<Box<str>>,
    /// `stats.error` of a job that ended in `error`, when the API gave one.
    pub error: Option<Box<str>>,
    /// Its end (`finishedAt`, else `errorAt`) minus its creation: the wait
    /// the customer felt. None when the API gave no end time.
    pub turnaround: Option<f64>,
}

/// A job seen starting: how long it waited, and its template.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueWait {
    pub id: JobId,
    /// `startedAt - createdAt`.
    pub seconds: f64,
    pub template: Option<Box<str>>,
}

/// The latest plausible timestamp is "now" plus this much clock skew.
pub(crate) const CLOCK_SKEW_MS: i64 = 5 * 60_000;
/// Longer renders than this are taken for bad data, not observed.
pub(crate) const MAX_RENDER_SECONDS: f64 = 7.0 * 86_400.0;

/// Counts of impossible values seen in one poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidValues {
    /// `createdAt` in the future.
    pub created_at: u64,
    /// `startedAt` before `createdAt`, in the future, or missing on a started job.
    pub started_at: u64,
    /// `renderDuration` negative or longer than [`MAX_RENDER_SECONDS`].
    pub render_duration: u64,
    /// `finishedAt` or `errorAt` before `createdAt` or in the future.
    pub ended_at: u64,
}

impl InvalidValues {
    /// Field names, as the `field` label.
    pub(crate) const FIELDS: [&'static str; 4] =
        ["created_at", "started_at", "render_duration", "ended_at"];

    pub(crate) fn by_field(&self) -> [(&'static str, u64); 4] {
        [
            ("created_at", self.created_at),
            ("started_at", self.started_at),
            ("render_duration", self.render_duration),
            ("ended_at", self.ended_at),
        ]
    }
}

/// What one poll changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Jobs in the window plus every non-terminal job, by current status.
    pub jobs_by_status: BTreeMap<JobStatus, u64>,
    /// Creation time of the oldest job in each non-terminal status.
    pub oldest_created: BTreeMap<JobStatus, UnixMillis>,
    /// Start time (`startedAt`) of the longest-running job in each status
    /// of a job in progress (started, not ended), from its look-up.
    pub oldest_started: BTreeMap<JobStatus, UnixMillis>,
    /// The oldest few jobs of each non-terminal status, oldest first
    /// ([`JobTracker::list_oldest`] per status; see [`crate::oldest`]).
    pub oldest_jobs: BTreeMap<JobStatus, Vec<OldJob>>,
    pub completions: Vec<Completion>,
    /// `startedAt - createdAt` of jobs seen starting.
    pub queue_waits: Vec<QueueWait>,
    /// Values from the API that could not be true, by field; each was
    /// ignored (not observed), the rest of its job used.
    pub invalid: InvalidValues,
    /// This poll was the first: it set the baseline, and counted only the
    /// jobs that ended while it read (see [`Baseline`]).
    pub baseline: bool,
    /// Jobs whose look-up failed [`MAX_LOOKUP_FAILURES`] polls in a row:
    /// decided by the listings alone (an ended one counted without render
    /// duration, template or error text).
    pub given_up: Vec<JobId>,
    /// Jobs remembered after this poll.
    pub tracked: usize,
}

/// What the tracker made of one webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryVerdict {
    /// Its completion is counted now.
    Counted,
    /// Its completion was counted already, by a poll or an earlier delivery.
    Duplicate,
    /// Not counted: it came before the first poll, or the job ended before
    /// the baseline (or was counted and forgotten), or nothing says when it
    /// was created. The polls decide, as they would without webhooks.
    NotCounted,
    /// A status that is not terminal: nothing to count.
    NotTerminal,
    /// A job no poll has seen yet: to be counted once the API confirms it
    /// (a look-up), so a delivery cannot count a job the account does not
    /// have. Nothing changed.
    Unconfirmed,
    /// The look-up said 404: not a job of this account.
    UnknownJob,
}

impl DeliveryVerdict {
    /// The `result` label of `nexrender_exporter_webhook_deliveries_total`.
    pub fn label(self) -> &'static str {
        match self {
            DeliveryVerdict::Counted => "accepted",
            DeliveryVerdict::Duplicate => "duplicate",
            DeliveryVerdict::NotCounted => "not_counted",
            DeliveryVerdict::NotTerminal => "not_terminal",
            DeliveryVerdict::Unconfirmed => "unconfirmed",
            DeliveryVerdict::UnknownJob => "unknown_job",
        }
    }
}

/// What one delivery changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub verdict: DeliveryVerdict,
    pub completion: Option<Completion>,
    /// `startedAt - createdAt`, if it was still to be observed.
    pub queue_wait: Option<QueueWait>,
    pub invalid: InvalidValues,
    /// The job left the first status and is now in the second, in the
    /// numbers of `nexrender_jobs` (`None` first: it was not in them).
    pub moved: Option<(Option<JobStatus>, JobStatus)>,
}

impl Delivered {
    /// A delivery that changed nothing, with its verdict.
    pub fn judged(verdict: DeliveryVerdict) -> Self {
        Delivered {
            verdict,
            completion: None,
            queue_wait: None,
            invalid: InvalidValues::default(),
            moved: None,
        }
    }

    /// A delivery taken into the bookkeeping: what settling it gave
    /// (`out`), and where it `moved` in the numbers.
    fn settled(out: Outcome, moved: Moved) -> Self {
        let completion = out.completions.into_iter().next();
        let (verdict, moved) = if completion.is_some() {
            (DeliveryVerdict::Counted, moved)
        } else {
            // Decided old (ended before the baseline): as the poll would.
            (DeliveryVerdict::NotCounted, None)
        };
        Delivered {
            verdict,
            completion,
            queue_wait: out.queue_waits.into_iter().next(),
            invalid: out.invalid,
            moved,
        }
    }
}

/// Where a delivered job moved in the numbers (see [`Delivered::moved`]).
type Moved = Option<(Option<JobStatus>, JobStatus)>;

/// What the first poll knows of the moment it starts from, so that a job
/// ending while it reads is counted, not taken into the baseline: a job
/// the listing of jobs not ended (read first) shows going, or one created
/// after that listing was read by the API's own clock (its `Date`, one
/// second added for its rounding), that the window scan then shows ended.
/// Without the API's `Date` only the first kind is known.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    /// Jobs the listing of jobs not ended showed, and whether each had started.
    live: HashMap<JobId, bool>,
    horizon: Option<UnixMillis>,
}

impl Baseline {
    /// `live`: the listing of jobs not ended; `date`: the API's `Date` on
    /// it, if it said and is believed.
    pub fn new(live: &WindowScan, date: Option<UnixMillis>) -> Self {
        Baseline {
            live: live
                .iter()
                .map(|job| (job.id.clone(), job.status.has_started()))
                .collect(),
            horizon: date.map(|at| at.saturating_add(1000)),
        }
    }

    /// Whether a job the first poll's scan shows ended ended during that
    /// poll: `Some(started)`, with whether it had started when the poll
    /// began. `job`: its detail, if read (for a `createdAt`).
    fn ended_during(&self, id: &JobId, job: Option<&ApiJob>) -> Option<bool> {
        if let Some(started) = self.live.get(id) {
            return Some(*started);
        }
        let horizon = self.horizon?;
        let created_at = job.and_then(|found| found.created_at);
        let created = [id.created_hint(), created_at]
            .into_iter()
            .flatten()
            .min()?;
        (created >= horizon).then_some(false)
    }
}

/// What a poll knows besides its listings and look-ups.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PollFacts<'a> {
    /// The `from_date` of the window: a terminal job created before it can
    /// never be seen again and is forgotten.
    pub window_start: UnixMillis,
    /// The poll's time (the API's, as far as known).
    pub now: UnixMillis,
    /// The `from_date` of the scan when it read the whole window: an ended
    /// job created well inside it that it does not show was deleted.
    pub whole_from: Option<UnixMillis>,
    /// At the first poll, what it knows of the moment it started from.
    pub baseline: Option<&'a Baseline>,
    /// Where the API's own jobs show its clock at least (the newest job's
    /// id, when no `Date` is believed): a time up to this plus
    /// [`CLOCK_SKEW_MS`] is plausible, not "in the future". It moves no
    /// window and no horizon, so one job with a bogus id cannot either.
    pub api_at_least: Option<UnixMillis>,
}

#[derive(Debug, Clone, Default)]
pub struct JobTracker {
    jobs: Jobs,
    /// The names behind the status codes, shared with the scans it reads.
    statuses: StatusTable,
    baseline_done: bool,
    /// The time (the API's, as far as known) of the last applied poll.
    last_poll_at: Option<UnixMillis>,
    /// A job first seen already terminal is counted only if it was created
    /// at or after this: the baseline's time at first, then the start of
    /// the window of the last poll. Older jobs ended before the baseline,
    /// or were counted and forgotten; they come back into view when the
    /// window widens or the clock steps back, and are not counted again.
    count_from: UnixMillis,
    /// An `apply` began and did not finish (it panicked): the bookkeeping
    /// is half updated and cannot be trusted.
    applying: bool,
    /// The poll's time is the API's own (its `Date`), not the exporter's.
    clock_is_the_apis: bool,
    /// Polls applied: where the look-ups put off in turn start (see
    /// [`JobTracker::lookup_turn`]).
    polls: usize,
    /// [`PollFacts::api_at_least`] of the last poll, for deliveries.
    api_at_least: Option<UnixMillis>,
    /// When each job in progress (started, not ended) started, by its
    /// look-up (each such job is looked up once, at the first poll too);
    /// [`UNKNOWN`] where the look-up said nothing. Holds only the jobs in
    /// progress at the last poll: a few per worker, not per job.
    started: HashMap<JobId, UnixMillis>,
    /// How many of the oldest jobs of each status to list (0: none).
    oldest_per_status: usize,
    /// What look-ups said of the listed jobs.
    spotlight: Spotlight,
}

/// One pass of [`JobTracker::apply`] over the jobs: what it works with
/// besides the jobs themselves, and what it has tallied so far.
struct ApplyPass<'a> {
    statuses: &'a mut StatusTable,
    first: bool,
    /// At the first poll: what it knows of the moment it started from.
    baseline: Option<&'a Baseline>,
    /// The `from_date` of a scan that read the whole window.
    whole_from: Option<UnixMillis>,
    now: UnixMillis,
    /// The latest plausible time: `now` plus [`CLOCK_SKEW_MS`], or later
    /// when the API's own jobs show its clock ahead (see [`PollFacts`]).
    latest: UnixMillis,
    /// The latest plausible time of an event the API dates (a start, an
    /// end): `latest` when the poll's time is the API's own (its `Date`);
    /// without it, [`MAX_CLOCK_OFFSET_MS`] later, since the API's clock
    /// may run ahead of ours by that much and its events with it.
    latest_event: UnixMillis,
    window_start: UnixMillis,
    /// [`JobTracker::count_from`] as it was before this poll.
    count_from: UnixMillis,
    out: Outcome,
    /// Jobs kept, and the oldest creation time, by status code.
    counts: Vec<u64>,
    oldest: Vec<UnixMillis>,
    /// [`JobTracker::started`] as the last poll left it, and as this one
    /// leaves it (the jobs in progress now), with the earliest start by
    /// status code.
    started_before: &'a HashMap<JobId, UnixMillis>,
    started: HashMap<JobId, UnixMillis>,
    oldest_started: Vec<UnixMillis>,
    /// The oldest few jobs of each status code, by id.
    keeper: OldestKeeper,
}

impl ApplyPass<'_> {
    /// A job the scan shows, with the detail fetched for it, if any.
    fn seen(
        &mut self,
        mut tracked: Option<JobState>,
        mut shown: ScanJob,
        detail: Option<&Detail>,
    ) -> JobState {
        if let Some(tracked) = tracked.as_mut().filter(|t| t.has(DELIVERED)) {
            // The first listing after a delivery may have been read before
            // the job ended, or be behind: the delivery (the API's own
            // detail) is the later word, once. A later listing that still
            // shows it going is believed (re-queued upstream).
            tracked.set(DELIVERED, false);
            if !shown.status.is_terminal() && tracked.status.is_terminal() {
                shown.status = tracked.status;
            }
        }
        // A failed look-up is one more failure; past the bound it is given
        // up, and the job is decided by what the listing shows.
        let mut failures = tracked.map_or(0, |t| t.failures);
        let mut given_up = false;
        let detail = match detail {
            Some(Detail::Failed) => match self.lookup_failed(tracked.as_ref(), shown.id) {
                Some(n) => {
                    failures = n;
                    detail
                }
                None => {
                    given_up = true;
                    None
                }
            },
            _ => detail,
        };
        if detail.is_some_and(Detail::is_unknown) {
            if let Some(tracked) = self.seen_undetailed(tracked, shown, failures) {
                return tracked;
            }
        }
        self.seen_detailed(tracked, shown, detail, failures, given_up)
    }

    /// A job the scan shows whose detail did not come this poll (put off,
    /// or failed): what it is remembered as, or `None` for a new job that
    /// is not ended, or is seen at the first poll: decided by the listing
    /// alone (see `seen_detailed`).
    fn seen_undetailed(
        &self,
        tracked: Option<JobState>,
        shown: ScanJob,
        failures: u8,
    ) -> Option<JobState> {
        if let Some(mut tracked) = tracked {
            // Without its detail, a known job takes the status the scan
            // shows; if it ended, its completion waits for the detail.
            tracked.status = shown.status;
            tracked.failures = failures;
            tracked.set(GONE, false);
            tracked.set(LEFT, false);
            if shown.status.is_terminal() && !tracked.has(COUNTED) {
                tracked.set(LOOKUP, true);
            }
            return Some(tracked);
        }
        // A job first seen ended, without the detail that says whether
        // it ended since the baseline: remembered, decided later.
        (shown.status.is_terminal() && !self.first).then_some(JobState {
            created_at: UNKNOWN,
            status: shown.status,
            flags: WAIT_PENDING | LOOKUP | FIRST_ENDED,
            failures,
        })
    }

    /// A job the scan shows, settled with its detail if that came
    /// (`detail` is `None` when none was asked for, or when its look-up was
    /// just given up: `given_up`). `failures`: its look-ups that failed in
    /// a row, this poll's included.
    fn seen_detailed(
        &mut self,
        tracked: Option<JobState>,
        shown: ScanJob,
        detail: Option<&Detail>,
        failures: u8,
        given_up: bool,
    ) -> JobState {
        let new = tracked.is_none();
        let job = match detail {
            Some(Detail::Found(found)) if found.id == *shown.id => Some(found),
            _ => None,
        };
        // The detail was fetched after the scan, so it is the later word.
        let status = job.map_or(shown.status, |found| self.statuses.code(&found.status));
        // At the first poll, a job the scan shows ended that ended while
        // the poll read (see [`Baseline`]) is counted, as any later poll
        // would; `Some(started)`: whether it had started when the poll began.
        let during = match (new && self.first && status.is_terminal(), self.baseline) {
            (true, Some(baseline)) => baseline.ended_during(shown.id, job),
            _ => None,
        };
        let mut tracked = tracked.unwrap_or_else(|| self.first_seen(status, during));
        tracked.status = status;
        tracked.failures = if job.is_some() || given_up || detail.is_none() {
            0
        } else {
            failures
        };
        tracked.set(GONE, false);
        tracked.set(LEFT, false);
        if given_up {
            tracked.set(
                WAIT_PENDING,
                tracked.has(WAIT_PENDING) && status.is_terminal(),
            );
        }
        if during.is_some() {
            self.first = false;
            self.settle(&mut tracked, shown.id, job, false);
            self.first = true;
        } else {
            let first_ended = new || tracked.has(FIRST_ENDED);
            self.settle(&mut tracked, shown.id, job, first_ended);
        }
        // In progress, looked up: when it started (or that nobody says,
        // also when its look-up was given up: not asked for again).
        if status.has_started() && !status.is_terminal() && (job.is_some() || given_up) {
            let at = job
                .and_then(|found| found.started_at)
                .filter(|at| *at <= self.latest_event);
            self.started.insert(shown.id.clone(), at.unwrap_or(UNKNOWN));
        }
        // Looked up (or given up) and still no `createdAt`: not asked for
        // it again (see `plan_poll`).
        tracked.set(
            NO_CREATED_AT,
            status.is_terminal()
                && tracked.created_at == UNKNOWN
                && (given_up || job.is_some() || tracked.has(NO_CREATED_AT)),
        );
        tracked
    }

    /// A job seen for the first time, in `status`; `during`: at the first
    /// poll, `Some(started)` for a job that ended while it read (see
    /// `seen_detailed`). Its queue wait is to be observed, unless the first
    /// poll finds it started already.
    fn first_seen(&self, status: StatusByte, during: Option<bool>) -> JobState {
        let started = status.has_started();
        JobState {
            created_at: UNKNOWN,
            status,
            flags: match during {
                Some(started) if started => 0,
                Some(_) => WAIT_PENDING,
                None if !self.first || !started => WAIT_PENDING,
                None => 0,
            },
            failures: 0,
        }
    }

    /// A look-up of `id` failed: its failures so far, this one included,
    /// or `None` when that makes [`MAX_LOOKUP_FAILURES`] and the look-up
    /// is given up (said in the outcome).
    fn lookup_failed(&mut self, tracked: Option<&JobState>, id: &JobId) -> Option<u8> {
        let failures = tracked.map_or(0, |t| t.failures).saturating_add(1);
        if failures < MAX_LOOKUP_FAILURES {
            return Some(failures);
        }
        self.out.given_up.push(id.clone());
        None
    }

    /// Counts and observes what a job's latest status and detail call for.
    /// `first_ended`: a job first seen already ended (see `counts_as_new`).
    fn settle(
        &mut self,
        tracked: &mut JobState,
        id: &JobId,
        job: Option<&ApiJob>,
        first_ended: bool,
    ) {
        if first_ended
            && !self.first
            && tracked.status.is_terminal()
            && !tracked.has(COUNTED)
            && !self.counts_as_new(id, job)
        {
            // Ended before the baseline, or counted and forgotten: remembered
            // as counted, nothing observed.
            tracked.set(COUNTED, true);
            tracked.set(WAIT_PENDING, false);
        }
        tracked.set(FIRST_ENDED, false);
        tracked.set(LOOKUP, false);
        count_end(tracked, id, job, self);
    }

    /// Whether a job first seen already terminal ended since the baseline:
    /// created at or after [`JobTracker::count_from`], by both its id's
    /// time and its `createdAt` where they differ (the earlier of the two;
    /// a job is forgotten by the later, so one that comes back is never
    /// taken for new). Without either, it is not counted (a missed
    /// completion rather than a false one).
    fn counts_as_new(&self, id: &JobId, job: Option<&ApiJob>) -> bool {
        let latest = self.latest;
        let created_at = job
            .and_then(|found| found.created_at)
            .filter(|at| *at <= latest);
        // An id's time in the future is no time at all.
        let hint = id.created_hint().filter(|at| *at <= latest);
        let created = [hint, created_at].into_iter().flatten().min();
        created.is_some_and(|at| at >= self.count_from)
    }

    /// A remembered job the scan does not show: left the window, deleted,
    /// or not read again by an incremental scan. Whether to keep it.
    /// `created_by`: a time it was created no later than, if known.
    fn unseen(
        &mut self,
        tracked: &mut JobState,
        id: &JobId,
        detail: Option<&Detail>,
        created_by: Option<UnixMillis>,
    ) -> bool {
        // Whatever a listing said of it, it is no longer the first.
        tracked.set(DELIVERED, false);
        let detail = match detail {
            Some(Detail::Failed) => match self.lookup_failed(Some(tracked), id) {
                Some(n) => {
                    tracked.failures = n;
                    detail
                }
                None => {
                    if !self.unseen_given_up(tracked, id) {
                        return false;
                    }
                    None
                }
            },
            _ => detail,
        };
        if !self.unseen_answered(tracked, id, detail) {
            return false;
        }
        self.unseen_kept(tracked, id, detail.is_some(), created_by)
    }

    /// The look-up of a job the scan does not show is given up: settled
    /// from what the listings showed. Whether to keep it.
    fn unseen_given_up(&mut self, tracked: &mut JobState, id: &JobId) -> bool {
        tracked.failures = 0;
        if tracked.has(LOOKUP) {
            // Shown ended: counted from that listing alone.
            tracked.set(LOOKUP, false);
            let first_ended = tracked.has(FIRST_ENDED);
            self.settle(tracked, id, None, first_ended);
        } else if tracked.going() || tracked.has(LEFT) {
            // Left the listing of jobs not ended, and nothing says how:
            // forgotten. A whole-window read that shows it ended brings it
            // back as a new job.
            return false;
        }
        true
    }

    /// What the look-up of a job the scan does not show says of it, if
    /// anything (`detail`). False: it is forgotten now.
    fn unseen_answered(
        &mut self,
        tracked: &mut JobState,
        id: &JobId,
        detail: Option<&Detail>,
    ) -> bool {
        match detail {
            Some(Detail::Gone) if tracked.has(LOOKUP) && tracked.status.is_terminal() => {
                // A listing showed it ended, and it was deleted before its
                // detail came: counted from that listing, then gone.
                tracked.set(LOOKUP, false);
                let first_ended = tracked.has(FIRST_ENDED);
                self.settle(tracked, id, None, first_ended);
                tracked.set(GONE, true);
            }
            Some(Detail::Gone) if !tracked.has(COUNTED) => return false,
            Some(Detail::Gone) => {
                tracked.set(GONE, true);
                tracked.set(LEFT, false);
                tracked.set(LOOKUP, false);
            }
            Some(Detail::Found(found)) if found.id == *id => {
                tracked.status = self.statuses.code(&found.status);
                tracked.failures = 0;
                tracked.set(LEFT, false);
                let first_ended = tracked.has(FIRST_ENDED);
                self.settle(tracked, id, Some(found), first_ended);
            }
            // It left the listing of jobs not ended (or the scan that
            // should show it), and nobody says how it ended yet.
            Some(Detail::Unknown | Detail::Failed) if tracked.going() => tracked.set(LEFT, true),
            // Unknown, failed, or an answer about another job.
            Some(_) | None => {}
        }
        true
    }

    /// Whether to keep a job the scan does not show, once what its look-up
    /// said is taken in. `detail_asked`: it was looked up this poll (or
    /// the look-up put off), and not given up. `created_by` as for `unseen`.
    fn unseen_kept(
        &self,
        tracked: &mut JobState,
        id: &JobId,
        detail_asked: bool,
        created_by: Option<UnixMillis>,
    ) -> bool {
        let latest = self.now.saturating_add(MAX_CLOCK_OFFSET_MS);
        let created = tracked.created_latest(id, latest, created_by);
        if self.whole_from.is_some()
            && !detail_asked
            && tracked.status.is_terminal()
            && tracked.has(COUNTED)
            && !tracked.unresolved()
        {
            // A read of the whole window shows every job the API has created
            // in it: an ended job it does not show was deleted, or left the
            // window by its `createdAt` whatever its id says. Out of the
            // numbers; remembered as counted unless every account of its
            // age is older than the counting horizon (then, listed again,
            // it is judged old whatever it is judged by, and never counted).
            if created.is_none_or(|at| at < self.count_from) {
                return false;
            }
            tracked.set(GONE, true);
        }
        // Terminal: forgotten once older than the window; until then still
        // counted (an incremental scan does not read these again).
        // One still to be settled is kept, whatever its age.
        tracked.going() || tracked.unresolved() || created.is_some_and(|at| at >= self.window_start)
    }

    /// A delivery of a job the tracker knows, settled with `job` (in
    /// `status`) once `confirmed`: where it moved in the numbers, or the
    /// verdict when nothing changed.
    fn deliver_known(
        &mut self,
        tracked: &mut JobState,
        job: &ApiJob,
        status: StatusByte,
        confirmed: bool,
    ) -> Result<Moved, DeliveryVerdict> {
        if tracked.has(COUNTED) {
            return Err(DeliveryVerdict::Duplicate);
        }
        if !confirmed {
            return Err(DeliveryVerdict::Unconfirmed);
        }
        let was = tracked
            .going()
            .then(|| self.statuses.name(tracked.status).clone());
        let first_ended = tracked.has(FIRST_ENDED);
        tracked.status = status;
        tracked.set(LEFT, false);
        tracked.set(DELIVERED, true);
        self.settle(tracked, &job.id, Some(job), first_ended);
        Ok(was.map(|was| (Some(was), job.status.clone())))
    }

    /// A delivery of a job no poll has seen: remembered in `jobs` and
    /// settled once `confirmed`, if it was created since the last poll
    /// (`last_poll_at`) and counts as new. Where it moved in the numbers,
    /// or the verdict when nothing changed.
    fn deliver_new(
        &mut self,
        jobs: &mut Jobs,
        job: &ApiJob,
        status: StatusByte,
        confirmed: bool,
        last_poll_at: UnixMillis,
    ) -> Result<Moved, DeliveryVerdict> {
        let id = &job.id;
        let latest = self.latest;
        let created_at = job.created_at.filter(|at| *at <= latest);
        let hint = id.created_hint().filter(|at| *at <= latest);
        let created = [hint, created_at].into_iter().flatten().min();
        let recent = created.is_some_and(|at| at >= last_poll_at.saturating_sub(CLOCK_SKEW_MS));
        if !recent || !self.counts_as_new(id, Some(job)) {
            return Err(DeliveryVerdict::NotCounted);
        }
        if !confirmed {
            return Err(DeliveryVerdict::Unconfirmed);
        }
        let mut tracked = JobState {
            created_at: UNKNOWN,
            status,
            flags: WAIT_PENDING | DELIVERED,
            failures: 0,
        };
        self.settle(&mut tracked, id, Some(job), false);
        jobs.insert(id, tracked, self.now);
        Ok(Some((None, job.status.clone())))
    }

    /// The jobs with ULID ids: `ulids` (sorted by id), the scan's and the
    /// details walked together in id order, each job kept or forgotten.
    fn apply_ulids(
        &mut self,
        ulids: &mut Vec<UlidJob>,
        scan: &WindowScan,
        details: &HashMap<JobId, Detail>,
    ) {
        // The details of ULID jobs in id order, walked beside the rest.
        let mut by_ulid: Vec<(u128, &Detail)> = details
            .iter()
            .filter_map(|(id, detail)| match id {
                JobId::Ulid(u) => Some((u.0, detail)),
                JobId::Other(_) => None,
            })
            .collect();
        by_ulid.sort_unstable_by_key(|detail| detail.0);
        let old = std::mem::take(ulids);
        let mut kept: Vec<UlidJob> = Vec::with_capacity(old.len() + scan.len());
        let jobs = merge(
            merge(
                old.iter().map(|entry| (entry.key, entry.tracked)),
                scan.by_ulid(),
            )
            .map(|(key, tracked, shown)| (key, (tracked, shown))),
            by_ulid,
        );
        for (key, job, detail) in jobs {
            let Some((tracked, shown)) = job else {
                continue;
            };
            let tracked = match (tracked, shown) {
                (tracked, Some(shown)) => self.seen(tracked, shown, detail),
                (Some(mut tracked), None) => {
                    if !self.unseen(&mut tracked, &JobId::Ulid(ulid::Ulid(key)), detail, None) {
                        continue;
                    }
                    tracked
                }
                (None, None) => continue,
            };
            self.count(&tracked, || JobId::Ulid(ulid::Ulid(key)));
            kept.push(UlidJob { key, tracked });
        }
        // A fault drill (`--features failpoints`): a panic with the ULID
        // jobs taken out of the table.
        fail::fail_point!("tracker-apply");
        drop(old);
        kept.shrink_to_fit();
        *ulids = kept;
    }

    /// The jobs whose ids are not ULIDs, each kept or forgotten.
    fn apply_others(
        &mut self,
        others: &mut HashMap<IdText, OtherJob>,
        scan: &WindowScan,
        details: &HashMap<JobId, Detail>,
    ) {
        let mut in_scan: HashSet<&str> = HashSet::new();
        for shown in scan.others() {
            let JobId::Other(text) = shown.id else {
                continue;
            };
            in_scan.insert(text);
            let known = others.get(&**text).map(|other| other.tracked);
            let seen = OtherJob {
                tracked: self.seen(known, shown, details.get(shown.id)),
                seen_at: self.now,
            };
            // Remembered jobs are updated in place: no new key a poll.
            match others.get_mut(&**text) {
                Some(other) => *other = seen,
                None => {
                    others.insert(IdText::new(text), seen);
                }
            }
        }
        others.retain(|text, other| {
            let id = text.id();
            if !in_scan.contains(text.as_str())
                && !self.unseen(
                    &mut other.tracked,
                    &id,
                    details.get(&id),
                    Some(other.seen_at),
                )
            {
                return false;
            }
            self.count(&other.tracked, || id);
            true
        });
    }

    /// The outcome, with the jobs kept counted by status.
    /// And the start times of the jobs in progress now.
    fn tally(self) -> (Outcome, HashMap<JobId, UnixMillis>) {
        let ApplyPass {
            statuses,
            counts,
            oldest,
            oldest_started,
            started,
            mut out,
            ..
        } = self;
        let earliest = |map: &mut BTreeMap<JobStatus, UnixMillis>, name: &JobStatus, at| {
            if at != UnixMillis::MAX {
                let entry = map.entry(name.clone()).or_insert(at);
                *entry = (*entry).min(at);
            }
        };
        for (code, name) in statuses.iter() {
            let jobs = counts[code.index()];
            if jobs > 0 {
                *out.jobs_by_status.entry(name.clone()).or_insert(0) += jobs;
            }
            earliest(&mut out.oldest_created, name, oldest[code.index()]);
            earliest(&mut out.oldest_started, name, oldest_started[code.index()]);
        }
        (out, started)
    }

    /// Counts a job that is kept.
    fn count(&mut self, tracked: &JobState, id: impl FnOnce() -> JobId) {
        if tracked.has(GONE) || tracked.has(LEFT) {
            return;
        }
        // An ended job whose `createdAt` (the API's window) is older than
        // the window is out of the numbers, whatever its id says; it is
        // remembered while its id says otherwise.
        if tracked.status.is_terminal()
            && tracked.created_at != UNKNOWN
            && tracked.created_at < self.window_start
        {
            return;
        }
        let code = tracked.status.index();
        self.counts[code] += 1;
        if !tracked.status.is_terminal() {
            let id = id();
            let created = tracked.created(&id);
            if let Some(created) = created {
                self.oldest[code] = self.oldest[code].min(created);
            }
            let started = match tracked.status.has_started() {
                true => self.in_progress(code, &id),
                false => None,
            };
            // Jobs in progress rank by their start where known (the
            // longest-running first, as NexrenderJobStuckRendering judges),
            // before those whose start is not; waiting ones by their
            // creation. A job whose creation is not known (an id that is
            // not a ULID, not looked up yet) but whose start is, is dated
            // by its start.
            if let Some(created) = created.or(started) {
                let rank = crate::oldest::rank(created, started);
                self.keeper.offer(code, rank, created, &id);
            }
        }
    }

    /// A job kept in progress: its start, from this poll's look-up or the
    /// last one's, is kept for the next poll and taken into the earliest
    /// of its status. Returns the start, when known.
    fn in_progress(&mut self, code: usize, id: &JobId) -> Option<UnixMillis> {
        let at = match self.started.get(id) {
            Some(at) => *at,
            None => {
                let at = *self.started_before.get(id)?;
                self.started.insert(id.clone(), at);
                at
            }
        };
        if at == UNKNOWN {
            return None;
        }
        self.oldest_started[code] = self.oldest_started[code].min(at);
        Some(at)
    }
}

impl JobTracker {
    /// A tracker that lists no oldest jobs until
    /// [`JobTracker::list_oldest_per_status`] says how many.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for the next scan, coding statuses with this tracker's
    /// table; `expected` jobs are made room for.
    pub fn scan_builder(&mut self, page_limit: usize, expected: usize) -> ScanBuilder<'_> {
        ScanBuilder::new(page_limit, expected, &mut self.statuses)
    }

    /// False after an `apply` that did not finish (a panic inside it): the
    /// bookkeeping is half updated, and only a fresh baseline is safe.
    pub(crate) fn is_intact(&self) -> bool {
        !self.applying
    }

    /// See [`ApplyPass::latest_event`].
    fn latest_event(&self, latest: UnixMillis) -> UnixMillis {
        match self.clock_is_the_apis {
            true => latest,
            false => latest.saturating_add(MAX_CLOCK_OFFSET_MS),
        }
    }

    /// Says whether the time given to the next `apply` is the API's own
    /// clock (its `Date` header) rather than the exporter's.
    pub(crate) fn set_clock_is_the_apis(&mut self, yes: bool) {
        self.clock_is_the_apis = yes;
    }

    /// Whether a first poll has set the baseline.
    pub(crate) fn has_baseline(&self) -> bool {
        self.baseline_done
    }

    /// The time of the last applied poll (the API's, as far as known).
    pub(crate) fn last_poll_at(&self) -> Option<UnixMillis> {
        self.last_poll_at
    }

    /// The creation time of the oldest remembered job that has not ended
    /// and is missing from `live`, the listing of every job not ended: it
    /// ended (or was deleted) since the last poll. `Some(i64::MIN)` when
    /// such a job's creation time is unknown.
    pub(crate) fn oldest_ended_since(&self, live: &WindowScan) -> Option<UnixMillis> {
        let mut oldest: Option<UnixMillis> = None;
        let mut note = |at: Option<UnixMillis>| {
            let at = at.unwrap_or(i64::MIN);
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        };
        let tracked = self.jobs.ulids.iter().map(|entry| (entry.key, entry));
        for (_, entry, listed) in merge(tracked, live.by_ulid()) {
            if let (Some(entry), None) = (entry, listed) {
                if entry.tracked.going() {
                    note(entry.tracked.created(&entry.id()));
                }
            }
        }
        let listed: HashSet<&JobId> = live.others().map(|job| job.id).collect();
        for (text, other) in &self.jobs.others {
            let id = text.id();
            if other.tracked.going() && !listed.contains(&id) {
                note(other.tracked.created(&id));
            }
        }
        oldest
    }

    /// The newest remembered job (by its ULID), not known to be gone, that
    /// `skip` does not take:
    /// one to look up to tell whether look-ups work at all.
    pub(crate) fn newest_known(&self, skip: impl Fn(&JobId) -> bool) -> Option<JobId> {
        self.jobs
            .ulids
            .iter()
            .rev()
            .filter(|entry| !entry.tracked.has(GONE))
            .map(UlidJob::id)
            .find(|id| !skip(id))
    }

    /// Whether a poll (or a counted delivery) has made this job known.
    pub fn knows(&self, id: &JobId) -> bool {
        self.jobs.get(id).is_some()
    }

    /// Jobs remembered now (memory follows this).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the next scan may start instead of the window's start: the
    /// creation time of the oldest job that has not ended (or the end of
    /// the last scan, if every job has ended). Every job created before it
    /// is terminal and remembered, so it cannot change and need not be read
    /// again; the numbers stay exact. `None` before the first poll, or when
    /// some id is not a ULID (its creation time is unknown): scan it all.
    pub(crate) fn scan_from(&self) -> Option<UnixMillis> {
        if !self.baseline_done || !self.jobs.others.is_empty() {
            return None;
        }
        let mut from = self.last_poll_at?;
        for entry in &self.jobs.ulids {
            if entry.tracked.going() {
                from = from.min(entry.tracked.created(&entry.id())?);
            }
        }
        Some(from)
    }

    /// Whether a job the scan shows needs its detail this poll.
    fn wants(&self, shown: ScanJob, tracked: Option<&JobState>) -> bool {
        if tracked.is_some_and(|tracked| tracked.unresolved()) {
            return true;
        }
        if shown.status.is_terminal() {
            // Newly terminal: for its render duration and queue wait; a job
            // first seen ended, also to tell by its `createdAt` whether it
            // ended since the baseline (not needed when its id says it is
            // older).
            self.baseline_done
                && match tracked {
                    Some(tracked) => !tracked.has(COUNTED),
                    None => shown
                        .id
                        .created_hint()
                        .is_none_or(|at| at >= self.count_from),
                }
        } else {
            // Seen started with its queue wait still to be measured, or
            // with its start not known yet (for the longest-running job).
            let pending = tracked.map_or(self.baseline_done, |tracked| tracked.has(WAIT_PENDING));
            shown.status.has_started() && (pending || !self.started.contains_key(shown.id))
        }
    }

    /// Which jobs need `GET /jobs/{id}` this poll, each once:
    /// - jobs newly terminal (for render duration and queue wait), after the first poll;
    /// - jobs seen started whose queue wait is still to be measured;
    /// - the oldest job of each non-terminal status, until its creation time is known;
    /// - remembered non-terminal jobs missing from the scan (left the window, or gone).
    pub fn plan(&self, scan: &WindowScan) -> Vec<JobId> {
        self.plan_poll(scan, None, None)
    }

    /// [`JobTracker::plan`], with what the poll knows besides the scan:
    /// - at the first poll, its start: a job that ended while it read is
    ///   looked up too, to be counted;
    /// - `listed_from`, the `from_date` of the window scan: an ended job it
    ///   shows whose id says it was created before that (or whose id is
    ///   not a ULID) is looked up once, for the `createdAt` that says when
    ///   it leaves the window.
    pub(crate) fn plan_poll(
        &self,
        scan: &WindowScan,
        baseline: Option<&Baseline>,
        listed_from: Option<UnixMillis>,
    ) -> Vec<JobId> {
        let ended_during = |shown: ScanJob, tracked: Option<&JobState>| {
            !self.baseline_done
                && tracked.is_none()
                && shown.status.is_terminal()
                && baseline.is_some_and(|b| b.ended_during(shown.id, None).is_some())
        };
        let creation_unknown = |shown: ScanJob, tracked: Option<&JobState>| {
            shown.status.is_terminal()
                && listed_from
                    .is_some_and(|from| shown.id.created_hint().is_none_or(|at| at < from))
                && tracked.is_none_or(|t| {
                    t.created_at == UNKNOWN && !t.has(NO_CREATED_AT) && !t.has(GONE)
                })
        };
        let wanted = |shown: ScanJob, tracked: Option<&JobState>| {
            self.wants(shown, tracked)
                || ended_during(shown, tracked)
                || creation_unknown(shown, tracked)
        };
        let mut need: Vec<JobId> = Vec::new();
        let mut missing: Vec<JobId> = Vec::new();
        let tracked = self
            .jobs
            .ulids
            .iter()
            .map(|entry| (entry.key, &entry.tracked));
        for (key, tracked, shown) in merge(tracked, scan.by_ulid()) {
            match shown {
                Some(shown) => {
                    if wanted(shown, tracked) {
                        need.push(shown.id.clone());
                    }
                }
                None => {
                    if tracked.is_some_and(|tracked| tracked.going() || tracked.unresolved()) {
                        missing.push(JobId::Ulid(ulid::Ulid(key)));
                    }
                }
            }
        }
        let mut in_scan: HashSet<&str> = HashSet::new();
        for shown in scan.others() {
            if let JobId::Other(text) = shown.id {
                in_scan.insert(text);
            }
            let tracked = self.jobs.get(shown.id);
            if wanted(shown, tracked) {
                need.push(shown.id.clone());
            }
        }
        for (text, other) in &self.jobs.others {
            let tracked = &other.tracked;
            if (tracked.going() || tracked.unresolved()) && !in_scan.contains(text.as_str()) {
                missing.push(text.id());
            }
        }
        let listed = self.plan_oldest(scan, &mut need, &missing);
        need.extend(missing);
        need.extend(listed);
        need
    }

    /// The look-ups [`JobTracker::plan_poll`] adds for the oldest jobs: the
    /// oldest job of each waiting or running status until its creation
    /// time is known, and the listed oldest jobs not looked up yet (for
    /// their template), each once whatever else asks for it: the former
    /// added to `need`, the latter returned, to come last.
    fn plan_oldest(
        &self,
        scan: &WindowScan,
        need: &mut Vec<JobId>,
        missing: &[JobId],
    ) -> Vec<JobId> {
        for shown in scan.first_of_each_status() {
            if shown.status.is_terminal() {
                continue;
            }
            let id = shown.id;
            let known = self
                .jobs
                .get(id)
                .is_some_and(|tracked| tracked.created_at != UNKNOWN);
            if !known && !need.contains(id) {
                need.push(id.clone());
            }
        }
        let asked: HashSet<&JobId> = need.iter().chain(missing).collect();
        self.spotlight
            .wanted()
            .iter()
            .filter(|id| !asked.contains(id))
            .cloned()
            .collect()
    }

    /// Takes a webhook delivery of `job` at `now`, the API's time as far as
    /// known. A completion is counted here exactly when a poll would count
    /// it, and only once between both: a job the tracker knows is counted
    /// unless it was already; one it does not know only if it was created
    /// since the last poll (less [`CLOCK_SKEW_MS`]) and after the counting
    /// horizon, since every older job has been seen by a poll. Whatever
    /// would count is counted only once `confirmed`: `job` is then the
    /// API's own answer to a look-up, not the delivery, so a delivery can
    /// neither invent an end nor withhold the start time and duration the
    /// API has (`Unconfirmed` asks for that look-up; retries, duplicates
    /// and deliveries that would not count cost none). Nothing changes
    /// before the first poll, or for a delivery not counted: the polls
    /// decide those.
    pub fn deliver(&mut self, job: &ApiJob, now: UnixMillis, confirmed: bool) -> Delivered {
        if !job.status.is_terminal() {
            return Delivered::judged(DeliveryVerdict::NotTerminal);
        }
        let Some(last_poll_at) = self.last_poll_at.filter(|_| self.baseline_done) else {
            return Delivered::judged(DeliveryVerdict::NotCounted);
        };
        let latest = now
            .max(self.api_at_least.unwrap_or(now))
            .saturating_add(CLOCK_SKEW_MS);
        let latest_event = self.latest_event(latest);
        let mut pass = ApplyPass {
            statuses: &mut self.statuses,
            first: false,
            baseline: None,
            whole_from: None,
            now,
            latest,
            latest_event,
            window_start: UnixMillis::MIN,
            count_from: self.count_from,
            out: Outcome::default(),
            keeper: OldestKeeper::default(),
            counts: Vec::new(),
            oldest: Vec::new(),
            // An ended job leaves the jobs in progress at the next poll.
            started_before: &self.started,
            started: HashMap::new(),
            oldest_started: Vec::new(),
        };
        let status = pass.statuses.code(&job.status);
        let taken = match self.jobs.get_mut(&job.id) {
            Some(tracked) => pass.deliver_known(tracked, job, status, confirmed),
            None => pass.deliver_new(&mut self.jobs, job, status, confirmed, last_poll_at),
        };
        match taken {
            Ok(moved) => Delivered::settled(pass.out, moved),
            Err(verdict) => Delivered::judged(verdict),
        }
    }

    /// Applies one poll made at `now`. `window_start` is the `from_date` of
    /// the scan: a terminal job created before it can never be seen again
    /// and is forgotten.
    pub fn apply(
        &mut self,
        scan: &WindowScan,
        details: &HashMap<JobId, Detail>,
        window_start: UnixMillis,
        now: UnixMillis,
    ) -> Outcome {
        let facts = PollFacts {
            window_start,
            now,
            ..PollFacts::default()
        };
        self.apply_poll(scan, details, &facts)
    }

    /// Where this poll's look-ups start among those it cannot all make, so
    /// that the ones put off take their turn at the next poll.
    pub(crate) fn lookup_turn(&self) -> usize {
        self.polls
    }

    /// [`JobTracker::apply`] with all that the poll knows.
    pub(crate) fn apply_poll(
        &mut self,
        scan: &WindowScan,
        details: &HashMap<JobId, Detail>,
        facts: &PollFacts,
    ) -> Outcome {
        let PollFacts {
            window_start, now, ..
        } = *facts;
        self.applying = true;
        let first = !self.baseline_done;
        let latest = now
            .max(facts.api_at_least.unwrap_or(now))
            .saturating_add(CLOCK_SKEW_MS);
        let latest_event = self.latest_event(latest);
        let mut pass = ApplyPass {
            statuses: &mut self.statuses,
            first,
            baseline: facts.baseline.filter(|_| first),
            whole_from: facts.whole_from,
            now,
            latest,
            latest_event,
            window_start,
            count_from: self.count_from,
            out: Outcome {
                baseline: first,
                ..Outcome::default()
            },
            counts: vec![0; StatusTable::COUNT],
            oldest: vec![UnixMillis::MAX; StatusTable::COUNT],
            started_before: &self.started,
            started: HashMap::new(),
            oldest_started: vec![UnixMillis::MAX; StatusTable::COUNT],
            keeper: OldestKeeper::new(self.oldest_per_status, StatusTable::COUNT),
        };
        pass.apply_ulids(&mut self.jobs.ulids, scan, details);
        pass.apply_others(&mut self.jobs.others, scan, details);
        let lists = std::mem::take(&mut pass.keeper).into_lists();
        let (mut out, started) = pass.tally();
        out.oldest_jobs = self.list_oldest(lists, details);
        self.started = started;
        self.baseline_done = true;
        self.last_poll_at = Some(now);
        self.count_from = self.next_count_from(scan, first, now).max(window_start);
        self.polls = self.polls.wrapping_add(1);
        self.api_at_least = facts.api_at_least;
        self.applying = false;
        out.tracked = self.jobs.len();
        out
    }

    /// This poll's oldest jobs of each status, by status name, filled in
    /// from the look-ups (this poll's and earlier ones).
    fn list_oldest(
        &mut self,
        lists: Vec<Vec<crate::oldest::Offered>>,
        details: &HashMap<JobId, Detail>,
    ) -> BTreeMap<JobStatus, Vec<OldJob>> {
        let mut filled = self.spotlight.fill(
            lists,
            |id| match details.get(id) {
                Some(Detail::Found(job)) => Some(job),
                _ => None,
            },
            |id| matches!(details.get(id), Some(Detail::Failed | Detail::Gone)),
        );
        let mut by_status = BTreeMap::new();
        for (code, name) in self.statuses.iter() {
            if let Some(list) = filled.get_mut(code.index()).map(std::mem::take) {
                if !list.is_empty() {
                    by_status.insert(name.clone(), list);
                }
            }
        }
        by_status
    }

    /// How many of the oldest jobs of each non-terminal status each poll
    /// lists, at most [`crate::oldest::MAX_PER_STATUS`] (0: none, and no
    /// look-ups for them).
    pub fn list_oldest_per_status(&mut self, n: usize) {
        self.oldest_per_status = n.min(crate::oldest::MAX_PER_STATUS);
    }

    /// Where [`JobTracker::count_from`] moves after a poll made at `now`,
    /// before it is kept inside the window.
    fn next_count_from(&self, scan: &WindowScan, first: bool, now: UnixMillis) -> UnixMillis {
        if !first {
            return self.count_from;
        }
        // The baseline saw every job up to now: a job not seen was
        // created later (or before the window). The newest id's time
        // is the API's own clock where it is behind the poll's; without
        // the API's `Date`, the poll's own clock may be up to
        // CLOCK_SKEW_MS ahead of the API's, so that much less.
        let newest = scan
            .by_ulid()
            .last()
            .and_then(|(_, newest)| newest.id.created_hint());
        let now = if self.clock_is_the_apis {
            now
        } else {
            now.saturating_sub(CLOCK_SKEW_MS)
        };
        newest.map_or(now, |newest| newest.min(now))
    }
}

/// Counts a completion and measures the queue wait, each at most once.
/// Impossible values are counted in `out.invalid` and not observed.
fn count_end(tracked: &mut JobState, id: &JobId, job: Option<&ApiJob>, pass: &mut ApplyPass) {
    let (first, statuses, out) = (pass.first, &*pass.statuses, &mut pass.out);
    let (latest, latest_event) = (pass.latest, pass.latest_event);
    if let Some(at) = job.and_then(|found| found.created_at) {
        if at > latest {
            out.invalid.created_at += 1;
        } else {
            tracked.created_at = at;
        }
    }
    if tracked.status.is_terminal() && !tracked.has(COUNTED) {
        tracked.set(COUNTED, true);
        if !first {
            let render_duration = if tracked.status == StatusByte::FINISHED {
                job.and_then(|found| found.render_duration)
                    .filter(|duration| {
                        let ok = (0.0..=MAX_RENDER_SECONDS).contains(duration);
                        if !ok {
                            out.invalid.render_duration += 1;
                        }
                        ok
                    })
            } else {
                None
            };
            let status = statuses.name(tracked.status).clone();
            let error = match status {
                JobStatus::Error => job.and_then(|found| found.error.clone()),
                _ => None,
            };
            let turnaround = turnaround(tracked, id, job, latest_event, &mut out.invalid);
            out.completions.push(Completion {
                id: id.clone(),
                status,
                render_duration,
                template: job.and_then(|found| found.template_id.clone()),
                error,
                turnaround,
            });
        }
    }
    if tracked.has(WAIT_PENDING) && tracked.status.has_started() {
        match job.and_then(|found| found.started_at) {
            Some(shown) => {
                tracked.set(WAIT_PENDING, false);
                match tracked.created(id) {
                    Some(at) if shown >= at && shown <= latest_event => {
                        out.queue_waits.push(QueueWait {
                            id: id.clone(),
                            seconds: (shown - at) as f64 / 1000.0,
                            template: job.and_then(|found| found.template_id.clone()),
                        })
                    }
                    _ => out.invalid.started_at += 1,
                }
            }
            // Ended without ever starting (cancelled while waiting).
            None if tracked.status.is_terminal() => tracked.set(WAIT_PENDING, false),
            None => {}
        }
    }
}

/// End (`finishedAt`, else `errorAt`) minus creation, in seconds, of a job
/// seen ending. Both are the API's times, so the difference holds whatever
/// its clock says; an end before the creation, or after `latest_event`
/// (see [`ApplyPass::latest_event`]: a job ending now by an API clock 20
/// minutes ahead, without a `Date`, is no error), is counted as impossible
/// and not observed.
fn turnaround(
    tracked: &JobState,
    id: &JobId,
    job: Option<&ApiJob>,
    latest_event: UnixMillis,
    invalid: &mut InvalidValues,
) -> Option<f64> {
    let found = job?;
    let ended = found.finished_at.or(found.error_at)?;
    let created = tracked.created(id)?;
    if ended < created || ended > latest_event {
        invalid.ended_at += 1;
        return None;
    }
    Some((ended - created) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MinimalJob;

    const T0: UnixMillis = 1_767_225_600_000;
    const WINDOW_START: UnixMillis = T0 - 86_400_000;
    const NOW: UnixMillis = T0 + 3_600_000;
    const HOUR_MS: i64 = 3_600_000;

    fn id(n: u64) -> JobId {
        // ULIDs whose time is T0 + n seconds, so creation order is id order.
        JobId::Ulid(ulid::Ulid::from_parts(
            (T0 as u64) + n * 1000,
            u128::from(n),
        ))
    }

    fn entries(entries: &[(u64, &str)]) -> Vec<MinimalJob> {
        entries
            .iter()
            .map(|(n, s)| MinimalJob {
                id: id(*n),
                status: JobStatus::parse(s),
            })
            .collect()
    }

    /// A scan of documented statuses, whose codes are the same in every table.
    fn scan(jobs: &[(u64, &str)]) -> WindowScan {
        let entries = entries(jobs);
        assert!(
            entries
                .iter()
                .all(|e| crate::status::ApiKind::Cloud.knows(&e.status)),
            "use scan_for"
        );
        WindowScan::new(entries, &mut StatusTable::default()).0
    }

    /// A scan coded with `t`'s table, as the poll cycle builds them.
    fn scan_for(t: &mut JobTracker, jobs: &[(u64, &str)]) -> WindowScan {
        WindowScan::new(entries(jobs), &mut t.statuses).0
    }

    /// A tracker after a first poll that saw `entries` and looked up nothing.
    /// The first poll is at T0: jobs `id(n)` not in it were created after.
    fn after_first_poll(entries: &[(u64, &str)]) -> JobTracker {
        let mut t = JobTracker::new();
        t.apply(&scan(entries), &HashMap::new(), WINDOW_START, T0);
        t
    }

    fn job(n: u64, status: &str, started: Option<i64>, render: Option<f64>) -> ApiJob {
        ApiJob {
            id: id(n),
            status: JobStatus::parse(status),
            created_at: Some(T0 + n as i64 * 1000),
            started_at: started,
            finished_at: None,
            error_at: None,
            render_duration: render,
            template_id: None,
            error: None,
        }
    }

    fn details(jobs: Vec<ApiJob>) -> HashMap<JobId, Detail> {
        jobs.into_iter()
            .map(|j| (j.id.clone(), Detail::Found(j)))
            .collect()
    }

    fn waits(o: &Outcome) -> Vec<f64> {
        o.queue_waits.iter().map(|w| w.seconds).collect()
    }

    fn statuses(o: &Outcome) -> Vec<(String, u64)> {
        o.jobs_by_status
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect()
    }

    #[test]
    fn a_job_rendering_at_the_first_poll_is_looked_up_once_for_when_it_started() {
        let mut t = JobTracker::new();
        let s = scan(&[(1, "render:dorender"), (2, "queued")]);
        assert!(
            t.plan(&s).contains(&id(1)),
            "the listing does not say when it started"
        );
        // Queued 45 minutes, then rendering: the render is measured from
        // its start, not from its creation.
        let started = T0 + 2_700_000;
        let o = t.apply(
            &s,
            &details(vec![job(1, "render:dorender", Some(started), None)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(o.oldest_started.get(&JobStatus::Rendering), Some(&started));
        assert_eq!(
            o.oldest_created.get(&JobStatus::Rendering),
            Some(&(T0 + 1000))
        );
        assert_eq!(
            o.oldest_started.get(&JobStatus::Queued),
            None,
            "not started"
        );
        assert!(o.queue_waits.is_empty(), "started before the baseline");
        assert!(!t.plan(&s).contains(&id(1)), "looked up once");
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW + 60_000);
        assert_eq!(o.oldest_started.get(&JobStatus::Rendering), Some(&started));
        // It ends: nothing in progress, no start kept.
        let s = scan(&[(1, "finished"), (2, "queued")]);
        let o = t.apply(
            &s,
            &details(vec![job(1, "finished", Some(started), Some(60.0))]),
            WINDOW_START,
            NOW + 120_000,
        );
        assert_eq!(o.oldest_started.get(&JobStatus::Rendering), None);
        assert!(t.started.is_empty());
    }

    #[test]
    fn a_job_in_progress_whose_look_up_keeps_failing_is_given_up_once_not_every_five_polls() {
        let mut t = JobTracker::new();
        // Job 1, the oldest rendering, is looked up fine; job 2's look-up
        // always fails (an answer no parser can read).
        let s = scan(&[(1, "render:dorender"), (2, "render:dorender")]);
        let mut given_up = 0;
        for poll in 0..12 {
            let plan = t.plan(&s);
            let mut d = details(
                plan.iter()
                    .filter(|i| **i == id(1))
                    .map(|_| job(1, "render:dorender", Some(T0 + 5000), None))
                    .collect(),
            );
            if plan.contains(&id(2)) {
                d.insert(id(2), Detail::Failed);
            }
            let o = t.apply(&s, &d, WINDOW_START, NOW + poll * 60_000);
            given_up += o.given_up.len();
            assert_eq!(
                o.oldest_started.get(&JobStatus::Rendering),
                Some(&(T0 + 5000))
            );
        }
        assert_eq!(given_up, 1, "given up once, then not asked again");
        assert!(t.plan(&s).is_empty(), "{:?}", t.plan(&s));
    }

    #[test]
    fn the_longest_running_job_is_the_earliest_start_not_the_oldest_creation() {
        let mut t = JobTracker::new();
        let s = scan(&[
            (1, "render:dorender"),
            (3, "render:dorender"),
            (4, "render:dorender"),
        ]);
        let o = t.apply(
            &s,
            &details(vec![
                job(1, "render:dorender", Some(T0 + 3_000_000), None),
                job(3, "render:dorender", Some(T0 + 10_000), None),
                // A look-up that does not say when: not asked again, and
                // not taken for a start.
                job(4, "render:dorender", None, None),
            ]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(
            o.oldest_started.get(&JobStatus::Rendering),
            Some(&(T0 + 10_000))
        );
        assert_eq!(
            o.oldest_created.get(&JobStatus::Rendering),
            Some(&(T0 + 1000))
        );
        assert!(t.plan(&s).is_empty(), "{:?}", t.plan(&s));
        // The early starter ends; the next is job 1.
        let s = scan(&[(1, "render:dorender"), (3, "error"), (4, "render:dorender")]);
        let o = t.apply(
            &s,
            &details(vec![job(3, "error", Some(T0 + 10_000), None)]),
            WINDOW_START,
            NOW + 60_000,
        );
        assert_eq!(
            o.oldest_started.get(&JobStatus::Rendering),
            Some(&(T0 + 3_000_000))
        );
    }

    #[test]
    fn the_next_scan_can_start_at_the_oldest_job_that_has_not_ended() {
        let mut t = JobTracker::new();
        let s = scan(&[
            (1, "finished"),
            (2, "error"),
            (3, "queued"),
            (4, "render:dorender"),
            (5, "finished"),
        ]);
        assert_eq!(t.scan_from(), None, "the first poll reads the whole window");
        t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert_eq!(
            t.scan_from(),
            Some(T0 + 3000),
            "jobs 1 and 2 can no longer change"
        );
        // Job 3 ends; job 4 is now the oldest still going.
        let s = scan(&[(3, "finished"), (4, "render:dorender"), (5, "finished")]);
        let o = t.apply(
            &s,
            &details(vec![job(3, "finished", Some(T0 + 3500), Some(1.0))]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(t.scan_from(), Some(T0 + 4000));
        // Jobs 1 and 2, not in that scan, are still counted.
        assert_eq!(
            statuses(&o),
            [
                ("render:dorender".into(), 1),
                ("finished".into(), 3),
                ("error".into(), 1)
            ]
        );
        // All ended: the next scan starts where the last one stopped.
        let s = scan(&[(4, "finished"), (5, "finished")]);
        t.apply(
            &s,
            &details(vec![job(4, "finished", Some(T0 + 4500), Some(1.0))]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(t.scan_from(), Some(NOW));
    }

    #[test]
    fn jobs_whose_ids_are_not_ulids_are_counted_the_same_way() {
        let other = |s: &str| JobId::Other(s.into());
        let entry = |i: &str, st: &str| MinimalJob {
            id: other(i),
            status: JobStatus::parse(st),
        };
        let scan_of = |v: Vec<MinimalJob>| WindowScan::new(v, &mut StatusTable::default()).0;
        let mut t = JobTracker::new();
        let s = scan_of(vec![entry("b", "queued"), entry("a", "render:dorender")]);
        t.apply(&s, &HashMap::new(), WINDOW_START, T0);
        assert_eq!(
            t.scan_from(),
            None,
            "no creation time in the id: read it all"
        );
        // "b" starts and "a" ends; "c" appears and ends between polls.
        let s = scan_of(vec![
            entry("b", "render:dorender"),
            entry("a", "finished"),
            entry("c", "error"),
        ]);
        let need = t.plan(&s);
        assert_eq!(need, [other("b"), other("a"), other("c")]);
        let mut d = HashMap::new();
        for (i, st) in [("b", "render:dorender"), ("a", "finished"), ("c", "error")] {
            let mut j = job(1, st, Some(T0 + 2000), Some(5.0));
            j.id = other(i);
            d.insert(other(i), Detail::Found(j));
        }
        let o = t.apply(&s, &d, WINDOW_START, NOW);
        assert_eq!(o.completions.len(), 2);
        assert_eq!(
            waits(&o),
            [1.0, 1.0],
            "b and c; a was already rendering at the first poll"
        );
        // "b" disappears from the next scan: it is looked up, and dropped as gone.
        let s = scan_of(vec![entry("a", "finished"), entry("c", "error")]);
        assert_eq!(t.plan(&s), [other("b")]);
        let o = t.apply(
            &s,
            &HashMap::from([(other("b"), Detail::Gone)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(statuses(&o), [("finished".into(), 1), ("error".into(), 1)]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_ended_job_without_a_ulid_missing_from_one_scan_is_not_counted_again() {
        // Its creation time is unknown (never looked up), but it was in the
        // scan at NOW, so it was created by then.
        let entry = MinimalJob {
            id: JobId::Other("a".into()),
            status: JobStatus::Finished,
        };
        let with_a = WindowScan::new(vec![entry], &mut StatusTable::default()).0;
        let mut t = JobTracker::new();
        t.apply(&with_a, &HashMap::new(), WINDOW_START, NOW);
        // A paging hiccup hides it while the window still covers NOW.
        let o = t.apply(
            &WindowScan::default(),
            &HashMap::new(),
            NOW - 1,
            NOW + 60_000,
        );
        assert_eq!(statuses(&o), [("finished".into(), 1)], "still counted");
        let o = t.apply(&with_a, &HashMap::new(), NOW - 1, NOW + 120_000);
        assert!(o.completions.is_empty(), "seen again: not a new completion");
        // Once the window starts after the last scan that showed it, it goes.
        let later = NOW + 120_001;
        let o = t.apply(&WindowScan::default(), &HashMap::new(), later, later + 1);
        assert!(o.jobs_by_status.is_empty() && t.is_empty());
    }

    #[test]
    fn a_scan_out_of_id_order_is_tracked_like_one_in_order() {
        // Jobs created in the same millisecond come in any id order.
        let entries = |order: &[u64]| -> Vec<MinimalJob> {
            order
                .iter()
                .map(|n| MinimalJob {
                    id: id(*n),
                    status: JobStatus::parse(if *n % 2 == 0 { "finished" } else { "queued" }),
                })
                .collect()
        };
        let mut a = JobTracker::new();
        let mut b = JobTracker::new();
        a.apply(
            &WindowScan::new(entries(&[1, 2, 3, 4, 5]), &mut StatusTable::default()).0,
            &HashMap::new(),
            WINDOW_START,
            NOW,
        );
        b.apply(
            &WindowScan::new(entries(&[4, 2, 5, 1, 3]), &mut StatusTable::default()).0,
            &HashMap::new(),
            WINDOW_START,
            NOW,
        );
        let next = entries(&[6, 1, 2, 3, 4, 5, 7]);
        let mut table = StatusTable::default();
        let (sa, sb) = (
            WindowScan::new(next.clone(), &mut table).0,
            WindowScan::new(next, &mut table).0,
        );
        let mut need_a = a.plan(&sa);
        let mut need_b = b.plan(&sb);
        need_a.sort();
        need_b.sort();
        assert_eq!(need_a, need_b);
        assert_eq!(
            need_a,
            [id(1), id(6)],
            "the newly ended job and the oldest queued one"
        );
        let oa = a.apply(&sa, &HashMap::new(), WINDOW_START, NOW);
        let ob = b.apply(&sb, &HashMap::new(), WINDOW_START, NOW);
        assert_eq!(oa, ob);
        assert_eq!(
            statuses(&oa),
            [("queued".into(), 4), ("finished".into(), 3)]
        );
    }

    #[test]
    fn jobs_already_terminal_at_the_first_poll_are_not_counted() {
        let mut t = JobTracker::new();
        let s = scan(&[(1, "finished"), (2, "error"), (3, "queued")]);
        assert_eq!(
            t.plan(&s),
            vec![id(3)],
            "only the oldest queued job needs detail"
        );
        let o = t.apply(
            &s,
            &details(vec![job(3, "queued", None, None)]),
            WINDOW_START,
            NOW,
        );
        assert!(o.baseline);
        assert!(o.completions.is_empty());
        assert_eq!(
            statuses(&o),
            [
                ("queued".into(), 1),
                ("finished".into(), 1),
                ("error".into(), 1)
            ]
        );
        assert_eq!(o.oldest_created[&JobStatus::Queued], T0 + 3000);
    }

    /// Turnaround is the end (`finishedAt`, else `errorAt`) minus the
    /// creation, observed once per job; an end before the creation is an
    /// impossible value, counted and not observed.
    #[test]
    fn turnaround_is_end_minus_creation_once_per_job() {
        let mut t = after_first_poll(&[
            (1, "render:dorender"),
            (2, "queued"),
            (3, "queued"),
            (4, "queued"),
            (5, "queued"),
        ]);
        let s = scan(&[
            (1, "finished"),
            (2, "error"),
            (3, "finished"),
            (4, "finished"),
            (5, "finished"),
        ]);
        let mut finished = job(1, "finished", Some(T0 + 5000), Some(42.5));
        finished.finished_at = Some(T0 + 1000 + 90_000);
        // An earlier try that failed left its errorAt: finishedAt is the end.
        finished.error_at = Some(T0 + 1000 + 30_000);
        let mut failed = job(2, "error", None, None);
        failed.error_at = Some(T0 + 2000 + 1_500);
        let mut impossible = job(3, "finished", Some(T0 + 3000), Some(1.0));
        impossible.finished_at = Some(T0);
        let mut ahead = job(4, "finished", Some(T0 + 4000), Some(1.0));
        ahead.finished_at = Some(NOW + 20 * 60_000);
        let mut beyond = job(5, "finished", Some(T0 + 5000), Some(1.0));
        beyond.finished_at = Some(NOW + 2 * 86_400_000);
        let o = t.apply(
            &s,
            &details(vec![finished, failed, impossible, ahead, beyond]),
            WINDOW_START,
            NOW,
        );
        let mut turnarounds: Vec<_> = o
            .completions
            .iter()
            .map(|c| (c.id.clone(), c.turnaround))
            .collect();
        turnarounds.sort_by_key(|(id, _)| id.to_string());
        // Job 4 ended 20 minutes past our clock: the API's clock is ahead,
        // its turnaround is still its own two times apart. Job 5's end is
        // two days ahead: no clock is that far off.
        let ahead = (NOW + 20 * 60_000 - (T0 + 4000)) as f64 / 1000.0;
        assert_eq!(
            turnarounds,
            [
                (id(1), Some(90.0)),
                (id(2), Some(1.5)),
                (id(3), None),
                (id(4), Some(ahead)),
                (id(5), None)
            ]
        );
        assert_eq!(o.invalid.ended_at, 2);
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert!(o.completions.is_empty(), "each job once");
    }

    /// The oldest two of each status are listed by id, looked up once for
    /// their template, and change when the oldest ends.
    #[test]
    fn the_oldest_jobs_are_listed_by_id_and_looked_up_once() {
        let mut t = JobTracker::new();
        t.list_oldest_per_status(2);
        let first = scan(&[
            (1, "queued"),
            (2, "queued"),
            (3, "queued"),
            (4, "render:dorender"),
        ]);
        let o = t.apply(&first, &HashMap::new(), WINDOW_START, T0);
        let listed = |o: &Outcome, status: JobStatus| -> Vec<JobId> {
            o.oldest_jobs
                .get(&status)
                .map_or(vec![], |l| l.iter().map(|j| j.id.clone()).collect())
        };
        assert_eq!(listed(&o, JobStatus::Queued), [id(1), id(2)]);
        assert_eq!(listed(&o, JobStatus::Rendering), [id(4)]);
        let plan = t.plan(&first);
        for n in [1, 2, 4] {
            assert!(plan.contains(&id(n)), "job {n} is looked up: {plan:?}");
        }
        assert!(!plan.contains(&id(3)), "not listed, not looked up");

        let mut one = job(1, "queued", None, None);
        one.template_id = Some("tpl-a".into());
        let two = job(2, "queued", None, None);
        let o = t.apply(&first, &details(vec![one, two]), WINDOW_START, T0 + 1000);
        let queued = &o.oldest_jobs[&JobStatus::Queued];
        assert_eq!(queued[0].template_id.as_deref(), Some("tpl-a"));
        assert!(queued[1].looked_up && queued[1].template_id.is_none());
        assert_eq!(queued[0].created, id(1).created_hint().unwrap());
        let plan = t.plan(&first);
        assert!(
            !plan.contains(&id(1)) && !plan.contains(&id(2)),
            "once: {plan:?}"
        );

        // Job 1 starts rendering: 3 moves up and is looked up next.
        let second = scan(&[
            (1, "render:dorender"),
            (2, "queued"),
            (3, "queued"),
            (4, "render:dorender"),
        ]);
        let o = t.apply(&second, &HashMap::new(), WINDOW_START, T0 + 2000);
        assert_eq!(listed(&o, JobStatus::Queued), [id(2), id(3)]);
        assert_eq!(listed(&o, JobStatus::Rendering), [id(1), id(4)]);
        assert!(t.plan(&second).contains(&id(3)));
    }

    #[test]
    fn job_seen_finished_twice_is_counted_once() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        let s = scan(&[(1, "finished")]);
        assert_eq!(t.plan(&s), vec![id(1)]);
        let d = details(vec![job(1, "finished", Some(T0 + 5000), Some(42.5))]);
        let o = t.apply(&s, &d, WINDOW_START, NOW);
        assert_eq!(
            o.completions,
            [Completion {
                id: id(1),
                status: JobStatus::Finished,
                render_duration: Some(42.5),
                template: None,
                error: None,
                turnaround: None,
            }]
        );
        assert!(
            o.queue_waits.is_empty(),
            "it was already rendering at the first poll"
        );
        assert!(t.plan(&s).is_empty());
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert!(o.completions.is_empty());
    }

    #[test]
    fn a_job_created_and_finished_between_two_polls_is_counted_with_its_wait_and_duration() {
        let mut t = after_first_poll(&[]);
        let s = scan(&[(7, "finished")]);
        assert_eq!(t.plan(&s), vec![id(7)]);
        let d = details(vec![job(
            7,
            "finished",
            Some(T0 + 7000 + 12_500),
            Some(30.0),
        )]);
        let o = t.apply(&s, &d, WINDOW_START, NOW);
        assert_eq!(o.completions.len(), 1);
        assert_eq!(waits(&o), [12.5]);
    }

    #[test]
    fn a_job_seen_waiting_then_rendering_has_its_queue_wait_observed_once() {
        let mut t = JobTracker::new();
        let s = scan(&[(1, "queued")]);
        t.apply(
            &s,
            &details(vec![job(1, "queued", None, None)]),
            WINDOW_START,
            NOW,
        );
        let s = scan(&[(1, "render:dorender")]);
        assert_eq!(t.plan(&s), vec![id(1)]);
        let o = t.apply(
            &s,
            &details(vec![job(1, "render:dorender", Some(T0 + 61_000), None)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(waits(&o), [60.0]);
        assert!(
            t.plan(&s).is_empty(),
            "created time known, wait measured: nothing to ask"
        );
        let s = scan(&[(1, "finished")]);
        let o = t.apply(
            &s,
            &details(vec![job(1, "finished", Some(T0 + 61_000), Some(9.0))]),
            WINDOW_START,
            NOW,
        );
        assert!(o.queue_waits.is_empty());
        assert_eq!(o.completions.len(), 1);
    }

    #[test]
    fn a_cancelled_job_counts_as_a_completion_without_wait_or_duration() {
        let mut t = JobTracker::new();
        t.apply(
            &scan(&[(1, "queued")]),
            &details(vec![job(1, "queued", None, None)]),
            WINDOW_START,
            NOW,
        );
        let s = scan(&[(1, "manually_cancelled")]);
        let o = t.apply(
            &s,
            &details(vec![job(1, "manually_cancelled", None, None)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(
            o.completions,
            [Completion {
                id: id(1),
                status: JobStatus::ManuallyCancelled,
                render_duration: None,
                template: None,
                error: None,
                turnaround: None,
            }]
        );
        assert!(o.queue_waits.is_empty());
    }

    #[test]
    fn a_job_stuck_longer_than_the_window_stays_in_the_backlog() {
        let mut t = JobTracker::new();
        t.apply(
            &scan(&[(1, "queued")]),
            &details(vec![job(1, "queued", None, None)]),
            WINDOW_START,
            NOW,
        );
        // Next poll the window has moved past it: the scan no longer has it.
        let s = scan(&[(2, "queued")]);
        let plan = t.plan(&s);
        assert!(plan.contains(&id(1)), "the missing job is looked up by id");
        let o = t.apply(
            &s,
            &details(vec![
                job(1, "queued", None, None),
                job(2, "queued", None, None),
            ]),
            T0 + 1500,
            NOW,
        );
        assert_eq!(statuses(&o), [("queued".into(), 2)]);
        assert_eq!(o.oldest_created[&JobStatus::Queued], T0 + 1000);
    }

    #[test]
    fn a_job_that_finished_while_older_than_the_window_is_counted_once_then_forgotten() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        let later = T0 + 10_000; // window start now past job 1's creation
        let o = t.apply(
            &scan(&[]),
            &details(vec![job(1, "render:dorender", Some(T0), None)]),
            later,
            NOW,
        );
        assert_eq!(statuses(&o), [("render:dorender".into(), 1)]);
        assert_eq!(t.plan(&WindowScan::default()), vec![id(1)]);
        let o = t.apply(
            &scan(&[]),
            &details(vec![job(1, "finished", Some(T0 + 1000), Some(100.0))]),
            later,
            NOW,
        );
        assert_eq!(
            o.completions,
            [Completion {
                id: id(1),
                status: JobStatus::Finished,
                render_duration: Some(100.0),
                template: None,
                error: None,
                turnaround: None,
            }]
        );
        assert!(
            o.jobs_by_status.is_empty(),
            "out of the window and terminal: not a current job"
        );
        assert!(t.is_empty(), "and forgotten");
    }

    #[test]
    fn a_job_deleted_upstream_is_dropped() {
        let mut t = after_first_poll(&[(1, "queued")]);
        let d = HashMap::from([(id(1), Detail::Gone)]);
        let o = t.apply(&scan(&[]), &d, WINDOW_START, NOW);
        assert!(o.jobs_by_status.is_empty() && o.completions.is_empty() && t.is_empty());
    }

    #[test]
    fn terminal_jobs_leaving_the_window_are_forgotten_so_memory_follows_the_window() {
        let mut t = JobTracker::new();
        let all: Vec<(u64, &str)> = (0..100).map(|n| (n, "finished")).collect();
        t.apply(&scan(&all), &HashMap::new(), WINDOW_START, NOW);
        assert_eq!(t.len(), 100);
        // The window now starts at job 60's creation: 0..60 are gone from the scan.
        let rest = scan(&all[60..]);
        t.apply(&rest, &HashMap::new(), T0 + 60_000, NOW);
        assert_eq!(t.len(), 40);
    }

    #[test]
    fn a_terminal_job_missing_from_one_scan_but_still_in_the_window_is_not_counted_again() {
        let mut t = after_first_poll(&[(1, "queued")]);
        t.apply(
            &scan(&[(1, "finished")]),
            &details(vec![job(1, "finished", Some(T0 + 2000), Some(1.0))]),
            WINDOW_START,
            NOW,
        );
        // A paging hiccup hides it once: remembered, since it is still in the window.
        let o = t.apply(&scan(&[]), &HashMap::new(), WINDOW_START, NOW);
        assert!(o.completions.is_empty());
        let o = t.apply(
            &scan(&[(1, "finished")]),
            &HashMap::new(),
            WINDOW_START,
            NOW,
        );
        assert!(o.completions.is_empty());
        assert_eq!(statuses(&o), [("finished".into(), 1)]);
    }

    #[test]
    fn an_unknown_status_is_counted_as_itself_and_treated_as_started() {
        let mut t = after_first_poll(&[(1, "queued")]);
        let s = scan_for(&mut t, &[(1, "render:prerender")]);
        assert!(t.plan(&s).contains(&id(1)));
        let o = t.apply(
            &s,
            &details(vec![job(1, "render:prerender", Some(T0 + 4000), None)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(statuses(&o), [("render:prerender".into(), 1)]);
        assert_eq!(waits(&o), [3.0]);
    }

    #[test]
    fn timestamps_out_of_order_are_not_observed_and_are_reported() {
        let mut t = after_first_poll(&[]);
        let s = scan(&[(5, "finished")]);
        let o = t.apply(
            &s,
            &details(vec![job(5, "finished", Some(T0), Some(3.0))]),
            WINDOW_START,
            NOW,
        );
        assert!(o.queue_waits.is_empty());
        assert_eq!(o.invalid.started_at, 1);
        assert_eq!(o.completions.len(), 1);
    }

    #[test]
    fn absurd_durations_and_future_timestamps_are_counted_as_invalid_and_not_observed() {
        let mut t = after_first_poll(&[]);
        // The poll's time is the API's own (its Date): a start an hour past
        // it is impossible.
        t.set_clock_is_the_apis(true);
        let mut negative = job(1, "finished", Some(T0 + 2000), Some(-5.0));
        negative.created_at = Some(T0 + 1000);
        let huge = job(2, "finished", Some(T0 + 3000), Some(30.0 * 86_400.0));
        let mut future = job(3, "render:dorender", Some(NOW + 3_600_000), None);
        future.created_at = Some(NOW + 3_000_000);
        let s = scan(&[(1, "finished"), (2, "finished"), (3, "render:dorender")]);
        let o = t.apply(
            &s,
            &details(vec![negative, huge, future]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(o.completions.len(), 2, "still counted as finished");
        assert!(o.completions.iter().all(|c| c.render_duration.is_none()));
        assert_eq!(
            o.invalid,
            InvalidValues {
                created_at: 1,
                started_at: 1,
                render_duration: 2,
                ended_at: 0,
            }
        );
        assert_eq!(
            waits(&o),
            [1.0, 1.0],
            "jobs 1 and 2 waited 1 s; job 3's start is in the future"
        );
        // The future createdAt was not used: the oldest falls back to the id's time.
        assert_eq!(o.oldest_created[&JobStatus::Rendering], T0 + 3000);
    }

    /// Without the API's `Date`, its clock may run ahead of ours (up to a
    /// day, as the scans allow): a job that started 20 minutes past our
    /// clock waited as its own two times say, and is no impossible value.
    #[test]
    fn without_the_apis_date_a_start_ahead_of_our_clock_is_the_apis_clock_ahead() {
        let mut t = after_first_poll(&[(1, "queued")]);
        let ahead = job(1, "render:dorender", Some(NOW + 20 * 60_000), None);
        let s = scan(&[(1, "render:dorender")]);
        let o = t.apply(&s, &details(vec![ahead]), WINDOW_START, NOW);
        assert_eq!(o.invalid, InvalidValues::default());
        assert_eq!(
            waits(&o),
            [(NOW + 20 * 60_000 - (T0 + 1000)) as f64 / 1000.0]
        );
        // The same start is the one the longest-running job is judged by.
        assert_eq!(
            o.oldest_started.get(&JobStatus::Rendering),
            Some(&(NOW + 20 * 60_000))
        );
        // Two days ahead is no clock: impossible.
        let mut t = after_first_poll(&[(2, "queued")]);
        let beyond = job(2, "render:dorender", Some(NOW + 2 * 86_400_000), None);
        let o = t.apply(
            &scan(&[(2, "render:dorender")]),
            &details(vec![beyond]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(o.invalid.started_at, 1);
        assert!(waits(&o).is_empty());
    }

    #[test]
    fn a_newly_terminal_job_without_detail_is_still_counted_once() {
        // GET /jobs/{id} answered 404 between the scan and the look-up.
        let mut t = after_first_poll(&[(1, "queued")]);
        let s = scan(&[(1, "error")]);
        let o = t.apply(
            &s,
            &HashMap::from([(id(1), Detail::Gone)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(
            o.completions,
            [Completion {
                id: id(1),
                status: JobStatus::Error,
                render_duration: None,
                template: None,
                error: None,
                turnaround: None,
            }]
        );
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert!(o.completions.is_empty());
    }

    const HOUR: UnixMillis = 3_600_000;

    /// A job created `hours_ago` before T0, n distinguishing it.
    fn aged(hours_ago: i64, n: u128) -> JobId {
        JobId::Ulid(ulid::Ulid::from_parts((T0 - hours_ago * HOUR) as u64, n))
    }

    fn scan_of(jobs: &[(&JobId, &str)]) -> WindowScan {
        let entries = jobs
            .iter()
            .map(|(id, s)| MinimalJob {
                id: (*id).clone(),
                status: JobStatus::parse(s),
            })
            .collect();
        WindowScan::new(entries, &mut StatusTable::default()).0
    }

    #[test]
    fn widening_the_window_counts_no_job_that_ended_before() {
        let mut t = JobTracker::new();
        let recent = aged(2, 1);
        // A 12-hour window at T0.
        t.apply(
            &scan_of(&[(&recent, "finished")]),
            &HashMap::new(),
            T0 - 12 * HOUR,
            T0,
        );
        // Widened to 24 hours: jobs that ended 20 hours ago come into view.
        let old: Vec<JobId> = (0..50).map(|n| aged(20, 100 + n)).collect();
        let mut jobs: Vec<(&JobId, &str)> = old.iter().map(|id| (id, "error")).collect();
        jobs.push((&recent, "finished"));
        let s = scan_of(&jobs);
        assert!(
            t.plan(&s).is_empty(),
            "their ids say they are older: no look-ups"
        );
        let o = t.apply(&s, &HashMap::new(), T0 + 60_000 - 24 * HOUR, T0 + 60_000);
        assert!(o.completions.is_empty(), "{:?}", o.completions);
        assert_eq!(statuses(&o), [("finished".into(), 1), ("error".into(), 50)]);
    }

    #[test]
    fn narrowing_then_widening_the_window_counts_nothing_twice() {
        let mut t = JobTracker::new();
        let job = aged(0, 1); // created at T0, after the baseline below
        t.apply(&scan_of(&[]), &HashMap::new(), T0 - 24 * HOUR - 1, T0 - 1);
        let s = scan_of(&[(&job, "finished")]);
        let o = t.apply(&s, &HashMap::new(), T0 - 24 * HOUR, T0 + 60_000);
        assert_eq!(o.completions.len(), 1, "counted once");
        // Ten hours later the window narrows to 6 hours: the job is forgotten.
        let later = T0 + 10 * HOUR;
        let o = t.apply(&scan_of(&[]), &HashMap::new(), later - 6 * HOUR, later);
        assert_eq!(o.tracked, 0);
        // Widened back to 24 hours: it is in view again, and not counted.
        let s = scan_of(&[(&job, "finished")]);
        let o = t.apply(
            &s,
            &HashMap::new(),
            later + 60_000 - 24 * HOUR,
            later + 60_000,
        );
        assert!(o.completions.is_empty());
        assert_eq!(statuses(&o), [("finished".into(), 1)]);
    }

    #[test]
    fn a_job_first_seen_ended_is_judged_by_its_created_at_when_its_id_says_otherwise() {
        let mut t = after_first_poll(&[]);
        // An id minted an hour after T0, a createdAt a day before it: it
        // ended before the baseline (a window change brought it into view).
        let id = aged(-1, 9);
        let s = scan_of(&[(&id, "finished")]);
        assert_eq!(
            t.plan(&s),
            std::slice::from_ref(&id),
            "its id alone says new: look it up"
        );
        let mut found = job(1, "finished", Some(T0 - 23 * HOUR), Some(5.0));
        found.id = id.clone();
        found.created_at = Some(T0 - 24 * HOUR);
        let d = HashMap::from([(id, Detail::Found(found))]);
        let o = t.apply(&s, &d, T0 - 48 * HOUR, NOW);
        assert!(o.completions.is_empty());
    }

    #[test]
    fn a_look_up_that_fails_leaves_the_job_to_the_next_poll_and_counts_it_once() {
        let mut t = after_first_poll(&[(1, "render:dorender"), (2, "queued")]);
        // Job 1 ends, but its look-up fails; job 2 starts and is measured.
        let s = scan(&[(1, "finished"), (2, "render:dorender")]);
        let mut d = details(vec![job(2, "render:dorender", Some(T0 + 4000), None)]);
        d.insert(id(1), Detail::Unknown);
        let o = t.apply(&s, &d, WINDOW_START, NOW);
        assert!(o.completions.is_empty(), "not counted without its detail");
        assert_eq!(waits(&o), [2.0], "the rest of the poll applies");
        assert_eq!(
            statuses(&o),
            [("render:dorender".into(), 1), ("finished".into(), 1)],
            "shown as the scan says"
        );
        // Next poll the look-up works: counted once, with its duration.
        assert_eq!(t.plan(&s), [id(1)]);
        let d = details(vec![job(1, "finished", None, Some(30.0))]);
        let o = t.apply(&s, &d, WINDOW_START, NOW + 60_000);
        assert_eq!(o.completions.len(), 1);
        assert_eq!(o.completions[0].render_duration, Some(30.0));
        let o = t.apply(&s, &d, WINDOW_START, NOW + 120_000);
        assert!(o.completions.is_empty());
    }

    #[test]
    fn a_look_up_failing_five_polls_in_a_row_is_given_up_and_the_job_counted_from_its_listing() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        let s = scan(&[(1, "finished")]);
        let failed = HashMap::from([(id(1), Detail::Failed)]);
        for poll in 1..MAX_LOOKUP_FAILURES as i64 {
            assert_eq!(t.plan(&s), [id(1)], "poll {poll}: asked again");
            let o = t.apply(&s, &failed, WINDOW_START, NOW + poll * 60_000);
            assert!(
                o.completions.is_empty() && o.given_up.is_empty(),
                "poll {poll}"
            );
        }
        // Put off (not failed) costs no failure.
        let put_off = HashMap::from([(id(1), Detail::Unknown)]);
        let o = t.apply(&s, &put_off, WINDOW_START, NOW + 10 * 60_000);
        assert!(o.completions.is_empty() && o.given_up.is_empty());
        let o = t.apply(&s, &failed, WINDOW_START, NOW + 11 * 60_000);
        assert_eq!(o.given_up, [id(1)]);
        assert_eq!(o.completions.len(), 1, "counted from the listing");
        assert_eq!(o.completions[0].render_duration, None);
        assert!(t.plan(&s).is_empty(), "no more look-ups");
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW + 12 * 60_000);
        assert!(o.completions.is_empty(), "counted once");
    }

    #[test]
    fn a_job_that_left_the_live_listing_and_cannot_be_looked_up_is_given_up_and_counted_when_a_listing_shows_it_ended(
    ) {
        // A job created after the baseline, seen queued, then it leaves
        // the listings (an incremental scan does not show it) and its
        // look-up keeps failing.
        let mut t = after_first_poll(&[]);
        t.apply(&scan(&[(5, "queued")]), &HashMap::new(), WINDOW_START, NOW);
        let failed = HashMap::from([(id(5), Detail::Failed)]);
        for poll in 1..=MAX_LOOKUP_FAILURES as i64 {
            assert_eq!(t.plan(&scan(&[])), [id(5)]);
            let o = t.apply(&scan(&[]), &failed, WINDOW_START, NOW + poll * 60_000);
            assert!(o.jobs_by_status.is_empty(), "out of the numbers");
        }
        assert!(t.is_empty(), "forgotten: nothing says how it ended");
        // A whole-window read shows it ended: a new job, counted once its
        // detail (or the give-up) says so.
        let s = scan(&[(5, "finished")]);
        assert_eq!(t.plan(&s), [id(5)]);
        let o = t.apply(
            &s,
            &details(vec![finished(5, 12.0)]),
            WINDOW_START,
            NOW + HOUR_MS,
        );
        assert_eq!(o.completions.len(), 1);
    }

    #[test]
    fn a_counted_job_created_ahead_of_the_exporters_clock_is_kept_and_not_counted_again() {
        // The API's clock is 400 s ahead and says no Date: its job's id and
        // createdAt look like the future.
        let ahead = 400_000;
        let mut t = after_first_poll(&[]);
        let future = JobId::Ulid(ulid::Ulid::from_parts((NOW + ahead) as u64, 9));
        let live = scan_of(&[(&future, "queued")]);
        t.apply(&live, &HashMap::new(), WINDOW_START, NOW);
        let mut ended = job(0, "finished", None, Some(3.0));
        ended.id = future.clone();
        ended.created_at = Some(NOW + ahead);
        // It ends; the scan does not show it (its window ends at now), its
        // look-up does.
        let d = HashMap::from([(future.clone(), Detail::Found(ended))]);
        let o = t.apply(&scan(&[]), &d, WINDOW_START, NOW + 60_000);
        assert_eq!(o.completions.len(), 1);
        assert!(t.knows(&future), "kept: a listing can still show it");
        // Later a scan shows it ended: not counted again.
        let o = t.apply(
            &live_ended(&future),
            &HashMap::new(),
            WINDOW_START,
            NOW + ahead,
        );
        assert!(o.completions.is_empty());
        assert_eq!(jobs_in(&o, "finished"), 1);
    }

    fn live_ended(id: &JobId) -> WindowScan {
        scan_of(&[(id, "finished")])
    }

    #[test]
    fn an_ended_job_a_whole_window_read_no_longer_shows_leaves_the_numbers_and_is_not_counted_if_it_returns(
    ) {
        let mut t = after_first_poll(&[(1, "queued"), (2, "queued")]);
        let s = scan(&[(1, "finished"), (2, "finished")]);
        let d = details(vec![finished(1, 5.0), finished(2, 6.0)]);
        let o = t.apply(&s, &d, WINDOW_START, NOW);
        assert_eq!(o.completions.len(), 2);
        // An incremental scan that does not show job 2 keeps it.
        let o = t.apply(&scan(&[]), &HashMap::new(), WINDOW_START, NOW + 60_000);
        assert_eq!(jobs_in(&o, "finished"), 2);
        // A read of the whole window that does not show it: deleted.
        let whole = PollFacts {
            window_start: WINDOW_START,
            now: NOW + 120_000,
            whole_from: Some(WINDOW_START),
            baseline: None,
            api_at_least: None,
        };
        let o = t.apply_poll(&scan(&[(1, "finished")]), &HashMap::new(), &whole);
        assert_eq!(jobs_in(&o, "finished"), 1);
        assert!(t.knows(&id(2)), "remembered as counted");
        // It comes back (restored upstream): in the numbers, not counted.
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW + 180_000);
        assert_eq!(jobs_in(&o, "finished"), 2);
        assert!(o.completions.is_empty());
    }

    #[test]
    fn the_first_poll_counts_the_jobs_that_end_while_it_reads() {
        // The listing of jobs not ended, read first (by the API's Date at
        // T0): job 1 queued, job 2 rendering. Then, before the window scan
        // reads them, both end, and job 9 (created after T0) starts and
        // ends; job 0 had ended before.
        let mut table = StatusTable::default();
        let live = WindowScan::new(
            entries(&[(1, "queued"), (2, "render:dorender")]),
            &mut table,
        )
        .0;
        let mut t = JobTracker::new();
        let s = scan_for(
            &mut t,
            &[
                (0, "finished"),
                (1, "finished"),
                (2, "error"),
                (9, "finished"),
            ],
        );
        let baseline = Baseline::new(&live, Some(T0 + 1000));
        assert_eq!(
            t.plan_poll(&s, Some(&baseline), None),
            [id(1), id(2), id(9)]
        );
        let mut failed = job(2, "error", Some(T0), None);
        failed.error = Some("boom".into());
        let d = details(vec![
            job(1, "finished", Some(T0 + 3000), Some(4.0)),
            failed,
            job(9, "finished", Some(T0 + 9500), Some(0.5)),
        ]);
        let facts = PollFacts {
            window_start: WINDOW_START,
            now: T0 + 12_000,
            whole_from: Some(WINDOW_START),
            baseline: Some(&baseline),
            api_at_least: None,
        };
        t.set_clock_is_the_apis(true);
        let o = t.apply_poll(&s, &d, &facts);
        assert!(o.baseline);
        let mut counted: Vec<(JobId, Option<f64>)> = o
            .completions
            .iter()
            .map(|c| (c.id.clone(), c.render_duration))
            .collect();
        counted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            counted,
            [(id(1), Some(4.0)), (id(2), None), (id(9), Some(0.5))]
        );
        // Job 1 waited from its creation (T0 + 1 s) to T0 + 3 s; job 2 had
        // started before the poll; job 9 waited 0.5 s.
        assert_eq!(waits(&o), [2.0, 0.5]);
        // Nothing counted twice later.
        let o = t.apply(&s, &d, WINDOW_START, T0 + 60_000);
        assert!(o.completions.is_empty());
    }

    #[test]
    fn without_the_apis_date_the_first_poll_counts_only_the_jobs_it_saw_going() {
        let mut table = StatusTable::default();
        let live = WindowScan::new(entries(&[(1, "queued")]), &mut table).0;
        let mut t = JobTracker::new();
        let s = scan_for(&mut t, &[(1, "finished"), (9, "finished")]);
        let baseline = Baseline::new(&live, None);
        assert_eq!(t.plan_poll(&s, Some(&baseline), None), [id(1)]);
    }

    #[test]
    fn a_delivered_job_a_poll_does_not_list_is_believed_from_the_next_listing() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        let done = t.deliver(&finished(1, 3.0), NOW, true);
        assert_eq!(done.verdict, DeliveryVerdict::Counted);
        // A poll whose scan does not show it (incremental), then, hours
        // later, a listing shows it queued again: re-queued upstream.
        t.apply(&scan(&[]), &HashMap::new(), WINDOW_START, NOW + 60_000);
        let o = t.apply(
            &scan(&[(1, "queued")]),
            &HashMap::new(),
            WINDOW_START,
            NOW + 3 * HOUR_MS,
        );
        assert_eq!(jobs_in(&o, "queued"), 1);
    }

    #[test]
    fn an_ended_job_deleted_before_its_detail_came_is_counted_from_its_listing() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        // Shown ended, its look-up fails; then it is gone from the listings
        // and its look-up says 404.
        let failed = HashMap::from([(id(1), Detail::Failed)]);
        let o = t.apply(&scan(&[(1, "finished")]), &failed, WINDOW_START, NOW);
        assert!(o.completions.is_empty());
        assert_eq!(t.plan(&scan(&[])), [id(1)]);
        let gone = HashMap::from([(id(1), Detail::Gone)]);
        let o = t.apply(&scan(&[]), &gone, WINDOW_START, NOW + 60_000);
        assert_eq!(o.completions.len(), 1);
        assert_eq!(jobs_in(&o, "finished"), 0, "out of the numbers");
        let o = t.apply(
            &scan(&[(1, "finished")]),
            &HashMap::new(),
            WINDOW_START,
            NOW + 120_000,
        );
        assert!(o.completions.is_empty(), "back, not counted again");
    }

    #[test]
    fn a_new_ended_job_whose_look_up_fails_is_remembered_and_decided_when_it_works() {
        let mut t = after_first_poll(&[]);
        let s = scan(&[(3, "error")]);
        let o = t.apply(
            &s,
            &HashMap::from([(id(3), Detail::Unknown)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!((o.tracked, o.completions.len()), (1, 0));
        // Next poll, even one whose scan no longer shows it, looks it up.
        assert_eq!(t.plan(&WindowScan::default()), [id(3)]);
        let o = t.apply(
            &s,
            &details(vec![job(3, "error", None, None)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!((o.tracked, o.completions.len()), (1, 1));
    }

    #[test]
    fn a_new_job_not_ended_whose_look_up_fails_is_in_the_numbers_and_counted_once_it_ends() {
        let mut t = after_first_poll(&[]);
        let s = scan(&[(3, "queued")]);
        let unknown = HashMap::from([(id(3), Detail::Unknown)]);
        let o = t.apply(&s, &unknown, WINDOW_START, NOW);
        assert_eq!(statuses(&o), [("queued".into(), 1)]);
        assert_eq!(o.oldest_created[&JobStatus::Queued], T0 + 3000, "by its id");
        // It ends, and its look-up still fails: shown ended, its
        // completion waiting for the detail.
        let s = scan(&[(3, "finished")]);
        let o = t.apply(&s, &unknown, WINDOW_START, NOW + 60_000);
        assert!(o.completions.is_empty());
        assert_eq!(statuses(&o), [("finished".into(), 1)]);
        assert_eq!(t.plan(&s), [id(3)], "asked for again");
        let found = details(vec![job(3, "finished", Some(T0 + 5000), Some(9.0))]);
        let o = t.apply(&s, &found, WINDOW_START, NOW + 120_000);
        assert_eq!(o.completions.len(), 1);
        let o = t.apply(&s, &found, WINDOW_START, NOW + 180_000);
        assert!(o.completions.is_empty());
    }

    /// A first poll at T0 (24-hour window) whose only job is `stuck`,
    /// rendering and older than the window: shown by the live listing.
    fn first_poll_with_a_live_job(stuck: &JobId) -> (JobTracker, Outcome) {
        let live = WindowScan::new(
            vec![MinimalJob {
                id: stuck.clone(),
                status: JobStatus::Rendering,
            }],
            &mut StatusTable::default(),
        )
        .0;
        let mut scan = WindowScan::default();
        scan.add_live(&live);
        let mut t = JobTracker::new();
        let o = t.apply(&scan, &HashMap::new(), T0 - 24 * HOUR, T0);
        (t, o)
    }

    #[test]
    fn a_live_job_older_than_the_window_is_tracked_and_counted_once_when_it_ends() {
        // A restart: the live listing shows a job rendering for 35 hours.
        let stuck = aged(35, 1);
        let (mut t, o) = first_poll_with_a_live_job(&stuck);
        assert_eq!(statuses(&o), [("render:dorender".into(), 1)]);
        assert_eq!(
            o.oldest_created.get(&JobStatus::Rendering),
            Some(&(T0 - 35 * HOUR))
        );
        // It ends: gone from the live listing, older than the window.
        let empty = WindowScan::default();
        assert_eq!(t.oldest_ended_since(&empty), Some(T0 - 35 * HOUR));
        assert_eq!(t.plan(&empty), std::slice::from_ref(&stuck));
        let mut found = job(1, "finished", Some(T0 - 34 * HOUR), Some(120.0));
        found.id = stuck.clone();
        found.created_at = Some(T0 - 35 * HOUR);
        let d = HashMap::from([(stuck, Detail::Found(found))]);
        let o = t.apply(&empty, &d, T0 + 60_000 - 24 * HOUR, T0 + 60_000);
        assert_eq!(o.completions.len(), 1, "counted once");
        assert_eq!(o.tracked, 0, "then forgotten: older than the window");
    }

    #[test]
    fn a_counted_job_deleted_then_listed_again_is_not_counted_again() {
        let mut t = after_first_poll(&[(1, "queued")]);
        let s = scan(&[(1, "finished")]);
        let o = t.apply(
            &s,
            &details(vec![job(1, "finished", Some(T0 + 1500), Some(2.0))]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(o.completions.len(), 1);
        // Re-queued upstream: shown under its new status, not counted again.
        let s = scan(&[(1, "queued")]);
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW + 60_000);
        assert_eq!(statuses(&o), [("queued".into(), 1)]);
        // Then deleted (404), then listed ended again.
        let none = WindowScan::default();
        let o = t.apply(
            &none,
            &HashMap::from([(id(1), Detail::Gone)]),
            WINDOW_START,
            NOW + 120_000,
        );
        assert_eq!(o.jobs_by_status.values().sum::<u64>(), 0);
        assert!(
            t.plan(&none).is_empty(),
            "a deleted job is not looked up again"
        );
        let s = scan(&[(1, "finished")]);
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW + 180_000);
        assert!(o.completions.is_empty());
        assert_eq!(statuses(&o), [("finished".into(), 1)]);
    }

    #[test]
    fn a_job_that_left_the_live_listing_and_cannot_be_looked_up_costs_no_window_read() {
        // A job rendering for 40 hours ends; its look-up answers 403 for a while.
        let stuck = aged(40, 1);
        let (mut t, _) = first_poll_with_a_live_job(&stuck);
        let empty = WindowScan::default();
        let unknown = HashMap::from([(stuck.clone(), Detail::Unknown)]);
        let o = t.apply(&empty, &unknown, T0 + 60_000 - 24 * HOUR, T0 + 60_000);
        assert_eq!(
            o.jobs_by_status.values().sum::<u64>(),
            0,
            "no longer rendering"
        );
        assert!(o.oldest_created.is_empty(), "no stale oldest-job age");
        assert_eq!(o.tracked, 1, "remembered until it answers");
        assert_eq!(
            t.oldest_ended_since(&empty),
            None,
            "the next poll does not read back 40 hours for it"
        );
        assert_eq!(
            t.plan(&empty),
            std::slice::from_ref(&stuck),
            "looked up again"
        );
        let mut found = job(1, "finished", Some(T0 - 39 * HOUR), Some(60.0));
        found.id = stuck.clone();
        found.created_at = Some(T0 - 40 * HOUR);
        let d = HashMap::from([(stuck, Detail::Found(found))]);
        let o = t.apply(&empty, &d, T0 + 120_000 - 24 * HOUR, T0 + 120_000);
        assert_eq!(o.completions.len(), 1, "counted once it answers");
        assert_eq!(o.tracked, 0, "then forgotten: older than the window");
    }

    fn jobs_in(o: &Outcome, status: &str) -> u64 {
        o.jobs_by_status
            .get(&JobStatus::parse(status))
            .copied()
            .unwrap_or(0)
    }

    fn finished(n: u64, render: f64) -> ApiJob {
        job(
            n,
            "finished",
            Some(T0 + n as i64 * 1000 + 2_000),
            Some(render),
        )
    }

    #[test]
    fn a_delivery_before_any_poll_has_seen_the_job_is_counted_and_the_poll_agrees() {
        let mut t = after_first_poll(&[]);
        let d = t.deliver(&finished(7, 30.0), T0 + 60_000, true);
        assert_eq!(d.verdict, DeliveryVerdict::Counted);
        assert_eq!(d.completion.map(|c| c.render_duration), Some(Some(30.0)));
        assert_eq!(d.queue_wait.map(|w| w.seconds), Some(2.0));
        assert_eq!(d.moved, Some((None, JobStatus::parse("finished"))));
        // The next poll shows it ended: no look-up, nothing counted again.
        let s = scan(&[(7, "finished")]);
        assert!(t.plan(&s).is_empty());
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert!(o.completions.is_empty() && o.queue_waits.is_empty());
        assert_eq!(statuses(&o), [("finished".to_owned(), 1)]);
    }

    #[test]
    fn a_delivery_of_a_job_no_poll_has_seen_waits_for_the_apis_word() {
        let mut t = after_first_poll(&[]);
        let d = t.deliver(&finished(7, 30.0), T0 + 60_000, false);
        assert_eq!(d.verdict, DeliveryVerdict::Unconfirmed);
        assert!(d.completion.is_none() && t.is_empty());
        // A job the tracker knows, too: the API's detail has its start
        // and duration where a delivery may not.
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        let d = t.deliver(&finished(1, 30.0), T0 + 60_000, false);
        assert_eq!(d.verdict, DeliveryVerdict::Unconfirmed);
        // A duplicate needs none.
        t.deliver(&finished(1, 30.0), T0 + 60_000, true);
        let d = t.deliver(&finished(1, 30.0), T0 + 61_000, false);
        assert_eq!(d.verdict, DeliveryVerdict::Duplicate);
    }

    #[test]
    fn a_job_re_queued_after_its_delivery_shows_going_again_from_the_second_listing() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        t.deliver(&finished(1, 20.0), NOW - 1000, true);
        let s = scan(&[(1, "queued")]);
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert_eq!(
            jobs_in(&o, "finished"),
            1,
            "the first listing may be behind"
        );
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW + 60_000);
        assert_eq!(jobs_in(&o, "queued"), 1, "the second is believed");
        assert_eq!(jobs_in(&o, "finished"), 0);
    }

    #[test]
    fn a_delivery_retried_or_sent_twice_is_counted_once() {
        let mut t = after_first_poll(&[]);
        assert_eq!(
            t.deliver(&finished(7, 30.0), T0 + 60_000, true).verdict,
            DeliveryVerdict::Counted
        );
        let again = t.deliver(&finished(7, 30.0), T0 + 61_000, true);
        assert_eq!(again.verdict, DeliveryVerdict::Duplicate);
        assert!(again.completion.is_none() && again.moved.is_none());
    }

    #[test]
    fn a_delivery_after_the_poll_counted_the_job_is_a_duplicate() {
        let mut t = after_first_poll(&[(1, "queued")]);
        let s = scan(&[(1, "finished")]);
        let o = t.apply(&s, &details(vec![finished(1, 5.0)]), WINDOW_START, NOW);
        assert_eq!(o.completions.len(), 1);
        let d = t.deliver(&finished(1, 5.0), NOW + 1000, true);
        assert_eq!(d.verdict, DeliveryVerdict::Duplicate);
    }

    #[test]
    fn a_delivered_job_stays_ended_when_a_listing_behind_shows_it_running() {
        let mut t = after_first_poll(&[(1, "render:dorender")]);
        let d = t.deliver(&finished(1, 20.0), NOW - 1000, true);
        assert_eq!(d.verdict, DeliveryVerdict::Counted);
        assert_eq!(
            d.moved,
            Some((
                Some(JobStatus::parse("render:dorender")),
                JobStatus::parse("finished")
            ))
        );
        for shown in ["render:dorender", "finished", "finished"] {
            let s = scan(&[(1, shown)]);
            let o = t.apply(
                &s,
                &details(t.plan(&s).into_iter().map(|_| finished(1, 20.0)).collect()),
                WINDOW_START,
                NOW,
            );
            assert!(o.completions.is_empty(), "listed {shown}");
            assert_eq!(statuses(&o), [("finished".to_owned(), 1)], "listed {shown}");
        }
    }

    #[test]
    fn a_delivery_before_the_first_poll_is_left_to_the_polls() {
        let mut t = JobTracker::new();
        let d = t.deliver(&finished(7, 30.0), T0, true);
        assert_eq!(d.verdict, DeliveryVerdict::NotCounted);
        assert!(t.is_empty());
    }

    #[test]
    fn a_delivery_of_a_job_that_ended_before_the_baseline_is_not_counted() {
        // Seen ended by the baseline: remembered as counted.
        let mut t = after_first_poll(&[(1, "finished")]);
        assert_eq!(
            t.deliver(&finished(1, 5.0), T0 + 1000, true).verdict,
            DeliveryVerdict::Duplicate
        );
        // Older than the window and never seen: a retry from before a restart.
        let mut old = finished(2, 5.0);
        old.id = aged(30, 2);
        old.created_at = None;
        let d = t.deliver(&old, T0 + 1000, true);
        assert_eq!(d.verdict, DeliveryVerdict::NotCounted);
        assert!(d.completion.is_none() && d.moved.is_none());
        assert_eq!(t.len(), 1, "nothing remembered of it");
    }

    #[test]
    fn a_delivery_of_an_unknown_job_created_before_the_last_poll_is_left_to_the_polls() {
        // Every job created before the last poll has been seen by a poll;
        // one that was not is not taken on a delivery's word.
        let mut t = after_first_poll(&[]);
        let s = scan(&[]);
        t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        let d = t.deliver(&finished(7, 30.0), NOW + 1000, true);
        assert_eq!(d.verdict, DeliveryVerdict::NotCounted);
    }

    #[test]
    fn a_delivery_that_is_not_terminal_changes_nothing() {
        let mut t = after_first_poll(&[(1, "queued")]);
        let d = t.deliver(&job(1, "render:dorender", Some(T0), None), T0 + 1000, true);
        assert_eq!(d.verdict, DeliveryVerdict::NotTerminal);
        let s = scan(&[(1, "finished")]);
        let o = t.apply(&s, &details(vec![finished(1, 5.0)]), WINDOW_START, NOW);
        assert_eq!(o.completions.len(), 1);
    }

    #[test]
    fn a_delivered_job_without_a_ulid_needs_its_created_at() {
        let mut t = after_first_poll(&[]);
        let mut undated = finished(7, 3.0);
        undated.id = JobId::Other("job-7".into());
        undated.created_at = None;
        assert_eq!(
            t.deliver(&undated, T0 + 60_000, true).verdict,
            DeliveryVerdict::NotCounted
        );
        undated.created_at = Some(T0 + 7000);
        assert_eq!(
            t.deliver(&undated, T0 + 60_000, true).verdict,
            DeliveryVerdict::Counted
        );
        assert_eq!(
            t.deliver(&undated, T0 + 61_000, true).verdict,
            DeliveryVerdict::Duplicate
        );
    }

    #[test]
    fn an_id_that_is_not_a_ulid_is_kept_in_24_bytes_and_found_by_its_text() {
        assert_eq!(std::mem::size_of::<IdText>(), 24);
        let texts = [
            String::new(),
            "V1StGXR8_Z5jdHi6B-myT".into(),
            "x".repeat(22),
            "y".repeat(23),
            "render-legacy/7é".repeat(9),
            "ééééééééééé".into(),
        ];
        let mut map: HashMap<IdText, u32> = HashMap::new();
        for (i, t) in texts.iter().enumerate() {
            let id = IdText::new(t);
            assert_eq!(id.as_str(), t);
            assert_eq!(id.id(), JobId::Other(t.as_str().into()));
            assert_eq!(matches!(id, IdText::Inline(_)), t.len() <= 22, "{t}");
            map.insert(id, i as u32);
        }
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(map.get(t.as_str()), Some(&(i as u32)));
        }
        assert_eq!(map.get("V1StGXR8_Z5jdHi6B-myX"), None);
    }

    #[test]
    fn what_is_remembered_of_a_job_stays_sixteen_bytes() {
        // The template is read from the full job at each observation and
        // never kept per job: a million jobs cost what they did.
        assert_eq!(std::mem::size_of::<JobState>(), 16);
        assert_eq!(std::mem::size_of::<UlidJob>(), 32);
    }

    #[test]
    fn completions_and_queue_waits_carry_the_template_and_failures_their_error_text() {
        let mut t = after_first_poll(&[]);
        let with = |mut j: ApiJob, template: &str, error: Option<&str>| {
            j.template_id = Some(template.into());
            j.error = error.map(Into::into);
            j
        };
        let s = scan(&[(1, "finished"), (2, "error"), (3, "render:dorender")]);
        let o = t.apply(
            &s,
            &details(vec![
                with(job(1, "finished", Some(T0 + 1500), Some(9.0)), "A", None),
                with(
                    job(2, "error", Some(T0 + 2500), None),
                    "B",
                    Some("Missing font: X"),
                ),
                with(job(3, "render:dorender", Some(T0 + 3250), None), "C", None),
            ]),
            WINDOW_START,
            NOW,
        );
        let got: Vec<(Option<&str>, Option<&str>)> = o
            .completions
            .iter()
            .map(|c| (c.template.as_deref(), c.error.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(Some("A"), None), (Some("B"), Some("Missing font: X"))]
        );
        let waits: Vec<(f64, Option<&str>)> = o
            .queue_waits
            .iter()
            .map(|w| (w.seconds, w.template.as_deref()))
            .collect();
        assert_eq!(
            waits,
            [(0.5, Some("A")), (0.5, Some("B")), (0.25, Some("C"))]
        );
        // A delivery's job carries its template too.
        let mut t = after_first_poll(&[]);
        let d = t.deliver(&with(finished(9, 4.0), "D", None), T0 + 60_000, true);
        assert_eq!(d.completion.and_then(|c| c.template), Some("D".into()));
    }

    #[test]
    fn the_error_text_of_a_job_that_did_not_fail_is_not_kept() {
        let mut t = after_first_poll(&[]);
        let mut j = job(1, "manually_cancelled", None, None);
        j.error = Some("Job was manually cancelled".into());
        let o = t.apply(
            &scan(&[(1, "manually_cancelled")]),
            &details(vec![j]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(o.completions.len(), 1);
        assert_eq!(o.completions[0].error, None);
    }
}
