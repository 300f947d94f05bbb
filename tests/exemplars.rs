//! Exemplars (issue #25): a scraper that asks for OpenMetrics gets the job
//! behind each histogram bucket. Jobs arrive, render and end on the
//! simulator's farm; every exemplar the exporter shows is held against the
//! API's own word on that job (its renderDuration, its createdAt and end),
//! and Debian's Prometheus, with exemplar storage on, scrapes it and answers
//! `query_exemplars` with those jobs on the right buckets.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexrender_simulator::clock::SystemClock;
use nexrender_simulator::server::{start, RunningSimulator};
use nexrender_simulator::{LifecycleConfig, PrefillConfig, SimulatorConfig};
use serde_json::Value;
use support::services::*;
use support::*;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Jobs arriving, rendering for a few seconds and ending all the time,
/// faster than the two workers take them: queue waits and turnarounds
/// grow, and renders spread over several buckets.
async fn lively_farm() -> RunningSimulator {
    let cfg = SimulatorConfig {
        tokens: vec![TOKEN.into()],
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 40.0,
            burst_probability: 0.0,
            pickup_delay: Duration::from_millis(300),
            render_median: Duration::from_secs(4),
            render_spread: 1.0,
            error_ratio: 0.1,
            cancel_ratio: 0.0,
            workers: 2,
            ..LifecycleConfig::default()
        },
        prefill: PrefillConfig {
            jobs: 100,
            span: Duration::from_secs(1800),
        },
        ..SimulatorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(&cfg, Arc::new(SystemClock), listener).unwrap()
}

/// The API's answer for job `id` (a look-up, as any client makes it).
async fn api_job(sim: &RunningSimulator, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/jobs/{id}", sim.api_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn millis(v: &Value) -> f64 {
    let t = time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as f64
}

/// What the API says the exemplar's value should be for a job of `family`.
fn expected(family: &str, job: &Value) -> f64 {
    let stats = &job["stats"];
    match family {
        "render_duration" => stats["renderDuration"].as_f64().unwrap(),
        "queue_wait" => (millis(&stats["startedAt"]) - millis(&stats["createdAt"])) / 1000.0,
        "turnaround" => {
            let end = if stats["finishedAt"].is_string() {
                &stats["finishedAt"]
            } else {
                &stats["errorAt"]
            };
            (millis(end) - millis(&stats["createdAt"])) / 1000.0
        }
        other => panic!("no exemplars expected on {other}"),
    }
}

/// One exemplar line: family, `le`, job id, value, and the bucket below.
struct Seen {
    family: String,
    le: f64,
    below: f64,
    job_id: String,
    value: f64,
}

/// Every exemplar of the exposition, with the bucket bound below its own.
fn exemplars(text: &str) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut below: BTreeMap<String, f64> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("nexrender_job_") && l.contains("_bucket{"))
    {
        let family = line["nexrender_job_".len()..line.find("_seconds_bucket").unwrap()].to_owned();
        let le_start = line.find("le=\"").unwrap() + 4;
        let le_text = &line[le_start..le_start + line[le_start..].find('"').unwrap()];
        let le: f64 = if le_text == "+Inf" {
            f64::INFINITY
        } else {
            le_text.parse().unwrap()
        };
        let prev = below
            .insert(family.clone(), le)
            .unwrap_or(f64::NEG_INFINITY);
        let prev = if prev >= le { f64::NEG_INFINITY } else { prev };
        let Some((_, ex)) = line.split_once(" # ") else {
            continue;
        };
        let id_start = ex.find("job_id=\"").unwrap() + 8;
        let job_id = ex[id_start..id_start + ex[id_start..].find('"').unwrap()].to_owned();
        let rest: Vec<&str> = ex[ex.find("} ").unwrap() + 2..].split(' ').collect();
        assert_eq!(rest.len(), 2, "value and timestamp: {line}");
        out.push(Seen {
            family,
            le,
            below: prev,
            job_id,
            value: rest[0].parse().unwrap(),
        });
    }
    out
}

/// Asked for OpenMetrics, `/metrics` answers it, each histogram bucket's
/// exemplar names a job whose value, by the API's own word, falls in that
/// bucket; asked for nothing (or the classic text), it answers the classic
/// text without exemplars, as before.
#[tokio::test]
async fn exemplars_name_jobs_whose_values_fall_in_their_buckets() {
    let sim = lively_farm().await;
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    exp.polls("main", 1).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (content_type, text) = loop {
        let r = client
            .get(exp.url("/metrics"))
            .header("accept", OPENMETRICS)
            .send()
            .await
            .unwrap();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        let text = r.text().await.unwrap();
        let families: std::collections::BTreeSet<String> =
            exemplars(&text).into_iter().map(|e| e.family).collect();
        // Each histogram has an exemplar, and some bucket past the first
        // has one (so one is not merely in the first bucket by luck).
        let past_first = exemplars(&text).iter().any(|e| e.below.is_finite());
        if families.len() == 3 && past_first {
            break (content_type, text);
        }
        assert!(
            Instant::now() < deadline,
            "no exemplars on all three histograms: {families:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"));
    assert!(
        text.contains("# TYPE nexrender_jobs_completed counter\n"),
        "a counter's family drops _total"
    );
    let seen = exemplars(&text);
    for e in &seen {
        assert!(
            e.below < e.value && e.value <= e.le,
            "{} exemplar {} = {} is not in ({}, {}]",
            e.family,
            e.job_id,
            e.value,
            e.below,
            e.le
        );
        let job = api_job(&sim, &e.job_id).await;
        let want = expected(&e.family, &job);
        assert!(
            (e.value - want).abs() < 0.002,
            "{} of job {}: exemplar {} but the API says {want}",
            e.family,
            e.job_id,
            e.value
        );
    }
    println!("{} exemplars checked against the API", seen.len());

    for accept in [None, Some("text/plain;version=0.0.4")] {
        let mut req = client.get(exp.url("/metrics"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let classic = r.text().await.unwrap();
        assert!(
            !classic.contains(" # {") && !classic.contains("# EOF"),
            "{accept:?}"
        );
        assert!(classic.contains("# TYPE nexrender_jobs_completed_total counter"));
    }
}

/// Debian's Prometheus with exemplar storage scrapes the exporter (it asks
/// for OpenMetrics by itself) without errors, and `query_exemplars` returns
/// jobs the API says finished, each on the bucket its render duration falls in.
#[tokio::test]
async fn a_real_prometheus_stores_the_exemplars_on_the_right_buckets() {
    let Some(bin) = prometheus_bin() else { return };
    let sim = lively_farm().await;
    let exp = Exporter::start(&format!("accounts:\n{}", account_yaml("main", &sim)), &[]);
    exp.polls("main", 1).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nexrender\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        exp.port
    );
    let prom = start_prometheus(&bin, &config, &["--enable-feature=exemplar-storage"]);
    let api = |path: &str| format!("http://127.0.0.1:{}{path}", prom.1);
    let deadline = Instant::now() + Duration::from_secs(90);
    let found = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Until Prometheus is up, the request fails: asked again.
        let answer = reqwest::Client::new()
            .get(api("/api/v1/query_exemplars"))
            .query(&[
                ("query", "nexrender_job_render_duration_seconds_bucket"),
                ("start", &(now - 600).to_string()),
                ("end", &(now + 60).to_string()),
            ])
            .send()
            .await;
        let v: Value = match answer {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let series = v["data"].as_array().cloned().unwrap_or_default();
        let n: usize = series
            .iter()
            .map(|s| s["exemplars"].as_array().map_or(0, Vec::len))
            .sum();
        if n >= 5 {
            break series;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus stored no exemplars in 90 s: {v}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // The scrape itself: healthy, in OpenMetrics.
    let targets: Value = reqwest::get(api("/api/v1/targets"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    let mut checked = 0;
    for s in &found {
        let le: f64 = match s["seriesLabels"]["le"].as_str().unwrap() {
            "+Inf" => f64::INFINITY,
            le => le.parse().unwrap(),
        };
        for e in s["exemplars"].as_array().unwrap() {
            let id = e["labels"]["job_id"].as_str().unwrap();
            let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
            let job = api_job(&sim, id).await;
            assert_eq!(job["status"], "finished", "{id}");
            let want = job["stats"]["renderDuration"].as_f64().unwrap();
            assert!(
                (value - want).abs() < 0.002,
                "{id}: stored {value}, the API says {want}"
            );
            assert!(value <= le, "{id}: {value} stored on le={le}");
            checked += 1;
        }
    }
    println!("{checked} exemplars stored by Prometheus checked against the API");
}
