//! The CPU of one poll cycle over a big window, beside three floors:
//! serde_json's derive reading the same minimal pages for the same fields
//! (`id` and `status`) into a list reserved up front as the exporter's is,
//! borrowing the strings from the body (as the exporter's parser does: the
//! floor issue #14 sets its target against); the same from the body as
//! text, checked for UTF-8 once (the exporter's own shortcut, so the
//! strongest reference); and into owned `String`s (the earlier, easier
//! floor). Times are this thread's CPU time (wall time beside it).
//!
//!   cargo bench --bench poll_cycle                     # 1,000,000 jobs
//!   NEXRENDER_BENCH_JOBS=100000 cargo bench --bench poll_cycle
//!   NEXRENDER_BENCH_DEFAULT_ALLOCATOR=1 cargo bench --bench poll_cycle  # glibc untuned
//!
//! The cycle is `nexrender_exporter::poll::poll`, the very function the
//! poller runs, over a poll that reads the whole window (the first poll, and
//! the hourly full rescan): paging, decoding every minimal page, putting the
//! scan together (overlap, repeats), planning the look-ups, choosing which to
//! read as pages, and applying the poll to the tracker. Only the network is
//! left out: the pages are answered from memory (rendered beforehand by the
//! simulator), and so are the few hundred detail answers (decoded beforehand;
//! the same parser, measured per page by `cargo bench --bench exporter`).
//!
//! The farm is at steady state: about 500 jobs rendering and 200 ending a
//! minute, one minute after the previous poll. Floor and cycle run in turns,
//! so a busy neighbour slows both alike; the medians and their ratio are
//! printed. Run under `cargo test` (no `--bench`), it checks itself on a
//! small window instead.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nexrender_exporter::api::{
    parse_job, ApiError, ApiJob, JobId, ListFilter, ListPageQuery, MinimalJob, Page,
};
use nexrender_exporter::config::PollConfig;
use nexrender_exporter::poll::memory::{ready, Recorded};
use nexrender_exporter::poll::{self, JobSource, PollRequest, PollResult};
use nexrender_exporter::tracker::JobTracker;
use nexrender_simulator::listing::{write_job, write_page};
use nexrender_simulator::{LifecycleConfig, Simulation};

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const PAGE: u32 = 1000;
/// Longer than the farm's day of history: every poll reads every job.
const WINDOW: Duration = Duration::from_secs(2 * 86_400);

/// The API as the simulator's farm stands at `now`: every answer rendered
/// when asked, and recorded, so that the same poll can be replayed from
/// memory ([`Recorded`]) with nothing left to render.
struct Farm<'a> {
    sim: &'a Simulation,
    now: i64,
    recorded: Mutex<Recorded>,
}

impl<'a> Farm<'a> {
    fn new(sim: &'a Simulation, now: i64) -> Self {
        let mut recorded = Recorded::default();
        // The API says its time, as the real one does in its Date header.
        recorded.date = Some(now);
        Farm {
            sim,
            now,
            recorded: Mutex::new(recorded),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("not poisoned")
    }

    /// Renders the page's body and records it.
    fn render(&self, q: &ListPageQuery, minimal: bool) {
        let positions: Vec<usize> = match q.filter {
            ListFilter::Created { from_date, to_date } => {
                let (lo, hi) = self.sim.created_range(Some(from_date), Some(to_date));
                let start = (lo + q.from).min(hi);
                (start..(start + q.limit as usize).min(hi)).collect()
            }
            ListFilter::Live => (0..self.sim.len())
                .filter(|&i| !self.sim.jobs()[i].status.is_terminal())
                .skip(q.from)
                .take(q.limit as usize)
                .collect(),
        };
        let body = write_page(self.sim, &positions, minimal, self.now);
        self.recorded().add_page(q, minimal, body);
    }
}

impl JobSource for Farm<'_> {
    fn list_jobs(&self, q: &ListPageQuery) -> impl Future<Output = Result<Page, ApiError>> + Send {
        self.render(q, false);
        std::future::ready(ready(self.recorded().list_jobs(q)))
    }

    fn list_minimal(
        &self,
        q: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<MinimalJob>, ApiError>> + Send {
        self.render(q, true);
        std::future::ready(ready(self.recorded().list_minimal(q)))
    }

    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
        let found = match id {
            JobId::Ulid(u) => self.sim.job(*u),
            JobId::Other(_) => None,
        };
        let job = found.map(|j| parse_job(&write_job(self.sim, j, self.now)).expect("valid job"));
        self.recorded().add_job(id.clone(), job.clone());
        std::future::ready(Ok(job))
    }
}

fn poll(
    rt: &tokio::runtime::Runtime,
    tracker: &mut JobTracker,
    source: &impl JobSource,
    now: i64,
) -> PollResult {
    let request = PollRequest {
        now,
        window: WINDOW,
        full_scan_due: true,
        page_size: PAGE,
        ..PollRequest::new(&PollConfig::default(), 0, true)
    };
    rt.block_on(poll::poll(tracker, source, &request))
        .expect("the farm answers every request")
}

/// The CPU time this thread has used: what a poll costs, whatever else
/// the machine runs (a neighbour that takes the core away for a while
/// lengthens the wall time of a round, not its CPU time). Everything
/// measured here runs on this thread (a current-thread runtime).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is there on Linux");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall and CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let out = f();
    (out, wall.elapsed(), thread_cpu() - cpu)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // The allocator set up as the exporter's main sets it, unless asked not
    // to (to see what it costs).
    if std::env::var_os("NEXRENDER_BENCH_DEFAULT_ALLOCATOR").is_none() {
        nexrender_exporter::alloc::return_big_blocks_to_the_system();
    }
    let bench = std::env::args().any(|a| a == "--bench");
    let jobs: usize = std::env::var("NEXRENDER_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 1_000_000 } else { 20_000 });
    let rounds: usize = std::env::var("NEXRENDER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 11 } else { 1 })
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let lifecycle = LifecycleConfig::steady();
    let mut sim = Simulation::new(lifecycle, 1, T0);
    sim.prefill(jobs, Duration::from_secs(86_400));
    let mut tracker = JobTracker::new();
    // Ten polls a minute apart reach the steady state.
    let mut now = T0;
    for _ in 0..10 {
        now += MIN;
        sim.advance_to(now);
        poll(&rt, &mut tracker, &Farm::new(&sim, now), now);
    }
    now += MIN;
    sim.advance_to(now);
    // The measured poll, once against the farm to record its answers.
    let farm = Farm::new(&sim, now);
    poll(&rt, &mut tracker.clone(), &farm, now);
    let replay = farm.recorded.into_inner().expect("not poisoned");
    // The window's minimal pages: what the floor decodes.
    let minimal: Vec<&[u8]> = replay
        .pages()
        .filter(|(min, filter, _)| *min && *filter != ListFilter::Live)
        .map(|(_, _, body)| body)
        .collect();
    let live_pages = replay
        .pages()
        .filter(|(_, filter, _)| *filter == ListFilter::Live)
        .count();
    let bytes: usize = minimal.iter().map(|b| b.len()).sum();
    let single_lookups = replay.lookups();
    let full_pages = replay.pages().count() - minimal.len() - live_pages;

    // NEXRENDER_BENCH_PROFILE_CYCLES=N: only the cycle, N times, for a profiler.
    if let Some(n) = std::env::var("NEXRENDER_BENCH_PROFILE_CYCLES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        for _ in 0..n {
            black_box(poll(&rt, &mut tracker.clone(), &replay, now));
        }
        return;
    }
    // CPU times, and wall times beside them: the three floors, then the cycle.
    type Decode = fn(&[u8]) -> usize;
    let references: [(&str, Decode); 3] = [
        ("borrowing", common::floor),
        ("text", common::text_floor),
        ("owning", common::owning_floor),
    ];
    let mut floor_times: [(Vec<Duration>, Vec<Duration>); 3] = Default::default();
    let (mut cycles, mut cycles_wall) = (vec![], vec![]);
    let mut result = None;
    for _ in 0..rounds {
        for ((name, decode), (cpus, walls)) in references.iter().zip(&mut floor_times) {
            let (decoded, wall, cpu) =
                timed(|| -> usize { minimal.iter().map(|b| decode(black_box(b))).sum() });
            assert!(decoded >= sim.len(), "the {name} floor read every job");
            cpus.push(cpu);
            walls.push(wall);
        }
        let mut tr = tracker.clone();
        let (r, wall, cpu) = timed(|| poll(&rt, &mut tr, &replay, now));
        cycles.push(cpu);
        cycles_wall.push(wall);
        result = Some(r);
    }
    let [(floors, floors_wall), (text_floors, text_floors_wall), (owning, owning_wall)] =
        floor_times;
    let outcome = result.expect("at least one round").outcome;
    let total: u64 = outcome.jobs_by_status.values().sum();
    assert_eq!(total as usize, sim.len(), "every job of the window counted");
    assert!(
        outcome.completions.len() >= 100 && !outcome.queue_waits.is_empty(),
        "a busy farm: {} completions",
        outcome.completions.len(),
    );
    // Each round's own ratios: a neighbour busy for a few seconds slows the
    // cycle and the floors of that round alike, so their ratio moves less
    // than either time.
    let ratios = |floors: &[Duration]| -> Vec<f64> {
        let mut r: Vec<f64> = cycles
            .iter()
            .zip(floors)
            .map(|(c, f)| c.as_secs_f64() / f.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r
    };
    let (to_floor, to_text, to_owning) = (ratios(&floors), ratios(&text_floors), ratios(&owning));
    let (floor, owning, cyc) = (median(floors), median(owning), median(cycles));
    let text_floor = median(text_floors);
    println!(
        "poll cycle over {} jobs ({} pages and {} of live jobs, {} MB, look-ups: {} full pages and {} single, {} completions):",
        sim.len(),
        minimal.len(),
        live_pages,
        bytes / 1_000_000,
        full_pages,
        single_lookups,
        outcome.completions.len()
    );
    let ms_per_job = |d: Duration| {
        (
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e9 / sim.len() as f64,
        )
    };
    let rows = [
        ("serde floor, borrowing", floor, floors_wall, ""),
        (
            "serde floor, borrowing from text",
            text_floor,
            text_floors_wall,
            "; one UTF-8 check of each body",
        ),
        ("serde floor, owning", owning, owning_wall, ""),
        ("whole cycle", cyc, cycles_wall, ""),
    ];
    for (name, cpu, walls, note) in rows {
        let (ms, ns) = ms_per_job(cpu);
        let w = median(walls).as_secs_f64() * 1e3;
        println!("  {name:<32} {ms:>7.1} ms CPU  ({ns:.0} ns per job; wall {w:.1} ms{note})");
    }
    println!(
        "  cycle / borrowing floor {:>8.2}x, / borrowing from text {:.2}x, / owning floor {:.2}x  (medians of CPU times, {rounds} rounds each, taken in turns)",
        cyc.as_secs_f64() / floor.as_secs_f64(),
        cyc.as_secs_f64() / text_floor.as_secs_f64(),
        cyc.as_secs_f64() / owning.as_secs_f64()
    );
    let spread = |r: &[f64]| {
        format!(
            "{:.2}x (from {:.2} to {:.2})",
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        )
    };
    println!(
        "  each round's own ratio: borrowing floor {}, from text {}, owning floor {}",
        spread(&to_floor),
        spread(&to_text),
        spread(&to_owning)
    );
}
