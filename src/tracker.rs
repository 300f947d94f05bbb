//! The job tracker: what changed since the last poll, and which jobs reached
//! a terminal status. Counting exactly once happens here and nowhere else.
//!
//! A poll is two pure steps around the network:
//! 1. [`JobTracker::plan`]: given the window scan (minimal jobs, oldest
//!    first), which jobs need detail (`GET /jobs/{id}`).
//! 2. [`JobTracker::apply`]: given the scan, the details and the time, update
//!    the bookkeeping and return what to count and observe.
//!
//! If anything in between fails, `apply` is not called and nothing changes,
//! so the next good poll counts what happened in the meantime exactly once.
//!
//! Memory follows the jobs in the window, so each is kept small: a ULID id
//! as a 16-byte key and 16 bytes of state (32 bytes in the table).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::api::{ApiJob, JobId};
use crate::clock::UnixMillis;
use crate::status::JobStatus;

/// A job as the minimal window scan shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanEntry {
    pub id: JobId,
    pub status: JobStatus,
}

/// The answer to a detail look-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Found(ApiJob),
    /// 404: the job no longer exists.
    Gone,
}

/// A status as a one-byte code: the documented ones have fixed codes (their
/// place in [`JobStatus::KNOWN`]), others are numbered as they appear.
type Code = u8;

/// The table behind status codes.
#[derive(Debug)]
struct Statuses {
    names: Vec<JobStatus>,
}

impl Default for Statuses {
    fn default() -> Self {
        Self {
            names: JobStatus::KNOWN.to_vec(),
        }
    }
}

impl Statuses {
    /// Past this many distinct statuses, new ones share the last code: a
    /// broken API cannot grow the table without end.
    const MAX: usize = 255;

    fn code(&mut self, s: &JobStatus) -> Code {
        if let Some(i) = self.names.iter().position(|n| n == s) {
            return i as Code;
        }
        if self.names.len() < Self::MAX {
            self.names.push(s.clone());
        } else if self.names.len() == Self::MAX {
            self.names
                .push(JobStatus::Other(crate::metrics::OTHER_STATUS.into()));
        }
        (self.names.len() - 1) as Code
    }

    fn name(&self, c: Code) -> &JobStatus {
        &self.names[c as usize]
    }

    fn terminal(&self, c: Code) -> bool {
        self.name(c).is_terminal()
    }

    /// Has the job begun rendering (or got past it)?
    fn started(&self, c: Code) -> bool {
        !matches!(self.name(c), JobStatus::Queued | JobStatus::Pending)
    }
}

/// No creation time known.
const UNKNOWN: UnixMillis = i64::MIN;
/// Its completion has been counted (or it was terminal at the first poll).
const COUNTED: u8 = 1;
/// Its queue wait is still to be observed: it was seen waiting, or first
/// seen after the first poll, and its start has not been measured yet.
const WAIT_PENDING: u8 = 2;

/// What is remembered of one job: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    created_at: UnixMillis,
    /// The cycle that last saw this job in the window scan.
    last_seen: u32,
    status: Code,
    flags: u8,
}

impl Tracked {
    fn created(&self, id: &JobId) -> Option<UnixMillis> {
        (self.created_at != UNKNOWN)
            .then_some(self.created_at)
            .or_else(|| id.created_hint())
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

/// The remembered jobs: ULID ids (all, on the real API) as 128-bit keys,
/// any other id by its text.
#[derive(Debug, Default)]
struct Jobs {
    ulids: HashMap<u128, Tracked>,
    others: HashMap<Box<str>, Tracked>,
}

impl Jobs {
    fn get(&self, id: &JobId) -> Option<&Tracked> {
        match id {
            JobId::Ulid(u) => self.ulids.get(&u.0),
            JobId::Other(s) => self.others.get(s),
        }
    }

    fn get_or_insert(&mut self, id: &JobId, new: impl FnOnce() -> Tracked) -> &mut Tracked {
        match id {
            JobId::Ulid(u) => self.ulids.entry(u.0).or_insert_with(new),
            JobId::Other(s) => self.others.entry(s.clone()).or_insert_with(new),
        }
    }

    fn len(&self) -> usize {
        self.ulids.len() + self.others.len()
    }

    fn for_each(&self, mut f: impl FnMut(JobId, &Tracked)) {
        for (k, t) in &self.ulids {
            f(JobId::Ulid(ulid::Ulid(*k)), t);
        }
        for (k, t) in &self.others {
            f(JobId::Other(k.clone()), t);
        }
    }

    fn retain(&mut self, mut f: impl FnMut(&JobId, &mut Tracked) -> bool) {
        self.ulids.retain(|k, t| f(&JobId::Ulid(ulid::Ulid(*k)), t));
        self.others.retain(|k, t| f(&JobId::Other(k.clone()), t));
    }
}

/// A job seen reaching a terminal status.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub status: JobStatus,
    /// `stats.renderDuration` of a finished job, when the API gave one.
    pub render_duration: Option<f64>,
}

/// The latest plausible timestamp is "now" plus this much clock skew.
pub const CLOCK_SKEW_MS: i64 = 5 * 60_000;
/// Longer renders than this are taken for bad data, not observed.
pub const MAX_RENDER_SECONDS: f64 = 7.0 * 86_400.0;

/// Counts of impossible values seen in one poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvalidValues {
    /// `createdAt` in the future.
    pub created_at: u64,
    /// `startedAt` before `createdAt`, in the future, or missing on a started job.
    pub started_at: u64,
    /// `renderDuration` negative or longer than [`MAX_RENDER_SECONDS`].
    pub render_duration: u64,
}

impl InvalidValues {
    /// Field names, as the `field` label.
    pub const FIELDS: [&'static str; 3] = ["created_at", "started_at", "render_duration"];

    pub fn by_field(&self) -> [(&'static str, u64); 3] {
        [
            ("created_at", self.created_at),
            ("started_at", self.started_at),
            ("render_duration", self.render_duration),
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
    pub completions: Vec<Completion>,
    /// `startedAt - createdAt` in seconds, of jobs seen starting.
    pub queue_waits: Vec<f64>,
    /// Values from the API that could not be true, by field; each was
    /// ignored (not observed), the rest of its job used.
    pub invalid: InvalidValues,
    /// This poll was the first: it set the baseline and counted nothing.
    pub baseline: bool,
    /// Jobs remembered after this poll.
    pub tracked: usize,
}

#[derive(Debug, Default)]
pub struct JobTracker {
    jobs: Jobs,
    statuses: Statuses,
    cycle: u32,
    baseline_done: bool,
    /// The end (`to_date`) of the last applied scan.
    last_scan_to: Option<UnixMillis>,
}

impl JobTracker {
    pub fn new() -> Self {
        Self::default()
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
    pub fn scan_from(&self) -> Option<UnixMillis> {
        if !self.baseline_done || !self.jobs.others.is_empty() {
            return None;
        }
        let mut from = self.last_scan_to?;
        for (k, t) in &self.jobs.ulids {
            if !self.statuses.terminal(t.status) {
                let id = JobId::Ulid(ulid::Ulid(*k));
                from = from.min(t.created(&id)?);
            }
        }
        Some(from)
    }

    /// Which jobs need `GET /jobs/{id}` this poll, each once:
    /// - jobs newly terminal (for render duration and queue wait), after the first poll;
    /// - jobs seen started whose queue wait is still to be measured;
    /// - the oldest job of each non-terminal status, until its creation time is known;
    /// - remembered non-terminal jobs missing from the scan (left the window, or gone).
    pub fn plan(&self, scan: &[ScanEntry]) -> Vec<JobId> {
        let mut need: Vec<JobId> = Vec::new();
        let mut asked: HashSet<&JobId> = HashSet::new();
        let mut first_of_status: HashMap<&JobStatus, &JobId> = HashMap::new();
        let mut in_scan: HashSet<&JobId> = HashSet::with_capacity(scan.len());
        for s in scan {
            in_scan.insert(&s.id);
            let t = self.jobs.get(&s.id);
            let wants = if s.status.is_terminal() {
                self.baseline_done && !t.is_some_and(|t| t.has(COUNTED))
            } else {
                first_of_status.entry(&s.status).or_insert(&s.id);
                let pending = t.map_or(self.baseline_done, |t| t.has(WAIT_PENDING));
                !matches!(s.status, JobStatus::Queued | JobStatus::Pending) && pending
            };
            if wants && asked.insert(&s.id) {
                need.push(s.id.clone());
            }
        }
        for id in first_of_status.values() {
            let known = self.jobs.get(id).is_some_and(|t| t.created_at != UNKNOWN);
            if !known && asked.insert(id) {
                need.push((*id).clone());
            }
        }
        let mut missing = Vec::new();
        self.jobs.for_each(|id, t| {
            if !self.statuses.terminal(t.status) && !in_scan.contains(&id) && !asked.contains(&id) {
                missing.push(id);
            }
        });
        need.extend(missing);
        need
    }

    /// Applies one poll made at `now`. `window_start` is the `from_date` of
    /// the scan: a terminal job created before it can never be seen again
    /// and is forgotten.
    pub fn apply(
        &mut self,
        scan: &[ScanEntry],
        details: &HashMap<JobId, Detail>,
        window_start: UnixMillis,
        now: UnixMillis,
    ) -> Outcome {
        self.cycle = self.cycle.wrapping_add(1);
        let cycle = self.cycle;
        let first = !self.baseline_done;
        let mut out = Outcome {
            baseline: first,
            ..Outcome::default()
        };
        let Self { jobs, statuses, .. } = self;
        for s in scan {
            let job = match details.get(&s.id) {
                Some(Detail::Found(j)) if j.id == s.id => Some(j),
                _ => None,
            };
            // The detail was fetched after the scan, so it is the later word.
            let status = statuses.code(job.map_or(&s.status, |j| &j.status));
            let started = statuses.started(status);
            let t = jobs.get_or_insert(&s.id, || Tracked {
                created_at: UNKNOWN,
                last_seen: cycle,
                status,
                flags: if !first || !started { WAIT_PENDING } else { 0 },
            });
            t.status = status;
            t.last_seen = cycle;
            observe(t, &s.id, job, first, now, statuses, &mut out);
        }
        let mut by_code: BTreeMap<Code, u64> = BTreeMap::new();
        let mut oldest: BTreeMap<Code, UnixMillis> = BTreeMap::new();
        jobs.retain(|id, t| {
            if t.last_seen != cycle {
                match details.get(id) {
                    Some(Detail::Gone) => return false,
                    Some(Detail::Found(j)) => {
                        t.status = statuses.code(&j.status);
                        observe(t, id, Some(j), first, now, statuses, &mut out);
                    }
                    None => {}
                }
                // Terminal and not in this scan: forgotten once older than
                // the window; until then still counted (an incremental scan
                // does not read these again).
                if statuses.terminal(t.status) && t.created(id).is_none_or(|c| c < window_start) {
                    return false;
                }
            }
            let terminal = statuses.terminal(t.status);
            *by_code.entry(t.status).or_insert(0) += 1;
            if !terminal {
                if let Some(c) = t.created(id) {
                    let e = oldest.entry(t.status).or_insert(c);
                    *e = (*e).min(c);
                }
            }
            true
        });
        for (c, n) in by_code {
            *out.jobs_by_status
                .entry(statuses.name(c).clone())
                .or_insert(0) += n;
        }
        for (c, t) in oldest {
            let e = out
                .oldest_created
                .entry(statuses.name(c).clone())
                .or_insert(t);
            *e = (*e).min(t);
        }
        self.baseline_done = true;
        self.last_scan_to = Some(now);
        out.tracked = self.jobs.len();
        out
    }
}

/// Counts a completion and measures the queue wait, each at most once.
/// Impossible values are counted in `out.invalid` and not observed.
fn observe(
    t: &mut Tracked,
    id: &JobId,
    job: Option<&ApiJob>,
    first: bool,
    now: UnixMillis,
    statuses: &Statuses,
    out: &mut Outcome,
) {
    let latest = now + CLOCK_SKEW_MS;
    if let Some(c) = job.and_then(|j| j.created_at) {
        if c > latest {
            out.invalid.created_at += 1;
        } else {
            t.created_at = c;
        }
    }
    let status = statuses.name(t.status);
    if status.is_terminal() && !t.has(COUNTED) {
        t.set(COUNTED, true);
        if !first {
            let render_duration = match status {
                JobStatus::Finished => job.and_then(|j| j.render_duration).filter(|d| {
                    let ok = (0.0..=MAX_RENDER_SECONDS).contains(d);
                    if !ok {
                        out.invalid.render_duration += 1;
                    }
                    ok
                }),
                _ => None,
            };
            out.completions.push(Completion {
                status: status.clone(),
                render_duration,
            });
        }
    }
    if t.has(WAIT_PENDING) && statuses.started(t.status) {
        match job.and_then(|j| j.started_at) {
            Some(s) => {
                t.set(WAIT_PENDING, false);
                match t.created(id) {
                    Some(c) if s >= c && s <= latest => {
                        out.queue_waits.push((s - c) as f64 / 1000.0)
                    }
                    _ => out.invalid.started_at += 1,
                }
            }
            // Ended without ever starting (cancelled while waiting).
            None if status.is_terminal() => t.set(WAIT_PENDING, false),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = 1_767_225_600_000;
    const WINDOW_START: UnixMillis = T0 - 86_400_000;
    const NOW: UnixMillis = T0 + 3_600_000;

    fn id(n: u64) -> JobId {
        // ULIDs whose time is T0 + n seconds, so creation order is id order.
        JobId::Ulid(ulid::Ulid::from_parts(
            (T0 as u64) + n * 1000,
            u128::from(n),
        ))
    }

    fn scan(entries: &[(u64, &str)]) -> Vec<ScanEntry> {
        entries
            .iter()
            .map(|(n, s)| ScanEntry {
                id: id(*n),
                status: JobStatus::parse(s),
            })
            .collect()
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
        }
    }

    fn details(jobs: Vec<ApiJob>) -> HashMap<JobId, Detail> {
        jobs.into_iter()
            .map(|j| (j.id.clone(), Detail::Found(j)))
            .collect()
    }

    fn statuses(o: &Outcome) -> Vec<(String, u64)> {
        o.jobs_by_status
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect()
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

    #[test]
    fn job_seen_finished_twice_is_counted_once() {
        let mut t = JobTracker::new();
        t.apply(
            &scan(&[(1, "render:dorender")]),
            &HashMap::new(),
            WINDOW_START,
            NOW,
        );
        let s = scan(&[(1, "finished")]);
        assert_eq!(t.plan(&s), vec![id(1)]);
        let d = details(vec![job(1, "finished", Some(T0 + 5000), Some(42.5))]);
        let o = t.apply(&s, &d, WINDOW_START, NOW);
        assert_eq!(
            o.completions,
            [Completion {
                status: JobStatus::Finished,
                render_duration: Some(42.5)
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
        let mut t = JobTracker::new();
        t.apply(&scan(&[]), &HashMap::new(), WINDOW_START, NOW);
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
        assert_eq!(o.queue_waits, [12.5]);
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
        assert_eq!(o.queue_waits, [60.0]);
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
                status: JobStatus::ManuallyCancelled,
                render_duration: None
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
        let mut t = JobTracker::new();
        t.apply(
            &scan(&[(1, "render:dorender")]),
            &HashMap::new(),
            WINDOW_START,
            NOW,
        );
        let later = T0 + 10_000; // window start now past job 1's creation
        let o = t.apply(
            &scan(&[]),
            &details(vec![job(1, "render:dorender", Some(T0), None)]),
            later,
            NOW,
        );
        assert_eq!(statuses(&o), [("render:dorender".into(), 1)]);
        assert_eq!(t.plan(&[]), vec![id(1)]);
        let o = t.apply(
            &scan(&[]),
            &details(vec![job(1, "finished", Some(T0 + 1000), Some(100.0))]),
            later,
            NOW,
        );
        assert_eq!(
            o.completions,
            [Completion {
                status: JobStatus::Finished,
                render_duration: Some(100.0)
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
        let mut t = JobTracker::new();
        t.apply(&scan(&[(1, "queued")]), &HashMap::new(), WINDOW_START, NOW);
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
        let mut t = JobTracker::new();
        t.apply(&scan(&[(1, "queued")]), &HashMap::new(), WINDOW_START, NOW);
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
        let mut t = JobTracker::new();
        t.apply(&scan(&[(1, "queued")]), &HashMap::new(), WINDOW_START, NOW);
        let s = scan(&[(1, "render:prerender")]);
        assert!(t.plan(&s).contains(&id(1)));
        let o = t.apply(
            &s,
            &details(vec![job(1, "render:prerender", Some(T0 + 4000), None)]),
            WINDOW_START,
            NOW,
        );
        assert_eq!(statuses(&o), [("render:prerender".into(), 1)]);
        assert_eq!(o.queue_waits, [3.0]);
    }

    #[test]
    fn timestamps_out_of_order_are_not_observed_and_are_reported() {
        let mut t = JobTracker::new();
        t.apply(&scan(&[]), &HashMap::new(), WINDOW_START, NOW);
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
        let mut t = JobTracker::new();
        t.apply(&scan(&[]), &HashMap::new(), WINDOW_START, NOW);
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
                render_duration: 2
            }
        );
        assert_eq!(
            o.queue_waits,
            [1.0, 1.0],
            "jobs 1 and 2 waited 1 s; job 3's start is in the future"
        );
        // The future createdAt was not used: the oldest falls back to the id's time.
        assert_eq!(o.oldest_created[&JobStatus::Rendering], T0 + 3000);
    }

    #[test]
    fn a_newly_terminal_job_without_detail_is_still_counted_once() {
        // GET /jobs/{id} answered 404 between the scan and the look-up.
        let mut t = JobTracker::new();
        t.apply(&scan(&[(1, "queued")]), &HashMap::new(), WINDOW_START, NOW);
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
                status: JobStatus::Error,
                render_duration: None
            }]
        );
        let o = t.apply(&s, &HashMap::new(), WINDOW_START, NOW);
        assert!(o.completions.is_empty());
    }
}
