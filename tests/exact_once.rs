//! Exactly once whatever the clocks and the data (issue #21): a job whose
//! whole JSON cannot be read, deleted jobs whose look-ups answer 410, an
//! API that sends no `Date` with its clock 400 s off ours, look-ups that
//! fail for good, and jobs that end while the first poll reads. The real
//! poller polls the real simulator over HTTP, on one clock the test moves;
//! every number is held against the simulator's own truth.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use nexrender_exporter::config::PollConfig;
use nexrender_simulator::clock::Clock as _;
use nexrender_simulator::server::RunningSimulator;
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{
    Endpoint, Fault, FaultRule, LifecycleConfig, Poison, PrefillConfig, Schedule, ScriptedJob,
    SimulatorConfig,
};
use support::clock::Rig;
use support::truth::{in_view, terminal_ids, TERMINAL};
use support::{completed, histogram, jobs, main_counter, up};
use ulid::Ulid;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const DAY: Duration = Duration::from_secs(86_400);

fn settings(interval: Duration, full_scan_interval: Duration) -> PollConfig {
    PollConfig {
        interval,
        window: DAY,
        page_size: 1000,
        detail_concurrency: 8,
        timeout: Duration::from_secs(60),
        full_scan_interval,
        ..PollConfig::default()
    }
}

/// A farm that takes new jobs and renders them by itself, with a day of
/// ended jobs behind it.
fn busy_farm(edit: impl FnOnce(&mut SimulatorConfig)) -> SimulatorConfig {
    let mut cfg = SimulatorConfig {
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 4.0,
            render_median: Duration::from_secs(40),
            workers: 4,
            ..LifecycleConfig::default()
        },
        prefill: PrefillConfig {
            jobs: 2_000,
            span: DAY,
        },
        seed: 21,
        ..SimulatorConfig::default()
    };
    edit(&mut cfg);
    cfg
}

/// Every job that ended since the baseline, by terminal status, gathered
/// poll by poll: a job deleted after it ended stays ended.
#[derive(Debug)]
struct Ended {
    before: BTreeMap<String, HashSet<Ulid>>,
    since: BTreeMap<&'static str, HashSet<Ulid>>,
}

impl Ended {
    fn from_now(sim: &RunningSimulator) -> Self {
        Ended {
            before: terminal_ids(sim),
            since: TERMINAL.iter().map(|s| (*s, HashSet::new())).collect(),
        }
    }

    fn note(&mut self, sim: &RunningSimulator) {
        for (status, ids) in terminal_ids(sim) {
            let was = self.before.get(&status).cloned().unwrap_or_default();
            if let Some((_, set)) = self.since.iter_mut().find(|(s, _)| **s == status) {
                set.extend(ids.difference(&was));
            }
        }
    }

    fn count(&self, status: &str) -> f64 {
        self.since[status].len() as f64
    }
}

/// Moves the shared clock by `by_ms`, polls once and notes the truth.
async fn step(r: &mut Rig, by_ms: i64, ended: &mut Ended) -> String {
    let now = r.clock.now_millis();
    r.clock.set(now + by_ms);
    r.poller.poll().await;
    ended.note(&r.sim);
    r.metrics()
}

fn assert_completions_at_most(m: &str, ended: &Ended, when: &str) {
    for status in TERMINAL {
        let shown = completed(m, "main", status).unwrap_or(0.0);
        assert!(
            shown <= ended.count(status),
            "{when}: {shown} {status} completions, only {} happened",
            ended.count(status)
        );
    }
}

fn assert_completions_exact(m: &str, ended: &Ended, when: &str) {
    for status in TERMINAL {
        assert_eq!(
            completed(m, "main", status),
            Some(ended.count(status)),
            "{when}: {status} completions against the farm's ends"
        );
    }
}

fn assert_in_view(m: &str, sim: &RunningSimulator, when: &str) {
    assert_in_view_within(m, sim, 0, when);
}

/// As [`assert_in_view`], for an exporter that cannot know the API's clock
/// better than `blur_ms`: where its window starts is that uncertain, so an
/// ended job created that close to the window's start may be in or out.
/// Jobs not ended are in whatever their age.
fn assert_in_view_within(m: &str, sim: &RunningSimulator, blur_ms: i64, when: &str) {
    let window = DAY.as_millis() as i64;
    let fewest = in_view(sim, window - blur_ms);
    let most = in_view(sim, window + blur_ms);
    for (status, low) in fewest {
        let high = most[&status];
        let shown = jobs(m, "main", &status).unwrap_or(-1.0);
        assert!(
            (low..=high).contains(&shown),
            "{when}: nexrender_jobs{{status=\"{status}\"}} is {shown}, the farm has {low} to {high}"
        );
    }
}

fn scripted_now(r: &Rig, n: i64, apart_ms: i64) -> Vec<Ulid> {
    r.sim.sim.with_farm(|f| {
        let t = f.now();
        (0..n)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - (n - i) * apart_ms)))
            .collect()
    })
}

fn set(r: &Rig, ids: &[Ulid], status: JobStatus) {
    r.sim.sim.with_farm(|f| {
        let at = f.now();
        for id in ids {
            f.script_status(*id, status.clone(), at).unwrap();
        }
    });
}

#[tokio::test]
async fn a_poisoned_job_three_deleted_finished_jobs_and_five_deleted_queued_ones_answering_410_keep_the_account_up_and_the_numbers_true(
) {
    let mut r = Rig::start(
        busy_farm(|_| {}),
        settings(Duration::from_secs(60), Duration::from_secs(600)),
    )
    .await;
    r.poller.poll().await;
    let mut ended = Ended::from_now(&r.sim);
    assert_eq!(up(&r.metrics()), Some(1.0));

    // Twenty jobs rendering: one whose whole JSON holds a byte that is not
    // UTF-8 (no reader can take it, and a page holding it fails whole),
    // one whose error text ends in half a surrogate pair, one whose
    // renderDuration is 1e400. Five more queued, to be deleted.
    let burst = scripted_now(&r, 20, SEC);
    set(&r, &burst, JobStatus::Rendering);
    r.sim.sim.with_farm(|f| {
        f.poison(burst[0], Poison::InvalidUtf8);
        f.poison(burst[1], Poison::LoneSurrogate);
        f.poison(burst[2], Poison::HugeNumber);
    });
    let doomed = scripted_now(&r, 5, 2 * SEC);
    let m = step(&mut r, MIN, &mut ended).await;
    assert_eq!(up(&m), Some(1.0));
    assert_in_view(&m, &r.sim, "the burst and the doomed listed");

    // Deleted upstream: the five queued ones (their look-ups answer 410)
    // and three finished ones from an hour ago, counted in the baseline.
    let old_finished: Vec<Ulid> = r.sim.sim.with_farm(|f| {
        let hour_ago = f.now() - 60 * MIN;
        f.jobs()
            .iter()
            .filter(|j| j.status == JobStatus::Finished && j.created_at < hour_ago)
            .map(|j| j.id)
            .rev()
            .take(3)
            .collect()
    });
    assert_eq!(old_finished.len(), 3);
    r.sim.sim.with_farm(|f| {
        for id in doomed.iter().chain(&old_finished) {
            assert!(f.remove(*id));
        }
    });
    // The burst ends: the unreadable one and the half-surrogate one fail.
    set(&r, &burst[..2], JobStatus::Error);
    set(&r, &burst[2..], JobStatus::Finished);

    for poll in 1..=14 {
        let m = step(&mut r, MIN, &mut ended).await;
        assert_eq!(up(&m), Some(1.0), "poll {poll}: the account stays up");
        assert_completions_at_most(&m, &ended, &format!("poll {poll}"));
    }
    let m = r.metrics();
    assert_in_view(&m, &r.sim, "after a whole-window read");
    assert_completions_exact(&m, &ended, "fourteen polls on");
    // The 1e400 is an impossible value, not a duration; the unreadable job
    // is counted from its listing, after its look-up was given up.
    assert_eq!(
        histogram(&m, "main", "render_duration", "count"),
        Some(ended.count("finished") - 1.0)
    );
    let invalid = main_counter(
        &m,
        "nexrender_exporter_invalid_values_total",
        "field",
        "render_duration",
    );
    assert_eq!(invalid, 1.0);
    assert_eq!(
        support::value(
            &m,
            "nexrender_exporter_lookups_given_up_total{account=\"main\"}"
        ),
        Some(1.0)
    );
}

/// With no `Date` and the API's clock `offset_s` off ours: polls every 10
/// s while jobs arrive, wait, render and end; completions never exceed the
/// farm's ends at any poll, and equal them once a whole-window read has
/// caught up.
async fn no_date_and_the_api_clock_off_by(offset_s: i64) {
    let mut r = Rig::start(
        busy_farm(|c| {
            c.date_header = false;
            c.clock_offset_seconds = offset_s;
            c.lifecycle.arrivals_per_minute = 6.0;
            c.lifecycle.render_median = Duration::from_secs(25);
        }),
        settings(Duration::from_secs(10), Duration::from_secs(300)),
    )
    .await;
    r.poller.poll().await;
    let mut ended = Ended::from_now(&r.sim);
    for poll in 1..=120 {
        let m = step(&mut r, 10 * SEC, &mut ended).await;
        assert_eq!(up(&m), Some(1.0), "poll {poll}");
        assert_completions_at_most(&m, &ended, &format!("poll {poll}"));
        let finished = ended.count("finished");
        let durations = histogram(&m, "main", "render_duration", "count").unwrap_or(0.0);
        assert!(
            durations <= finished,
            "poll {poll}: {durations} durations for {finished} finished jobs"
        );
    }
    assert!(ended.count("finished") > 50.0, "the farm was busy");
    // Catch up: arrivals stop, a whole-window read comes round.
    r.sim.sim.with_farm(|f| f.stop_arrivals());
    for _ in 0..40 {
        step(&mut r, 10 * SEC, &mut ended).await;
    }
    let m = r.metrics();
    assert_completions_exact(&m, &ended, "caught up");
    assert_eq!(
        histogram(&m, "main", "render_duration", "count"),
        Some(ended.count("finished")),
        "one render duration per finished job"
    );
    assert_in_view_within(&m, &r.sim, offset_s.abs() * SEC, "caught up");
    assert_turnaround_exact(&m, &r.sim, &ended);
    // The farm's times are all true: none is taken for impossible, however
    // far ahead the API's clock runs.
    for field in ["created_at", "started_at", "render_duration", "ended_at"] {
        let invalid = main_counter(
            &m,
            "nexrender_exporter_invalid_values_total",
            "field",
            field,
        );
        assert_eq!(invalid, 0.0, "{field} taken for impossible");
    }
}

/// `nexrender_job_turnaround_seconds` against the farm: one observation per
/// job that ended, of its end minus its creation (the farm's own times, so
/// the API's clock offset cancels out), in every bucket.
fn assert_turnaround_exact(m: &str, sim: &RunningSimulator, ended: &Ended) {
    let ids: HashSet<Ulid> = ended.since.values().flatten().copied().collect();
    let truth: Vec<f64> = sim.sim.with_farm(|f| {
        f.jobs()
            .iter()
            .filter(|j| ids.contains(&j.id))
            .map(|j| (j.ended_at.expect("an ended job has its end") - j.created_at) as f64 / 1000.0)
            .collect()
    });
    assert_eq!(
        histogram(m, "main", "turnaround", "count"),
        Some(truth.len() as f64),
        "one turnaround per ended job ({} impossible ends; by status {:?})",
        main_counter(
            m,
            "nexrender_exporter_invalid_values_total",
            "field",
            "ended_at"
        ),
        TERMINAL.map(|s| ended.count(s))
    );
    let sum = histogram(m, "main", "turnaround", "sum").unwrap();
    let want: f64 = truth.iter().sum();
    assert!(
        (sum - want).abs() < 0.01,
        "turnaround sum {sum}, the farm's {want}"
    );
    for le in [30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0] {
        let series =
            format!("nexrender_job_turnaround_seconds_bucket{{account=\"main\",le=\"{le}\"}}");
        let within = truth.iter().filter(|t| **t <= le).count() as f64;
        assert_eq!(support::value(m, &series), Some(within), "{series}");
    }
}

#[tokio::test]
async fn no_date_and_the_api_clock_400_s_ahead_counts_every_job_once() {
    no_date_and_the_api_clock_off_by(400).await;
}

#[tokio::test]
async fn no_date_and_the_api_clock_400_s_behind_counts_every_job_once() {
    no_date_and_the_api_clock_off_by(-400).await;
}

#[tokio::test]
async fn no_date_and_the_api_clock_20_hours_ahead_counts_nothing_twice() {
    no_date_and_the_api_clock_off_by(20 * 3600).await;
}

#[tokio::test]
async fn no_date_and_a_clock_within_five_minutes_hides_no_quick_job_after_a_start() {
    // An empty farm too: then no job's id tells the API's time at the start.
    for (offset_s, prefill) in [(-290, 200), (290, 200), (-290, 0), (290, 0)] {
        let mut r = Rig::start(
            busy_farm(|c| {
                c.date_header = false;
                c.clock_offset_seconds = offset_s;
                c.lifecycle.arrivals_per_minute = 0.0;
                c.prefill.jobs = prefill;
            }),
            settings(Duration::from_secs(60), Duration::from_secs(3600)),
        )
        .await;
        r.poller.poll().await;
        let mut ended = Ended::from_now(&r.sim);
        // Right after the start, jobs created and ended before the next poll.
        let quick = scripted_now(&r, 3, SEC);
        set(&r, &quick, JobStatus::Finished);
        let m = step(&mut r, MIN, &mut ended).await;
        assert_eq!(
            completed(&m, "main", "finished"),
            Some(3.0),
            "offset {offset_s}s, {prefill} jobs before: each quick job counted at the next poll"
        );
    }
}

#[tokio::test]
async fn five_look_ups_that_keep_failing_for_their_jobs_alone_leave_the_account_up() {
    // No other job ends meanwhile: the five are looked up alone, one by
    // one (not read from full pages), and every one of them fails.
    let mut r = Rig::start(
        busy_farm(|c| c.lifecycle.arrivals_per_minute = 0.0),
        settings(Duration::from_secs(60), Duration::from_secs(3600)),
    )
    .await;
    r.poller.poll().await;
    let mut ended = Ended::from_now(&r.sim);
    let broken = scripted_now(&r, 5, SEC);
    step(&mut r, MIN, &mut ended).await;
    for id in &broken {
        r.sim.sim.add_fault(
            FaultRule::new(
                Endpoint::GetJob,
                Fault::Status { code: 500 },
                Schedule::Always,
            )
            .for_job(id.to_string()),
        );
    }
    set(&r, &broken, JobStatus::Finished);
    for poll in 1..=8 {
        let m = step(&mut r, MIN, &mut ended).await;
        assert_eq!(
            up(&m),
            Some(1.0),
            "poll {poll}: five broken jobs are not the API"
        );
        assert_completions_at_most(&m, &ended, &format!("poll {poll}"));
    }
    let m = r.metrics();
    assert_completions_exact(&m, &ended, "given up and counted from the listing");
    assert_eq!(
        support::value(
            &m,
            "nexrender_exporter_lookups_given_up_total{account=\"main\"}"
        ),
        Some(5.0)
    );
    // When every look-up fails, the newest listed job is tried as well:
    // it fails too, so the API is at fault and the poll fails.
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::GetJob,
        Fault::Status { code: 500 },
        Schedule::Always,
    ));
    let more = scripted_now(&r, 6, SEC);
    step(&mut r, MIN, &mut ended).await;
    set(&r, &more, JobStatus::Finished);
    let m = step(&mut r, MIN, &mut ended).await;
    assert_eq!(
        up(&m),
        Some(0.0),
        "every look-up failing is the API's trouble"
    );
}

#[tokio::test]
async fn jobs_that_end_while_the_first_poll_reads_are_counted_once() {
    let mut r = Rig::start(
        busy_farm(|c| {
            c.lifecycle.arrivals_per_minute = 0.0;
            c.prefill.jobs = 300;
        }),
        settings(Duration::from_secs(60), Duration::from_secs(3600)),
    )
    .await;
    let waiting = scripted_now(&r, 4, SEC);
    set(&r, &waiting[..2], JobStatus::Rendering);
    // The window scan (the second listing) answers a second late; by then
    // the four jobs seen going by the first listing have ended, and two
    // jobs created after it have too.
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Slow {
            delay: Duration::from_secs(1),
        },
        Schedule::Always,
    ));
    let mut ended = Ended::from_now(&r.sim);
    let requests = r.sim.sim.requests();
    let mut poller = r.poller.clone();
    let first = tokio::spawn(async move {
        poller.poll().await;
        poller
    });
    // The live listing is in (its answer left a second late); the scan
    // is asked for.
    while r.sim.sim.requests() < requests + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.clock.set(r.clock.now_millis() + 2 * SEC);
    let late: Vec<Ulid> = scripted_now(&r, 2, 100);
    set(&r, &waiting, JobStatus::Finished);
    set(&r, &late, JobStatus::Finished);
    r.poller = first.await.unwrap();
    r.sim.sim.clear_faults();
    ended.note(&r.sim);
    let m = r.metrics();
    assert_eq!(completed(&m, "main", "finished"), Some(6.0));
    assert_completions_exact(&m, &ended, "the first poll");
    // The two that were rendering had started before the poll: no wait.
    assert_eq!(histogram(&m, "main", "queue_wait", "count"), Some(4.0));
    let m = step(&mut r, MIN, &mut ended).await;
    assert_completions_exact(&m, &ended, "the next poll adds nothing");
}

#[tokio::test]
async fn deliveries_taken_from_the_queue_and_never_judged_are_counted_as_dropped() {
    let r = Rig::start(
        busy_farm(|c| {
            c.lifecycle.arrivals_per_minute = 0.0;
            c.prefill.jobs = 10;
        }),
        settings(Duration::from_secs(3600), Duration::from_secs(3600)),
    )
    .await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (_settings_tx, settings_rx) =
        tokio::sync::watch::channel(settings(Duration::from_secs(3600), DAY));
    let running = tokio::spawn(r.poller.clone().run(stop, settings_rx));
    let polled = |m: &str| {
        support::value(
            m,
            "nexrender_exporter_polls_total{account=\"main\",result=\"success\"}",
        ) == Some(1.0)
    };
    while !polled(&r.metrics()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Three jobs created since the poll end; their deliveries are answered
    // 202 and queued, and their confirming look-ups hang.
    let ended = scripted_now(&r, 3, 100);
    set(&r, &ended, JobStatus::Finished);
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::GetJob,
        Fault::Slow {
            delay: Duration::from_secs(30),
        },
        Schedule::Always,
    ));
    let requests = r.sim.sim.requests();
    let queue = r.poller.delivery_queue();
    for id in &ended {
        let job = r.sim.sim.with_farm(|f| {
            let body = nexrender_simulator::listing::write_job(f, f.job(*id).unwrap(), f.now());
            nexrender_exporter::api::parse_delivery(&body).unwrap()
        });
        queue.send(job).await.unwrap();
    }
    while r.sim.sim.requests() < requests + 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The poller stops (a reload, shutdown) with the three in its hands.
    stop_tx.send(true).unwrap();
    running.await.unwrap();
    let m = r.metrics();
    assert_eq!(
        main_counter(
            &m,
            "nexrender_exporter_webhook_deliveries_total",
            "result",
            "dropped"
        ),
        3.0
    );
}

/// The whole exporter (started as the binary starts it, in this process),
/// polling every second the real simulator on the real clock: a farm with a job no parser can read, one with half a surrogate
/// pair, one with 1e400, three ended jobs deleted and five queued ones
/// deleted (their look-ups answer 410). `nexrender_up` is 1 on every poll
/// and the numbers end equal to the farm's.
#[tokio::test]
async fn the_exporter_on_the_wall_clock_keeps_a_poisoned_farm_with_deletions_up_and_its_numbers_true(
) {
    let sim = support::scripted_simulator_with(|c| {
        c.prefill = PrefillConfig {
            jobs: 300,
            span: Duration::from_secs(3000),
        };
    })
    .await;
    let exp = support::exporter(&sim, &[("full_scan_interval", "3s")]);
    exp.polls("main", 1).await;
    let mut ended = Ended::from_now(&sim);
    let (burst, doomed) = sim.sim.with_farm(|f| {
        let t = f.now();
        let burst: Vec<Ulid> = (0..12)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - (12 - i) * SEC)))
            .collect();
        let doomed: Vec<Ulid> = (0..5)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - 30 * SEC - i * SEC)))
            .collect();
        f.poison(burst[0], Poison::InvalidUtf8);
        f.poison(burst[1], Poison::LoneSurrogate);
        f.poison(burst[2], Poison::HugeNumber);
        (burst, doomed)
    });
    let m = exp.polls("main", 2).await;
    assert_eq!(jobs(&m, "main", "queued"), Some(17.0));
    sim.sim.with_farm(|f| {
        let old: Vec<Ulid> = f
            .jobs()
            .iter()
            .filter(|j| j.status == JobStatus::Finished)
            .map(|j| j.id)
            .take(3)
            .collect();
        for id in doomed.iter().chain(&old) {
            assert!(f.remove(*id));
        }
        let at = f.now();
        for (i, id) in burst.iter().enumerate() {
            let status = if i < 2 {
                JobStatus::Error
            } else {
                JobStatus::Finished
            };
            f.script_status(*id, status, at).unwrap();
        }
    });
    ended.note(&sim);
    // Seven polls: five for the unreadable job's look-up to be given up,
    // and whole-window reads for the deleted ended jobs.
    for poll in 1..=7 {
        let m = exp.polls("main", 1).await;
        assert_eq!(up(&m), Some(1.0), "poll {poll}\n{}", exp.log());
        assert_completions_at_most(&m, &ended, &format!("poll {poll}"));
    }
    let m = exp.polls("main", 1).await;
    assert_completions_exact(&m, &ended, "seven polls on");
    for (status, n) in in_view(&sim, 3_600_000) {
        assert_eq!(
            jobs(&m, "main", &status),
            Some(n),
            "nexrender_jobs{{status=\"{status}\"}}"
        );
    }
    assert_eq!(
        histogram(&m, "main", "render_duration", "count"),
        Some(ended.count("finished") - 1.0),
        "the 1e400 one is an impossible value"
    );
    let log = exp.log();
    assert!(log.contains("were given up"), "{log}");
    assert!(
        log.contains(&burst[0].to_string()),
        "the warning names the job\n{log}"
    );
}
