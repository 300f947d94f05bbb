//! The bundled dashboards and rules, proven on a real Prometheus: every
//! panel query and every recording rule returns data while the exporter
//! polls a busy simulated farm, and every rule evaluates without error.
//! The dashboards' JSON is also checked structurally.
//!
//! The Prometheus part needs the `prometheus` binary (Debian's package;
//! scripts/test-all.sh installs it). Without it that test says so and
//! passes, unless REQUIRE_PROMETHEUS=1, as in CI.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexrender_simulator::clock::SystemClock;
use nexrender_simulator::model::Webhook;
use nexrender_simulator::server::start;
use nexrender_simulator::{LifecycleConfig, PrefillConfig, SimulatorConfig, WebhookConfig};
use serde_json::Value;
use support::services::*;
use support::*;

const DASHBOARDS: [&str; 3] = [
    "grafana/dashboards/nexrender-overview.json",
    "grafana/dashboards/nexrender-exporter.json",
    "grafana/dashboards/nexrender-templates.json",
];
const PANEL_TYPES: [&str; 6] = [
    "timeseries",
    "stat",
    "gauge",
    "heatmap",
    "table",
    "bargauge",
];

/// `metrics.templates` and `metrics.error_reasons` for the simulator's texts.
const BREAKDOWNS: &str = "metrics:\n  templates:\n    enabled: true\n  error_reasons:\n    - reason: missing_font\n      pattern: '(?i)missing font'\n    - reason: ae_crash\n      pattern: '(?i)after effects crashed'\n";

fn load(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn panels(d: &Value) -> &Vec<Value> {
    d["panels"].as_array().unwrap()
}

#[test]
fn dashboards_are_structurally_sound() {
    for path in DASHBOARDS {
        let d = load(path);
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{path}: current schema"
        );
        assert!(!d["uid"].as_str().unwrap().is_empty());
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .expect("datasource variable");
        assert_eq!(
            (ds["type"].as_str(), ds["query"].as_str()),
            (Some("datasource"), Some("prometheus"))
        );
        let acc = vars
            .iter()
            .find(|v| v["name"] == "account")
            .expect("account variable");
        assert_eq!(acc["multi"], true, "{path}: account is multi-select");
        // Installs apart: namespace and job on every dashboard, and every
        // query filtered by them.
        for name in ["namespace", "job"] {
            assert!(
                vars.iter().any(|v| v["name"] == name),
                "{path}: a {name} variable"
            );
        }
        // Links to the other dashboards (by tag) and to the runbook.
        let links = d["links"].as_array().unwrap();
        assert!(
            links
                .iter()
                .any(|l| l["type"] == "dashboards" && l["tags"][0] == "nexrender"),
            "{path}: links to the other dashboards"
        );
        assert!(
            links.iter().any(|l| l["url"] == "${runbook}"),
            "{path}: a link to the runbook"
        );
        let mut ids = HashSet::new();
        let mut cells = HashSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{path}: duplicate id in {title}"
            );
            assert!(
                PANEL_TYPES.contains(&p["type"].as_str().unwrap()),
                "{path}: {title} type {}",
                p["type"]
            );
            assert!(
                p["description"].as_str().is_some_and(|s| s.len() > 20),
                "{path}: {title} needs a description"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{path}: {title}");
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(w > 0 && h > 0 && x + w <= 24, "{path}: {title} grid {g}");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(
                        cells.insert((cx, cy)),
                        "{path}: {title} overlaps another panel at {cx},{cy}"
                    );
                }
            }
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{path}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{path}: {title}");
                let expr = t["expr"].as_str().unwrap();
                assert!(
                    !expr.contains("[5m]") && !expr.contains("[1m]") || expr.contains("30m"),
                    "{path}: {title} uses $__rate_interval: {expr}"
                );
                // increase() over $__rate_interval overlaps at small steps
                // and changes with zoom: a rate instead.
                assert!(
                    !expr.contains("increase(") || !expr.contains("$__rate_interval"),
                    "{path}: {title} increases over $__rate_interval: {expr}"
                );
                let uses = |l: &str| expr.contains(&format!("{l}=~\"${l}\""));
                assert!(
                    ["namespace", "job"].iter().all(|l| uses(l)),
                    "{path}: {title} is not filtered by namespace and job: {expr}"
                );
            }
        }
    }
}

#[test]
fn the_generated_dashboards_match_their_source() {
    let out = Command::new("python3")
        .args(["grafana/generate.py", "--check"])
        .output();
    match out {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => panic!("python3 is needed to check grafana/generate.py: {e}"),
    }
}

/// Every PromQL expression of the dashboards, with Grafana's variables
/// replaced the way Grafana would with both accounts chosen: the Cloud
/// account `main` and the self-hosted `studio`.
fn panel_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in DASHBOARDS {
        for p in panels(&load(path)) {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "10s")
                    .replace("$__interval", "2s")
                    .replace("$__range", "10m")
                    .replace("$namespace", ".*")
                    .replace("$account", "main|studio")
                    .replace("$job", "nexrender");
                out.push((format!("{path}: {}", p["title"].as_str().unwrap()), expr));
            }
        }
    }
    out
}

fn rules() -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string("deploy/prometheus/nexrender.rules.yml").unwrap();
    let v: serde_json::Value = yaml_to_json(&text);
    let mut records = BTreeSet::new();
    let mut alerts = Vec::new();
    for g in v["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            if let Some(name) = r["record"].as_str() {
                records.insert(name.to_owned());
            }
            if let Some(name) = r["alert"].as_str() {
                alerts.push((name.to_owned(), r["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    (records.into_iter().collect(), alerts)
}

fn start_prometheus_for(bin: &str, exporter_port: u16) -> Service {
    let rules = std::fs::canonicalize("deploy/prometheus/nexrender.rules.yml").unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: nexrender\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n",
        rules.display()
    );
    start_prometheus(bin, &config, &[])
}

async fn query(port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", expr)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// A result a panel would draw: at least one series with a real number
/// (histogram_quantile over no observations gives NaN, which draws nothing).
fn has_numbers(result: &[Value]) -> bool {
    result.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v.is_finite())
    })
}

/// `nexrender_exporter_memory_limit_bytes`, present only under a cgroup
/// memory limit (src/process.rs tests its reading of one).
const MEMORY_LIMIT: &str = "nexrender_exporter_memory_limit_bytes{";

#[tokio::test]
async fn every_panel_query_and_recording_rule_returns_data_on_a_real_prometheus() {
    let Some(bin) = prometheus_bin() else { return };
    // A busy farm: more arrivals than the workers can take, so a backlog
    // builds, and short renders, so completions and durations come quickly.
    let cfg = SimulatorConfig {
        tokens: vec![TOKEN.into()],
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 150.0,
            burst_probability: 0.0,
            pickup_delay: Duration::from_millis(500),
            render_median: Duration::from_secs(2),
            render_spread: 0.5,
            error_ratio: 0.2,
            cancel_ratio: 0.1,
            cancel_within: Duration::from_secs(5),
            nested_ratio: 0.1,
            max_children: 2,
            workers: 3,
            ..LifecycleConfig::default()
        },
        prefill: PrefillConfig {
            jobs: 500,
            span: Duration::from_secs(1800),
        },
        ..SimulatorConfig::default()
    };
    // Every job delivers its end to the exporter's webhook receiver, so the
    // webhook panels have data too.
    let webhook_port = free_port();
    let cfg = SimulatorConfig {
        webhook: WebhookConfig {
            farm: Some(Webhook {
                url: format!("http://127.0.0.1:{webhook_port}/webhooks/main"),
                method: "POST".into(),
                headers: [(
                    "X-Nexrender-Webhook-Secret".to_owned(),
                    "dash-secret".to_owned(),
                )]
                .into(),
                data: None,
                custom: false,
            }),
            ..WebhookConfig::default()
        },
        ..cfg
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = start(&cfg, Arc::new(SystemClock), listener).unwrap();
    // The breakdowns on, so the Templates dashboard and its rules have data;
    // the same farm as a self-hosted server lists it, with a stale_after
    // short enough that jobs rendering count as stale (the stale panel and
    // rule).
    let exp = Exporter::start(
        &format!(
            "accounts:\n{}    webhook_secret: dash-secret\n  - name: studio\n    kind: server\n    api_url: {}\n    secret: {TOKEN}\n    stale_after: 1s\nwebhook:\n  listen_address: 127.0.0.1:{webhook_port}\n{BREAKDOWNS}",
            account_yaml("main", &sim),
            sim.server_url(),
        ),
        &[],
    );
    exp.polls("main", 1).await;
    exp.polls("studio", 1).await;
    let prom = start_prometheus_for(&bin, exp.port);

    let queries = panel_queries();
    let (records, alerts) = rules();
    assert!(queries.len() > 20 && records.len() > 10 && alerts.len() >= 8);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for (what, expr) in &queries {
            match query(prom.1, expr).await {
                Ok(r) if has_numbers(&r) => {}
                // The one series that is absent by design where the
                // exporter has no memory limit, as in this test: its query
                // must evaluate, it need not draw.
                Ok(_) if expr.starts_with(MEMORY_LIMIT) => {}
                Ok(_) => empty.push(format!("{what}: {expr}")),
                Err(e) => empty.push(format!("{what}: {expr}: {e}")),
            }
        }
        for r in &records {
            match query(prom.1, &format!("{{__name__=\"{r}\"}}")).await {
                Ok(res) if has_numbers(&res) => {}
                other => empty.push(format!("recording rule {r}: {other:?}")),
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        empty.is_empty(),
        "no data after 120 s for:\n{}",
        empty.join("\n")
    );

    // Every alert expression parses and evaluates, and every rule is healthy.
    for (name, expr) in &alerts {
        query(prom.1, expr)
            .await
            .unwrap_or_else(|e| panic!("alert {name}: {e}"));
    }
    let v: Value = reqwest::get(format!("http://127.0.0.1:{}/api/v1/rules", prom.1))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for g in v["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} : {}", r["name"], r["lastError"]);
        }
    }
    // The account variable's values come from nexrender_up.
    let accounts = query(prom.1, "count by (account) (nexrender_up)")
        .await
        .unwrap();
    assert_eq!(accounts.len(), 2);
}
