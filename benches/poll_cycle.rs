//! The CPU of one poll cycle over a big window, beside the floor: serde_json
//! deserialising the same page bodies into the same fields.
//!
//!   cargo bench --bench poll_cycle                     # 1,000,000 jobs
//!   NEXRENDER_BENCH_JOBS=100000 cargo bench --bench poll_cycle
//!
//! The cycle is everything the exporter computes in a poll that reads the
//! whole window (the first poll, and the hourly full rescan): decoding every
//! minimal page, putting the scan together (overlap, repeats), planning the
//! look-ups, choosing which to read as pages, and applying the poll to the
//! tracker. Only the network is left out, and the decoding of the few
//! hundred detail answers (prepared beforehand; the same parser, measured
//! per page by `cargo bench --bench exporter`).
//!
//! The farm is at steady state: about 500 jobs rendering and 200 ending a
//! minute, one minute after the previous poll. Floor and cycle run in turns,
//! so a busy neighbour slows both alike; the medians and their ratio are
//! printed. Run under `cargo test` (no `--bench`), it checks itself on a
//! small window instead.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use nexrender_exporter::api::{parse_job, parse_page, JobId};
use nexrender_exporter::poller::{batch_start, PAGE_OVERLAP};
use nexrender_exporter::scan::{ScanBuilder, WindowScan};
use nexrender_exporter::simulator::listing::{write_job, write_page};
use nexrender_exporter::simulator::{LifecycleConfig, Simulation};
use nexrender_exporter::tracker::{Detail, JobTracker, Outcome};

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const PAGE: usize = 1000;

/// The minimal pages a scan of the whole window reads at `now`, as the
/// poller asks for them (each after the first starts PAGE_OVERLAP early).
fn window_pages(sim: &Simulation, now: i64) -> Vec<(Vec<u8>, usize)> {
    let (lo, hi) = sim.created_range(None, Some(now));
    let mut pages = Vec::new();
    let mut next = lo;
    loop {
        let start = if next == lo { lo } else { next - PAGE_OVERLAP };
        let end = (start + PAGE).min(hi);
        let positions: Vec<usize> = (start..end).collect();
        pages.push((write_page(sim, &positions, true, now), next - start));
        if end - start < PAGE {
            return pages;
        }
        next = end;
    }
}

fn scan(pages: &[(Vec<u8>, usize)], expected: usize) -> WindowScan {
    let mut builder = ScanBuilder::new(PAGE, expected);
    for (body, repeats) in pages {
        let page = parse_page(body).expect("the simulator writes valid pages");
        builder.add_page(page, *repeats).expect("the pages move on");
    }
    builder.finish().0
}

/// One poll's computation, as `AccountPoller::poll_once` does it.
fn cycle(
    tracker: &mut JobTracker,
    pages: &[(Vec<u8>, usize)],
    details: &HashMap<JobId, Detail>,
    now: i64,
) -> Outcome {
    // A whole-window scan makes room for as many jobs as are tracked.
    let scan = scan(pages, tracker.len());
    let need = tracker.plan(&scan);
    black_box(batch_start(&scan.positions(&need), scan.len(), PAGE));
    tracker.apply(&scan, details, now - 2 * 86_400_000, now)
}

/// What `GET /jobs/{id}` would answer for each of `need`.
fn details(sim: &Simulation, need: &[JobId], now: i64) -> HashMap<JobId, Detail> {
    need.iter()
        .map(|id| {
            let found = match id {
                JobId::Ulid(u) => sim.job(*u),
                JobId::Other(_) => None,
            };
            let d = found.map_or(Detail::Gone, |j| {
                Detail::Found(parse_job(&write_job(sim, j, now)).expect("valid job"))
            });
            (id.clone(), d)
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let jobs: usize = std::env::var("NEXRENDER_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 20_000 });
    let rounds = if bench { 7 } else { 1 };
    let lifecycle = LifecycleConfig::steady();
    let mut sim = Simulation::new(lifecycle, 1, T0);
    sim.prefill(jobs, Duration::from_secs(86_400));
    let mut tracker = JobTracker::new();
    // Ten polls a minute apart reach the steady state.
    let mut now = T0;
    for _ in 0..10 {
        now += MIN;
        sim.advance_to(now);
        let pages = window_pages(&sim, now);
        let need = tracker.plan(&scan(&pages, tracker.len()));
        let d = details(&sim, &need, now);
        tracker.apply(&scan(&pages, 0), &d, now - 2 * 86_400_000, now);
    }
    now += MIN;
    sim.advance_to(now);
    let pages = window_pages(&sim, now);
    let need = tracker.plan(&scan(&pages, tracker.len()));
    let d = details(&sim, &need, now);
    let bytes: usize = pages.iter().map(|(b, _)| b.len()).sum();

    let (mut floors, mut cycles) = (vec![], vec![]);
    let mut outcome = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let decoded: usize = pages.iter().map(|(b, _)| common::floor(black_box(b))).sum();
        floors.push(t.elapsed());
        assert!(decoded >= sim.len(), "the floor read every job");
        let mut tr = tracker.clone();
        let t = Instant::now();
        let o = cycle(&mut tr, &pages, &d, now);
        cycles.push(t.elapsed());
        outcome = Some(o);
    }
    let outcome = outcome.expect("at least one round");
    let total: u64 = outcome.jobs_by_status.values().sum();
    assert_eq!(total as usize, sim.len(), "every job of the window counted");
    assert!(
        !outcome.completions.is_empty() && need.len() >= 100,
        "a busy farm: {} completions, {} look-ups",
        outcome.completions.len(),
        need.len()
    );
    let (floor, cyc) = (median(floors), median(cycles));
    println!(
        "poll cycle over {} jobs ({} pages, {} MB, {} look-ups, {} completions):",
        sim.len(),
        pages.len(),
        bytes / 1_000_000,
        need.len(),
        outcome.completions.len()
    );
    println!(
        "  serde floor   {:>9.1} ms  ({:.0} ns per job)",
        floor.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e9 / sim.len() as f64
    );
    println!(
        "  whole cycle   {:>9.1} ms  ({:.0} ns per job)",
        cyc.as_secs_f64() * 1e3,
        cyc.as_secs_f64() * 1e9 / sim.len() as f64
    );
    println!(
        "  cycle / floor {:>9.2}x  (median of {rounds} rounds each, taken in turns)",
        cyc.as_secs_f64() / floor.as_secs_f64()
    );
}
