//! Pollers that die: the real binary, built with the fault drills
//! (`--features failpoints`), made to panic at a named point by the
//! `FAILPOINTS` environment variable. The supervisor must notice at once,
//! say so on `/metrics`, `/readyz` and the landing page, restart the poller
//! with backoff, and keep the numbers exact against the simulator's truth.
#![cfg(feature = "failpoints")]

mod support;

use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{RunningSimulator, ScriptedJob};
use support::*;

const MIN: i64 = 60_000;

fn restarts(m: &str) -> Option<f64> {
    value(
        m,
        "nexrender_exporter_poller_restarts_total{account=\"main\"}",
    )
}

/// One job that ended before the exporter started, one waiting: returns the
/// simulator and the waiting job's id.
async fn one_ended_one_queued() -> (RunningSimulator, ulid::Ulid) {
    let sim = scripted_simulator().await;
    let t = now();
    let queued = sim.sim.with_farm(|f| {
        f.insert_scripted(ScriptedJob {
            created_at: t - 30 * MIN,
            status: JobStatus::Finished,
            started_at: Some(t - 29 * MIN),
            ended_at: Some(t - 20 * MIN),
            ..ScriptedJob::queued(t - 30 * MIN)
        });
        f.insert_scripted(ScriptedJob::queued(t - 10 * MIN))
    });
    (sim, queued)
}

fn exporter(sim: &RunningSimulator, failpoints: &str) -> Exporter {
    let config = yaml_file(&format!(
        "poll:\n  interval: 1s\n  window: 1h\n  page_size: 50\n  request_timeout: 2s\naccounts:\n{}",
        account_yaml("main", sim)
    ));
    Exporter::binary_with_env(config, &[], &[("FAILPOINTS", failpoints)])
}

#[tokio::test]
async fn a_poller_that_panics_between_polls_is_restarted_and_keeps_its_bookkeeping() {
    let (sim, queued) = one_ended_one_queued().await;
    // Two good polls, then the poller panics three times in a row (pauses of
    // 1, 2 and 4 s), then it runs on.
    let exp = exporter(&sim, "poll-cycle=2*off->3*panic(drill: poller panics)->off");
    let m = exp.polls("main", 1).await;
    assert_eq!(restarts(&m), Some(0.0), "zero-filled from the start");
    assert_eq!(jobs(&m, "main", "queued"), Some(1.0));

    // Dead and restarting: up is 0, /readyz says why, the numbers stay.
    let m = exp
        .wait_for(|m| restarts(m) >= Some(1.0), "the first restart")
        .await;
    assert_eq!(value(&m, "nexrender_up{account=\"main\"}"), Some(0.0));
    assert_eq!(
        jobs(&m, "main", "queued"),
        Some(1.0),
        "the last numbers stay"
    );
    let (code, body) = exp.get("/readyz").await.expect("an answer");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("main: poller died (panic: drill: poller panics); restarting"),
        "{body}"
    );
    let (_, page) = exp.get("/").await.expect("an answer");
    assert!(page.contains("poller died"), "{page}");

    // The waiting job finishes while the poller is down.
    set_status(&sim, queued, JobStatus::Finished);

    let m = exp
        .wait_for(
            |m| restarts(m) == Some(3.0) && value(m, "nexrender_up{account=\"main\"}") == Some(1.0),
            "three restarts, then a good poll",
        )
        .await;
    // Kept bookkeeping: the job seen waiting is counted when seen ended;
    // the job that ended before the start is not.
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_eq!(jobs(&m, "main", "finished"), Some(2.0));
    assert_eq!(jobs(&m, "main", "queued"), Some(0.0));
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0), "counted once");
    assert_eq!(restarts(&m), Some(3.0));
    assert_eq!(exp.get("/readyz").await.map(|r| r.0), Some(200));
    let log = exp.log();
    assert_eq!(
        log.matches("poller died; restarting it").count(),
        3,
        "one line per death\n{log}"
    );
    assert!(log.contains("bookkeeping=kept"), "{log}");
    assert!(!log.contains(TOKEN), "the token never appears in the log");
}

#[tokio::test]
async fn a_poller_that_panics_while_applying_a_poll_starts_a_fresh_baseline_and_counts_nothing_twice(
) {
    let (sim, queued) = one_ended_one_queued().await;
    // The baseline applies; the next poll panics half-way through applying.
    let exp = exporter(&sim, "tracker-apply=1*off->1*panic(drill: mid-apply)->off");
    let m = exp
        .wait_for(
            |m| restarts(m) == Some(1.0) && value(m, "nexrender_up{account=\"main\"}") == Some(1.0),
            "a restart, then a good poll",
        )
        .await;
    // Half-applied bookkeeping was dropped for a fresh baseline: the job that
    // ended before the start is not counted as a new completion, and every
    // job is tracked once.
    assert_eq!(completed(&m, "main", "finished"), Some(0.0));
    assert_eq!(jobs(&m, "main", "finished"), Some(1.0));
    assert_eq!(jobs(&m, "main", "queued"), Some(1.0));
    assert_eq!(
        value(&m, "nexrender_exporter_tracked_jobs{account=\"main\"}"),
        Some(2.0)
    );
    assert!(exp.log().contains("the next poll is a fresh baseline"));

    // From the new baseline on, counting is exact again.
    set_status(&sim, queued, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| completed(m, "main", "finished") == Some(1.0),
            "the waiting job's completion",
        )
        .await;
    assert_eq!(jobs(&m, "main", "finished"), Some(2.0));
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0), "counted once");
}

#[tokio::test]
async fn a_poller_that_panics_before_publishing_an_applied_poll_publishes_it_when_restarted() {
    let (sim, queued) = one_ended_one_queued().await;
    // The baseline is published; the poll after it is applied and the
    // poller dies before its outcome reaches the metrics.
    let exp = exporter(
        &sim,
        "poll-publish=1*off->1*panic(drill: before publishing)->off",
    );
    exp.polls("main", 1).await;
    set_status(&sim, queued, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| restarts(m) == Some(1.0) && completed(m, "main", "finished") == Some(1.0),
            "a restart that publishes the applied poll",
        )
        .await;
    assert_eq!(jobs(&m, "main", "finished"), Some(2.0));
    assert!(exp.log().contains("bookkeeping=kept"), "{}", exp.log());
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0), "counted once");
    assert_eq!(value(&m, "nexrender_up{account=\"main\"}"), Some(1.0));
}

#[tokio::test]
async fn a_poll_whose_publishing_kills_the_poller_twice_is_dropped_for_a_fresh_baseline() {
    let (sim, queued) = one_ended_one_queued().await;
    let exp = exporter(
        &sim,
        "poll-publish=1*off->2*panic(drill: publishing fails)->off",
    );
    exp.polls("main", 1).await;
    set_status(&sim, queued, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| restarts(m) == Some(2.0) && value(m, "nexrender_up{account=\"main\"}") == Some(1.0),
            "two restarts, then a good poll",
        )
        .await;
    assert!(exp.log().contains("the next poll is a fresh baseline"));
    // The completion went with the dropped poll; nothing is counted twice.
    assert_eq!(completed(&m, "main", "finished"), Some(0.0));
    assert_eq!(jobs(&m, "main", "finished"), Some(2.0));
}
