//! The standalone simulator, seen by a plain HTTP client: spec-shaped
//! answers, auth, validation, every fault, and webhooks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexrender_simulator::clock::{Clock, ManualClock, SharedClock, SystemClock};
use nexrender_simulator::model::NewJob;
use nexrender_simulator::server::{start, RunningSimulator};
use nexrender_simulator::testkit::fake_server;
use nexrender_simulator::{
    Endpoint, Fault, FaultRule, LifecycleConfig, RetryAfter, Schedule, SimulatorConfig,
};
use serde_json::Value;

const TOKEN: &str = "sim-token";

async fn simulator_with(cfg: SimulatorConfig, clock: SharedClock) -> RunningSimulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(&cfg, clock, listener).unwrap()
}

async fn simulator() -> RunningSimulator {
    let cfg = SimulatorConfig {
        prefill: nexrender_simulator::PrefillConfig {
            jobs: 2_500,
            span: Duration::from_secs(86_400),
        },
        ..SimulatorConfig::default()
    };
    simulator_with(cfg, Arc::new(SystemClock)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).bearer_auth(TOKEN).send().await.unwrap()
}

#[tokio::test]
async fn list_answers_a_bare_array_at_the_root_and_under_api_v2() {
    let s = simulator().await;
    for base in [s.base_url(), s.api_url()] {
        let r = get(&format!("{base}/jobs?limit=10")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        let jobs = v.as_array().expect("a bare JSON array");
        assert_eq!(jobs.len(), 10);
        for j in jobs {
            let id = j["id"].as_str().unwrap();
            assert!(ulid::Ulid::from_string(id).is_ok(), "{id} is a ULID");
            assert!(j["stats"]["createdAt"].is_string());
            assert!(j["progress"].is_number());
        }
    }
}

#[tokio::test]
async fn paging_with_from_and_limit_returns_every_job_once_and_ends_with_a_short_page() {
    let s = simulator().await;
    let (from_date, to_date) = (
        "2000-01-01T00:00:00Z",
        nexrender_simulator::timefmt::format_millis(SystemClock.now_millis() - 3_600_000),
    );
    let mut ids = Vec::new();
    let mut from = 0;
    loop {
        let url = format!(
            "{}/jobs?minimal=true&limit=1000&from={from}&from_date={from_date}&to_date={to_date}",
            s.api_url()
        );
        let page: Vec<Value> = get(&url).await.json().await.unwrap();
        assert!(
            page.iter().all(|j| j.get("stats").is_none()),
            "minimal drops stats"
        );
        ids.extend(page.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        if page.len() < 1000 {
            break;
        }
        from += 1000;
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 2_500);
    assert_eq!(unique.len(), 2_500);
}

#[test]
fn the_annotated_example_config_loads() {
    let cfg =
        nexrender_simulator::load_config(std::path::Path::new("config/simulator.example.yaml"))
            .unwrap();
    assert!(!cfg.faults.is_empty());
    let err =
        nexrender_simulator::load_config(std::path::Path::new("tests/data/simulator-bad.yaml"))
            .unwrap_err();
    assert!(err.contains("lifecycle") && err.contains("wokers"), "{err}");
}

#[tokio::test]
async fn invalid_requests_get_400_with_an_error_naming_the_parameter() {
    let s = simulator().await;
    for q in [
        "limit=0",
        "limit=5000",
        "from_date=last-week",
        "sort=biggest",
        "minimal=1",
        "tags=a%20b",
        "from=-3",
    ] {
        let r = get(&format!("{}/jobs?{q}", s.base_url())).await;
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        let param = q.split('=').next().unwrap();
        assert!(v["error"].as_str().unwrap().contains(param), "{q}: {v}");
    }
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401_with_no_body_and_unknown_id_404() {
    let s = simulator().await;
    let url = format!("{}/jobs", s.api_url());
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client()
        .get(&url)
        .bearer_auth("stolen")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = get(&format!("{}/jobs/01JTRDF7HCR8QAHYW8GPCP4S9Y", s.api_url())).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string());

    let first: Vec<Value> = get(&format!("{url}?limit=1")).await.json().await.unwrap();
    let id = first[0]["id"].as_str().unwrap();
    let one: Value = get(&format!("{url}/{id}")).await.json().await.unwrap();
    assert_eq!(one["id"], id);
    assert!(one["stats"].is_object());
}

#[tokio::test]
async fn created_jobs_go_through_the_lifecycle_and_parents_wait_pending() {
    let s = simulator().await;
    let r = client()
        .post(format!("{}/jobs", s.api_url()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "template": {"id": "01JTRDF7HCR8QAHYW8GPCP4S9Y"},
            "assets": [{"type": "job", "layerName": "a", "template": {"id": "01JTRDF7HCR8QAHYW8GPCP4S9Y", "composition": "c"}}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "pending");
    assert_eq!(v["children"].as_array().unwrap().len(), 1);

    let r = client()
        .post(format!("{}/jobs", s.api_url()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"template": {"id": "nope"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn simulator_with_fault(fault: Fault, when: Schedule) -> RunningSimulator {
    let cfg = SimulatorConfig {
        prefill: nexrender_simulator::PrefillConfig {
            jobs: 100,
            span: Duration::from_secs(86_400),
        },
        hang_for: Duration::from_secs(30),
        faults: vec![FaultRule::new(Endpoint::ListJobs, fault, when)],
        ..SimulatorConfig::default()
    };
    simulator_with(cfg, Arc::new(SystemClock)).await
}

#[tokio::test]
async fn rate_limit_fault_answers_429_with_retry_after_in_seconds_or_as_a_date() {
    let s = simulator_with_fault(
        Fault::RateLimited {
            retry_after: RetryAfter::Seconds(5),
        },
        Schedule::Next { count: 1 },
    )
    .await;
    let url = format!("{}/jobs?limit=1", s.base_url());
    let r = get(&url).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(get(&url).await.status(), 200, "only the next request");

    let s = simulator_with_fault(
        Fault::RateLimited {
            retry_after: RetryAfter::HttpDate(120),
        },
        Schedule::Always,
    )
    .await;
    let r = get(&format!("{}/jobs", s.base_url())).await;
    let date = r.headers()["retry-after"].to_str().unwrap().to_owned();
    let at = httpdate::parse_http_date(&date).unwrap();
    let ahead = at.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        ahead > Duration::from_secs(100) && ahead <= Duration::from_secs(121),
        "{ahead:?}"
    );
}

#[tokio::test]
async fn server_error_faults_answer_their_status_only_on_their_endpoint() {
    for code in [500u16, 502, 503] {
        let s = simulator_with_fault(Fault::Status { code }, Schedule::Always).await;
        let r = get(&format!("{}/jobs", s.base_url())).await;
        assert_eq!(r.status().as_u16(), code);
        let first = s.sim.with_farm(|f| f.jobs()[0].id);
        let r = get(&format!("{}/jobs/{first}", s.base_url())).await;
        assert_eq!(
            r.status(),
            200,
            "GET /jobs/{{id}} is not covered by a list_jobs fault"
        );
    }
}

#[tokio::test]
async fn slow_fault_delays_the_answer_and_hang_never_answers() {
    let s = simulator_with_fault(
        Fault::Slow {
            delay: Duration::from_millis(700),
        },
        Schedule::Always,
    )
    .await;
    let t = Instant::now();
    assert_eq!(get(&format!("{}/jobs", s.base_url())).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(700));

    let s = simulator_with_fault(Fault::Hang, Schedule::Always).await;
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
        .get(format!("{}/jobs", s.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn malformed_and_truncated_bodies_fail_to_decode() {
    let s = simulator_with_fault(Fault::MalformedJson, Schedule::Always).await;
    let r = get(&format!("{}/jobs", s.base_url())).await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());

    let s = simulator_with_fault(Fault::Truncated, Schedule::Always).await;
    let r = get(&format!("{}/jobs?limit=100", s.base_url())).await;
    assert_eq!(r.status(), 200);
    let declared: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(declared > 1000);
    assert!(
        r.bytes().await.is_err(),
        "the body ends before its declared length"
    );
}

#[tokio::test]
async fn connection_reset_fault_gives_no_answer_at_all() {
    let s = simulator_with_fault(Fault::ConnectionReset, Schedule::Always).await;
    let err = client()
        .get(format!("{}/jobs", s.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err}");
}

#[tokio::test]
async fn an_outage_window_and_a_revoked_token_follow_the_simulated_clock() {
    let clock = ManualClock::new(1_767_225_600_000);
    let cfg = SimulatorConfig {
        faults: vec![
            FaultRule::new(
                Endpoint::Any,
                Fault::Status { code: 503 },
                Schedule::Window {
                    after: Duration::from_secs(60),
                    lasting: Some(Duration::from_secs(120)),
                },
            ),
            FaultRule::new(
                Endpoint::Any,
                Fault::Unauthorized,
                Schedule::Window {
                    after: Duration::from_secs(600),
                    lasting: None,
                },
            ),
        ],
        ..SimulatorConfig::default()
    };
    let s = simulator_with(cfg, clock.clone()).await;
    let url = format!("{}/jobs", s.base_url());
    let mut seen = Vec::new();
    for minute in [0u64, 1, 2, 3, 9, 10, 60] {
        clock.set(1_767_225_600_000 + minute as i64 * 60_000);
        seen.push((minute, get(&url).await.status().as_u16()));
    }
    assert_eq!(
        seen,
        [
            (0, 200),
            (1, 503),
            (2, 503),
            (3, 200),
            (9, 200),
            (10, 401),
            (60, 401)
        ]
    );
    s.sim.clear_faults();
    assert_eq!(
        get(&url).await.status(),
        200,
        "the token works again once restored"
    );
}

#[tokio::test]
async fn jobs_move_with_the_injected_clock() {
    let clock = ManualClock::new(1_767_225_600_000);
    let cfg = SimulatorConfig {
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 0.0,
            error_ratio: 0.0,
            cancel_ratio: 0.0,
            ..LifecycleConfig::default()
        },
        ..SimulatorConfig::default()
    };
    let s = simulator_with(cfg, clock.clone()).await;
    let (id, _) = s.sim.with_farm(|f| f.create_job(NewJob::default()));
    let status = |v: Value| v["status"].as_str().unwrap().to_owned();
    let url = format!("{}/jobs/{id}", s.base_url());
    assert_eq!(status(get(&url).await.json().await.unwrap()), "queued");
    clock.advance(Duration::from_secs(3 * 3600));
    let v: Value = get(&url).await.json().await.unwrap();
    assert_eq!(v["status"], "finished");
    let st = &v["stats"];
    let started =
        nexrender_simulator::timefmt::parse_millis(st["startedAt"].as_str().unwrap()).unwrap();
    let finished =
        nexrender_simulator::timefmt::parse_millis(st["finishedAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        st["renderDuration"].as_f64().unwrap(),
        (finished - started) as f64 / 1000.0
    );
}

/// A receiver that fails the first `fail_first` deliveries.
async fn webhook_receiver(
    fail_first: u32,
) -> (
    String,
    Arc<AtomicU32>,
    tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    use http_body_util::BodyExt;
    let hits = Arc::new(AtomicU32::new(0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let h = hits.clone();
    let addr = fake_server(move |req| {
        let (h, tx) = (h.clone(), tx.clone());
        async move {
            assert_eq!(req.headers()["x-secret"], "s3");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = h.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
            let status = if n <= fail_first { 500 } else { 200 };
            hyper::Response::builder()
                .status(status)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        }
    })
    .await;
    (format!("http://{addr}/hook"), hits, rx)
}

async fn create_with_webhook(s: &RunningSimulator, url: &str) -> String {
    let r = client()
        .post(format!("{}/jobs", s.api_url()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "template": {"id": "01JTRDF7HCR8QAHYW8GPCP4S9Y"},
            "webhook": {"url": url, "headers": {"x-secret": "s3"}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn fast_farm() -> SimulatorConfig {
    SimulatorConfig {
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 0.0,
            error_ratio: 0.0,
            cancel_ratio: 0.0,
            render_spread: 0.0,
            render_median: Duration::from_secs(1),
            pickup_delay: Duration::ZERO,
            ..LifecycleConfig::default()
        },
        webhook: nexrender_simulator::WebhookConfig {
            backoff: Duration::from_millis(50),
            ..Default::default()
        },
        tick: Duration::from_millis(20),
        ..SimulatorConfig::default()
    }
}

#[tokio::test]
async fn a_terminal_job_posts_its_payload_to_its_webhook() {
    let s = simulator_with(fast_farm(), Arc::new(SystemClock)).await;
    let (url, hits, mut rx) = webhook_receiver(0).await;
    let id = create_with_webhook(&s, &url).await;
    let payload = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["status"], "finished");
    assert!(payload["stats"]["renderDuration"].as_f64().unwrap() >= 1.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "delivered once");
}

#[tokio::test]
async fn a_failing_webhook_is_retried_three_times_with_growing_delays() {
    let s = simulator_with(fast_farm(), Arc::new(SystemClock)).await;
    let (url, hits, mut rx) = webhook_receiver(u32::MAX).await;
    let id = create_with_webhook(&s, &url).await;
    let mut arrivals = Vec::new();
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        arrivals.push(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "one try and three retries, then it gives up"
    );
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(50)
            && gaps[1] >= Duration::from_millis(100)
            && gaps[2] >= Duration::from_millis(200),
        "{gaps:?}"
    );
    let log = s.sim.webhook_log();
    assert_eq!(log.len(), 4);
    assert!(log
        .iter()
        .all(|d| d.job_id == id && d.outcome == "500" && !d.delivered));
}

async fn get_with_encoding(url: &str, accept: &str) -> reqwest::Response {
    client()
        .get(url)
        .bearer_auth(TOKEN)
        .header("accept-encoding", accept)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_asks_for_gzip_gets_the_same_answer_compressed() {
    let s = simulator().await;
    let url = format!("{}/jobs?minimal=true&limit=1000", s.api_url());
    let plain = get(&url).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let before = s.sim.response_bytes();
    let r = get_with_encoding(&url, "deflate, gzip;q=0.8").await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let compressed = r.bytes().await.unwrap();
    assert!(
        compressed.len() * 4 < plain.len(),
        "a page of ids compresses well: {} of {} bytes",
        compressed.len(),
        plain.len()
    );
    assert_eq!(
        s.sim.response_bytes() - before,
        compressed.len() as u64,
        "the bytes sent are counted, compressed"
    );
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut inflated,
    )
    .unwrap();
    // The farm moved on between the two requests only if a tick passed;
    // ids are the same either way, and the page is the same length.
    let ids = |body: &[u8]| -> Vec<String> {
        serde_json::from_slice::<Vec<Value>>(body)
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&inflated), ids(&plain));
}

#[tokio::test]
async fn gzip_refused_with_q_0_or_not_asked_for_is_not_sent() {
    let s = simulator().await;
    let url = format!("{}/jobs?limit=10", s.api_url());
    for accept in ["gzip;q=0", "identity", "br"] {
        let r = get_with_encoding(&url, accept).await;
        assert!(
            r.headers().get("content-encoding").is_none(),
            "Accept-Encoding: {accept}"
        );
        let _: Vec<Value> = r.json().await.unwrap();
    }
}
