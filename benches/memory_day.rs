//! Resident memory of the exporter's polling over a simulated day: a
//! window of 1,000,000 jobs with jobs churning (about 700 arriving, starting
//! and ending a minute, so the window's whole population turns over in the
//! day), polled every 30 s with the default hourly whole-window read, and a
//! gzip scrape after each poll.
//!
//!   cargo bench --bench memory_day                 # 1,000,000 jobs, 24 h
//!   NEXRENDER_BENCH_JOBS=100000 NEXRENDER_BENCH_HOURS=6 cargo bench --bench memory_day
//!   NEXRENDER_BENCH_DEFAULT_ALLOCATOR=1 cargo bench --bench memory_day   # glibc untuned
//!
//! The poller, the client, the tracker and the metrics are the exporter's
//! own, in this process, on the system allocator, so its resident memory
//! (`/proc/self/status`) is the exporter's with fragmentation included. The
//! simulator runs in a child process (this same program, re-executed), on
//! a clock this process sets, so that a day passes in minutes and the
//! simulator's own memory is not counted. Before every poll the kernel's
//! peak (VmHWM) is reset (`/proc/self/clear_refs`), so each poll's peak is
//! read on its own: the hourly whole-window reads, when the old table, the
//! new one and the scan coexist, show as the highest.
//!
//! Run under `cargo test` (no `--bench`), it checks itself on 20,000 jobs
//! over two hours. Nothing here asserts a size or a time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nexrender_exporter::api::{ApiClient, ClientPolicy};
use nexrender_exporter::board::StatusBoard;
use nexrender_exporter::clock::ManualClock;
use nexrender_exporter::config::{Account, PollConfig};
use nexrender_exporter::metrics::Metrics;
use nexrender_exporter::poller::AccountPoller;
use nexrender_exporter::secret::Secret;
use nexrender_simulator::{LifecycleConfig, PrefillConfig, SimulatorConfig};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const CHILD: &str = "NEXRENDER_DAY_SIMULATOR";

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: a simulator on a clock moved by lines on stdin
/// (`<unix millis>`), each answered `ok` once set.
fn simulator_child(jobs: usize) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let clock = nexrender_simulator::clock::ManualClock::new(T0);
        let per_minute = jobs as f64 / 1440.0;
        let cfg = SimulatorConfig {
            tokens: vec!["t".into()],
            seed: 11,
            lifecycle: LifecycleConfig {
                arrivals_per_minute: per_minute,
                // Enough workers that the queue stays short: ~2.5 min renders.
                workers: (per_minute * 5.0).ceil() as u32 + 10,
                ..LifecycleConfig::steady()
            },
            prefill: PrefillConfig {
                jobs,
                span: Duration::from_secs(86_400),
            },
            ..SimulatorConfig::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running =
            nexrender_simulator::server::start(&cfg, clock.clone(), listener).expect("simulator");
        println!("{}", running.api_url());
        let mut lines = BufReader::new(std::io::stdin()).lines();
        while let Some(Ok(line)) = lines.next() {
            let Ok(t) = line.trim().parse::<i64>() else {
                break;
            };
            clock.set(t);
            // Move the farm now, not on the next request's time.
            running.sim.tick();
            println!("ok");
        }
    });
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn reset_peak() {
    // "5" resets the peak resident set size (proc(5), clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let jobs = env_or(
        "NEXRENDER_BENCH_JOBS",
        if bench { 1_000_000 } else { 20_000 },
    );
    if std::env::var_os(CHILD).is_some() {
        return simulator_child(jobs);
    }
    // At least two hours: the first is the baseline, the rest show the rest.
    // As the exporter's main does first thing.
    if std::env::var_os("NEXRENDER_BENCH_DEFAULT_ALLOCATOR").is_none() {
        nexrender_exporter::alloc::return_big_blocks_to_the_system();
    }
    let hours = env_or("NEXRENDER_BENCH_HOURS", if bench { 24 } else { 2 }).max(2) as i64;
    let mut child = Command::new(std::env::current_exe().expect("this program"))
        .env(CHILD, "1")
        .env("NEXRENDER_BENCH_JOBS", jobs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the simulator child");
    let mut to_sim = child.stdin.take().expect("stdin");
    let mut from_sim = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let api_url = from_sim
        .next()
        .expect("the simulator's URL")
        .expect("a line");
    let mut set_time = |t: i64| {
        writeln!(to_sim, "{t}").expect("the simulator reads");
        let ack = from_sim.next().expect("an answer").expect("a line");
        assert_eq!(ack, "ok");
    };

    // The exporter's runtime, as its main sets it up.
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let time = ManualClock::new(T0);
    let metrics = Metrics::new(&Default::default());
    let policy = ClientPolicy {
        // The default 10 requests/s would only make each whole-window read
        // last 100 s of real time; memory is the same either way.
        max_requests_per_second: 100_000,
        timeout: Duration::from_secs(120),
        ..ClientPolicy::default()
    };
    let handle = metrics.account("main");
    let client =
        ApiClient::new(&api_url, Secret::new("t"), policy, handle.clone()).expect("a client");
    let account = Account {
        name: "main".into(),
        kind: nexrender_exporter::status::ApiKind::Cloud,
        stale_after: nexrender_exporter::config::DEFAULT_STALE_AFTER,
        api_url: api_url.clone(),
        token: Secret::new("t"),
        webhook_secret: None,
        previous_webhook_secrets: Vec::new(),
        tags: Vec::new(),
    };
    let settings = PollConfig::default();
    let interval = settings.interval.as_millis() as i64;
    let mut poller = AccountPoller::new(
        account,
        client,
        handle,
        StatusBoard::new(&["main".into()]),
        time.clone(),
        settings,
        1024,
    );
    let idle = status_kb("VmRSS:");
    println!(
        "memory over a simulated day: {jobs} jobs in a 24 h window, ~{:.0} arriving and ending a minute, {} h, polls every {} s, whole window hourly, gzip on",
        jobs as f64 / 1440.0,
        hours,
        interval / 1000
    );
    println!("  before the first poll: RSS {:.1} MB", mb(idle));
    let started = Instant::now();
    let polls_per_hour = 3_600_000 / interval;
    let mut first = None;
    let mut later_peak = 0;
    let (mut rest_min, mut rest_max) = (u64::MAX, 0);
    println!("  hour  tracked   RSS at rest (MB)  peak of the hour's polls (MB)  polls ok");
    for hour in 0..hours {
        let mut hour_peak = 0;
        for i in 0..polls_per_hour {
            let t = T0 + (hour * polls_per_hour + i) * interval;
            time.set(t);
            set_time(t);
            reset_peak();
            rt.block_on(poller.poll());
            std::hint::black_box(metrics.scrape_gzip());
            let peak = status_kb("VmHWM:");
            hour_peak = hour_peak.max(peak);
            if first.is_none() {
                first = Some((status_kb("VmRSS:"), peak));
            } else {
                later_peak = later_peak.max(peak);
            }
        }
        let rest = status_kb("VmRSS:");
        if hour > 0 {
            rest_min = rest_min.min(rest);
            rest_max = rest_max.max(rest);
        }
        let m = String::from_utf8(metrics.encode()).unwrap_or_default();
        let ok = metric(
            &m,
            "nexrender_exporter_polls_total{account=\"main\",result=\"success\"}",
        );
        let tracked = metric(&m, "nexrender_exporter_tracked_jobs{account=\"main\"}");
        println!(
            "  {:>4}  {:>8}  {:>16.1}  {:>29.1}  {:>8}",
            hour + 1,
            tracked,
            mb(rest),
            mb(hour_peak),
            ok
        );
        assert_eq!(
            ok,
            ((hour + 1) * polls_per_hour) as f64,
            "every poll succeeded"
        );
        assert!(
            tracked >= jobs as f64 * 0.9,
            "the window is tracked: {tracked}"
        );
    }
    let (first_rss, first_peak) = first.expect("one poll at least");
    println!(
        "  first poll: RSS {:.1} MB after, peak {:.1} MB; later polls' peak {:.1} MB; RSS at rest after hour 1: {:.1}-{:.1} MB ({:+.0}% to {:+.0}% of the first poll's); {:.0} s of real time",
        mb(first_rss),
        mb(first_peak),
        mb(later_peak),
        mb(rest_min),
        mb(rest_max),
        (rest_min as f64 / first_rss as f64 - 1.0) * 100.0,
        (rest_max as f64 / first_rss as f64 - 1.0) * 100.0,
        started.elapsed().as_secs_f64()
    );
    drop(to_sim);
    let _ = child.wait();
}
