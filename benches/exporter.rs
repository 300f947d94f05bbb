//! The exporter's hot paths, each beside its reference:
//!   cargo bench --bench exporter
//! - decoding a 1000-job page (minimal and full) with the exporter's lenient
//!   parser, against plain serde_json derive into the same fields (the floor);
//! - the tracker's work for one poll over a 100,000-job window at steady state;
//! - rendering /metrics.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nexrender_exporter::api::parse_page;
use nexrender_exporter::metrics::Metrics;
use nexrender_exporter::scan::{ScanEntry, WindowScan};
use nexrender_exporter::status::StatusTable;
use nexrender_exporter::tracker::JobTracker;
use nexrender_simulator::listing::write_page;
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
    for (name, minimal) in [("minimal", true), ("full", false)] {
        let body = write_page(&sim, &positions, minimal, T0);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{name}/exporter_parse"), |b| {
            b.iter(|| parse_page(black_box(&body)).unwrap())
        });
        g.bench_function(format!("{name}/serde_floor"), |b| {
            b.iter(|| common::floor(black_box(&body)))
        });
    }
    g.finish();
}

fn tracking(c: &mut Criterion) {
    let sim = farm(100_000);
    let entries: Vec<ScanEntry> = parse_page(&write_page(
        &sim,
        &(0..sim.len()).collect::<Vec<_>>(),
        true,
        T0,
    ))
    .unwrap()
    .jobs
    .into_iter()
    .map(|j| ScanEntry {
        id: j.id,
        status: j.status,
    })
    .collect();
    // Documented statuses only: their codes are the same in every table.
    let scan = WindowScan::new(entries, &mut StatusTable::default()).0;
    let mut tracker = JobTracker::new();
    let none = HashMap::new();
    tracker.apply(&scan, &none, T0 - 86_400_000, T0);
    let mut g = c.benchmark_group("tracker_100k_window");
    g.throughput(Throughput::Elements(scan.len() as u64));
    g.bench_function("plan_and_apply_steady_state", |b| {
        b.iter(|| {
            let need = tracker.plan(black_box(&scan));
            tracker.apply(&scan, &none, T0 - 86_400_000, T0);
            need
        })
    });
    g.finish();
}

fn scraping(c: &mut Criterion) {
    let metrics = Metrics::new(&Default::default());
    metrics.register_account("main");
    let mut g = c.benchmark_group("metrics");
    g.bench_function("encode_one_account", |b| b.iter(|| metrics.encode()));
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
