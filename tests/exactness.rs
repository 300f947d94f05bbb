//! Exact numbers under adversity (issue #10): stuck jobs after a start,
//! window changes, clock skew, an incomplete first scan, one job whose
//! look-up keeps failing, an outage longer than the window, and reloads.
//! Every number is held against the simulator's own truth (its jobs'
//! statuses and ids), never against another run of the exporter.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use nexrender_exporter::config::PollConfig;
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{
    ApiId, Endpoint, Fault, FaultRule, LifecycleConfig, PrefillConfig, RunningSimulator, Schedule,
    ScriptedJob, SimulatorConfig,
};
use support::clock::{scripted, Rig, T0};
use support::*;
use ulid::Ulid;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

/// `nexrender_jobs` of account `main` equals the farm's jobs in a window
/// of `window_ms` plus its jobs not ended, status by status.
fn assert_in_view(m: &str, sim: &RunningSimulator, window_ms: i64, when: &str) {
    for (status, n) in in_view(sim, window_ms) {
        assert_eq!(
            jobs(m, "main", &status),
            Some(n),
            "{when}: nexrender_jobs{{status=\"{status}\"}}, the simulator has {n}"
        );
    }
}

/// Every completion counter of `main`, and the render-duration count,
/// equal what the farm ended since `before` (its terminal ids when the
/// exporter took its baseline), less the jobs in `not_yet`.
fn assert_counted(
    m: &str,
    sim: &RunningSimulator,
    before: &BTreeMap<String, HashSet<Ulid>>,
    not_yet: &[Ulid],
    when: &str,
) {
    let ended = ended_between(before, &terminal_ids(sim));
    for (status, ids) in &ended {
        let n = ids.iter().filter(|id| !not_yet.contains(id)).count() as f64;
        assert_eq!(
            completed(m, "main", status),
            Some(n),
            "{when}: completions {status}, the simulator ended {n}"
        );
    }
    let finished = ended["finished"]
        .iter()
        .filter(|id| !not_yet.contains(id))
        .count() as f64;
    assert_eq!(
        histogram(m, "main", "render_duration", "count"),
        Some(finished),
        "{when}: one render duration per finished job"
    );
}

fn rendering(created: i64, started: i64) -> ScriptedJob {
    ScriptedJob {
        status: JobStatus::Rendering,
        started_at: Some(started),
        ..ScriptedJob::queued(created)
    }
}

/// Ended jobs every `every_ms` over the last `span_ms`, a few of them
/// errors and cancellations, none within 15 minutes of `edges` (ages at
/// which a window will start, so no job crosses one during the test).
fn ended_jobs(sim: &RunningSimulator, span_ms: i64, every_ms: i64, edges: &[i64]) {
    let t = sim.sim.with_farm(|f| f.now());
    sim.sim.with_farm(|f| {
        let mut age = span_ms;
        let mut i = 0;
        while age > 10 * MIN {
            age -= every_ms;
            i += 1;
            if edges.iter().any(|e| (age - e).abs() < 15 * MIN) {
                continue;
            }
            let job = finished(t - age, 5 * SEC, 90 * SEC);
            let job = match i % 10 {
                3 => ScriptedJob {
                    status: JobStatus::Error,
                    error: Some("Render timed out".into()),
                    ..job
                },
                7 => ScriptedJob {
                    status: JobStatus::ManuallyCancelled,
                    started_at: None,
                    ..job
                },
                _ => job,
            };
            f.insert_scripted(job);
        }
    });
}

fn offset_seconds(m: &str) -> Option<f64> {
    value(
        m,
        "nexrender_exporter_api_clock_offset_seconds{account=\"main\"}",
    )
}

fn lookup_failures(m: &str) -> f64 {
    value(
        m,
        "nexrender_exporter_lookup_failures_total{account=\"main\"}",
    )
    .unwrap_or(0.0)
}

/// Writes `config` to the exporter's file, sends SIGHUP and waits for the
/// `n`th "configuration reloaded" line, then for two more polls.
async fn reload(exp: &Exporter, config: &str, n: usize) -> String {
    std::fs::write(exp.config.path(), config).unwrap();
    exp.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while exp.log().matches("configuration reloaded").count() < n {
        assert!(Instant::now() < deadline, "no reload:\n{}", exp.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exp.polls("main", 2).await
}

#[tokio::test]
async fn jobs_stuck_longer_than_the_window_are_seen_at_start_and_counted_once_when_they_end() {
    let (sim, mut exp) = scripted(|_| {}, &[("window", "24h")]).await;
    ended_jobs(&sim, 20 * HOUR, 20 * MIN, &[]);
    let t = exp.now();
    let (queued, stuck) = sim.sim.with_farm(|f| {
        let queued = f.insert_scripted(ScriptedJob::queued(t - 40 * HOUR));
        let stuck = f.insert_scripted(rendering(t - 35 * HOUR, t - 35 * HOUR + MIN));
        f.insert_scripted(ScriptedJob::queued(t - 5 * MIN));
        (queued, stuck)
    });
    // The simulator keeps ended jobs 7 days and live ones for ever.
    assert!(sim
        .sim
        .with_farm(|f| f.job(queued).is_some() && f.job(stuck).is_some()));
    let before = terminal_ids(&sim);

    let m = exp.polls("main", 1).await;
    assert_in_view(&m, &sim, 24 * HOUR, "first poll");
    assert_eq!(jobs(&m, "main", "queued"), Some(2.0));
    assert_eq!(jobs(&m, "main", "render:dorender"), Some(1.0));
    let oldest = |status: &str| {
        value(
            &m,
            &format!(
                "nexrender_oldest_job_created_timestamp_seconds{{account=\"main\",status=\"{status}\"}}"
            ),
        )
    };
    let created = |id| sim.sim.with_farm(|f| f.job(id).unwrap().created_at) as f64 / 1000.0;
    assert!(
        (oldest("queued").unwrap() - created(queued)).abs() < 0.002,
        "{:?}",
        oldest("queued")
    );
    assert!((oldest("render:dorender").unwrap() - created(stuck)).abs() < 0.002);
    assert_counted(&m, &sim, &before, &[], "first poll");

    set_status(&sim, queued, JobStatus::Finished);
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_counted(&m, &sim, &before, &[], "the 40 h job finished");
    set_status(&sim, stuck, JobStatus::Error);
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "error"), Some(1.0));
    assert_counted(&m, &sim, &before, &[], "the 35 h job failed");
    assert_in_view(&m, &sim, 24 * HOUR, "both ended");
    let m = exp.polls("main", 3).await;
    assert_counted(&m, &sim, &before, &[], "three polls later");
}

#[tokio::test]
async fn widening_narrowing_and_widening_the_window_by_sighup_counts_no_old_job() {
    let sim = scripted_simulator().await;
    ended_jobs(&sim, 23 * HOUR, 5 * MIN, &[6 * HOUR, 12 * HOUR]);
    let t = now();
    let live: Vec<Ulid> = sim.sim.with_farm(|f| {
        vec![
            f.insert_scripted(ScriptedJob::queued(t - 30 * MIN)),
            f.insert_scripted(ScriptedJob::queued(t - 3 * HOUR)),
            f.insert_scripted(rendering(t - 20 * MIN, t - 10 * MIN)),
            f.insert_scripted(ScriptedJob::queued(t - 2 * MIN)),
        ]
    });
    let before = terminal_ids(&sim);
    let config = |window: &str| poll_config(&sim, &[("window", window)]);
    let exp = Exporter::start_with(yaml_file(&config("12h")), &[]);
    let m = exp.polls("main", 1).await;
    assert_in_view(&m, &sim, 12 * HOUR, "12h");
    assert_counted(&m, &sim, &before, &[], "12h");

    let m = reload(&exp, &config("24h"), 1).await;
    assert_in_view(&m, &sim, 24 * HOUR, "12h -> 24h");
    assert_counted(&m, &sim, &before, &[], "12h -> 24h");

    // A job really ends while the window is being changed.
    set_status(&sim, live[0], JobStatus::Finished);
    let m = reload(&exp, &config("6h"), 2).await;
    assert_in_view(&m, &sim, 6 * HOUR, "24h -> 6h");
    assert_counted(&m, &sim, &before, &[], "24h -> 6h");
    set_status(&sim, live[1], JobStatus::Error);
    let m = reload(&exp, &config("24h"), 3).await;
    assert_in_view(&m, &sim, 24 * HOUR, "6h -> 24h");
    assert_counted(&m, &sim, &before, &[], "6h -> 24h");

    set_status(&sim, live[2], JobStatus::Finished);
    set_status(&sim, live[3], JobStatus::ManuallyCancelled);
    let m = exp.polls("main", 3).await;
    assert_counted(&m, &sim, &before, &[], "after the changes");
    assert_eq!(
        [
            completed(&m, "main", "finished"),
            completed(&m, "main", "error"),
            completed(&m, "main", "manually_cancelled")
        ],
        [Some(2.0), Some(1.0), Some(1.0)],
        "only the four jobs that ended during the test"
    );
}

/// With the API's clock `offset_s` seconds off ours: jobs it creates are in
/// the numbers within one poll, each end counted once, the offset shown.
async fn every_job_is_seen_and_counted_once_with_the_api_clock_off_by(offset_s: i64) {
    let (sim, mut exp) = scripted(|c| c.clock_offset_seconds = offset_s, &[]).await;
    let api_now = || sim.sim.with_farm(|f| f.now());
    let t = api_now();
    assert!((t - exp.now() - offset_s * SEC).abs() < 2 * SEC);
    sim.sim.with_farm(|f| {
        f.insert_scripted(finished(t - 30 * MIN, 5 * SEC, 60 * SEC));
        f.insert_scripted(ScriptedJob::queued(t - 10 * MIN));
    });
    let before = terminal_ids(&sim);
    let m = exp.polls("main", 1).await;
    let shown = offset_seconds(&m).expect("offset exported");
    assert!(
        (shown - offset_s as f64).abs() <= 2.0,
        "offset {shown}, simulator {offset_s}"
    );
    assert_in_view(&m, &sim, HOUR, "first poll");

    // New jobs, by the API's clock.
    let t = api_now();
    let new: Vec<Ulid> = sim.sim.with_farm(|f| {
        (0..5)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - i * SEC)))
            .collect()
    });
    let m = exp.polls("main", 2).await;
    assert_in_view(&m, &sim, HOUR, "new jobs listed");
    assert_eq!(jobs(&m, "main", "queued"), Some(6.0));

    for id in &new[..3] {
        set_status(&sim, *id, JobStatus::Finished);
    }
    set_status(&sim, new[3], JobStatus::Error);
    // One created and ended between two polls.
    let t = api_now();
    sim.sim
        .with_farm(|f| f.insert_scripted(finished(t - 2 * SEC, 200, 1000)));
    let m = exp.polls("main", 2).await;
    assert_counted(&m, &sim, &before, &[], "ended");
    assert_eq!(completed(&m, "main", "finished"), Some(4.0));
    assert_in_view(&m, &sim, HOUR, "ended");
    let m = exp.polls("main", 3).await;
    assert_counted(&m, &sim, &before, &[], "three polls later");
}

#[tokio::test]
async fn an_api_clock_150_s_ahead_hides_no_job() {
    every_job_is_seen_and_counted_once_with_the_api_clock_off_by(150).await;
}

#[tokio::test]
async fn an_api_clock_300_s_behind_hides_no_job() {
    every_job_is_seen_and_counted_once_with_the_api_clock_off_by(-300).await;
}

#[tokio::test]
async fn an_api_clock_300_s_ahead_hides_no_job() {
    every_job_is_seen_and_counted_once_with_the_api_clock_off_by(300).await;
}

/// From now on, every list page after the first answers `[]`.
fn empty_pages_after_the_first(sim: &RunningSimulator) {
    sim.sim.add_fault(
        FaultRule::new(
            Endpoint::ListJobs,
            Fault::Answer {
                body: serde_json::json!([]),
            },
            Schedule::Always,
        )
        .from_offset(1),
    );
}

/// 1,500 jobs that ended over the last 23 hours: 30 pages of 50.
fn many_pages_of_ended_jobs(c: &mut SimulatorConfig) {
    c.prefill = PrefillConfig {
        jobs: 1500,
        span: Duration::from_secs(23 * 3600),
    }
}

#[tokio::test]
async fn a_first_scan_whose_later_pages_come_back_empty_is_no_baseline_and_no_spike_follows() {
    let (sim, mut exp) = scripted(many_pages_of_ended_jobs, &[("window", "24h")]).await;
    let t = exp.now();
    let live: Vec<Ulid> = sim.sim.with_farm(|f| {
        (0..3)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - (i + 1) * MIN)))
            .collect()
    });
    let before = terminal_ids(&sim);
    // Every list page after the first is `[]`, for two polls.
    empty_pages_after_the_first(&sim);
    let m = exp
        .wait_for(
            |m| poll_errors(m, "incomplete_scan") >= 2.0,
            "polls failing as incomplete scans",
        )
        .await;
    assert_eq!(up(&m), Some(0.0));
    sim.sim.clear_faults();

    let m = exp.wait_for(|m| up(m) == Some(1.0), "a good poll").await;
    assert_in_view(&m, &sim, 24 * HOUR, "after the fault");
    assert!(jobs(&m, "main", "finished").unwrap() > 1000.0);
    assert_counted(&m, &sim, &before, &[], "after the fault: no spike");
    let m = exp.polls("main", 2).await;
    assert_counted(&m, &sim, &before, &[], "two polls later");

    set_status(&sim, live[0], JobStatus::Finished);
    set_status(&sim, live[1], JobStatus::Error);
    let m = exp.polls("main", 2).await;
    assert_counted(&m, &sim, &before, &[], "two jobs ended");
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_eq!(completed(&m, "main", "error"), Some(1.0));
}

#[tokio::test]
async fn one_job_whose_look_up_always_fails_does_not_freeze_the_account() {
    let (sim, mut exp) = scripted(|_| {}, &[("max_retries", "1")]).await;
    let t = exp.now();
    // The bad job is the oldest queued: it is looked up from the start.
    let (bad, others): (Ulid, Vec<Ulid>) = sim.sim.with_farm(|f| {
        let bad = f.insert_scripted(ScriptedJob::queued(t - 30 * MIN));
        let others = (0..5)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - 20 * MIN + i * SEC)))
            .collect();
        (bad, others)
    });
    sim.sim.add_fault(
        FaultRule::new(
            Endpoint::GetJob,
            Fault::Status { code: 500 },
            Schedule::Always,
        )
        .for_job(bad.to_string()),
    );
    let before = terminal_ids(&sim);
    // Fewer than 5 polls in a row see its look-up fail before the fault
    // lifts (at most 2, then 2): not given up (tests/exact_once.rs has
    // the give-up).
    let m = exp.polls("main", 1).await;
    assert_eq!(up(&m), Some(1.0));
    assert_in_view(&m, &sim, HOUR, "start");
    let failures = lookup_failures(&m);
    assert!(failures >= 1.0, "the bad job's look-up failed");

    set_status(&sim, bad, JobStatus::Finished);
    for id in &others[..3] {
        set_status(&sim, *id, JobStatus::Finished);
    }
    set_status(&sim, others[3], JobStatus::Error);
    let m = exp.polls("main", 1).await;
    assert_eq!(up(&m), Some(1.0), "the account goes on");
    assert_counted(&m, &sim, &before, &[bad], "the bad job still unread");
    assert_eq!(completed(&m, "main", "finished"), Some(3.0));
    assert!(lookup_failures(&m) > failures, "and it is tried every poll");

    sim.sim.clear_faults();
    let m = exp.polls("main", 2).await;
    assert_counted(&m, &sim, &before, &[], "the fault lifted");
    assert_eq!(completed(&m, "main", "finished"), Some(4.0));
    let m = exp.polls("main", 2).await;
    assert_counted(&m, &sim, &before, &[], "two polls later");
    assert_in_view(&m, &sim, HOUR, "the end");
}

/// A busy farm polled every 5 minutes through a 1 h window, the API
/// answering 503 for 3 hours from minute 1. Returns the rig after the
/// second good poll, the terminal ids at the baseline, the ids the farm had
/// then, and the time of the recovery.
async fn three_hour_outage(
    max_catch_up: Duration,
) -> (Rig, BTreeMap<String, HashSet<Ulid>>, HashSet<Ulid>, i64) {
    let lifecycle = LifecycleConfig {
        arrivals_per_minute: 3.0,
        render_median: Duration::from_secs(120),
        workers: 6,
        ..LifecycleConfig::default()
    };
    let cfg = SimulatorConfig {
        lifecycle,
        prefill: PrefillConfig {
            jobs: 500,
            span: Duration::from_secs(86_400),
        },
        seed: 11,
        ..SimulatorConfig::default()
    };
    let settings = PollConfig {
        interval: Duration::from_secs(300),
        window: Duration::from_secs(3600),
        page_size: 1000,
        timeout: Duration::from_secs(60),
        max_catch_up,
        ..PollConfig::default()
    };
    let mut r = Rig::start(cfg, settings).await;
    r.poller.poll().await;
    let before = terminal_ids(&r.sim);
    let known: HashSet<Ulid> = r
        .sim
        .sim
        .with_farm(|f| f.jobs().iter().map(|j| j.id).collect());
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::Any,
        Fault::Status { code: 503 },
        Schedule::Window {
            after: Duration::from_secs(60),
            lasting: Some(Duration::from_secs(3 * 3600)),
        },
    ));
    for step in 1..=36 {
        r.clock.set(T0 + step * 5 * MIN);
        r.poller.poll().await;
        assert_eq!(up(&r.metrics()), Some(0.0), "step {step}");
    }
    let recovered = T0 + 3 * HOUR + 10 * MIN;
    r.clock.set(recovered);
    r.poller.poll().await;
    r.poller.poll().await; // a second good poll adds nothing
    assert_eq!(up(&r.metrics()), Some(1.0));
    (r, before, known, recovered)
}

#[tokio::test]
async fn after_an_outage_three_times_the_window_every_job_that_ended_meanwhile_is_counted_once() {
    let (r, before, _, recovered) = three_hour_outage(Duration::from_secs(48 * 3600)).await;
    let m = r.metrics();
    assert_counted(&m, &r.sim, &before, &[], "after the outage");
    assert_in_view(&m, &r.sim, HOUR, "after the outage");
    // Most of what ended did so before the window of the recovery poll.
    let ended: Vec<Ulid> = ended_between(&before, &terminal_ids(&r.sim))
        .into_values()
        .flatten()
        .collect();
    let older = r.sim.sim.with_farm(|f| {
        ended
            .iter()
            .filter(|id| f.job(**id).unwrap().created_at < recovered - HOUR)
            .count()
    });
    assert!(
        older > 300,
        "{older} of {} ended before the window",
        ended.len()
    );
}

#[tokio::test]
async fn a_catch_up_limit_shorter_than_the_outage_loses_exactly_the_jobs_created_before_it() {
    let limit = 2 * HOUR;
    let (r, before, known, recovered) = three_hour_outage(Duration::from_secs(2 * 3600)).await;
    // Lost: jobs first created during the outage before `now − max_catch_up`
    // (the catch-up read starts there). Jobs known at the last good poll are
    // looked up by id wherever they are.
    let horizon = recovered - limit;
    let lost: Vec<Ulid> = r.sim.sim.with_farm(|f| {
        f.jobs()
            .iter()
            .filter(|j| !known.contains(&j.id) && j.created_at < horizon)
            .map(|j| j.id)
            .collect()
    });
    assert!(lost.len() > 100, "{} lost", lost.len());
    let m = r.metrics();
    assert_counted(&m, &r.sim, &before, &lost, "after the outage");
    assert_in_view(&m, &r.sim, HOUR, "after the outage");
}

#[tokio::test]
async fn a_reload_of_client_policy_keeps_the_bookkeeping_and_a_new_token_starts_a_fresh_baseline() {
    const SECOND: &str = "second-token-4e1b";
    let sim = scripted_simulator_with(|c| c.tokens.push(SECOND.into())).await;
    ended_jobs(&sim, 50 * MIN, 5 * MIN, &[]);
    let t = now();
    let (waiting, later) = sim.sim.with_farm(|f| {
        (
            f.insert_scripted(ScriptedJob::queued(t - 10 * MIN)),
            f.insert_scripted(ScriptedJob::queued(t - 9 * MIN)),
        )
    });
    let before = terminal_ids(&sim);
    let exp = exporter(&sim, &[]);
    exp.polls("main", 1).await;

    let policy = poll_config(
        &sim,
        &[
            ("request_timeout", "3s"),
            ("max_retries", "5"),
            ("max_requests_per_second", "20"),
        ],
    );
    let m = reload(&exp, &policy, 1).await;
    assert!(
        exp.log().contains("new client policy for main"),
        "{}",
        exp.log()
    );
    assert_counted(&m, &sim, &before, &[], "after the reload");
    set_status(&sim, waiting, JobStatus::Finished);
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_counted(&m, &sim, &before, &[], "queued before, finished after");

    let m = reload(&exp, &policy.replace(TOKEN, SECOND), 2).await;
    assert!(exp.log().contains("restarted main"), "{}", exp.log());
    assert_counted(&m, &sim, &before, &[], "a fresh baseline counts nothing");
    assert_in_view(&m, &sim, HOUR, "a fresh baseline");
    set_status(&sim, later, JobStatus::Error);
    let m = exp.polls("main", 2).await;
    assert_counted(&m, &sim, &before, &[], "after the fresh baseline");
    assert_eq!(completed(&m, "main", "error"), Some(1.0));
}

/// Puts ended scripted job `id` back in the queue now, by the simulator's
/// clock, as a team re-queuing it upstream does.
fn requeue(sim: &RunningSimulator, id: Ulid) {
    sim.sim
        .with_farm(|f| {
            let at = f.now();
            f.requeue(id, at)
        })
        .unwrap();
}

/// One job, one completion: the first terminal status each job reached
/// since the baseline (`before`), noted each time the test looks at the
/// farm, since a re-queued job leaves its terminal status again.
struct FirstEnds {
    before: BTreeMap<String, HashSet<Ulid>>,
    first: BTreeMap<Ulid, &'static str>,
}

impl FirstEnds {
    fn new(sim: &RunningSimulator) -> Self {
        FirstEnds {
            before: terminal_ids(sim),
            first: BTreeMap::new(),
        }
    }

    fn note(&mut self, sim: &RunningSimulator) {
        for (status, ids) in ended_between(&self.before, &terminal_ids(sim)) {
            for id in ids {
                self.first.entry(id).or_insert(status);
            }
        }
    }

    /// Notes the farm, then holds every completion counter of `main` and
    /// the render-duration count to one per job that ended.
    fn assert_counted(&mut self, m: &str, sim: &RunningSimulator, when: &str) {
        self.note(sim);
        for status in TERMINAL {
            let n = self.first.values().filter(|s| **s == status).count() as f64;
            assert_eq!(
                completed(m, "main", status),
                Some(n),
                "{when}: completions {status}, {n} jobs ended first so"
            );
        }
        let finished = self.first.values().filter(|s| **s == "finished").count() as f64;
        assert_eq!(
            histogram(m, "main", "render_duration", "count"),
            Some(finished),
            "{when}: one render duration per job that finished first"
        );
    }
}

#[tokio::test]
async fn a_job_requeued_after_it_ended_shows_as_queued_and_its_second_end_is_not_counted() {
    let (sim, mut exp) = scripted(|_| {}, &[]).await;
    ended_jobs(&sim, 50 * MIN, 5 * MIN, &[]);
    let t = exp.now();
    let (a, b, c) = sim.sim.with_farm(|f| {
        (
            f.insert_scripted(ScriptedJob::queued(t - 10 * MIN)),
            f.insert_scripted(rendering(t - 9 * MIN, t - 8 * MIN)),
            f.insert_scripted(ScriptedJob::queued(t - 8 * MIN)),
        )
    });
    let mut ends = FirstEnds::new(&sim);
    let m = exp.polls("main", 1).await;
    ends.assert_counted(&m, &sim, "baseline");

    set_status(&sim, a, JobStatus::Finished);
    set_status(&sim, b, JobStatus::Error);
    let m = exp.polls("main", 2).await;
    ends.assert_counted(&m, &sim, "a finished, b failed");
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));

    // Both are re-queued upstream: in the numbers as queued within one poll
    // (two, as one may have been under way).
    requeue(&sim, a);
    requeue(&sim, b);
    let m = exp.polls("main", 2).await;
    assert_in_view(&m, &sim, HOUR, "re-queued");
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));
    ends.assert_counted(&m, &sim, "re-queued: nothing taken back");

    // They run and end again, b finishing this time: no second completion,
    // no second render duration, under any status.
    set_status(&sim, a, JobStatus::Rendering);
    set_status(&sim, b, JobStatus::Rendering);
    let m = exp.polls("main", 2).await;
    assert_in_view(&m, &sim, HOUR, "rendering again");
    set_status(&sim, a, JobStatus::Finished);
    set_status(&sim, b, JobStatus::Finished);
    set_status(&sim, c, JobStatus::Finished);
    let m = exp.polls("main", 2).await;
    assert_in_view(&m, &sim, HOUR, "ended again");
    ends.assert_counted(&m, &sim, "ended again");
    assert_eq!(
        [
            completed(&m, "main", "finished"),
            completed(&m, "main", "error")
        ],
        [Some(2.0), Some(1.0)],
        "a and c finished, b failed: one completion each"
    );
    let m = exp.polls("main", 3).await;
    ends.assert_counted(&m, &sim, "three polls later");
}

fn tracked_jobs(m: &str) -> Option<f64> {
    value(m, "nexrender_exporter_tracked_jobs{account=\"main\"}")
}

/// Jobs whose ids are not ULIDs, or ULIDs 10 minutes after or before
/// their `createdAt`, through a 2-minute window: each counted once when it
/// ends after the start, none that ended before. With `in_view_too`, also
/// `nexrender_jobs` by the window of `createdAt` (what the API filters
/// on), and the jobs created before the start forgotten once older.
async fn jobs_with_odd_ids(in_view_too: bool) {
    const WINDOW: i64 = 2 * MIN;
    let (sim, mut exp) = scripted(|_| {}, &[("window", "2m"), ("full_scan_interval", "5s")]).await;
    let mut n = 0;
    let mut odd_id = |i: usize| {
        n += 1;
        match i % 3 {
            0 => ApiId::Text(format!("legacy-render-{n}")),
            1 => ApiId::UlidOffsetMs(10 * MIN),
            _ => ApiId::UlidOffsetMs(-10 * MIN),
        }
    };
    // Of each kind: one that ended before the start, one waiting then, both
    // leaving the window in the first 15 s.
    let t = exp.now();
    let waiting: Vec<Ulid> = sim.sim.with_farm(|f| {
        (0..3)
            .map(|i| {
                f.insert_scripted(ScriptedJob {
                    id: odd_id(i),
                    ..finished(t - 115 * SEC, 5 * SEC, 20 * SEC)
                });
                f.insert_scripted(ScriptedJob {
                    id: odd_id(i),
                    ..ScriptedJob::queued(t - 105 * SEC)
                })
            })
            .collect()
    });
    let mut ends = FirstEnds::new(&sim);
    // A whole-window read every 5 s: an ended job whose id is later than
    // its createdAt leaves the numbers when one no longer shows it.
    let m = exp.polls("main", 1).await;
    if in_view_too {
        assert_in_view(&m, &sim, WINDOW, "baseline");
    }
    ends.assert_counted(&m, &sim, "baseline");

    // Of each kind: one created after the start and seen waiting.
    let t = sim.sim.with_farm(|f| f.now());
    let new: Vec<Ulid> = sim.sim.with_farm(|f| {
        (0..3)
            .map(|i| {
                f.insert_scripted(ScriptedJob {
                    id: odd_id(i),
                    ..ScriptedJob::queued(t - i as i64 * SEC)
                })
            })
            .collect()
    });
    let m = exp.polls("main", 2).await;
    if in_view_too {
        assert_in_view(&m, &sim, WINDOW, "new jobs");
    }
    assert_eq!(jobs(&m, "main", "queued"), Some(6.0));

    for (i, id) in waiting.iter().chain(&new).enumerate() {
        let status = if i % 2 == 0 {
            JobStatus::Finished
        } else {
            JobStatus::Error
        };
        set_status(&sim, *id, status);
    }
    let m = exp.polls("main", 2).await;
    if in_view_too {
        assert_in_view(&m, &sim, WINDOW, "ended");
    }
    ends.assert_counted(&m, &sim, "ended");
    assert_eq!(ends.first.len(), 6);
    let m = exp.polls("main", 3).await;
    ends.assert_counted(&m, &sim, "three polls later");
    if !in_view_too {
        return;
    }

    // The jobs created before the start are older than the window now:
    // out of the numbers, the ones that ended before the start included;
    // forgotten, but for the two whose id is 10 minutes later than their
    // createdAt, remembered (counted, out of the numbers) until their id's
    // time leaves the window, so that listed again they count nothing.
    exp.clock.set(exp.now().max(t + 16 * SEC));
    let held: f64 = in_view(&sim, WINDOW).values().sum();
    assert_eq!(held, 3.0, "the jobs created after the start");
    let m = exp
        .wait_for(
            |m| tracked_jobs(m) == Some(held + 2.0),
            "the jobs older than the window out of the numbers",
        )
        .await;
    assert_in_view(&m, &sim, WINDOW, "the old jobs out of the numbers");
    ends.assert_counted(&m, &sim, "the old jobs out of the numbers");
}

#[tokio::test]
async fn a_later_scan_whose_pages_come_back_empty_fails_keeps_the_numbers_and_misses_no_end() {
    let (sim, mut exp) = scripted(many_pages_of_ended_jobs, &[("window", "24h")]).await;
    let t = exp.now();
    // Waiting for hours: when one ends, the next scan reads from there,
    // many pages back.
    let live: Vec<Ulid> = sim.sim.with_farm(|f| {
        (0..4)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - 10 * HOUR + i * MIN)))
            .collect()
    });
    let before = terminal_ids(&sim);
    exp.polls("main", 1).await;
    let good = exp.polls("main", 1).await;
    assert_counted(&good, &sim, &before, &[], "baseline");

    // Every list page after the first is `[]`, while jobs end.
    empty_pages_after_the_first(&sim);
    set_status(&sim, live[0], JobStatus::Finished);
    set_status(&sim, live[1], JobStatus::Error);
    let errors = poll_errors(&good, "incomplete_scan");
    let m = exp
        .wait_for(
            |m| poll_errors(m, "incomplete_scan") >= errors + 2.0,
            "polls failing as incomplete scans",
        )
        .await;
    assert_eq!(up(&m), Some(0.0));
    // One created and finished, one more ended, during the fault.
    let t = sim.sim.with_farm(|f| f.now());
    sim.sim
        .with_farm(|f| f.insert_scripted(finished(t - 2 * SEC, 200, 1000)));
    set_status(&sim, live[2], JobStatus::ManuallyCancelled);
    let m = exp
        .wait_for(
            |m| poll_errors(m, "incomplete_scan") >= errors + 4.0,
            "more failing polls",
        )
        .await;
    for status in DOCUMENTED {
        assert_eq!(
            jobs(&m, "main", status),
            jobs(&good, "main", status),
            "{status} at its last good value"
        );
    }
    for status in TERMINAL {
        assert_eq!(
            completed(&m, "main", status),
            completed(&good, "main", status),
            "completions {status} at the last good value"
        );
    }
    sim.sim.clear_faults();

    let m = exp.wait_for(|m| up(m) == Some(1.0), "a good poll").await;
    assert_in_view(&m, &sim, 24 * HOUR, "after the fault");
    assert_counted(&m, &sim, &before, &[], "after the fault");
    assert_eq!(
        [
            completed(&m, "main", "finished"),
            completed(&m, "main", "error"),
            completed(&m, "main", "manually_cancelled")
        ],
        [Some(2.0), Some(1.0), Some(1.0)],
        "the four jobs that ended during the fault, once each"
    );
    let m = exp.polls("main", 3).await;
    assert_counted(&m, &sim, &before, &[], "three polls later");
}

#[tokio::test]
async fn jobs_whose_ids_are_not_ulids_or_not_their_creation_time_are_counted_exactly_once() {
    jobs_with_odd_ids(false).await;
}

// Ended jobs whose id misstates their creation: the tracker learns the
// `createdAt` of one whose id is earlier than the listing that shows it
// (or is not a ULID) with one look-up, and keeps it in the numbers by that;
// one whose id is later than its `createdAt` leaves them when a read of
// the whole window no longer shows it (here every 5 s).
#[tokio::test]
async fn jobs_whose_ids_are_not_ulids_or_not_their_creation_time_are_in_view_and_forgotten_on_time()
{
    jobs_with_odd_ids(true).await;
}
