//! Any bytes as a run of polls: lines are `GET /jobs` page bodies, an empty
//! line ends a poll. Each poll goes through what the poller does between
//! network calls (scan builder, plan, apply), with details taken from the
//! same pages. Never a panic, and the bookkeeping holds:
//! - a scan holds each id once, and a plan asks for each id once;
//! - the jobs counted by status are the jobs tracked;
//! - a poll counts no more completions than the terminal jobs it was shown.
#![no_main]
use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use nexrender_exporter::api::{parse_page, JobId};
use nexrender_exporter::scan::ScanBuilder;
use nexrender_exporter::tracker::{Detail, JobTracker};

const T0: i64 = 1_767_225_600_000;
const LIMIT: usize = 4;

fuzz_target!(|data: &[u8]| {
    let mut tracker = JobTracker::new();
    for (n, poll) in data
        .split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|l| l.is_empty())
        .enumerate()
    {
        let now = T0 + n as i64 * 60_000;
        let mut builder = ScanBuilder::new(LIMIT, 0);
        let mut details = HashMap::new();
        let mut ended: HashSet<JobId> = HashSet::new();
        let mut ok = true;
        for (i, body) in poll.iter().enumerate() {
            let Ok(page) = parse_page(body) else { continue };
            for j in &page.jobs {
                details.insert(j.id.clone(), Detail::Found(j.clone()));
                if j.status.is_terminal() {
                    ended.insert(j.id.clone());
                }
            }
            if builder.add_page(page, if i == 0 { 0 } else { 1 }).is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            continue; // the poll fails; nothing is applied
        }
        let (scan, _) = builder.finish();
        let ids: HashSet<&JobId> = scan.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), scan.len(), "an id twice in a scan");
        let need = tracker.plan(&scan);
        let asked: HashSet<&JobId> = need.iter().collect();
        assert_eq!(asked.len(), need.len(), "an id asked twice");
        let details: HashMap<JobId, Detail> = need
            .iter()
            .map(|id| (id.clone(), details.remove(id).unwrap_or(Detail::Gone)))
            .collect();
        let out = tracker.apply(&scan, &details, now - 3_600_000, now);
        assert_eq!(
            out.jobs_by_status.values().sum::<u64>() as usize,
            out.tracked
        );
        assert_eq!(out.tracked, tracker.len());
        assert!(out.completions.len() <= ended.len(), "a job counted twice");
    }
});
