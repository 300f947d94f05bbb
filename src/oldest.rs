//! The oldest few jobs of each status not ended, by id: what the landing
//! page, `/api/v1/oldest-jobs` and `nexrender_oldest_job_info` show, so that
//! an alert about a stale queue or a stuck render leads to the job. Waiting
//! jobs rank by their creation, jobs in progress by their start where a
//! look-up said it (the longest-running first, as the stuck-render alert
//! judges them), else by their creation.
//!
//! The tracker offers every job it keeps to an [`OldestKeeper`] during a
//! poll; the lists it ends with are filled in from look-ups (template,
//! start) by [`Spotlight`], which remembers what the look-ups said of the
//! listed jobs between polls, so each is looked up at most once while it
//! stays listed.

use std::collections::HashMap;

use crate::api::{ApiJob, JobId};
use crate::clock::UnixMillis;

/// Jobs listed per status unless the configuration says otherwise.
pub const DEFAULT_PER_STATUS: usize = 5;
/// The most the configuration may ask for: each listed job may cost one
/// look-up, and the landing page stays readable.
pub const MAX_PER_STATUS: usize = 50;

/// One of the oldest jobs of its status.
#[derive(Debug, Clone, PartialEq)]
pub struct OldJob {
    pub id: JobId,
    /// `createdAt` (or the time in its id).
    pub created: UnixMillis,
    /// `startedAt`, for a job in progress whose look-up said it.
    pub started: Option<UnixMillis>,
    /// `templateId`, once a look-up said it (`None` also for a job without
    /// a template: see `looked_up`).
    pub template_id: Option<Box<str>>,
    /// Whether a look-up of the job has been read (else the template is
    /// not known yet).
    pub looked_up: bool,
}

/// How a job ranks in its list, lowest first: jobs in progress whose start
/// is known by their start, `(0, startedAt)`; every other by its creation,
/// `(1, created)` (waiting jobs; jobs in progress whose start is not known
/// yet come after those whose start is).
pub(crate) type Rank = (u8, UnixMillis);

/// A job as offered: its rank, id and creation.
pub(crate) type Offered = (Rank, JobId, UnixMillis);

/// The rank of a job created at `created`, started at `started` if known.
pub(crate) fn rank(created: UnixMillis, started: Option<UnixMillis>) -> Rank {
    match started {
        Some(at) => (0, at),
        None => (1, created),
    }
}

/// The `limit` lowest-ranked jobs of each status code offered, lowest
/// first (ties by id, so the lists do not depend on the order jobs are
/// offered in).
#[derive(Debug, Clone, Default)]
pub(crate) struct OldestKeeper {
    limit: usize,
    lists: Vec<Vec<Offered>>,
}

impl OldestKeeper {
    pub(crate) fn new(limit: usize, codes: usize) -> Self {
        Self {
            limit,
            lists: vec![Vec::new(); if limit == 0 { 0 } else { codes }],
        }
    }

    /// A job of status `code` ranked at `rank`, created at `created`.
    pub(crate) fn offer(&mut self, code: usize, rank: Rank, created: UnixMillis, id: &JobId) {
        let Some(list) = self.lists.get_mut(code) else {
            return;
        };
        let key = (rank, id);
        if list.len() == self.limit && list.last().is_some_and(|(at, last, _)| key >= (*at, last)) {
            return;
        }
        let at = list.partition_point(|(t, i, _)| (*t, i) < key);
        list.insert(at, (rank, id.clone(), created));
        list.truncate(self.limit);
    }

    /// The lists, by status code (empty ones included).
    pub(crate) fn into_lists(self) -> Vec<Vec<Offered>> {
        self.lists
    }
}

/// Look-ups of one listed job that failed before it is no longer asked
/// for (its template shown as unknown while it stays listed).
pub(crate) const MAX_LISTED_LOOKUP_FAILURES: u8 = 3;

/// What the look-ups of a listed job said.
#[derive(Debug, Clone, PartialEq)]
enum Lookup {
    /// Its template id (`None`: the job has no template).
    Said(Option<Box<str>>),
    /// This many look-ups failed (an error, an answer that was not a job).
    Failed(u8),
}

/// What look-ups said of the listed jobs, kept from poll to poll while
/// they stay listed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spotlight {
    known: HashMap<JobId, Lookup>,
    /// Listed jobs with nothing known yet: looked up at the next poll.
    wanted: Vec<JobId>,
}

impl Spotlight {
    /// The listed jobs to look up at the next poll.
    pub(crate) fn wanted(&self) -> &[JobId] {
        &self.wanted
    }

    /// Fills in this poll's lists: the template from this poll's look-up
    /// (`found`) or an earlier one, the start from the rank (known for a
    /// job in progress whose look-up said it). A job is looked up until a look-up answers, or
    /// [`MAX_LISTED_LOOKUP_FAILURES`] have failed (`failed`: this poll's
    /// did); its template is unknown meanwhile, never "none". Forgets the
    /// jobs no longer listed.
    pub(crate) fn fill<'a>(
        &mut self,
        lists: Vec<Vec<Offered>>,
        found: impl Fn(&JobId) -> Option<&'a ApiJob>,
        failed: impl Fn(&JobId) -> bool,
    ) -> Vec<Vec<OldJob>> {
        let mut known = HashMap::new();
        self.wanted.clear();
        let mut one = |(rank, id, created): Offered| {
            let before = self.known.remove(&id);
            let lookup = match (found(&id), before) {
                (Some(job), _) => Some(Lookup::Said(job.template_id.clone())),
                (None, Some(Lookup::Failed(n))) if failed(&id) => Some(Lookup::Failed(n + 1)),
                (None, None) if failed(&id) => Some(Lookup::Failed(1)),
                (None, before) => before,
            };
            let asked_enough = match &lookup {
                Some(Lookup::Said(_)) => true,
                Some(Lookup::Failed(n)) => *n >= MAX_LISTED_LOOKUP_FAILURES,
                None => false,
            };
            if !asked_enough {
                self.wanted.push(id.clone());
            }
            let (looked_up, template_id) = match &lookup {
                Some(Lookup::Said(t)) => (true, t.clone()),
                _ => (false, None),
            };
            let job = OldJob {
                started: match rank {
                    (0, at) => Some(at),
                    _ => None,
                },
                looked_up,
                template_id,
                created,
                id,
            };
            if let Some(lookup) = lookup {
                known.insert(job.id.clone(), lookup);
            }
            job
        };
        let filled = lists
            .into_iter()
            .map(|list| list.into_iter().map(&mut one).collect())
            .collect();
        self.known = known;
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> JobId {
        JobId::Ulid(ulid::Ulid(n))
    }

    #[test]
    fn the_keeper_holds_the_oldest_few_of_each_status_whatever_the_order() {
        let mut k = OldestKeeper::new(3, 2);
        for (n, at) in [(1, 50), (2, 10), (3, 40), (4, 30), (5, 20), (6, 10)] {
            k.offer(0, rank(at, None), at, &id(n));
        }
        // In progress: a known start ranks before an unknown one, whatever
        // their creations.
        k.offer(1, rank(5, None), 5, &id(7));
        k.offer(1, rank(90, Some(99)), 90, &id(8));
        let lists = k.into_lists();
        assert_eq!(
            lists[0],
            [
                ((1, 10), id(2), 10),
                ((1, 10), id(6), 10),
                ((1, 20), id(5), 20)
            ]
        );
        assert_eq!(lists[1], [((0, 99), id(8), 90), ((1, 5), id(7), 5)]);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let mut k = OldestKeeper::new(0, 2);
        k.offer(0, rank(1, None), 1, &id(1));
        assert!(k.into_lists().iter().all(Vec::is_empty));
    }

    fn api_job(n: u128, template: Option<&str>) -> ApiJob {
        ApiJob {
            id: id(n),
            status: crate::status::JobStatus::Queued,
            created_at: None,
            started_at: None,
            finished_at: None,
            error_at: None,
            render_duration: None,
            template_id: template.map(Into::into),
            error: None,
        }
    }

    /// A listed job is looked up until it answers: its template is kept
    /// while it stays listed; a failed look-up leaves the template unknown
    /// (never "none") and is retried, up to three failures; a job that
    /// leaves the lists is forgotten (looked up again if it comes back).
    #[test]
    fn the_spotlight_asks_each_listed_job_once() {
        let mut s = Spotlight::default();
        let lists = || {
            vec![vec![
                (rank(1, None), id(1), 1),
                (rank(2, None), id(2), 2),
                (rank(3, None), id(3), 3),
            ]]
        };
        let filled = s.fill(lists(), |_| None, |_| false);
        assert!(filled[0].iter().all(|j| !j.looked_up));
        assert_eq!(s.wanted(), [id(1), id(2), id(3)]);

        let one = api_job(1, Some("tpl-a"));
        // Job 2 is in progress: its rank carries its start.
        let mut with_start = lists();
        with_start[0][1].0 = rank(2, Some(7));
        let filled = s.fill(
            with_start,
            |i| (*i == id(1)).then_some(&one),
            |i| *i == id(3),
        );
        assert_eq!(filled[0][0].template_id.as_deref(), Some("tpl-a"));
        assert_eq!(filled[0][1].started, Some(7));
        assert!(
            !filled[0][2].looked_up,
            "a failed look-up leaves it unknown"
        );
        assert_eq!(s.wanted(), [id(2), id(3)], "and is tried again");
        // Two more failures: three in all, no more asking.
        for _ in 0..2 {
            s.fill(lists(), |_| None, |i| *i == id(3));
        }
        assert_eq!(s.wanted(), [id(2)]);
        let filled = s.fill(lists(), |_| None, |_| false);
        assert!(!filled[0][2].looked_up && filled[0][2].template_id.is_none());

        let filled = s.fill(vec![vec![(rank(1, None), id(1), 1)]], |_| None, |_| false);
        assert_eq!(filled[0][0].template_id.as_deref(), Some("tpl-a"), "kept");
        assert!(s.wanted().is_empty());
        s.fill(lists(), |_| None, |_| false);
        assert_eq!(s.wanted(), [id(2), id(3)], "forgotten once unlisted");
    }
}
