//! How fast the simulator answers 1000-job pages over a million-job window:
//! it must never be the bottleneck of the exporter's benchmarks.
//!   cargo bench -p nexrender-simulator --bench simulator

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nexrender_simulator::listing::{select, write_page};
use nexrender_simulator::query::ListQuery;
use nexrender_simulator::{DateBounds, LifecycleConfig, Simulation};

const T0: i64 = 1_767_225_600_000;

fn pages(c: &mut Criterion) {
    let mut sim = Simulation::new(LifecycleConfig::default(), 1, T0);
    sim.prefill(1_000_000, Duration::from_secs(86_400));
    let mut g = c.benchmark_group("simulator_page_1000_of_1m");
    g.throughput(Throughput::Elements(1));
    for (name, raw) in [
        ("minimal", "minimal=true&limit=1000&from=500000&from_date=2025-12-31T00:00:00Z&to_date=2026-01-01T00:00:00Z"),
        ("full", "limit=1000&from=500000&from_date=2025-12-31T00:00:00Z&to_date=2026-01-01T00:00:00Z"),
    ] {
        let q = ListQuery::parse(raw).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                let pos = select(&sim, black_box(&q), DateBounds::Inclusive, 1);
                write_page(&sim, &pos, q.minimal, T0)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = pages
}
criterion_main!(benches);
