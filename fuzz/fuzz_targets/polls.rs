//! Any bytes as a run of polls. A poll is a block of lines ended by an
//! empty line: its first line sets the poll's clock and window, the others
//! are `GET /jobs` page bodies whose jobs, in order, are the API's list of
//! jobs at that poll. Each poll is `nexrender_exporter::poll::poll`, the
//! function the poller runs, with the API answered from that list as the
//! real API answers: pages cut from it by offset and limit among the jobs
//! created within `from_date`/`to_date` (by `createdAt`, else the id's
//! time), the live listing as its jobs not ended whatever their age,
//! look-ups by id of any job in the list (one not in it is deleted: 404).
//! Clocks step back and windows widen and narrow as the input says; the
//! API's clock is off the exporter's by up to ±21 minutes, and its `Date`
//! says it, says nothing, or is a proxy's two hours off. A job whose
//! `templateId` is `poison` is one no parser can read: a full page holding
//! it and its look-up fail to decode, as its minimal entry does not. A line that starts with `@` is a webhook delivery (the rest
//! of the line is its body), taken after that block's poll, as deliveries
//! come between polls; a delivery that would count is "looked up" in that
//! poll's list, as the poller does. Never a panic, and the bookkeeping holds:
//! - a poll asks for each job's detail at most once;
//! - the jobs counted by status are among the jobs tracked;
//! - no job is counted as completed twice, in one poll, across polls or
//!   between polls and deliveries, unless it was shown not ended again
//!   after its first count (re-queued upstream: counted again only once
//!   forgotten, older than the window);
//! - a job a poll counted was shown ended in that poll's list (or, gone
//!   from it, in the last list that showed it), and so was a job counted
//!   on a delivery (its look-up).
#![no_main]
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nexrender_exporter::api::{parse_delivery, parse_page, ApiJob, JobId};
use nexrender_exporter::poll::memory::{ready, MemoryApi};
use nexrender_exporter::poll::{self, PollRequest};
use nexrender_exporter::tracker::{DeliveryVerdict, JobTracker};

const T0: i64 = 1_767_225_600_000;
const LIMIT: u32 = 4;

fn poisoned(job: &ApiJob) -> bool {
    job.template_id.as_deref() == Some("poison")
}

fuzz_target!(|data: &[u8]| {
    let mut tracker = JobTracker::new();
    let mut counted: HashSet<JobId> = HashSet::new();
    // Counted jobs since shown not ended (re-queued): they may count again.
    let mut requeued: HashSet<JobId> = HashSet::new();
    // Whether the last list that showed each job showed it ended: a job
    // deleted (missing from the list) after a list showed it ended may be
    // counted from that list.
    let mut last_shown_ended: HashMap<JobId, bool> = HashMap::new();
    // A job's createdAt is the one it was first shown with: the API does
    // not change when a job was created.
    let mut created: HashMap<JobId, Option<i64>> = HashMap::new();
    let mut now = T0;
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    for (n, poll) in lines.split(|l| l.is_empty()).enumerate() {
        let Some((head, bodies)) = poll.split_first() else {
            continue;
        };
        // The head's first byte moves the clock (back, now and then), its
        // second sets the window (1 to 256 minutes), its third how far the
        // API's clock is off ours (10 s a step, ±21 minutes), its fourth
        // what its `Date` says: nothing (0 mod 3), its clock (1), or a
        // proxy's clock two hours off (2).
        let step = head.first().map_or(1, |b| i64::from(*b as i8));
        now += step * 60_000;
        let window = Duration::from_secs(60 * (1 + u64::from(head.get(1).copied().unwrap_or(59))));
        let api_now = now + i64::from(head.get(2).copied().unwrap_or(0) as i8) * 10_000;
        let date = match head.get(3).copied().unwrap_or(1) % 3 {
            0 => None,
            1 => Some(api_now),
            _ => Some(api_now + 2 * 3_600_000),
        };
        let mut jobs: Vec<ApiJob> = Vec::new();
        let (deliveries, bodies): (Vec<&[u8]>, Vec<&[u8]>) =
            bodies.iter().partition(|b| b.first() == Some(&b'@'));
        for body in bodies {
            for mut job in parse_page(body).map(|p| p.jobs).unwrap_or_default() {
                job.created_at = *created.entry(job.id.clone()).or_insert(job.created_at);
                if !jobs.iter().any(|j| j.id == job.id) {
                    jobs.push(job);
                }
            }
        }
        for job in &jobs {
            if !job.status.is_terminal() && counted.contains(&job.id) {
                requeued.insert(job.id.clone());
            }
        }
        let ended: HashSet<JobId> = jobs
            .iter()
            .filter(|j| j.status.is_terminal())
            .map(|j| j.id.clone())
            .collect();
        let api = MemoryApi {
            poisoned: jobs.iter().filter(|j| poisoned(j)).map(|j| j.id.clone()).collect(),
            jobs,
            date,
            ..MemoryApi::default()
        };
        let request = PollRequest {
            now,
            window,
            full_scan_due: n % 3 == 0,
            page_size: LIMIT,
            detail_concurrency: 2,
            max_lookups: 3,
            max_catch_up: Duration::from_secs(86_400),
        };
        let polled = ready(poll::poll(&mut tracker, &api, &request));
        // A failed poll applies nothing.
        if let Ok(result) = polled {
            let asked = api.looked_up.lock().unwrap().clone();
            let distinct: HashSet<&JobId> = asked.iter().collect();
            assert_eq!(distinct.len(), asked.len(), "an id asked twice");
            let out = result.outcome;
            // Tracked jobs are in the numbers, but for deleted ones remembered
            // only so as not to count them again.
            assert!(out.jobs_by_status.values().sum::<u64>() as usize <= out.tracked);
            assert_eq!(out.tracked, tracker.len());
            for c in &out.completions {
                let listed = api.jobs.iter().any(|j| j.id == c.id);
                let shown_ended = ended.contains(&c.id)
                    || (!listed && last_shown_ended.get(&c.id) == Some(&true));
                assert!(shown_ended, "{:?} counted but not shown ended", c.id);
                assert!(
                    counted.insert(c.id.clone()) || requeued.remove(&c.id),
                    "{:?} counted twice",
                    c.id
                );
            }
        }
        for job in &api.jobs {
            last_shown_ended.insert(job.id.clone(), job.status.is_terminal());
        }
        // Deliveries between this poll and the next, whatever the poll did,
        // each taken as the poller takes it: a delivery that would count is
        // confirmed by its look-up (here, in this poll's list).
        let take = |tracker: &mut JobTracker, job: &ApiJob| {
            let done = tracker.deliver(job, api_now, false);
            if done.verdict != DeliveryVerdict::Unconfirmed {
                return done;
            }
            match api.jobs.iter().find(|j| j.id == job.id && !poisoned(j)) {
                Some(found) => tracker.deliver(found, api_now, true),
                None => done,
            }
        };
        for body in &deliveries {
            let Ok(job) = parse_delivery(&body[1..]) else {
                continue;
            };
            let done = take(&mut tracker, &job);
            if let Some(c) = &done.completion {
                assert_eq!(done.verdict, DeliveryVerdict::Counted);
                assert!(ended.contains(&c.id), "{:?} counted on a delivery, not ended", c.id);
                assert!(
                    counted.insert(c.id.clone()) || requeued.remove(&c.id),
                    "{:?} counted twice (a delivery)",
                    c.id
                );
            }
            assert_eq!(take(&mut tracker, &job).completion, None, "delivered twice");
        }
    }
});
