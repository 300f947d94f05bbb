//! The exporter against the simulator, over several polls with jobs
//! moving, checking exact numbers: the real poller in-process on a
//! hand-moved clock (`support::clock::scripted`); the whole exporter started
//! in this process as the binary starts it (`support::Exporter::start`) for
//! a restart, two accounts at once, its pages and its gzip answers; and the
//! real binary for what only it shows (its whole log with nothing secret in
//! it, SIGTERM).

mod support;

use std::time::Duration;

use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{Endpoint, Fault, FaultRule, RunningSimulator, Schedule, ScriptedJob};
use support::clock::scripted;
use support::*;

const MIN: i64 = 60_000;

/// 120 jobs that finished in the hour before `t`, and one queued for 10
/// minutes (the oldest queued job is looked up by id).
fn script_ended_jobs_and_one_queued(sim: &RunningSimulator, t: i64) {
    sim.sim.with_farm(|f| {
        for i in 0..120 {
            f.insert_scripted(finished(t - 50 * MIN + i * 1000, 2000, 30_000));
        }
        f.insert_scripted(ScriptedJob::queued(t - 10 * MIN));
    });
}

/// The same on a simulator of its own, on the wall clock, for the whole
/// exporter.
async fn ended_jobs_and_one_queued() -> RunningSimulator {
    let sim = scripted_simulator().await;
    script_ended_jobs_and_one_queued(&sim, now());
    sim
}

/// The stuck-render story of issue #24: a job queued for 2 h 55 min that
/// has rendered for 15 is 3 h 10 min old but 15 min into its render; a
/// job that started 3 h 20 min ago is the longest-running one. The
/// exporter, started while both render, says when each started (from one
/// look-up each), and the start goes when the render ends.
#[tokio::test]
async fn the_longest_running_render_is_measured_from_its_start_not_its_creation() {
    let (sim, mut exp) = scripted(|_| {}, &[("window", "6h")]).await;
    let t = exp.now();
    let (late, stuck) = sim.sim.with_farm(|f| {
        let late = f.insert_scripted(ScriptedJob {
            status: JobStatus::Rendering,
            started_at: Some(t - 15 * MIN),
            ..ScriptedJob::queued(t - 190 * MIN)
        });
        let stuck = f.insert_scripted(ScriptedJob {
            status: JobStatus::Rendering,
            started_at: Some(t - 200 * MIN),
            ..ScriptedJob::queued(t - 201 * MIN)
        });
        (late, stuck)
    });
    let started = |m: &str| {
        value(
            m,
            "nexrender_oldest_job_started_timestamp_seconds{account=\"main\",status=\"render:dorender\"}",
        )
    };
    let m = exp.polls("main", 1).await;
    assert_eq!(started(&m), Some(((t - 200 * MIN) / 1000) as f64), "{m}");
    assert_eq!(jobs(&m, "main", "render:dorender"), Some(2.0));
    // The stuck one is cancelled: the late one, 15 minutes in, is the
    // longest-running now, although it is the older by creation.
    set_status(&sim, stuck, JobStatus::ManuallyCancelled);
    let m = exp
        .wait_for(
            |m| jobs(m, "main", "render:dorender") == Some(1.0),
            "the cancel seen",
        )
        .await;
    assert_eq!(started(&m), Some(((t - 15 * MIN) / 1000) as f64), "{m}");
    assert_eq!(
        value(
            &m,
            "nexrender_oldest_job_created_timestamp_seconds{account=\"main\",status=\"render:dorender\"}"
        ),
        Some(((t - 190 * MIN) / 1000) as f64)
    );
    set_status(&sim, late, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| jobs(m, "main", "render:dorender") == Some(0.0),
            "the end seen",
        )
        .await;
    assert_eq!(started(&m), None, "nothing in progress: no series");
}

#[tokio::test]
async fn jobs_terminal_before_start_are_not_counted_and_a_job_created_and_finished_between_polls_is(
) {
    let (sim, mut exp) = scripted(|_| {}, &[]).await;
    script_ended_jobs_and_one_queued(&sim, exp.now());
    let m = exp.polls("main", 1).await;
    assert_eq!(
        jobs(&m, "main", "finished"),
        Some(120.0),
        "120 jobs, paged 50 at a time"
    );
    assert_eq!(jobs(&m, "main", "queued"), Some(1.0));
    assert_eq!(
        completed(&m, "main", "finished"),
        Some(0.0),
        "no spike after start"
    );
    assert_eq!(value(&m, "nexrender_up{account=\"main\"}"), Some(1.0));

    // Between two polls: created now (after the first poll; its times run
    // a little ahead, as a fast farm's would), started after 12.5 s,
    // rendered 90.25 s.
    let t = exp.now();
    sim.sim
        .with_farm(|f| f.insert_scripted(finished(t, 12_500, 90_250)));
    let m = exp
        .wait_for(
            |m| completed(m, "main", "finished") == Some(1.0),
            "the new job counted",
        )
        .await;
    assert_eq!(jobs(&m, "main", "finished"), Some(121.0));
    assert_eq!(histogram(&m, "main", "render_duration", "count"), Some(1.0));
    assert_eq!(histogram(&m, "main", "render_duration", "sum"), Some(90.25));
    assert_eq!(histogram(&m, "main", "queue_wait", "sum"), Some(12.5));

    // Several more polls: still counted once.
    let m = exp.polls("main", 3).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_eq!(histogram(&m, "main", "render_duration", "count"), Some(1.0));
}

#[tokio::test]
async fn a_queued_job_moves_through_rendering_to_error_and_is_measured_once() {
    let (sim, mut exp) = scripted(|_| {}, &[]).await;
    let t = exp.now();
    let id = sim
        .sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - 5 * MIN)));
    let m = exp.polls("main", 1).await;
    let created = (t - 5 * MIN) as f64 / 1000.0;
    assert_eq!(
        value(
            &m,
            "nexrender_oldest_job_created_timestamp_seconds{account=\"main\",status=\"queued\"}"
        ),
        Some(created)
    );

    sim.sim
        .with_farm(|f| f.script_status(id, JobStatus::Rendering, t - 5 * MIN + 42_000))
        .unwrap();
    let m = exp
        .wait_for(
            |m| jobs(m, "main", "render:dorender") == Some(1.0),
            "rendering",
        )
        .await;
    assert_eq!(jobs(&m, "main", "queued"), Some(0.0));
    assert!(
        !m.contains(
            "nexrender_oldest_job_created_timestamp_seconds{account=\"main\",status=\"queued\"}"
        ),
        "absent when none waits"
    );
    let m = exp
        .wait_for(
            |m| histogram(m, "main", "queue_wait", "count") == Some(1.0),
            "wait",
        )
        .await;
    assert_eq!(histogram(&m, "main", "queue_wait", "sum"), Some(42.0));

    set_status(&sim, id, JobStatus::Error);
    let m = exp
        .wait_for(
            |m| completed(m, "main", "error") == Some(1.0),
            "error counted",
        )
        .await;
    assert_eq!(
        histogram(&m, "main", "render_duration", "count"),
        Some(0.0),
        "errors have no render duration"
    );
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "error"), Some(1.0));
    assert_eq!(histogram(&m, "main", "queue_wait", "count"), Some(1.0));
}

#[tokio::test]
async fn a_job_stuck_longer_than_the_window_stays_in_the_backlog_and_is_counted_when_it_finishes() {
    let (sim, mut exp) = scripted(|_| {}, &[("window", "1m")]).await;
    let t = exp.now();
    // A one-minute window: both jobs leave it within seconds.
    let (stuck_created, rendering) = sim.sim.with_farm(|f| {
        let created = t - 52_000;
        f.insert_scripted(ScriptedJob::queued(created));
        let mut r = ScriptedJob::queued(t - 55_000);
        r.status = JobStatus::Rendering;
        r.started_at = Some(t - 54_000);
        (created, f.insert_scripted(r))
    });
    let m = exp.polls("main", 1).await;
    assert_eq!(jobs(&m, "main", "queued"), Some(1.0));
    assert_eq!(jobs(&m, "main", "render:dorender"), Some(1.0));

    // Wait until the window has moved past both; the scan no longer lists them.
    exp.clock.set(t + 10_000);
    let m = exp.polls("main", 2).await;
    assert_eq!(
        jobs(&m, "main", "queued"),
        Some(1.0),
        "still in the backlog:\n{m}"
    );
    assert_eq!(jobs(&m, "main", "render:dorender"), Some(1.0));
    assert_eq!(
        value(
            &m,
            "nexrender_oldest_job_created_timestamp_seconds{account=\"main\",status=\"queued\"}"
        ),
        Some(stuck_created as f64 / 1000.0)
    );
    assert!(value(&m, "nexrender_exporter_api_requests_total{account=\"main\",code=\"200\",endpoint=\"get_job\"}").unwrap() >= 2.0, "looked up by id");

    // The rendering one finishes while older than the window: counted once.
    set_status(&sim, rendering, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| completed(m, "main", "finished") == Some(1.0),
            "finished counted",
        )
        .await;
    assert_eq!(jobs(&m, "main", "render:dorender"), Some(0.0));
    assert_eq!(
        jobs(&m, "main", "finished"),
        Some(0.0),
        "created before the window: not a window job"
    );
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_eq!(histogram(&m, "main", "render_duration", "count"), Some(1.0));
    assert_eq!(
        jobs(&m, "main", "queued"),
        Some(1.0),
        "the stuck one is still there"
    );
}

#[tokio::test]
async fn a_restart_does_not_count_what_was_already_finished() {
    let sim = scripted_simulator().await;
    let t = now();
    let id = sim.sim.with_farm(|f| {
        for i in 0..10 {
            f.insert_scripted(finished(t - 30 * MIN + i * 1000, 1000, 5000));
        }
        f.insert_scripted(ScriptedJob::queued(t - MIN))
    });
    let yaml = format!("accounts:\n{}", account_yaml("main", &sim));
    let exp = Exporter::start(&yaml, &[]);
    exp.polls("main", 1).await;
    set_status(&sim, id, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| completed(m, "main", "finished") == Some(1.0),
            "counted before restart",
        )
        .await;
    assert_eq!(jobs(&m, "main", "finished"), Some(11.0));
    let (status, _, _) = exp.stop();
    assert!(status.success());

    let exp = Exporter::start(&yaml, &[]);
    let m = exp.polls("main", 3).await;
    assert_eq!(
        completed(&m, "main", "finished"),
        Some(0.0),
        "a new process starts its counters at 0 and adds nothing"
    );
    assert_eq!(jobs(&m, "main", "finished"), Some(11.0));
}

#[tokio::test]
async fn an_unknown_status_is_exported_under_its_own_name_and_removed_when_gone() {
    let (sim, mut exp) = scripted(|_| {}, &[]).await;
    let t = exp.now();
    let id = sim
        .sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - MIN)));
    exp.polls("main", 1).await;
    set_status(&sim, id, JobStatus::Other("render:prerender".into()));
    let m = exp
        .wait_for(
            |m| jobs(m, "main", "render:prerender") == Some(1.0),
            "unknown status",
        )
        .await;
    assert_eq!(jobs(&m, "main", "queued"), Some(0.0));
    assert!(m.contains("nexrender_oldest_job_created_timestamp_seconds{account=\"main\",status=\"render:prerender\"}"));
    set_status(&sim, id, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| completed(m, "main", "finished") == Some(1.0),
            "finished",
        )
        .await;
    assert!(
        !m.contains("render:prerender"),
        "series of a status no longer seen are removed:\n{m}"
    );
}

#[tokio::test]
async fn a_failed_poll_keeps_the_last_numbers_with_up_0_and_recovery_counts_once() {
    let (sim, mut exp) = scripted(|_| {}, &[]).await;
    let t = exp.now();
    let ids = sim.sim.with_farm(|f| {
        (0..3)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - MIN + i)))
            .collect::<Vec<_>>()
    });
    let m = exp.polls("main", 1).await;
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));

    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Status { code: 503 },
        Schedule::Always,
    ));
    let m = exp
        .wait_for(
            |m| value(m, "nexrender_up{account=\"main\"}") == Some(0.0),
            "up 0",
        )
        .await;
    assert_eq!(
        jobs(&m, "main", "queued"),
        Some(3.0),
        "last good numbers kept"
    );
    assert!(value(&m, "nexrender_exporter_api_requests_total{account=\"main\",code=\"503\",endpoint=\"list_jobs\"}").unwrap() >= 1.0);
    assert!(
        value(
            &m,
            "nexrender_exporter_poll_errors_total{account=\"main\",reason=\"server_error\"}"
        )
        .unwrap()
            >= 1.0
    );
    // During the outage two jobs finish.
    for id in &ids[..2] {
        set_status(&sim, *id, JobStatus::Finished);
    }
    exp.wait_for(
        |m| {
            value(
                m,
                "nexrender_exporter_polls_total{account=\"main\",result=\"failure\"}",
            )
            .unwrap_or(0.0)
                >= 3.0
        },
        "failing polls",
    )
    .await;
    sim.sim.clear_faults();
    let m = exp
        .wait_for(
            |m| value(m, "nexrender_up{account=\"main\"}") == Some(1.0),
            "recovered",
        )
        .await;
    assert_eq!(completed(&m, "main", "finished"), Some(2.0));
    assert_eq!(jobs(&m, "main", "queued"), Some(1.0));
    let m = exp.polls("main", 2).await;
    assert_eq!(
        completed(&m, "main", "finished"),
        Some(2.0),
        "nothing counted twice"
    );
    let warnings = exp.log().matches("poll failed").count();
    assert_eq!(
        warnings,
        1,
        "one log line for the outage, not one per cycle:\n{}",
        exp.log()
    );
}

#[tokio::test]
async fn one_hanging_account_never_stalls_another() {
    let good = scripted_simulator().await;
    let bad = scripted_simulator().await;
    bad.sim
        .add_fault(FaultRule::new(Endpoint::Any, Fault::Hang, Schedule::Always));
    let t = now();
    good.sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - MIN)));
    let yaml = format!(
        "accounts:\n{}{}",
        account_yaml("good", &good),
        account_yaml("bad", &bad)
    );
    let exp = Exporter::start(&yaml, &[]);
    let m = exp.polls("good", 4).await;
    assert_eq!(jobs(&m, "good", "queued"), Some(1.0));
    assert_eq!(value(&m, "nexrender_up{account=\"good\"}"), Some(1.0));
    assert_eq!(value(&m, "nexrender_up{account=\"bad\"}"), Some(0.0));
    let m = exp
        .wait_for(
            |m| {
                value(
                    m,
                    "nexrender_exporter_polls_total{account=\"bad\",result=\"failure\"}",
                ) >= Some(1.0)
            },
            "the bad account's first poll to fail",
        )
        .await;
    // One try and two retries, each cut at the 2 s request timeout; the
    // next poll starts only after that, never overlapping.
    assert!(
        value(
            &m,
            "nexrender_exporter_poll_duration_seconds{account=\"bad\"}"
        )
        .unwrap()
            >= 6.0
    );
    assert!(value(&m, "nexrender_exporter_api_requests_total{account=\"bad\",code=\"timeout\",endpoint=\"list_jobs\"}").unwrap() >= 3.0);
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_poll_errors_total{account=\"bad\",reason=\"timeout\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn readyz_waits_for_the_first_poll_and_the_landing_page_shows_each_account() {
    let sim = scripted_simulator().await;
    // The first list request is slow, so readiness can be seen flipping.
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Slow {
            delay: Duration::from_secs(2),
        },
        Schedule::Next { count: 1 },
    ));
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    let mut early = None;
    for _ in 0..100 {
        if let Some(r) = exp.get("/readyz").await {
            early = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = early.expect("server up");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("main"));
    assert_eq!(exp.get("/healthz").await.unwrap().0, 200);
    exp.polls("main", 1).await;
    assert_eq!(exp.get("/readyz").await.unwrap().0, 200);
    let (code, page) = exp.get("/").await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<td>main</td><td>ok</td>"), "{page}");
    assert!(page.contains("href=\"/metrics\""));
    assert_eq!(exp.get("/nope").await.unwrap().0, 404);
}

/// Prometheus scrapes a target whatever its `/readyz` says: a restart while
/// the API is down must show no job numbers, not an empty farm.
#[tokio::test]
async fn an_exporter_started_while_the_api_is_down_shows_no_job_numbers_until_its_first_good_poll()
{
    let sim = scripted_simulator().await;
    let t = now();
    sim.sim.with_farm(|f| {
        for i in 0..3 {
            f.insert_scripted(ScriptedJob::queued(t - MIN + i));
        }
    });
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Status { code: 503 },
        Schedule::Always,
    ));
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    let m = exp
        .wait_for(
            |m| poll_errors(m, "server_error") >= 2.0,
            "two polls failing",
        )
        .await;
    assert!(!m.contains("nexrender_jobs{"), "no numbers yet:\n{m}");
    assert_eq!(up(&m), Some(0.0));
    assert_eq!(
        completed(&m, "main", "finished"),
        Some(0.0),
        "counters are there from the start"
    );
    sim.sim.clear_faults();
    let m = exp.wait_for(|m| up(m) == Some(1.0), "a good poll").await;
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));
    assert_eq!(
        jobs(&m, "main", "finished"),
        Some(0.0),
        "known statuses at 0"
    );
}

#[tokio::test]
async fn the_token_never_appears_in_logs_metrics_or_pages() {
    let sim = scripted_simulator().await;
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Unauthorized,
        Schedule::Next { count: 2 },
    ));
    sim.sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(now() - MIN)));
    let exp = Exporter::binary(
        &format!("accounts:\n{}", account_yaml("main", &sim)),
        &["--log.level", "trace"],
    );
    exp.wait_for(|m| value(m, "nexrender_exporter_api_requests_total{account=\"main\",code=\"401\",endpoint=\"list_jobs\"}") == Some(2.0), "401s").await;
    let m = exp.polls("main", 2).await;
    let (_, page) = exp.get("/").await.unwrap();
    let (_, _, log) = exp.stop();
    assert!(
        log.contains("refused the token"),
        "the 401 is reported:\n{log}"
    );
    for (what, text) in [("metrics", &m), ("landing page", &page), ("log", &log)] {
        assert!(!text.contains(TOKEN), "token leaked in {what}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_exporter_promptly_with_exit_code_0() {
    let sim = scripted_simulator().await;
    let exp = Exporter::binary(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    exp.polls("main", 1).await;
    // It raised its open files limit to the hard one it inherited from
    // this test, and says so.
    let m = exp.metrics().await;
    let hard = std::fs::read_to_string(format!("/proc/{}/limits", exp.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse::<f64>().ok())
        .unwrap();
    assert_eq!(value(&m, "process_max_fds"), Some(hard));
    assert!(exp.log().contains("open files limit"), "{}", exp.log());
    let (status, took, _) = exp.stop();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// One poll of [`ended_jobs_and_one_queued`], gzip on or off: the metrics,
/// and the bytes the simulator sent meanwhile.
async fn first_poll_bytes(gzip: bool) -> (String, f64, f64) {
    let gzip = gzip.to_string();
    let (sim, mut exp) = scripted(|_| {}, &[("interval", "1h"), ("gzip", &gzip)]).await;
    script_ended_jobs_and_one_queued(&sim, exp.now());
    // One 500 with an error body, retried: its bytes count too.
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Status { code: 500 },
        Schedule::Next { count: 1 },
    ));
    let m = exp.polls("main", 1).await;
    let read = |endpoint: &str| {
        value(
            &m,
            &format!(
                "nexrender_exporter_api_response_bytes_total{{account=\"main\",endpoint=\"{endpoint}\"}}"
            ),
        )
        .unwrap()
    };
    let (lists, gets) = (read("list_jobs"), read("get_job"));
    assert!(gets > 0.0 && lists > 0.0, "{lists} + {gets}");
    assert_eq!(
        lists + gets,
        sim.sim.response_bytes() as f64,
        "every byte the simulator sent, counted once (gzip: {gzip})"
    );
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_api_requests_total{account=\"main\",code=\"500\",endpoint=\"list_jobs\"}"
        ),
        Some(1.0)
    );
    (m, lists, gets)
}

#[tokio::test]
async fn the_bytes_the_exporter_reports_reading_are_the_bytes_the_api_sent() {
    let (_, lists, gets) = first_poll_bytes(false).await;
    assert!(
        lists > 120.0 * 50.0,
        "three pages of jobs and one job: {lists} + {gets}"
    );
}

#[tokio::test]
async fn with_gzip_the_api_sends_a_fraction_of_the_bytes_for_the_same_numbers() {
    let (plain, plain_lists, _) = first_poll_bytes(false).await;
    let (gzipped, gzip_lists, _) = first_poll_bytes(true).await;
    assert!(
        gzip_lists * 3.0 < plain_lists,
        "listings compressed: {gzip_lists} bytes against {plain_lists}"
    );
    for status in ["finished", "queued"] {
        assert_eq!(jobs(&gzipped, "main", status), jobs(&plain, "main", status));
    }
    assert_eq!(jobs(&gzipped, "main", "finished"), Some(120.0));
    assert_eq!(value(&gzipped, "nexrender_up{account=\"main\"}"), Some(1.0));
}

#[tokio::test]
async fn metrics_are_gzipped_for_a_scraper_that_asks_and_plain_for_one_that_does_not() {
    let sim = ended_jobs_and_one_queued().await;
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    exp.polls("main", 1).await;
    let scrape = |accept: Option<&'static str>| {
        let url = exp.url("/metrics");
        async move {
            let mut req = reqwest::Client::new().get(url);
            if let Some(a) = accept {
                req = req.header("accept-encoding", a);
            }
            req.send().await.unwrap()
        }
    };
    // What Prometheus sends.
    let r = scrape(Some("gzip")).await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding, Accept");
    let gzipped = r.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut text)
        .unwrap();
    assert_eq!(jobs(&text, "main", "finished"), Some(120.0), "{text}");
    assert!(gzipped.len() * 4 < text.len());
    for accept in [None, Some("gzip;q=0"), Some("identity")] {
        let r = scrape(accept).await;
        assert!(r.headers().get("content-encoding").is_none(), "{accept:?}");
        let text = r.text().await.unwrap();
        assert_eq!(jobs(&text, "main", "finished"), Some(120.0), "{accept:?}");
    }
}
