//! The exporter's hot paths, each beside its reference:
//!   cargo bench --bench exporter
//! - decoding a 1000-job page (minimal and full) with the exporter's lenient
//!   parser, against plain serde_json derive into the same fields (of a
//!   minimal page, id and status; of a full page, those, the template and
//!   stats), borrowing (the floor), borrowing from the body checked once as
//!   text (the strongest) and owning (the earlier floor);
//! - the tracker's work for one poll over a 100,000-job window: a poll that
//!   sees nothing new, and a poll a minute after the last on a busy farm
//!   (about 200 jobs created, started and ended, and as many leaving the
//!   window, with the look-ups of the jobs that ended);
//! - rendering /metrics (classic text and OpenMetrics).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nexrender_exporter::api::{parse_job, parse_minimal_page, parse_page, JobId, MinimalJob};
use nexrender_exporter::metrics::Metrics;
use nexrender_exporter::scan::WindowScan;
use nexrender_exporter::status::StatusTable;
use nexrender_exporter::tracker::{Detail, JobTracker};
use nexrender_simulator::listing::{write_job, write_page};
use nexrender_simulator::{LifecycleConfig, Simulation};

const T0: i64 = 1_767_225_600_000;

fn farm(n: usize) -> Simulation {
    let mut sim = Simulation::new(LifecycleConfig::default(), 1, T0);
    sim.prefill(n, Duration::from_secs(86_400));
    sim
}

fn parsing(c: &mut Criterion) {
    let sim = farm(10_000);
    let positions: Vec<usize> = (0..1000).collect();
    let mut g = c.benchmark_group("page_1000_jobs");
    type Decode = fn(&[u8]) -> usize;
    let pages: [(&str, bool, [Decode; 3]); 2] = [
        (
            "minimal",
            true,
            [common::floor, common::text_floor, common::owning_floor],
        ),
        (
            "full",
            false,
            [
                common::full_floor,
                common::full_text_floor,
                common::full_owning_floor,
            ],
        ),
    ];
    for (name, minimal, floors) in pages {
        let body = write_page(&sim, &positions, minimal, T0);
        for floor in floors {
            assert_eq!(floor(&body), 1000, "each floor decodes the page");
        }
        g.throughput(Throughput::Bytes(body.len() as u64));
        // A minimal page is read as the window scan reads it.
        g.bench_function(format!("{name}/exporter_parse"), |b| {
            if minimal {
                b.iter(|| parse_minimal_page(black_box(&body)).unwrap().raw_len)
            } else {
                b.iter(|| parse_page(black_box(&body)).unwrap().raw_len)
            }
        });
        for (floor, kind) in floors.iter().zip(["", "_from_text", "_owning"]) {
            g.bench_function(format!("{name}/serde_floor{kind}"), |b| {
                b.iter(|| floor(black_box(&body)))
            });
        }
    }
    g.finish();
}

/// The whole window of a farm as one poll sees it at `now`.
fn window_scan(sim: &Simulation, now: i64, table: &mut StatusTable) -> WindowScan {
    let (lo, hi) = sim.created_range(Some(now - DAY), Some(now));
    let positions: Vec<usize> = (lo..hi).collect();
    let entries: Vec<MinimalJob> = parse_minimal_page(&write_page(sim, &positions, true, now))
        .unwrap()
        .jobs;
    WindowScan::new(entries, table).0
}

/// The look-ups a poll makes for what `plan` asks, answered by the farm.
fn look_up(sim: &Simulation, need: &[JobId], now: i64) -> HashMap<JobId, Detail> {
    need.iter()
        .map(|id| {
            let detail = match id {
                JobId::Ulid(u) => sim
                    .job(*u)
                    .map(|j| parse_job(&write_job(sim, j, now)).unwrap()),
                JobId::Other(_) => None,
            };
            (id.clone(), detail.map_or(Detail::Gone, Detail::Found))
        })
        .collect()
}

const DAY: i64 = 86_400_000;
const MIN: i64 = 60_000;

fn tracking(c: &mut Criterion) {
    let sim = farm(100_000);
    // Documented statuses only: their codes are the same in every table.
    let scan = window_scan(&sim, T0, &mut StatusTable::default());
    let mut tracker = JobTracker::new();
    let none = HashMap::new();
    tracker.apply(&scan, &none, T0 - DAY, T0);
    let mut g = c.benchmark_group("tracker_100k_window");
    g.throughput(Throughput::Elements(scan.len() as u64));
    g.bench_function("plan_and_apply_steady_state", |b| {
        b.iter(|| {
            let need = tracker.plan(black_box(&scan));
            tracker.apply(&scan, &none, T0 - DAY, T0);
            need
        })
    });

    // A busy farm (about 200 jobs a minute arriving, starting and ending,
    // 500 rendering), polled every minute until the tracker is at steady
    // state; then the step measured is the next minute's poll, from a copy
    // of the tracker as it stood, with the look-ups `plan` asked for.
    let mut sim = Simulation::new(LifecycleConfig::steady(), 1, T0);
    sim.prefill(100_000, Duration::from_secs(86_400));
    let mut table = StatusTable::default();
    let mut tracker = JobTracker::new();
    let mut now = T0;
    for _ in 0..=10 {
        sim.advance_to(now);
        let scan = window_scan(&sim, now, &mut table);
        let need = tracker.plan(&scan);
        tracker.apply(&scan, &look_up(&sim, &need, now), now - DAY, now);
        now += MIN;
    }
    sim.advance_to(now);
    let scan = window_scan(&sim, now, &mut table);
    let need = tracker.plan(&scan);
    let details = look_up(&sim, &need, now);
    let outcome = tracker.clone().apply(&scan, &details, now - DAY, now);
    assert!(
        need.len() >= 100 && outcome.completions.len() >= 100,
        "a minute of churn: {} look-ups, {} completions",
        need.len(),
        outcome.completions.len()
    );
    println!(
        "churn step: {} jobs in the window, {} look-ups, {} completions",
        scan.len(),
        need.len(),
        outcome.completions.len()
    );
    g.bench_function("plan_and_apply_one_minute_of_churn", |b| {
        b.iter_batched(
            || tracker.clone(),
            |mut tr| {
                let need = tr.plan(black_box(&scan));
                (need, tr.apply(&scan, &details, now - DAY, now))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn scraping(c: &mut Criterion) {
    let metrics = Metrics::new(&Default::default());
    let _main = metrics.account("main");
    let mut g = c.benchmark_group("metrics");
    g.bench_function("encode_one_account", |b| b.iter(|| metrics.encode()));
    // The same families in OpenMetrics, every histogram bucket asking for
    // its exemplar (what a Prometheus scrape costs when not shared).
    g.bench_function("encode_openmetrics_one_account", |b| {
        b.iter(|| metrics.encode_openmetrics())
    });
    g.bench_function("scrape_one_account_unchanged", |b| {
        b.iter(|| metrics.scrape())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4));
    targets = parsing, tracking, scraping
}
criterion_main!(benches);
