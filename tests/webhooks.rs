//! Webhook deliveries against the whole exporter (started in this process
//! as the binary starts it, its receiver on a real port): the simulator's jobs carry
//! webhooks pointing at the exporter's receiver, and every counter is held
//! against the simulator's truth.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use nexrender_simulator::model::{NewJob, Webhook};
use nexrender_simulator::server::RunningSimulator;
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{LifecycleConfig, ScriptedJob, SimulatorConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whs-4b1d-never-print-me";
const HEADER: &str = "X-Nexrender-Webhook-Secret";

fn hook(port: u16, account: &str, secret: &str) -> Webhook {
    Webhook {
        url: format!("http://127.0.0.1:{port}/webhooks/{account}"),
        method: "POST".into(),
        headers: [(HEADER.to_owned(), secret.to_owned())].into(),
        data: None,
        custom: false,
    }
}

/// An exporter polling `sim` as `main` (with `poll` settings), taking
/// deliveries on `port` with [`SECRET`]; `extra` is appended to the config.
fn webhook_exporter(
    sim: &RunningSimulator,
    port: u16,
    poll: &[(&str, &str)],
    extra: &str,
) -> Exporter {
    Exporter::start_with(webhook_config(sim, port, poll, extra), &[])
}

/// The configuration file of [`webhook_exporter`].
fn webhook_config(
    sim: &RunningSimulator,
    port: u16,
    poll: &[(&str, &str)],
    extra: &str,
) -> tempfile::NamedTempFile {
    let config = poll_config(sim, poll)
        + &format!(
            "    webhook_secret: {SECRET}\n{extra}webhook:\n  listen_address: 127.0.0.1:{port}\n"
        );
    yaml_file(&config)
}

fn deliveries(m: &str, result: &str) -> f64 {
    main_counter(
        m,
        "nexrender_exporter_webhook_deliveries_total",
        "result",
        result,
    )
}

fn completions(m: &str) -> BTreeMap<&'static str, f64> {
    TERMINAL
        .iter()
        .map(|s| (*s, completed(m, "main", s).unwrap_or(0.0)))
        .collect()
}

fn truth_since(
    before: &BTreeMap<String, HashSet<ulid::Ulid>>,
    sim: &RunningSimulator,
) -> BTreeMap<&'static str, f64> {
    ended_between(before, &terminal_ids(sim))
        .into_iter()
        .map(|(s, ids)| (s, ids.len() as f64))
        .collect()
}

/// Jobs that ended since `before` and had started: the queue waits due.
fn started_since(before: &BTreeMap<String, HashSet<ulid::Ulid>>, sim: &RunningSimulator) -> f64 {
    let ended: HashSet<ulid::Ulid> = ended_between(before, &terminal_ids(sim))
        .into_values()
        .flatten()
        .collect();
    sim.sim.with_farm(|f| {
        f.jobs()
            .iter()
            .filter(|j| ended.contains(&j.id) && j.started_at.is_some())
            .count() as f64
    })
}

/// POSTs `body` to the receiver with `headers`; the status and the text.
async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn scripted_with_hook(port: u16, sim: &RunningSimulator, created: i64) -> ulid::Ulid {
    sim.sim.with_farm(|f| {
        f.insert_scripted(ScriptedJob {
            webhook: Some(hook(port, "main", SECRET)),
            ..ScriptedJob::queued(created)
        })
    })
}

async fn quick_retries(edit: impl FnOnce(&mut SimulatorConfig)) -> RunningSimulator {
    scripted_simulator_with(|c| {
        c.tick = Duration::from_millis(20);
        c.webhook.backoff = Duration::from_millis(500);
        edit(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_completion_is_on_metrics_long_before_the_next_poll_and_the_poll_agrees() {
    let port = free_port();
    let sim = quick_retries(|_| {}).await;
    // Waiting before the baseline: the tracker knows it, no look-up needed.
    let known = scripted_with_hook(port, &sim, now() - 60_000);
    let exp = webhook_exporter(&sim, port, &[("interval", "60s")], "");
    exp.first_poll("main").await;
    let before = terminal_ids(&sim);
    // Created after the baseline: no poll has seen them when they end.
    let unseen: Vec<_> = (0..3)
        .map(|_| scripted_with_hook(port, &sim, now()))
        .collect();
    set_status(&sim, known, JobStatus::Rendering);
    for id in [known, unseen[0]] {
        set_status(&sim, id, JobStatus::Finished);
    }
    set_status(&sim, unseen[1], JobStatus::Error);
    set_status(&sim, unseen[2], JobStatus::ManuallyCancelled);

    let m = exp
        .wait_for(
            |m| deliveries(m, "accepted") >= 4.0,
            "four deliveries counted",
        )
        .await;
    assert_eq!(
        main_counter(&m, "nexrender_exporter_polls_total", "result", "success"),
        1.0,
        "counted by the deliveries alone, before any second poll"
    );
    assert_eq!(completions(&m), truth_since(&before, &sim));
    assert_eq!(histogram(&m, "main", "render_duration", "count"), Some(2.0));
    assert_eq!(
        histogram(&m, "main", "queue_wait", "count"),
        Some(started_since(&before, &sim))
    );
    // The gauges moved with them (the waiting job left `queued`).
    assert_eq!(jobs(&m, "main", "finished"), Some(2.0));
    assert_eq!(jobs(&m, "main", "error"), Some(1.0));
    assert_eq!(jobs(&m, "main", "queued"), Some(0.0));
    assert_eq!(deliveries(&m, "duplicate"), 0.0);
    assert!(
        value(
            &m,
            "nexrender_exporter_webhook_last_delivery_timestamp_seconds{account=\"main\"}"
        )
        .is_some_and(|t| t * 1000.0 >= (now() - 60_000) as f64),
        "{m}"
    );

    // A delivery for a job the API does not have: looked up, 404, ignored.
    let forged = ulid::Ulid::new().to_string();
    let body = format!(r#"{{"id":"{forged}","status":"finished","stats":{{"renderDuration":5}}}}"#);
    let (code, _) = post(port, "/webhooks/main", &[(HEADER, SECRET)], &body).await;
    assert_eq!(code, 202);
    let m = exp
        .wait_for(
            |m| deliveries(m, "unknown_job") >= 1.0,
            "the forged job judged",
        )
        .await;
    assert_eq!(completions(&m), truth_since(&before, &sim));

    // The next poll sees the same ends and counts none of them again.
    poll_every_second(&exp);
    let m = exp.polls("main", 2).await;
    assert_eq!(completions(&m), truth_since(&before, &sim));
    assert_eq!(histogram(&m, "main", "render_duration", "count"), Some(2.0));
    for status in DOCUMENTED {
        assert_eq!(
            jobs(&m, "main", status),
            in_view(&sim, 3_600_000).get(status).copied(),
            "{status}"
        );
    }
    let log = exp.log();
    assert!(!log.contains(SECRET) && !log.contains(TOKEN), "{log}");
}

/// Switches the running exporter's polls to every second (SIGHUP), so the
/// next poll comes a second later instead of a minute.
fn poll_every_second(exp: &Exporter) {
    exp.reconfigure("interval: 60s", "interval: 1s");
}

/// A farm of 30 jobs created after the baseline, each with a webhook,
/// delivered as `edit` says, the exporter polling every `poll_every`.
/// Once every delivery is made (by the simulator's log) and judged (by
/// the exporter's counters), `check` sees the metrics; then polls every
/// second must bring every counter equal to the truth, counting nothing
/// twice.
async fn farm_of_thirty(
    edit: impl FnOnce(&mut SimulatorConfig),
    poll_every: &str,
    check: impl FnOnce(&str, &RunningSimulator, &BTreeMap<String, HashSet<ulid::Ulid>>),
) -> String {
    let port = free_port();
    let mut copies = 1;
    let sim = quick_retries(|c| {
        c.lifecycle = LifecycleConfig {
            arrivals_per_minute: 0.0,
            pickup_delay: Duration::from_millis(100),
            render_median: Duration::from_millis(400),
            render_spread: 0.5,
            error_ratio: 0.2,
            cancel_ratio: 0.1,
            cancel_within: Duration::from_secs(1),
            nested_ratio: 0.0,
            workers: 10,
            ..LifecycleConfig::default()
        };
        edit(c);
        copies = c.webhook.copies.max(1) as usize;
    })
    .await;
    let exp = webhook_exporter(&sim, port, &[("interval", poll_every)], "");
    exp.first_poll("main").await;
    let before = terminal_ids(&sim);
    sim.sim.with_farm(|f| {
        for _ in 0..30 {
            f.create_job(NewJob {
                webhook: Some(hook(port, "main", SECRET)),
                total_assets: 1,
                ..NewJob::default()
            });
        }
    });
    // Every job's deliveries made: lost on purpose, or taken `copies` times.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let log = sim.sim.webhook_log();
        let mut per_job: BTreeMap<&str, (bool, usize)> = BTreeMap::new();
        for d in &log {
            let e = per_job.entry(d.job_id.as_str()).or_default();
            e.0 |= d.attempt == 0;
            e.1 += usize::from(d.delivered);
        }
        let settled =
            per_job.len() == 30 && per_job.values().all(|(lost, n)| *lost || *n == copies);
        if settled {
            break log.iter().filter(|d| d.delivered).count() as f64;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deliveries never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // ... and each taken delivery judged.
    let judged = |m: &str| {
        [
            "accepted",
            "duplicate",
            "not_counted",
            "unknown_job",
            "not_terminal",
        ]
        .iter()
        .map(|r| deliveries(m, r))
        .sum::<f64>()
    };
    let m = exp
        .wait_for(|m| judged(m) >= delivered, "every delivery judged")
        .await;
    assert_eq!(judged(&m), delivered, "{m}");
    check(&m, &sim, &before);
    if poll_every != "1s" {
        exp.reconfigure(&format!("interval: {poll_every}"), "interval: 1s");
    }
    let m = exp.polls("main", 2).await;
    assert_eq!(completions(&m), truth_since(&before, &sim), "{m}");
    let finished = truth_since(&before, &sim)["finished"];
    assert_eq!(
        histogram(&m, "main", "render_duration", "count"),
        Some(finished)
    );
    assert_eq!(
        histogram(&m, "main", "queue_wait", "count"),
        Some(started_since(&before, &sim))
    );
    m
}

/// The truth less the jobs whose deliveries were all lost: what deliveries
/// alone can count.
fn delivered_truth(
    sim: &RunningSimulator,
    before: &BTreeMap<String, HashSet<ulid::Ulid>>,
) -> BTreeMap<&'static str, f64> {
    let lost: HashSet<String> = sim
        .sim
        .webhook_log()
        .into_iter()
        .filter(|d| d.attempt == 0)
        .map(|d| d.job_id)
        .collect();
    ended_between(before, &terminal_ids(sim))
        .into_iter()
        .map(|(s, ids)| {
            let n = ids
                .iter()
                .filter(|id| !lost.contains(&id.to_string()))
                .count();
            (s, n as f64)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_lost_deliveries_leave_every_counter_equal_to_the_truth() {
    // Each delivery sent twice; every third never sent. No poll runs while
    // they arrive: deliveries alone count the jobs they carry, once each;
    // the polls after find the lost ones.
    let m = farm_of_thirty(
        |c| {
            c.webhook.copies = 2;
            c.webhook.lose_one_in = 3;
        },
        "60s",
        |m, sim, before| {
            assert_eq!(completions(m), delivered_truth(sim, before), "{m}");
            assert_eq!(deliveries(m, "accepted"), 20.0, "{m}");
            assert_eq!(deliveries(m, "duplicate"), 20.0, "{m}");
        },
    )
    .await;
    assert_eq!(deliveries(&m, "accepted"), 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_with_only_what_the_docs_show_still_give_every_queue_wait() {
    // The vendor's example payload has no createdAt or startedAt: each
    // delivery is confirmed by a look-up, whose answer has them. No poll
    // runs while they arrive: every completion and queue wait comes from
    // the deliveries.
    farm_of_thirty(
        |c| c.webhook.payload = nexrender_simulator::WebhookPayload::Documented,
        "60s",
        |m, sim, before| {
            assert_eq!(completions(m), truth_since(before, sim), "{m}");
            assert_eq!(deliveries(m, "accepted"), 30.0, "{m}");
            assert_eq!(
                histogram(m, "main", "queue_wait", "count"),
                Some(started_since(before, sim)),
                "{m}"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_that_come_after_the_poll_counted_the_job_are_duplicates() {
    // Every delivery 3 s late, polls every second: the polls count first.
    let m = farm_of_thirty(
        |c| c.webhook.delay = Duration::from_secs(3),
        "1s",
        |_, _, _| {},
    )
    .await;
    assert!(deliveries(&m, "duplicate") >= 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_delivery_and_poll_counts_nothing_twice() {
    let port = free_port();
    let sim = quick_retries(|_| {}).await;
    let first = webhook_exporter(&sim, port, &[("interval", "60s")], "");
    first.first_poll("main").await;
    let counted = scripted_with_hook(port, &sim, now());
    let missed = scripted_with_hook(port, &sim, now());
    set_status(&sim, counted, JobStatus::Finished);
    first
        .wait_for(|m| deliveries(m, "accepted") >= 1.0, "the first delivery")
        .await;
    first.stop();
    // Ends while no exporter listens: the API retries (0.5 s, 1 s, 2 s).
    set_status(&sim, missed, JobStatus::Finished);
    let refused = || {
        sim.sim
            .webhook_log()
            .iter()
            .any(|d| d.job_id == missed.to_string() && !d.delivered)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !refused() {
        assert!(std::time::Instant::now() < deadline, "no refused delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = webhook_exporter(&sim, port, &[("interval", "60s")], "");
    let m = second.first_poll("main").await;
    let before = terminal_ids(&sim);
    assert!(before["finished"].contains(&missed));
    let retried = second
        .wait_for(
            |m| deliveries(m, "duplicate") + deliveries(m, "not_counted") >= 1.0,
            "the retried delivery of the job that ended before the baseline",
        )
        .await;
    assert_eq!(completions(&retried), completions(&m));
    assert!(sim
        .sim
        .webhook_log()
        .iter()
        .any(|d| d.job_id == missed.to_string() && d.delivered && d.attempt > 1));
    // One that ends now is counted once, by its delivery.
    let fresh = scripted_with_hook(port, &sim, now());
    set_status(&sim, fresh, JobStatus::Error);
    let m = second
        .wait_for(|m| deliveries(m, "accepted") >= 1.0, "the new delivery")
        .await;
    assert_eq!(completions(&m), truth_since(&before, &sim));
    assert_eq!(completed(&m, "main", "finished"), Some(0.0));
}

/// What is sent, how (headers, body), and the answer and result expected.
type BadCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_get_a_clear_status_are_counted_by_reason_and_leak_nothing() {
    let port = free_port();
    let sim = scripted_simulator().await;
    let other_sim = scripted_simulator().await;
    let ended = sim
        .sim
        .with_farm(|f| f.insert_scripted(finished(now() - 60_000, 1000, 5000)));
    let other = format!(
        "{}    webhook_secret: other-secret-0001\n",
        account_yaml("other", &other_sim)
    );
    // The receiver's own settings: a small body limit.
    let config = poll_config(&sim, &[("interval", "60s")])
        + &format!("    webhook_secret: {SECRET}\n{other}webhook:\n  listen_address: 127.0.0.1:{port}\n  max_body_bytes: 2048\n");
    let exp = Exporter::start_with(yaml_file(&config), &[]);
    let before = exp.first_poll("main").await;
    let job = format!(r#"{{"id":"{ended}","status":"finished","stats":{{"renderDuration":5}}}}"#);
    let auth = [(HEADER, SECRET)];
    let cases: Vec<BadCase> = vec![
        ("no secret", vec![], job.clone(), 401, "unauthorized"),
        (
            "a wrong secret",
            vec![(HEADER, "guess")],
            job.clone(),
            401,
            "unauthorized",
        ),
        (
            "another account's secret",
            vec![(HEADER, "other-secret-0001")],
            job.clone(),
            401,
            "unauthorized",
        ),
        (
            "not JSON",
            auth.to_vec(),
            "{\"id\":".into(),
            400,
            "bad_request",
        ),
        (
            "no id",
            auth.to_vec(),
            r#"{"status":"finished"}"#.into(),
            400,
            "bad_request",
        ),
        (
            "a custom payload without the job",
            auth.to_vec(),
            r#"{"order":7,"customer":"acme"}"#.into(),
            400,
            "bad_request",
        ),
        (
            "a status that is not terminal",
            auth.to_vec(),
            job.replace("finished", "render:dorender"),
            200,
            "not_terminal",
        ),
        (
            "too large",
            auth.to_vec(),
            format!(r#"{{"id":"x","pad":"{}"}}"#, "a".repeat(4000)),
            413,
            "too_large",
        ),
    ];
    for (what, headers, body, code, result) in &cases {
        let was = deliveries(&exp.metrics().await, result);
        let (got, text) = post(port, "/webhooks/main", headers, body).await;
        assert_eq!(got, *code, "{what}: {text}");
        assert!(!text.contains(SECRET), "{what}");
        assert_eq!(
            deliveries(&exp.metrics().await, result),
            was + 1.0,
            "{what}"
        );
    }
    // A body too large with no length said up front (chunked).
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let chunk = "b".repeat(1500);
    let raw = format!(
        "POST /webhooks/main HTTP/1.1\r\nHost: x\r\n{HEADER}: {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 256];
    let n = s.read(&mut answer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    // Paths and methods that lead nowhere.
    // An account that takes no deliveries answers as a wrong secret does:
    // the receiver does not tell which names exist.
    let (code, _) = post(port, "/webhooks/nobody", &auth, &job).await;
    assert_eq!(code, 401);
    let r = reqwest::get(format!("http://127.0.0.1:{port}/webhooks/main"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let (code, _) = post(port, "/metrics", &auth, &job).await;
    assert_eq!(code, 404, "the receiver serves no metrics");
    // One of main's jobs delivered to another account: its API does not
    // know it, so neither account's numbers move.
    let (code, _) = post(
        port,
        "/webhooks/other",
        &[(HEADER, "other-secret-0001")],
        &job.replace(&ended.to_string(), &ulid::Ulid::new().to_string()),
    )
    .await;
    assert_eq!(code, 202);

    let m = exp
        .wait_for(
            |m| {
                value(m, "nexrender_exporter_webhook_deliveries_total{account=\"other\",result=\"unknown_job\"}") == Some(1.0)
            },
            "the other account's delivery judged",
        )
        .await;
    assert_eq!(deliveries(&m, "unauthorized"), 3.0);
    assert_eq!(deliveries(&m, "bad_request"), 3.0);
    assert_eq!(deliveries(&m, "not_terminal"), 1.0);
    assert_eq!(deliveries(&m, "too_large"), 2.0);
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_webhook_requests_unroutable_total{reason=\"not_found\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_webhook_requests_unroutable_total{reason=\"method_not_allowed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(completions(&m), completions(&before));
    assert_eq!(up(&m), Some(1.0));
    let log = exp.log();
    for secret in [SECRET, "other-secret-0001", TOKEN] {
        assert!(!log.contains(secret), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_so_the_api_retries_and_nothing_accepted_is_lost() {
    let port = free_port();
    // The first poll's listing takes 4 s: the poller is busy, the queue of
    // one fills, the next delivery is told to come back.
    let sim = quick_retries(|c| {
        c.faults = vec![serde_yaml_rule()];
    })
    .await;
    let a = sim
        .sim
        .with_farm(|f| f.insert_scripted(finished(now() - 60_000, 1000, 5000)));
    let b = sim
        .sim
        .with_farm(|f| f.insert_scripted(finished(now() - 50_000, 1000, 5000)));
    let config = poll_config(&sim, &[("interval", "60s"), ("request_timeout", "10s")])
        + &format!("    webhook_secret: {SECRET}\nwebhook:\n  listen_address: 127.0.0.1:{port}\n  queue_capacity: 1\n");
    let exp = Exporter::start_with(yaml_file(&config), &[]);
    exp.wait_for(|m| up(m).is_some(), "the exporter up").await;
    let body = |id: ulid::Ulid| format!(r#"{{"id":"{id}","status":"finished"}}"#);
    let (first, _) = post(port, "/webhooks/main", &[(HEADER, SECRET)], &body(a)).await;
    let (second, text) = post(port, "/webhooks/main", &[(HEADER, SECRET)], &body(b)).await;
    assert_eq!((first, second), (202, 503), "{text}");
    // The accepted one is judged once the poll ends (it ended before the
    // baseline: a duplicate of what the baseline saw).
    let m = exp
        .wait_for(
            |m| deliveries(m, "duplicate") + deliveries(m, "not_counted") >= 1.0,
            "the queued delivery judged",
        )
        .await;
    assert_eq!(deliveries(&m, "queue_full"), 1.0);
    let (again, _) = post(port, "/webhooks/main", &[(HEADER, SECRET)], &body(b)).await;
    assert_eq!(again, 202, "the retry is taken");
    assert_eq!(completed_sum(&m), 0.0);
}

fn serde_yaml_rule() -> nexrender_simulator::faults::FaultRule {
    serde_json::from_value(serde_json::json!({
        "endpoint": "list_jobs",
        "fault": {"kind": "slow", "delay": "4s"},
        "when": {"type": "next", "count": 1}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_webhook_secret_takes_effect_on_sighup_and_the_numbers_stay() {
    let port = free_port();
    let sim = quick_retries(|_| {}).await;
    let exp = webhook_exporter(&sim, port, &[("interval", "60s")], "");
    exp.first_poll("main").await;
    let before = terminal_ids(&sim);
    let job = scripted_with_hook(port, &sim, now());
    set_status(&sim, job, JobStatus::Finished);
    exp.wait_for(|m| deliveries(m, "accepted") >= 1.0, "the delivery")
        .await;
    std::fs::write(
        exp.config.path(),
        std::fs::read_to_string(exp.config.path())
            .unwrap()
            .replace(SECRET, "rotated-secret-0002"),
    )
    .unwrap();
    exp.signal("HUP");
    let body = r#"{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","status":"queued"}"#;
    refused_within_10_s(port, SECRET, body).await;
    // PUT works as POST does.
    let (code, _) = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/webhooks/main"))
        .header(HEADER, "rotated-secret-0002")
        .body(body)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 200);
    let m = exp.metrics().await;
    assert_eq!(completions(&m), truth_since(&before, &sim), "numbers kept");
    assert_eq!(deliveries(&m, "accepted"), 1.0, "counters kept");
    assert_eq!(
        main_counter(&m, "nexrender_exporter_polls_total", "result", "success"),
        1.0,
        "no fresh baseline"
    );
    assert!(exp.log().contains("new webhook secret for main"));
}

/// The receiver has its own connection cap: two silent clients fill it
/// (a third delivery waits), while scrapes on the metrics listener go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receivers_own_connection_cap_leaves_metrics_answering() {
    let port = free_port();
    let sim = scripted_simulator().await;
    let config = poll_config(&sim, &[])
        + &format!(
            "    webhook_secret: {SECRET}\nwebhook:\n  listen_address: 127.0.0.1:{port}\n  max_connections: 2\n"
        );
    let exp = Exporter::start_with(yaml_file(&config), &[]);
    exp.first_poll("main").await;
    let silent = silent_clients(port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = r#"{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","status":"queued"}"#;
    let waited = tokio::time::timeout(
        Duration::from_millis(500),
        post(port, "/webhooks/main", &[(HEADER, SECRET)], body),
    )
    .await;
    assert!(waited.is_err(), "two connections are the receiver's cap");
    let (code, _) = exp.get("/metrics").await.unwrap();
    assert_eq!(code, 200, "the metrics listener is not affected");
    drop(silent);
    let (code, _) = post(port, "/webhooks/main", &[(HEADER, SECRET)], body).await;
    assert_eq!(code, 200, "a slot freed");
}

/// Two connections to the receiver that send nothing.
async fn silent_clients(port: u16) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::new();
    for _ in 0..2 {
        v.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    v
}

/// Waits until the receiver refuses `secret` (a reload took it away).
async fn refused_within_10_s(port: u16, secret: &str, body: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while post(port, "/webhooks/main", &[(HEADER, secret)], body)
        .await
        .0
        != 401
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the old secret still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rotating the secret without losing the jobs made with the old one:
/// the secret file gets the new secret above the old, a reload takes it.
/// A job created before the rotation (its webhook still sends the old
/// secret) is counted, and so is one created after with the new; the old
/// secret's use is counted, so one knows when it can go; a third secret
/// is refused. Then the old line is removed and the old secret refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_jobs_made_with_the_previous_one_counted() {
    let port = free_port();
    let sim = quick_retries(|_| {}).await;
    let secrets = yaml_file(&format!("{SECRET}\n"));
    let config = poll_config(&sim, &[("interval", "60s")])
        + &format!(
            "    webhook_secret_file: {}\nwebhook:\n  listen_address: 127.0.0.1:{port}\n",
            secrets.path().display()
        );
    let exp = Exporter::start_with(yaml_file(&config), &[]);
    exp.first_poll("main").await;
    let before = terminal_ids(&sim);
    let old_job = scripted_with_hook(port, &sim, now());
    let previous = |m: &str| {
        value(
            m,
            "nexrender_exporter_webhook_previous_secret_deliveries_total{account=\"main\"}",
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(previous(&exp.metrics().await), 0.0, "zero-filled");
    // Rotate: the new secret first, the old one after.
    std::fs::write(secrets.path(), format!("rotated-0002\n{SECRET}\n")).unwrap();
    exp.signal("HUP");
    exp.wait_for(
        |_| exp.log().contains("new webhook secret for main"),
        "the reload",
    )
    .await;
    let new_job = sim.sim.with_farm(|f| {
        f.insert_scripted(ScriptedJob {
            webhook: Some(hook(port, "main", "rotated-0002")),
            ..ScriptedJob::queued(now())
        })
    });
    set_status(&sim, old_job, JobStatus::Finished);
    set_status(&sim, new_job, JobStatus::Error);
    let m = exp
        .wait_for(|m| deliveries(m, "accepted") >= 2.0, "both deliveries")
        .await;
    assert_eq!(completions(&m), truth_since(&before, &sim));
    assert_eq!(
        previous(&m),
        1.0,
        "the old job's delivery, with the old secret"
    );
    let body = r#"{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","status":"queued"}"#;
    let (code, _) = post(
        port,
        "/webhooks/main",
        &[(HEADER, "not-a-secret-of-ours")],
        body,
    )
    .await;
    assert_eq!(code, 401);
    // The rotation done: the old line goes, and the old secret with it.
    std::fs::write(secrets.path(), "rotated-0002\n").unwrap();
    exp.signal("HUP");
    refused_within_10_s(port, SECRET, body).await;
    let log = exp.log();
    assert!(
        !log.contains(SECRET) && !log.contains("rotated-0002"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_arriving_gets_408_after_10_s() {
    let port = free_port();
    let sim = scripted_simulator().await;
    let exp = webhook_exporter(&sim, port, &[("interval", "60s")], "");
    exp.first_poll("main").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!("POST /webhooks/main HTTP/1.1\r\nHost: x\r\n{HEADER}: {SECRET}\r\nContent-Length: 100\r\n\r\n{{\"id\":");
    s.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 256];
    let n = s.read(&mut answer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(started.elapsed() >= Duration::from_secs(9));
    assert_eq!(deliveries(&exp.metrics().await, "bad_request"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_api_says_429_deliveries_are_left_to_the_polls_and_sigterm_is_prompt() {
    use nexrender_simulator::faults::{Endpoint, Fault, FaultRule, RetryAfter, Schedule};
    let port = free_port();
    let sim = quick_retries(|_| {}).await;
    let exp = webhook_exporter(&sim, port, &[("interval", "60s")], "");
    exp.first_poll("main").await;
    // The first look-up gets 429 with Retry-After: 600: the account waits
    // ten minutes before its next request.
    sim.sim.add_fault(FaultRule::new(
        Endpoint::GetJob,
        Fault::RateLimited {
            retry_after: RetryAfter::Seconds(600),
        },
        Schedule::Next { count: 1 },
    ));
    let first = scripted_with_hook(port, &sim, now());
    set_status(&sim, first, JobStatus::Finished);
    exp.wait_for(
        |m| deliveries(m, "not_counted") >= 1.0,
        "the first delivery left to the polls",
    )
    .await;
    let requests = sim.sim.requests();
    let second = scripted_with_hook(port, &sim, now());
    set_status(&sim, second, JobStatus::Error);
    let m = exp
        .wait_for(
            |m| deliveries(m, "not_counted") >= 2.0,
            "the second, without a request",
        )
        .await;
    assert_eq!(
        sim.sim.requests(),
        requests,
        "no look-up while told to wait"
    );
    assert_eq!(completed_sum(&m), 0.0);
    let (status, took, log) = exp.stop();
    assert!(status.success(), "{log}");
    assert!(took < Duration::from_secs(6), "stopped in {took:?}");
}

// ---------------------------------------------------------------------------
// Benchmarks (docs/performance.md, "Webhooks"), not run by the test command:
//   cargo test --release --test webhooks -- --ignored --nocapture --test-threads 1

/// The sum of `nexrender_jobs_completed_total` over statuses for `main`.
fn completed_sum(m: &str) -> f64 {
    completions(m).values().sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Ends `n` jobs created after the baseline, one every ~`every` (jittered),
/// with or without webhooks, while scraping `/metrics` every 10 ms; returns
/// for each k the time from the k-th end to the k-th completion on /metrics.
async fn delivery_latencies(webhooks: bool, n: usize, every: Duration) -> Vec<f64> {
    use std::time::Instant;
    let port = free_port();
    let sim = quick_retries(|c| c.tick = Duration::from_millis(5)).await;
    // The binary, as the figures in docs/performance.md were taken.
    let config = webhook_config(&sim, port, &[("interval", "30s")], "");
    let exp = Exporter::binary_with(config, &[]);
    exp.first_poll("main").await;
    let ids: Vec<_> = (0..n)
        .map(|_| {
            sim.sim.with_farm(|f| {
                f.insert_scripted(ScriptedJob {
                    webhook: webhooks.then(|| hook(port, "main", SECRET)),
                    ..ScriptedJob::queued(now())
                })
            })
        })
        .collect();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let watcher = {
        let seen = seen.clone();
        let url = exp.url("/metrics");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut count = 0usize;
            while count < n {
                if let Ok(r) = client.get(&url).send().await {
                    let total = completed_sum(&r.text().await.unwrap_or_default()) as usize;
                    let at = Instant::now();
                    while count < total.min(n) {
                        seen.lock().unwrap().push(at);
                        count += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut ended = Vec::with_capacity(n);
    for (k, id) in ids.iter().enumerate() {
        // A jittered pace: 0.5x to 1.5x `every`, deterministic.
        let jitter = 0.5 + ((k * 7919) % 1000) as f64 / 1000.0;
        tokio::time::sleep(every.mul_f64(jitter)).await;
        set_status(&sim, *id, JobStatus::Finished);
        ended.push(Instant::now());
    }
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("every completion seen")
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let mut latencies: Vec<f64> = seen
        .iter()
        .zip(&ended)
        .map(|(s, e)| s.saturating_duration_since(*e).as_secs_f64())
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn bench_time_from_a_jobs_end_to_metrics_with_and_without_webhooks() {
    for webhooks in [true, false] {
        let l = delivery_latencies(webhooks, 150, Duration::from_millis(500)).await;
        println!(
            "webhooks {}: {} completions, poll.interval 30s: median {:.3} s, p90 {:.3} s, p99 {:.3} s, max {:.3} s",
            if webhooks { "on " } else { "off" },
            l.len(),
            percentile(&l, 0.5),
            percentile(&l, 0.9),
            percentile(&l, 0.99),
            l[l.len() - 1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn bench_deliveries_per_second_the_receiver_takes_on_one_core() {
    use std::time::Instant;
    const JOBS: usize = 100_000;
    const CLIENTS: usize = 32;
    let port = free_port();
    let sim = scripted_simulator().await;
    // Rendering before the exporter starts, created over the last day: the
    // baseline knows them. Each delivery is confirmed by the API (batches of
    // recent jobs as full pages), so the API's cost is reported too.
    let ids: Vec<String> = sim.sim.with_farm(|f| {
        (0..JOBS)
            .map(|k| {
                let created = now() - 86_400_000 + k as i64 * (86_400_000 / JOBS as i64);
                f.insert_scripted(ScriptedJob {
                    status: JobStatus::Rendering,
                    started_at: Some(created + 1000),
                    ..ScriptedJob::queued(created)
                })
                .to_string()
            })
            .collect()
    });
    // The API's rate limit raised from its default of 10 requests a second:
    // the receiver is measured, not the limit. The binary, pinned to a core.
    let config = webhook_config(
        &sim,
        port,
        &[
            ("interval", "300s"),
            ("page_size", "1000"),
            ("max_requests_per_second", "10000"),
        ],
        "",
    );
    let exp = Exporter::binary_with(config, &[]);
    exp.first_poll("main").await;
    // Then they all end (the API's look-ups say so), and are delivered.
    sim.sim.with_farm(|f| {
        let at = f.now();
        for id in ids.iter() {
            f.script_status(id.parse().unwrap(), JobStatus::Finished, at)
                .unwrap();
        }
    });
    // The exporter on core 0; this process (load and simulator) on core 1.
    for (pid, core) in [(exp.pid(), "0"), (std::process::id(), "1")] {
        let out = std::process::Command::new("taskset")
            .args(["-a", "-pc", core, &pid.to_string()])
            .output()
            .expect("taskset (util-linux)");
        assert!(out.status.success(), "taskset: {out:?}");
    }
    let ids = std::sync::Arc::new(ids);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests_before = sim.sim.requests();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (ids, next, refused) = (ids.clone(), next.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{port}/webhooks/main");
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(k) else { return };
                let body = format!(
                    r#"{{"id":"{id}","status":"finished","stats":{{"renderDuration":12.5}}}}"#
                );
                loop {
                    let r = client
                        .post(&url)
                        .header(HEADER, SECRET)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    if r.status().as_u16() == 202 {
                        break;
                    }
                    // 503: the queue is full; come back, as the API would.
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let accepted_in = started.elapsed();
    exp.wait_for(
        |m| completed_sum(m) >= JOBS as f64,
        "every delivery counted",
    )
    .await;
    let counted_in = started.elapsed();
    let api_requests = sim.sim.requests() - requests_before;
    println!(
        "receiver on one core: {JOBS} deliveries from {CLIENTS} connections accepted in {:.2} s ({:.0}/s), all counted after {:.2} s ({:.0}/s); {} answered 503 and retried; {api_requests} API requests to confirm them ({:.1} deliveries a request)",
        accepted_in.as_secs_f64(),
        JOBS as f64 / accepted_in.as_secs_f64(),
        counted_in.as_secs_f64(),
        JOBS as f64 / counted_in.as_secs_f64(),
        refused.load(std::sync::atomic::Ordering::Relaxed),
        JOBS as f64 / api_requests.max(1) as f64
    );
}
