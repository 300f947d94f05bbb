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

/// A job as offered: its rank (its creation; its start, for a job in
/// progress whose start is known), id and creation.
pub(crate) type Offered = (UnixMillis, JobId, UnixMillis);

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
    pub(crate) fn offer(&mut self, code: usize, rank: UnixMillis, created: UnixMillis, id: &JobId) {
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

/// What look-ups said of the listed jobs, kept from poll to poll while
/// they stay listed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spotlight {
    /// Template id by listed job whose look-up was read (or given up on).
    known: HashMap<JobId, Option<Box<str>>>,
    /// Listed jobs with nothing known yet: looked up at the next poll.
    wanted: Vec<JobId>,
}

impl Spotlight {
    /// The listed jobs to look up at the next poll.
    pub(crate) fn wanted(&self) -> &[JobId] {
        &self.wanted
    }

    /// Fills in this poll's lists: the template from this poll's look-up
    /// (`found`) or an earlier one, the start from `started` (the jobs in
    /// progress). A job whose look-up failed (`failed`) is not asked
    /// again while listed: one look-up per listed job, at most. Forgets
    /// the jobs no longer listed.
    pub(crate) fn fill<'a>(
        &mut self,
        lists: Vec<Vec<Offered>>,
        found: impl Fn(&JobId) -> Option<&'a ApiJob>,
        failed: impl Fn(&JobId) -> bool,
        started: &HashMap<JobId, UnixMillis>,
    ) -> Vec<Vec<OldJob>> {
        let mut known = HashMap::new();
        self.wanted.clear();
        let filled = lists
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .map(|(_, id, created)| {
                        let template = match (found(&id), self.known.remove(&id)) {
                            (Some(job), _) => Some(job.template_id.clone()),
                            (None, Some(before)) => Some(before),
                            (None, None) if failed(&id) => Some(None),
                            (None, None) => None,
                        };
                        if template.is_none() {
                            self.wanted.push(id.clone());
                        }
                        let job = OldJob {
                            started: started
                                .get(&id)
                                .copied()
                                .filter(|at| *at != UnixMillis::MIN),
                            looked_up: template.is_some(),
                            template_id: template.clone().flatten(),
                            created,
                            id,
                        };
                        if let Some(template) = template {
                            known.insert(job.id.clone(), template);
                        }
                        job
                    })
                    .collect()
            })
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
            k.offer(0, at, at - 1, &id(n));
        }
        k.offer(1, 99, 5, &id(7));
        let lists = k.into_lists();
        assert_eq!(lists[0], [(10, id(2), 9), (10, id(6), 9), (20, id(5), 19)]);
        assert_eq!(lists[1], [(99, id(7), 5)]);
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let mut k = OldestKeeper::new(0, 2);
        k.offer(0, 1, 1, &id(1));
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

    /// A listed job is looked up once: its template is kept while it stays
    /// listed, a failed look-up is not retried, and a job that leaves the
    /// lists is forgotten (looked up again if it comes back).
    #[test]
    fn the_spotlight_asks_each_listed_job_once() {
        let mut s = Spotlight::default();
        let lists = || vec![vec![(1, id(1), 1), (2, id(2), 2), (3, id(3), 3)]];
        let none = HashMap::new();
        let filled = s.fill(lists(), |_| None, |_| false, &none);
        assert!(filled[0].iter().all(|j| !j.looked_up));
        assert_eq!(s.wanted(), [id(1), id(2), id(3)]);

        let one = api_job(1, Some("tpl-a"));
        let started = HashMap::from([(id(2), 7)]);
        let filled = s.fill(
            lists(),
            |i| (*i == id(1)).then_some(&one),
            |i| *i == id(3),
            &started,
        );
        assert_eq!(filled[0][0].template_id.as_deref(), Some("tpl-a"));
        assert_eq!(filled[0][1].started, Some(7));
        assert!(filled[0][2].looked_up, "a failed look-up is not retried");
        assert_eq!(s.wanted(), [id(2)]);

        let filled = s.fill(vec![vec![(1, id(1), 1)]], |_| None, |_| false, &none);
        assert_eq!(filled[0][0].template_id.as_deref(), Some("tpl-a"), "kept");
        assert!(s.wanted().is_empty());
        s.fill(lists(), |_| None, |_| false, &none);
        assert_eq!(s.wanted(), [id(2), id(3)], "forgotten once unlisted");
    }
}
