//! Alerts proven end to end: the exporter polls the simulator, Debian's
//! Prometheus evaluates the shipped rules with the compose stack's
//! prometheus.yml, and Debian's Alertmanager, with the shipped
//! alertmanager.yml, delivers to a webhook here. An error storm and a stuck
//! queue must arrive there as NexrenderJobErrorRatioHigh and
//! NexrenderQueueStale, with their labels, summary and runbook URL (and the
//! stuck job's id), and be resolved once the trouble ends.
//!
//! Then the error budget: the storm burns it fast enough to page
//! (NexrenderErrorBudgetBurnFast). Then an outage while a queue is stuck:
//! the queue alert resolves as the numbers go stale, the pipeline alert
//! (NexrenderApiPollFailing) arrives, and no farm alert fires meanwhile.
//!
//! The rules' windows and `for:` durations (30 minutes, 10 minutes...) are
//! too long for a test: the test runs a copy of each file with every
//! duration divided by [`SCALE`], made mechanically from the shipped file:
//! ranges, `for:`, and durations the expressions write in seconds as
//! `N * 60` or `N * 3600`. The hosts are this machine's and the receiver
//! gets the test's webhook. Thresholds and expressions are otherwise the
//! shipped ones.
//!
//! Needs `prometheus` and `prometheus-alertmanager` (Debian's packages;
//! scripts/test-all.sh installs them). Without them the test says so and
//! passes, unless REQUIRE_PROMETHEUS / REQUIRE_ALERTMANAGER are set, as in CI.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexrender_simulator::faults::{Endpoint, Fault, FaultRule, Schedule};
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::ScriptedJob;
use serde_json::{json, Value};
use support::services::*;
use support::*;

/// Every duration of the shipped files is divided by this: minutes become seconds.
const SCALE: u32 = 60;

/// `text` (a Prometheus duration such as `30m`, `1d`, `4h`) divided by SCALE,
/// in milliseconds; None if it is not a duration.
fn scaled(text: &str) -> Option<String> {
    let d = humantime::parse_duration(text).ok()?;
    Some(format!("{}ms", (d / SCALE).as_millis()))
}

/// The range of each `[...]` in a PromQL expression, scaled.
fn scale_ranges(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let close = open + rest[open..].find(']').expect("unclosed [");
        let range = &rest[open + 1..close];
        out += &rest[..=open];
        out += &scaled(range).unwrap_or_else(|| panic!("not a range: [{range}]"));
        rest = &rest[close..];
    }
    out + rest
}

/// Durations an expression writes in seconds (`30 * 60`, `3 * 3600`: the
/// rules' way of writing minutes and hours), scaled.
fn scale_seconds(expr: &str) -> String {
    let re = regex::Regex::new(r"\b(\d+) \* (60|3600)\b").unwrap();
    re.replace_all(expr, |c: &regex::Captures| {
        let seconds: u64 = c[1].parse::<u64>().unwrap() * c[2].parse::<u64>().unwrap();
        format!("{}", seconds as f64 / f64::from(SCALE))
    })
    .into_owned()
}

/// deploy/prometheus/nexrender.rules.yml with every range, `for:` and
/// duration in seconds scaled (JSON, which Prometheus reads as YAML).
fn scaled_rules() -> String {
    let mut v =
        yaml_to_json(&std::fs::read_to_string("deploy/prometheus/nexrender.rules.yml").unwrap());
    for g in v["groups"].as_array_mut().unwrap() {
        for r in g["rules"].as_array_mut().unwrap() {
            r["expr"] = scale_seconds(&scale_ranges(r["expr"].as_str().unwrap())).into();
            if let Some(f) = r["for"].as_str() {
                r["for"] = scaled(f).unwrap().into();
            }
        }
    }
    v.to_string()
}

/// deploy/compose/prometheus.yml with its intervals scaled, the rules at
/// `rules`, and the exporter and Alertmanager at their test ports.
fn prometheus_config(rules: &std::path::Path, exporter: u16, alertmanager: u16) -> String {
    let mut v = yaml_to_json(&std::fs::read_to_string("deploy/compose/prometheus.yml").unwrap());
    for key in ["scrape_interval", "evaluation_interval"] {
        let d = v["global"][key].as_str().unwrap();
        v["global"][key] = scaled(d).unwrap().into();
    }
    v["rule_files"] = json!([rules.display().to_string()]);
    let text = v.to_string();
    assert!(text.contains("nexrender-exporter:9847") && text.contains("alertmanager:9093"));
    text.replace("nexrender-exporter:9847", &format!("127.0.0.1:{exporter}"))
        .replace("alertmanager:9093", &format!("127.0.0.1:{alertmanager}"))
}

/// deploy/alertmanager/alertmanager.yml with its waits scaled and a webhook
/// to `url` added to the `nexrender` receiver.
fn alertmanager_config(url: &str) -> String {
    let mut v =
        yaml_to_json(&std::fs::read_to_string("deploy/alertmanager/alertmanager.yml").unwrap());
    for key in ["group_wait", "group_interval", "repeat_interval"] {
        let d = v["route"][key].as_str().unwrap();
        v["route"][key] = scaled(d).unwrap().into();
    }
    let receiver = v["receivers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == "nexrender")
        .expect("a receiver named nexrender");
    receiver["webhook_configs"] = json!([{"url": url, "send_resolved": true}]);
    v.to_string()
}

/// A webhook receiver: every alert Alertmanager posts, in order.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        if let Some(alerts) = v["alerts"].as_array() {
                            sink.lock().unwrap().extend(alerts.iter().cloned());
                        }
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(bytes::Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

/// Waits (at most 120 s) for `alertname` to arrive with `status`
/// (`firing` or `resolved`), and returns it.
async fn arrival(received: &Mutex<Vec<Value>>, alertname: &str, status: &str) -> Value {
    arrival_after(received, 0, alertname, status).await
}

/// As [`arrival`], among the notifications after the first `skip`.
async fn arrival_after(
    received: &Mutex<Vec<Value>>,
    skip: usize,
    alertname: &str,
    status: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .skip(skip)
            .find(|a| a["labels"]["alertname"] == alertname && a["status"] == status)
            .cloned();
        if let Some(a) = found {
            return a;
        }
        let got: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|a| format!("{} {}", a["labels"]["alertname"], a["status"]))
            .collect();
        assert!(
            Instant::now() < deadline,
            "{alertname} {status} not received within 120 s; received: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The alert carries the account and severity, and the summary, runbook
/// URL and description the shipped rule gives it.
fn assert_shipped_alert(a: &Value, alertname: &str, summary_has: &str) {
    assert_eq!(a["labels"]["account"], "main", "{a}");
    assert_eq!(a["labels"]["severity"], "critical", "{a}");
    let summary = a["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("Nexrender account main: ") && summary.contains(summary_has),
        "{a}"
    );
    assert_eq!(
        a["annotations"]["runbook_url"],
        format!("docs/runbook.md#{}", alertname.to_lowercase()),
        "{a}"
    );
    assert!(
        !a["annotations"]["description"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{a}"
    );
}

#[tokio::test]
async fn an_error_storm_and_a_stuck_queue_reach_the_receiver_through_alertmanager_and_resolve() {
    let Some(prometheus) = prometheus_bin() else {
        return;
    };
    let Some(alertmanager) = tool_bin(
        "prometheus-alertmanager",
        "ALERTMANAGER_BIN",
        "REQUIRE_ALERTMANAGER",
    ) else {
        return;
    };

    // A queued job created two hours ago: the queue is stuck from the start.
    let sim = scripted_simulator().await;
    let stuck = sim
        .sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(f.now() - 2 * 3600 * 1000)));
    let exp = exporter(&sim, &[]);
    exp.polls("main", 1).await;

    let (url, received) = webhook().await;
    let am = start_service(
        &alertmanager,
        "alertmanager.yml",
        &alertmanager_config(&url),
        "--storage.path",
        // No cluster: a test instance gossips with nobody.
        &["--cluster.listen-address="],
    );
    let rules = am.2.path().join("nexrender.rules.yml");
    std::fs::write(&rules, scaled_rules()).unwrap();
    let _prom = start_prometheus(
        &prometheus,
        &prometheus_config(&rules, exp.port, am.1),
        // Send firing alerts to Alertmanager at once, not after a minute.
        &["--rules.alert.resend-delay=1s"],
    );

    // The error storm: every 100 ms a job ends, three in four in error.
    let storm = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let storming = storm.clone();
    let farm = sim.sim.clone();
    let jobs = tokio::spawn(async move {
        let mut n = 0u32;
        while storming.load(std::sync::atomic::Ordering::Relaxed) {
            farm.with_farm(|f| {
                let t = f.now();
                let error = n % 4 != 0;
                f.insert_scripted(ScriptedJob {
                    status: if error {
                        JobStatus::Error
                    } else {
                        JobStatus::Finished
                    },
                    started_at: Some(t - 1500),
                    ended_at: Some(t),
                    error: error.then(|| "Render failed".into()),
                    ..ScriptedJob::queued(t - 2000)
                })
            });
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let fired = arrival(&received, "NexrenderJobErrorRatioHigh", "firing").await;
    assert_shipped_alert(&fired, "NexrenderJobErrorRatioHigh", "of renders fail");
    let fired = arrival(&received, "NexrenderQueueStale", "firing").await;
    assert_shipped_alert(&fired, "NexrenderQueueStale", "a job has been queued for");
    // The alert names the stuck job: its id, from nexrender_oldest_job_info,
    // read by the annotation's query when Prometheus evaluated the rule.
    assert_eq!(fired["annotations"]["job_id"], stuck.to_string(), "{fired}");
    assert_eq!(
        fired["annotations"]["job_url"], "",
        "no oldest_jobs.job_url set"
    );
    // Three in four failing burns a 1% budget 75 times over: a page.
    let fired = arrival(&received, "NexrenderErrorBudgetBurnFast", "firing").await;
    assert_shipped_alert(
        &fired,
        "NexrenderErrorBudgetBurnFast",
        "jobs_finished objective burning its error budget fast",
    );
    assert_eq!(fired["labels"]["slo"], "jobs_finished", "{fired}");

    // The trouble ends: no more errors, and the stuck job renders and finishes.
    storm.store(false, std::sync::atomic::Ordering::Relaxed);
    jobs.await.unwrap();
    set_status(&sim, stuck, JobStatus::Rendering);
    set_status(&sim, stuck, JobStatus::Finished);

    let resolved = arrival(&received, "NexrenderJobErrorRatioHigh", "resolved").await;
    assert_shipped_alert(&resolved, "NexrenderJobErrorRatioHigh", "of renders fail");
    let resolved = arrival(&received, "NexrenderQueueStale", "resolved").await;
    assert_shipped_alert(
        &resolved,
        "NexrenderQueueStale",
        "a job has been queued for",
    );

    // Another job stuck in the queue (one renders meanwhile, so the
    // workers are not gone), then the API goes down for good.
    let seen = received.lock().unwrap().len();
    sim.sim.with_farm(|f| {
        let t = f.now();
        f.insert_scripted(ScriptedJob::queued(t - 2 * 3600 * 1000));
        f.insert_scripted(ScriptedJob {
            status: JobStatus::Rendering,
            started_at: Some(t),
            ..ScriptedJob::queued(t - 1000)
        });
    });
    arrival_after(&received, seen, "NexrenderQueueStale", "firing").await;
    let outage = received.lock().unwrap().len();
    sim.sim.add_fault(FaultRule::new(
        Endpoint::Any,
        Fault::Status { code: 503 },
        Schedule::Always,
    ));
    // The numbers go stale: the queue alert stops judging them and
    // resolves; the pipeline says why.
    arrival_after(&received, outage, "NexrenderQueueStale", "resolved").await;
    let fired = arrival_after(&received, outage, "NexrenderApiPollFailing", "firing").await;
    assert_eq!(fired["labels"]["account"], "main", "{fired}");
    assert_eq!(fired["labels"]["severity"], "warning", "{fired}");
    // NexrenderPollStale (critical, 15 minutes scaled to 15 s, for 5 s)
    // follows; meanwhile no alert about the farm has fired.
    // (The storm's alerts had all fired or resolved before: any farm alert
    // first firing now would be judging frozen numbers.)
    arrival_after(&received, outage, "NexrenderPollStale", "firing").await;
    let all = received.lock().unwrap().clone();
    let firing = |a: &&Value| a["status"] == "firing";
    let name = |a: &Value| {
        a["labels"]["alertname"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before: HashSet<String> = all[..outage].iter().filter(firing).map(name).collect();
    let farm_alerts: Vec<String> = all[outage..]
        .iter()
        .filter(firing)
        .map(name)
        .filter(|n| !PIPELINE.contains(&n.as_str()) && !before.contains(n))
        .collect();
    assert!(
        farm_alerts.is_empty(),
        "farm alerts during the outage: {farm_alerts:?}"
    );
}

/// The alerts about the exporter itself, which an outage should fire.
const PIPELINE: [&str; 4] = [
    "NexrenderApiPollFailing",
    "NexrenderPollStale",
    "NexrenderApiTokenRejected",
    "NexrenderApiRateLimited",
];
