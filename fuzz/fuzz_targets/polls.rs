//! Any bytes as a run of polls: lines are `GET /jobs` page bodies, an empty
//! line ends a poll. Each poll is `nexrender_exporter::cycle::poll`, the
//! function the poller runs, with the API answered from the input: the
//! poll's pages in order, whatever offset is asked (so overlaps, repeats and
//! pages that come round again all happen), and look-ups from the jobs those
//! pages showed. Never a panic, and the bookkeeping holds:
//! - a poll asks for each job's detail at most once;
//! - the jobs counted by status are the jobs tracked;
//! - a poll counts no more completions than the terminal jobs it was shown.
#![no_main]
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nexrender_exporter::api::{parse_page, ApiError, ApiJob, JobId, ListPageQuery, Page};
use nexrender_exporter::cycle::{self, JobSource, PollRequest};
use nexrender_exporter::tracker::JobTracker;

const T0: i64 = 1_767_225_600_000;
const LIMIT: u32 = 4;

/// One poll's answers, from the input.
struct Answers<'a> {
    bodies: Vec<&'a [u8]>,
    /// Pages served so far: minimal ones, and full ones (look-ups as pages).
    served: Mutex<(usize, usize)>,
    jobs: HashMap<JobId, ApiJob>,
    asked: Mutex<Vec<JobId>>,
}

impl JobSource for Answers<'_> {
    fn list_jobs(&self, q: &ListPageQuery) -> impl Future<Output = Result<Page, ApiError>> + Send {
        let mut served = self.served.lock().unwrap();
        let n = if q.minimal { &mut served.0 } else { &mut served.1 };
        let body = self.bodies.get(*n).copied().unwrap_or(b"[]");
        *n += 1;
        std::future::ready(parse_page(body).map_err(|e| ApiError::Decode {
            endpoint: "list_jobs",
            detail: e.to_string(),
        }))
    }

    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
        self.asked.lock().unwrap().push(id.clone());
        std::future::ready(Ok(self.jobs.get(id).cloned()))
    }
}

/// Runs a future that never waits (every answer is in memory).
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("answers from memory are ready at once"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut tracker = JobTracker::new();
    for (n, poll) in data
        .split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|l| l.is_empty())
        .enumerate()
    {
        let now = T0 + n as i64 * 60_000;
        let mut jobs = HashMap::new();
        let mut ended: HashSet<JobId> = HashSet::new();
        for body in poll {
            for job in parse_page(body).map(|p| p.jobs).unwrap_or_default() {
                if job.status.is_terminal() {
                    ended.insert(job.id.clone());
                }
                jobs.insert(job.id.clone(), job);
            }
        }
        let answers = Answers {
            bodies: poll.to_vec(),
            served: Mutex::default(),
            jobs,
            asked: Mutex::default(),
        };
        // Every third poll reads the whole window; the others may be incremental.
        let request = PollRequest::new(&tracker, now, Duration::from_secs(3600), n % 3 == 0, LIMIT, 2);
        let Ok(result) = ready(cycle::poll(&mut tracker, &answers, &request)) else {
            continue; // the poll fails; nothing is applied
        };
        let asked = answers.asked.into_inner().unwrap();
        let distinct: HashSet<&JobId> = asked.iter().collect();
        assert_eq!(distinct.len(), asked.len(), "an id asked twice");
        let out = result.outcome;
        assert_eq!(
            out.jobs_by_status.values().sum::<u64>() as usize,
            out.tracked
        );
        assert_eq!(out.tracked, tracker.len());
        assert!(out.completions.len() <= ended.len(), "a job counted twice");
    }
});
