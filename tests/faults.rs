//! The fault matrix: the exporter against the simulator's fault injection.
//! Each test names the trouble, what the exporter does, and the exact
//! numbers afterwards. Most run the real poller in-process on a hand-moved
//! clock, polling when the test asks (`support::clock::scripted`); the
//! ones whose story is a wait the API imposes in real time (429s, the
//! request rate limit) run the whole exporter on the wall clock.

mod support;

use std::time::{Duration, Instant};

use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{
    Endpoint, Fault, FaultRule, RetryAfter, RunningSimulator, Schedule, ScriptedJob,
};
use support::clock::{scripted, InProcess};
use support::*;

const MIN: i64 = 60_000;

/// A farm with three queued jobs; returns their ids.
async fn farm() -> (RunningSimulator, Vec<ulid::Ulid>) {
    let sim = scripted_simulator().await;
    let t = now();
    let ids = sim.sim.with_farm(|f| {
        (0..3)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - 10 * MIN + i)))
            .collect()
    });
    (sim, ids)
}

/// The same farm, polled in-process (see `support::clock::scripted`) with
/// `overrides` of the binary tests' poll settings.
async fn in_process(overrides: &[(&str, &str)]) -> (RunningSimulator, InProcess, Vec<ulid::Ulid>) {
    let (sim, exp) = scripted(|_| {}, overrides).await;
    let t = exp.now();
    let ids = sim.sim.with_farm(|f| {
        (0..3)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - 10 * MIN + i)))
            .collect()
    });
    (sim, exp, ids)
}

fn requests(m: &str, endpoint: &str, code: &str) -> f64 {
    value(m, &format!("nexrender_exporter_api_requests_total{{account=\"main\",code=\"{code}\",endpoint=\"{endpoint}\"}}")).unwrap_or(0.0)
}

#[tokio::test]
async fn a_429_with_retry_after_5_makes_the_exporter_wait_5_s_serving_the_last_numbers_with_up_0() {
    let (sim, _) = farm().await;
    let exp = exporter(&sim, &[]);
    let m = exp.polls("main", 1).await;
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::RateLimited {
            retry_after: RetryAfter::Seconds(5),
        },
        Schedule::Next { count: 1 },
    ));
    let m = exp
        .wait_for(|m| up(m) == Some(0.0), "up 0 after the 429")
        .await;
    let limited_at = Instant::now();
    let requests_then = sim.sim.requests();
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0), "last numbers kept");
    assert_eq!(poll_errors(&m, "rate_limited"), 1.0);
    // For the next 4 s (1 s of slack for the scrape) nothing reaches the API.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(limited_at.elapsed())).await;
    assert_eq!(
        sim.sim.requests(),
        requests_then,
        "no call before Retry-After"
    );
    let m = exp
        .wait_for(|m| up(m) == Some(1.0), "recovered after the wait")
        .await;
    assert!(limited_at.elapsed() >= Duration::from_secs(4));
    assert_eq!(requests(&m, "list_jobs", "429"), 1.0);
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));
}

#[tokio::test]
async fn a_429_with_an_http_date_is_honoured_too() {
    let (sim, _) = farm().await;
    let exp = exporter(&sim, &[]);
    exp.polls("main", 1).await;
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::RateLimited {
            retry_after: RetryAfter::HttpDate(4),
        },
        Schedule::Next { count: 1 },
    ));
    exp.wait_for(|m| up(m) == Some(0.0), "up 0").await;
    let t = Instant::now();
    let before = sim.sim.requests();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sim.sim.requests(), before, "no call before the date");
    exp.wait_for(|m| up(m) == Some(1.0), "recovered").await;
    assert!(t.elapsed() >= Duration::from_millis(2500));
}

#[tokio::test]
async fn two_503s_in_a_row_are_retried_within_the_poll_and_up_stays_1() {
    let (sim, mut exp, _) = in_process(&[]).await;
    exp.polls("main", 1).await;
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Status { code: 503 },
        Schedule::Next { count: 2 },
    ));
    exp.wait_for(|m| requests(m, "list_jobs", "503") == 2.0, "two 503s")
        .await;
    exp.wait_for(
        |m| {
            value(
                m,
                "nexrender_exporter_polls_total{account=\"main\",result=\"success\"}",
            ) >= Some(3.0)
        },
        "more polls",
    )
    .await;
    let m = exp.polls("main", 1).await;
    assert_eq!(
        poll_errors(&m, "server_error"),
        0.0,
        "the retries saved the poll"
    );
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_polls_total{account=\"main\",result=\"failure\"}"
        ),
        Some(0.0)
    );
    assert_eq!(up(&m), Some(1.0));
}

/// Installs `fault` for good and checks the poll fails for `reason` while
/// the job numbers stay, then recovers when the fault goes. Returns the
/// metrics and the log at the end.
async fn fails_with(
    fault: Fault,
    endpoint: Endpoint,
    reason: &str,
    code: &str,
    overrides: &[(&str, &str)],
) -> (String, String) {
    let (sim, mut exp, ids) = in_process(overrides).await;
    exp.polls("main", 1).await;
    sim.sim
        .add_fault(FaultRule::new(endpoint, fault, Schedule::Always));
    // Make detail look-ups necessary, so get_job faults are exercised too.
    set_status(&sim, ids[0], JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| poll_errors(m, reason) >= 2.0,
            &format!("two polls failing with {reason}"),
        )
        .await;
    assert_eq!(up(&m), Some(0.0));
    assert_eq!(
        jobs(&m, "main", "queued"),
        Some(3.0),
        "the last good numbers stay"
    );
    assert_eq!(completed(&m, "main", "finished"), Some(0.0));
    assert!(
        requests(
            &m,
            if endpoint == Endpoint::GetJob {
                "get_job"
            } else {
                "list_jobs"
            },
            code
        ) >= 2.0,
        "code {code}:\n{m}"
    );
    assert!(!m.contains("reason=\"\""));
    sim.sim.clear_faults();
    let m = exp.wait_for(|m| up(m) == Some(1.0), "recovery").await;
    assert_eq!(
        completed(&m, "main", "finished"),
        Some(1.0),
        "the job that finished meanwhile, once"
    );
    assert_eq!(jobs(&m, "main", "queued"), Some(2.0));
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    let log = exp.log();
    assert_eq!(
        log.matches("poll failed").count(),
        1,
        "one log line per kind of trouble:\n{log}"
    );
    (m, log)
}

#[tokio::test]
async fn persistent_500s_fail_the_poll_after_retries() {
    let _ = fails_with(
        Fault::Status { code: 500 },
        Endpoint::ListJobs,
        "server_error",
        "500",
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_502_on_detail_look_ups_fails_the_poll_without_counting_anything() {
    let _ = fails_with(
        Fault::Status { code: 502 },
        Endpoint::GetJob,
        "server_error",
        "502",
        &[],
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_a_decode_failure() {
    let _ = fails_with(
        Fault::MalformedJson,
        Endpoint::ListJobs,
        "decode",
        "decode",
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_truncated_body_is_a_transport_failure() {
    let _ = fails_with(
        Fault::Truncated,
        Endpoint::ListJobs,
        "transport",
        "error",
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_connection_reset_is_a_transport_failure() {
    let _ = fails_with(
        Fault::ConnectionReset,
        Endpoint::ListJobs,
        "transport",
        "error",
        &[],
    )
    .await;
}

#[tokio::test]
async fn an_api_that_does_not_answer_times_out() {
    let _ = fails_with(Fault::Hang, Endpoint::ListJobs, "timeout", "timeout", &[]).await;
}

#[tokio::test]
async fn a_slow_api_beyond_the_request_timeout_times_out() {
    let _ = fails_with(
        Fault::Slow {
            delay: Duration::from_secs(3),
        },
        Endpoint::GetJob,
        "timeout",
        "timeout",
        &[],
    )
    .await;
}

#[tokio::test]
async fn an_answer_larger_than_the_cap_is_refused_and_the_last_numbers_stay() {
    let (sim, mut exp, _) = in_process(&[("max_response_bytes", "2048")]).await;
    let m = exp.polls("main", 1).await;
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));
    // Thirty more jobs make the first page about 6 KiB.
    let t = exp.now();
    sim.sim.with_farm(|f| {
        for i in 0..30 {
            f.insert_scripted(ScriptedJob::queued(t - 5 * MIN + i));
        }
    });
    let m = exp
        .wait_for(|m| poll_errors(m, "too_large") >= 2.0, "too large")
        .await;
    assert_eq!(up(&m), Some(0.0));
    assert_eq!(jobs(&m, "main", "queued"), Some(3.0));
    assert!(requests(&m, "list_jobs", "too_large") >= 2.0);
}

#[tokio::test]
async fn a_poll_longer_than_poll_timeout_fails_with_reason_deadline() {
    let _ = fails_with(
        Fault::Slow {
            delay: Duration::from_millis(800),
        },
        Endpoint::ListJobs,
        "deadline",
        "200",
        &[("page_size", "1"), ("timeout", "1s")],
    )
    .await;
}

#[tokio::test]
async fn a_revoked_token_logs_once_retries_nothing_and_recovers_counting_exactly_once() {
    let (sim, mut exp, ids) = in_process(&[]).await;
    exp.polls("main", 1).await;
    sim.sim.add_fault(FaultRule::new(
        Endpoint::Any,
        Fault::Unauthorized,
        Schedule::Always,
    ));
    let m = exp
        .wait_for(
            |m| poll_errors(m, "unauthorized") >= 3.0,
            "three polls refused",
        )
        .await;
    assert_eq!(up(&m), Some(0.0));
    let failed = value(
        &m,
        "nexrender_exporter_polls_total{account=\"main\",result=\"failure\"}",
    )
    .unwrap();
    assert!(
        requests(&m, "list_jobs", "401") <= failed + 1.0,
        "no retries of a 401: {m}"
    );
    // While the token is revoked, two jobs end.
    set_status(&sim, ids[0], JobStatus::Finished);
    set_status(&sim, ids[1], JobStatus::Error);
    exp.wait_for(|m| poll_errors(m, "unauthorized") >= 5.0, "still refused")
        .await;
    sim.sim.clear_faults();
    let m = exp
        .wait_for(|m| up(m) == Some(1.0), "token works again")
        .await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    assert_eq!(completed(&m, "main", "error"), Some(1.0));
    let m = exp.polls("main", 2).await;
    assert_eq!(completed(&m, "main", "finished"), Some(1.0));
    let log = exp.log();
    assert_eq!(
        log.matches("refused the token").count(),
        1,
        "one log line when it starts:\n{log}"
    );
    assert!(log.contains("poll succeeded again"));
    assert!(!log.contains(TOKEN));
}

#[tokio::test]
async fn the_request_rate_limit_spaces_out_a_long_scan() {
    // Ten waiting jobs, one per page: eleven pages of the jobs not ended,
    // then eleven of the window, per poll. At two requests a second (a
    // burst of two, then one every half second), a poll cannot take less
    // than about 10 s.
    let sim = scripted_simulator().await;
    let t = now();
    sim.sim.with_farm(|f| {
        for i in 0..10 {
            f.insert_scripted(ScriptedJob::queued(t - 10 * MIN + i));
        }
    });
    let exp = exporter(
        &sim,
        &[
            ("page_size", "1"),
            ("max_requests_per_second", "2"),
            ("timeout", "1m"),
        ],
    );
    let m = exp.polls("main", 1).await;
    assert_eq!(jobs(&m, "main", "queued"), Some(10.0));
    assert_eq!(requests(&m, "list_jobs", "200"), 22.0);
    let took = value(
        &m,
        "nexrender_exporter_poll_duration_seconds{account=\"main\"}",
    )
    .unwrap();
    assert!(took >= 9.5, "the limiter spaced the requests: {took} s");
}

#[tokio::test]
async fn a_huge_or_far_future_retry_after_waits_only_max_rate_limit_wait_then_polling_resumes() {
    let (sim, _) = farm().await;
    // A short maximum so the test does not wait the default 10 minutes.
    let exp = exporter(
        &sim,
        &[("max_rate_limit_wait", "3s"), ("rate_limit_wait", "1s")],
    );
    exp.polls("main", 1).await;
    let answers = [
        RetryAfter::Seconds(u64::MAX),
        RetryAfter::Raw("Fri, 31 Dec 9999 23:59:59 GMT".into()),
    ];
    for (n, retry_after) in answers.into_iter().enumerate() {
        sim.sim.add_fault(FaultRule::new(
            Endpoint::ListJobs,
            Fault::RateLimited {
                retry_after: retry_after.clone(),
            },
            Schedule::Next { count: 1 },
        ));
        let m = exp
            .wait_for(
                |m| poll_errors(m, "rate_limited") == (n + 1) as f64,
                &format!("the 429 with {retry_after:?} seen"),
            )
            .await;
        let limited_at = Instant::now();
        assert_eq!(up(&m), Some(0.0), "{retry_after:?}");
        assert_eq!(jobs(&m, "main", "queued"), Some(3.0), "last numbers kept");
        // Polling resumes after the 3 s maximum, not after the header's wait
        // (which would be never, or a panic of the poller).
        let m = exp
            .wait_for(|m| up(m) == Some(1.0), "polling resumed after the clamp")
            .await;
        assert!(
            limited_at.elapsed() >= Duration::from_secs(2),
            "the maximum wait was honoured: {:?}",
            limited_at.elapsed()
        );
        assert_eq!(requests(&m, "list_jobs", "429"), (n + 1) as f64);
        sim.sim.clear_faults();
    }
    let log = exp.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn a_403_is_an_unauthorized_failure_without_retries() {
    let (m, log) = fails_with(
        Fault::Status { code: 403 },
        Endpoint::ListJobs,
        "unauthorized",
        "403",
        &[],
    )
    .await;
    let failed = value(
        &m,
        "nexrender_exporter_polls_total{account=\"main\",result=\"failure\"}",
    )
    .unwrap();
    assert!(
        requests(&m, "list_jobs", "403") <= failed,
        "no retries of a 403: {m}"
    );
    assert!(log.contains("refused the token"), "{log}");
}

#[tokio::test]
async fn an_api_that_answers_the_same_full_page_for_every_offset_fails_the_poll_as_not_paging() {
    // Two jobs a page, so this fixed answer is a full page at every offset.
    let page = serde_json::json!([
        {"id": ulid::Ulid::new().to_string(), "status": "queued"},
        {"id": ulid::Ulid::new().to_string(), "status": "queued"},
    ]);
    let (_, log) = fails_with(
        Fault::Answer { body: page },
        Endpoint::ListJobs,
        "decode",
        "200",
        &[("page_size", "2")],
    )
    .await;
    assert!(log.contains("the API is not paging"), "{log}");
}

fn skipped(m: &str, reason: &str) -> f64 {
    main_counter(m, "nexrender_exporter_jobs_skipped_total", "reason", reason)
}

#[tokio::test]
async fn unusable_jobs_in_a_page_are_skipped_and_counted_and_the_rest_is_used() {
    let (sim, mut exp, ids) = in_process(&[]).await;
    exp.polls("main", 1).await;
    let (a, b) = (ids[0].to_string(), ids[1].to_string());
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Answer {
            body: serde_json::json!([
                {"id": a, "status": "queued"},
                5,
                {"status": "queued"},
                {"id": "01JTRDF7HCR8QAHYW8GPCP4S9Y"},
                {"id": a, "status": "queued"},
                // Wrongly typed fields lose only themselves.
                {"id": b, "status": "queued", "progress": "lots", "templateId": 7, "stats": "none"},
            ]),
        },
        Schedule::Always,
    ));
    let m = exp
        .wait_for(
            |m| {
                [
                    "not_an_object",
                    "missing_id",
                    "missing_status",
                    "duplicate_id",
                ]
                .iter()
                .all(|r| skipped(m, r) >= 1.0)
            },
            "every kind of unusable job counted",
        )
        .await;
    assert_eq!(up(&m), Some(1.0), "the poll still succeeds:\n{m}");
    assert_eq!(
        jobs(&m, "main", "queued"),
        Some(3.0),
        "the usable jobs, and the third looked up by id"
    );
    assert_eq!(poll_errors(&m, "decode"), 0.0);
}

#[tokio::test]
async fn impossible_timestamps_and_durations_are_ignored_and_counted_and_the_job_still_counts() {
    // One job, so the only detail look-up is the one answered below.
    let (sim, mut exp, _) = in_process(&[]).await;
    let t = exp.now();
    let id = sim
        .sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - 10 * MIN)));
    exp.polls("main", 1).await;
    let future = nexrender_exporter::timefmt::format_millis(t + 24 * 60 * MIN);
    sim.sim.add_fault(FaultRule::new(
        Endpoint::GetJob,
        Fault::Answer {
            body: serde_json::json!({
                "id": id.to_string(),
                "status": "finished",
                "stats": {
                    "createdAt": future,
                    "startedAt": future,
                    "finishedAt": future,
                    "renderDuration": -5.0,
                },
            }),
        },
        Schedule::Always,
    ));
    set_status(&sim, id, JobStatus::Finished);
    let m = exp
        .wait_for(
            |m| completed(m, "main", "finished") == Some(1.0),
            "the job counted",
        )
        .await;
    for field in ["created_at", "started_at", "render_duration"] {
        assert_eq!(
            main_counter(
                &m,
                "nexrender_exporter_invalid_values_total",
                "field",
                field
            ),
            1.0,
            "{field}:\n{m}"
        );
    }
    assert_eq!(histogram(&m, "main", "render_duration", "count"), Some(0.0));
    assert_eq!(histogram(&m, "main", "queue_wait", "count"), Some(0.0));
    assert_eq!(up(&m), Some(1.0));
}

#[tokio::test]
async fn an_empty_page_is_the_end_of_the_list_and_the_next_poll_sees_the_rest() {
    let (sim, mut exp, _) = in_process(&[]).await;
    exp.polls("main", 1).await;
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Answer {
            body: serde_json::json!([]),
        },
        Schedule::Next { count: 1 },
    ));
    let t = exp.now();
    sim.sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - MIN)));
    let m = exp.polls("main", 2).await;
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_polls_total{account=\"main\",result=\"failure\"}"
        ),
        Some(0.0),
        "an empty page is an answer, not a failure"
    );
    assert_eq!(up(&m), Some(1.0));
    assert_eq!(jobs(&m, "main", "queued"), Some(4.0), "the rest seen");
}
