//! The simulator's own truth, to hold the exporter's numbers against.

use std::collections::{BTreeMap, HashSet};

use nexrender_simulator::server::RunningSimulator;
use ulid::Ulid;

/// The statuses `nexrender_jobs` always exports (0 when none).
pub const DOCUMENTED: [&str; 6] = [
    "queued",
    "pending",
    "render:dorender",
    "finished",
    "error",
    "manually_cancelled",
];

/// The terminal statuses, as `nexrender_jobs_completed_total` labels them.
pub const TERMINAL: [&str; 3] = ["finished", "error", "manually_cancelled"];

/// Ids of the farm's jobs in each terminal status.
pub fn terminal_ids(sim: &RunningSimulator) -> BTreeMap<String, HashSet<Ulid>> {
    sim.sim.with_farm(|f| {
        let mut m: BTreeMap<String, HashSet<Ulid>> = BTreeMap::new();
        for j in f.jobs() {
            if j.status.is_terminal() {
                m.entry(j.status.to_string()).or_default().insert(j.id);
            }
        }
        m
    })
}

/// Per terminal status, the jobs in it `now` that were not in it `before`:
/// what `nexrender_jobs_completed_total` should have added in between.
pub fn ended_between(
    before: &BTreeMap<String, HashSet<Ulid>>,
    now: &BTreeMap<String, HashSet<Ulid>>,
) -> BTreeMap<&'static str, HashSet<Ulid>> {
    TERMINAL
        .into_iter()
        .map(|status| {
            let was = before.get(status).cloned().unwrap_or_default();
            let ended = now
                .get(status)
                .map(|ids| ids.difference(&was).copied().collect())
                .unwrap_or_default();
            (status, ended)
        })
        .collect()
}

/// What `nexrender_jobs` should show, by status: the jobs created within
/// `window_ms` of the farm's now, plus every job not ended whatever its age.
pub fn in_view(sim: &RunningSimulator, window_ms: i64) -> BTreeMap<String, f64> {
    sim.sim.with_farm(|f| {
        let start = f.now() - window_ms;
        let mut c: BTreeMap<String, f64> =
            DOCUMENTED.iter().map(|s| (s.to_string(), 0.0)).collect();
        for j in f.jobs() {
            if j.created_at >= start || !j.status.is_terminal() {
                *c.entry(j.status.to_string()).or_insert(0.0) += 1.0;
            }
        }
        c
    })
}
