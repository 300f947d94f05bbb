//! Days of polling in simulated time: the exporter's poller and the
//! simulator share a clock the test moves by hand, so a six-hour outage or
//! a four-day soak takes seconds, and the simulator knows the exact truth.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use nexrender_exporter::config::PollConfig;
use nexrender_simulator::server::RunningSimulator;
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{
    Endpoint, Fault, FaultRule, LifecycleConfig, PrefillConfig, Schedule, ScriptedJob,
    SimulatorConfig,
};
use support::clock::{Rig, T0};
use support::terminal_ids;
use ulid::Ulid;

const MIN: i64 = 60_000;

async fn rig(lifecycle: LifecycleConfig, prefill: usize, window: Duration) -> Rig {
    rig_with(lifecycle, prefill, window, Duration::from_secs(3600)).await
}

async fn rig_with(
    lifecycle: LifecycleConfig,
    prefill: usize,
    window: Duration,
    full_scan_interval: Duration,
) -> Rig {
    rig_skewed(lifecycle, prefill, window, full_scan_interval, 0).await
}

/// As [`rig_with`], with the API's clock `offset_seconds` off the test's.
async fn rig_skewed(
    lifecycle: LifecycleConfig,
    prefill: usize,
    window: Duration,
    full_scan_interval: Duration,
    offset_seconds: i64,
) -> Rig {
    let cfg = SimulatorConfig {
        clock_offset_seconds: offset_seconds,
        lifecycle,
        prefill: PrefillConfig {
            jobs: prefill,
            span: Duration::from_secs(86_400),
        },
        seed: 7,
        ..SimulatorConfig::default()
    };
    let settings = PollConfig {
        interval: Duration::from_secs(60),
        window,
        page_size: 1000,
        detail_concurrency: 8,
        timeout: Duration::from_secs(60),
        full_scan_interval,
        ..PollConfig::default()
    };
    Rig::start(cfg, settings).await
}

fn value(text: &str, series: &str) -> f64 {
    support::value(text, series).unwrap_or_else(|| panic!("no series {series}"))
}

#[tokio::test]
async fn after_a_six_hour_outage_every_job_that_ended_meanwhile_is_counted_exactly_once() {
    let lifecycle = LifecycleConfig {
        arrivals_per_minute: 3.0,
        render_median: Duration::from_secs(120),
        workers: 6,
        ..LifecycleConfig::default()
    };
    let mut r = rig(lifecycle, 3000, Duration::from_secs(86_400)).await;
    r.poller.poll().await;
    let at_start = terminal_ids(&r.sim);
    let started_before: HashSet<Ulid> = r.sim.sim.with_farm(|f| {
        f.jobs()
            .iter()
            .filter(|j| j.started_at.is_some())
            .map(|j| j.id)
            .collect()
    });
    let m = r.metrics();
    assert_eq!(value(&m, "nexrender_up{account=\"main\"}"), 1.0);

    // Polls every 5 minutes; the API answers 503 from minute 1 for 6 hours.
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::Any,
        Fault::Status { code: 503 },
        Schedule::Window {
            after: Duration::from_secs(60),
            lasting: Some(Duration::from_secs(6 * 3600)),
        },
    ));
    for step in 1..=(6 * 12) {
        r.clock.set(T0 + step * 5 * MIN);
        r.poller.poll().await;
        let m = r.metrics();
        assert_eq!(
            value(&m, "nexrender_up{account=\"main\"}"),
            0.0,
            "step {step}"
        );
        assert_eq!(
            value(
                &m,
                "nexrender_jobs_completed_total{account=\"main\",status=\"finished\"}"
            ),
            0.0
        );
    }
    r.clock.set(T0 + 6 * 3600 * 1000 + 10 * MIN);
    r.poller.poll().await;
    r.poller.poll().await; // a second good poll must not add anything
    let m = r.metrics();
    assert_eq!(value(&m, "nexrender_up{account=\"main\"}"), 1.0);

    let now = terminal_ids(&r.sim);
    let mut total_new = 0.0;
    for status in ["finished", "error", "manually_cancelled"] {
        let before = at_start.get(status).cloned().unwrap_or_default();
        let new = now.get(status).map_or(0, |s| s.difference(&before).count()) as f64;
        total_new += new;
        let got = value(
            &m,
            &format!("nexrender_jobs_completed_total{{account=\"main\",status=\"{status}\"}}"),
        );
        assert_eq!(
            got, new,
            "{status}: counted {got}, the simulator ended {new}"
        );
    }
    assert!(total_new > 500.0, "a busy six hours: {total_new}");
    let finished_new = now["finished"].difference(&at_start["finished"]).count() as f64;
    assert_eq!(
        value(
            &m,
            "nexrender_job_render_duration_seconds_count{account=\"main\"}"
        ),
        finished_new
    );
    let started_since: f64 = r.sim.sim.with_farm(|f| {
        f.jobs()
            .iter()
            .filter(|j| j.started_at.is_some() && !started_before.contains(&j.id))
            .count() as f64
    });
    assert_eq!(
        value(
            &m,
            "nexrender_job_queue_wait_seconds_count{account=\"main\"}"
        ),
        started_since
    );
    // And the current numbers match the farm: every job in the window by status.
    for (status, n) in support::in_view(&r.sim, 86_400_000) {
        assert_eq!(
            value(
                &m,
                &format!("nexrender_jobs{{account=\"main\",status=\"{status}\"}}")
            ),
            n,
            "{status}"
        );
    }
}

#[tokio::test]
async fn four_days_of_jobs_flowing_through_a_six_hour_window_keep_memory_flat() {
    let lifecycle = LifecycleConfig {
        arrivals_per_minute: 2.0,
        burst_probability: 0.0,
        render_median: Duration::from_secs(90),
        workers: 4,
        ..LifecycleConfig::default()
    };
    let mut r = rig(lifecycle, 0, Duration::from_secs(6 * 3600)).await;
    let mut tracked_at_day_end = Vec::new();
    for step in 0..(4 * 24 * 6) {
        r.clock.set(T0 + step * 10 * MIN);
        r.poller.poll().await;
        if step > 0 && step % (24 * 6) == 0 {
            let m = r.metrics();
            assert_eq!(value(&m, "nexrender_up{account=\"main\"}"), 1.0);
            tracked_at_day_end.push(value(
                &m,
                "nexrender_exporter_tracked_jobs{account=\"main\"}",
            ));
        }
    }
    let m = r.metrics();
    let completed: f64 = ["finished", "error", "manually_cancelled"]
        .iter()
        .map(|s| {
            value(
                &m,
                &format!("nexrender_jobs_completed_total{{account=\"main\",status=\"{s}\"}}"),
            )
        })
        .sum();
    assert!(completed > 10_000.0, "four days of work: {completed}");
    // Six hours of jobs at 2 a minute is about 720: the tracker holds the
    // window, not the 11,000+ jobs seen since the start.
    for t in &tracked_at_day_end {
        assert!(
            (550.0..1000.0).contains(t),
            "tracked jobs at a day's end: {tracked_at_day_end:?}"
        );
    }
    let (first, last) = (tracked_at_day_end[0], *tracked_at_day_end.last().unwrap());
    assert!(
        last < first * 1.25,
        "flat, not growing: {tracked_at_day_end:?}"
    );
}

/// Sum of a per-endpoint counter of the account's exposition.
fn per_endpoint(m: &str, metric: &str, endpoint: &str) -> f64 {
    m.lines()
        .filter(|l| {
            l.starts_with(&format!("{metric}{{")) && l.contains(&format!("endpoint=\"{endpoint}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a poll costs the API, averaged over the measured polls.
#[derive(Debug, Default)]
struct Cost {
    lists: f64,
    gets: f64,
    bytes: f64,
}

impl Cost {
    fn line(&self) -> String {
        format!(
            "{:.1} list pages + {:.1} single look-ups = {:.1} requests, {:.0} KiB",
            self.lists,
            self.gets,
            self.lists + self.gets,
            self.bytes / 1024.0
        )
    }
}

/// The naive poll at `now` on the same farm: every minimal page of the
/// window, then `GET /jobs/{id}` for each job that ended since `prev`;
/// the bytes are the simulator's own answers to those requests.
fn naive_poll(sim: &RunningSimulator, window: Duration, prev: i64, now: i64) -> Cost {
    use nexrender_simulator::listing::{write_job, write_page};
    sim.sim.with_farm(|f| {
        let (lo, hi) = f.created_range(Some(now - window.as_millis() as i64), Some(now));
        let mut cost = Cost::default();
        let positions: Vec<usize> = (lo..hi).collect();
        for page in positions.chunks(1000) {
            cost.lists += 1.0;
            cost.bytes += write_page(f, page, true, now).len() as f64;
        }
        if positions.len() % 1000 == 0 {
            cost.lists += 1.0; // the empty page that ends the list
            cost.bytes += 2.0;
        }
        for j in f.jobs().range(lo..hi) {
            if j.ended_at.is_some_and(|e| e > prev && e <= now) {
                cost.gets += 1.0;
                cost.bytes += write_job(f, j, now).len() as f64;
            }
        }
        cost
    })
}

/// Steady state over a busy window, reading it all every poll or only from
/// the oldest job still going: the cost per poll, the naive cost of the
/// same polls, and the numbers the exporter ends with.
/// The farm's troubles an API-cost measurement can add.
#[derive(Clone, Copy, PartialEq)]
enum Farm {
    Calm,
    /// A job rendering for three days that never ends, a standing backlog
    /// of 300 jobs queued over the last 20 hours, and the API's clock
    /// 150 s ahead of the exporter's.
    Troubled,
}

async fn api_cost(
    jobs: usize,
    full_scan_interval: Duration,
    farm: Farm,
) -> (Cost, Cost, Vec<(String, f64)>) {
    // About 200 jobs end a minute and about 500 render at any time.
    let lifecycle = LifecycleConfig::steady();
    let window = Duration::from_secs(86_400);
    let offset = if farm == Farm::Troubled { 150 } else { 0 };
    let mut r = rig_skewed(lifecycle, jobs, window, full_scan_interval, offset).await;
    if farm == Farm::Troubled {
        let at = T0 + offset * 1000;
        r.sim.sim.with_farm(|f| {
            f.insert_scripted(ScriptedJob {
                status: JobStatus::Rendering,
                started_at: Some(at - 72 * 60 * MIN + MIN),
                ..ScriptedJob::queued(at - 72 * 60 * MIN)
            });
            for i in 0..300 {
                f.insert_scripted(ScriptedJob::queued(at - 20 * 60 * MIN + i * 4 * MIN));
            }
        });
    }
    for minute in 0..10 {
        r.clock.set(T0 + minute * MIN);
        r.poller.poll().await;
    }
    let before = r.metrics();
    let polls = 10;
    let mut naive = Cost::default();
    for minute in 10..10 + polls {
        r.clock.set(T0 + minute * MIN);
        let n = naive_poll(&r.sim, window, T0 + (minute - 1) * MIN, T0 + minute * MIN);
        naive.lists += n.lists / polls as f64;
        naive.gets += n.gets / polls as f64;
        naive.bytes += n.bytes / polls as f64;
        r.poller.poll().await;
    }
    let after = r.metrics();
    let per = |metric: &str, e: &str| {
        (per_endpoint(&after, metric, e) - per_endpoint(&before, metric, e)) / polls as f64
    };
    let requests = "nexrender_exporter_api_requests_total";
    let bytes = "nexrender_exporter_api_response_bytes_total";
    let cost = Cost {
        lists: per(requests, "list_jobs"),
        gets: per(requests, "get_job"),
        bytes: per(bytes, "list_jobs") + per(bytes, "get_job"),
    };
    let numbers = [
        "queued",
        "render:dorender",
        "finished",
        "error",
        "manually_cancelled",
    ]
    .iter()
    .map(|s| {
        (
            s.to_string(),
            value(
                &after,
                &format!("nexrender_jobs{{account=\"main\",status=\"{s}\"}}"),
            ),
        )
    })
    .chain(["finished", "error"].iter().map(|s| {
        (
            format!("completed {s}"),
            value(
                &after,
                &format!("nexrender_jobs_completed_total{{account=\"main\",status=\"{s}\"}}"),
            ),
        )
    }))
    .collect();
    (cost, naive, numbers)
}

#[tokio::test]
async fn reading_only_what_changed_costs_a_few_pages_and_gives_the_same_numbers() {
    let jobs: usize = std::env::var("NEXRENDER_API_COST_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (full, naive, full_numbers) = api_cost(jobs, Duration::ZERO, Farm::Calm).await;
    let (inc, _, inc_numbers) = api_cost(jobs, Duration::from_secs(3600), Farm::Calm).await;
    println!("window of {jobs} jobs, per poll at steady state:");
    println!(
        "  naive (minimal window scan + one GET per newly ended job): {}",
        naive.line()
    );
    println!(
        "  whole window every poll, look-ups as pages:              {}",
        full.line()
    );
    println!(
        "  what changed since the last poll, look-ups as pages:     {}",
        inc.line()
    );
    // With the default poll.full_scan_interval (1 h) and 1-minute polls,
    // one poll an hour reads the whole window.
    let hourly = Cost {
        lists: (59.0 * inc.lists + full.lists) / 60.0,
        gets: (59.0 * inc.gets + full.gets) / 60.0,
        bytes: (59.0 * inc.bytes + full.bytes) / 60.0,
    };
    println!(
        "  the same, with the whole window read once an hour:        {}",
        hourly.line()
    );
    assert_eq!(
        full_numbers, inc_numbers,
        "the same farm, the same numbers either way"
    );
    assert!(full.lists >= (jobs / 1000) as f64, "{full:?}");
    assert!(
        naive.gets >= 100.0,
        "the farm ends ~200 jobs a minute: {naive:?}"
    );
    // A couple of minimal pages from the oldest running job and a couple of
    // full pages for the ~400 jobs that started or ended: not the window,
    // and not one request per job.
    assert!(
        inc.lists + inc.gets <= 8.0,
        "a few pages, not the whole window: {inc:?}"
    );
    assert!(
        full.gets < 50.0,
        "look-ups come as pages in both modes: {full:?}"
    );
    assert!(
        hourly.bytes * 2.0 < naive.bytes && hourly.lists + hourly.gets < naive.lists + naive.gets,
        "fewer requests and bytes than the naive poll, hourly rescan included: {hourly:?} vs {naive:?}"
    );

    // The same farm with troubles operators meet: a job stuck for three
    // days, a standing backlog, the API's clock ahead. The stuck job and
    // the backlog are in the listing of live jobs (a page), not a reason
    // to read the window; the skew moves no window.
    let (tfull, _, tfull_numbers) = api_cost(jobs, Duration::ZERO, Farm::Troubled).await;
    let (tinc, _, tinc_numbers) = api_cost(jobs, Duration::from_secs(3600), Farm::Troubled).await;
    let thourly = Cost {
        lists: (59.0 * tinc.lists + tfull.lists) / 60.0,
        gets: (59.0 * tinc.gets + tfull.gets) / 60.0,
        bytes: (59.0 * tinc.bytes + tfull.bytes) / 60.0,
    };
    println!("the same with a job stuck for 3 days, 300 jobs queued over 20 h, the API's clock 150 s ahead:");
    println!(
        "  whole window every poll:                                  {}",
        tfull.line()
    );
    println!(
        "  what changed since the last poll:                         {}",
        tinc.line()
    );
    println!(
        "  the same, with the whole window read once an hour:        {}",
        thourly.line()
    );
    assert_eq!(tfull_numbers, tinc_numbers, "the same numbers either way");
    assert!(
        tinc.lists + tinc.gets <= inc.lists + inc.gets + 2.0,
        "a stuck job and a backlog cost a page at most: {tinc:?} vs {inc:?}"
    );
}

#[tokio::test]
async fn a_failed_whole_window_read_waits_for_the_next_interval_while_cheap_polls_go_on() {
    // A window too big to read whole within the deadline must not turn
    // every poll into another attempt at reading it whole.
    let hour = Duration::from_secs(3600);
    let mut r = rig_with(
        LifecycleConfig::steady(),
        20_000,
        Duration::from_secs(86_400),
        hour,
    )
    .await;
    // Polls at minute `m`; returns the requests it made and nexrender_up.
    async fn poll_at(r: &mut Rig, m: i64) -> (u64, f64) {
        r.clock.set(T0 + m * MIN);
        let before = r.sim.sim.requests();
        r.poller.poll().await;
        let text = r.metrics();
        (
            r.sim.sim.requests() - before,
            value(&text, "nexrender_up{account=\"main\"}"),
        )
    }
    let (whole, _) = poll_at(&mut r, 0).await;
    assert!(
        whole >= 20,
        "the first poll reads the whole window: {whole}"
    );
    for m in 1..60 {
        let (n, up) = poll_at(&mut r, m).await;
        assert!(up == 1.0 && n <= 8, "minute {m}: {n} requests");
    }
    // An hour on, the whole window is due; its first page fails.
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Status { code: 500 },
        Schedule::Next { count: 1 },
    ));
    assert_eq!(poll_at(&mut r, 60).await, (1, 0.0));
    // The next polls read from the oldest running job, as between rescans.
    for m in 61..120 {
        let (n, up) = poll_at(&mut r, m).await;
        assert!(
            up == 1.0 && n <= 8,
            "minute {m}: {n} requests, not the whole window again"
        );
    }
    // An interval after the failed attempt, the whole window is read again.
    let (again, up) = poll_at(&mut r, 120).await;
    assert!(up == 1.0 && again >= 20, "the whole window: {again}");
}
