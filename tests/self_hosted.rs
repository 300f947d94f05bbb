//! A self-hosted farm (issue #26): the exporter polls the real
//! `@nexrender/server` from npm (`kind: server`), the test drives jobs
//! through the server's states with its own API as a worker does, and the
//! numbers on `/metrics` are held against what the server holds: jobs by
//! state, each completion once, render durations and queue waits, a job a
//! dead worker left behind, a wrong secret, the server going away and
//! coming back.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::nexrender_server::{iso, millis, NexrenderServer};
use support::{completed, histogram, jobs, value, Exporter};

const SECRET: &str = "srv-5ecret-never-print-me";

fn account(server: &NexrenderServer, name: &str, extra: &str) -> String {
    format!(
        "accounts:\n  - name: {name}\n    kind: server\n    api_url: {}\n    secret: {}\n{extra}",
        server.url(),
        server.secret
    )
}

/// The server's jobs by state, as its own whole-job listing says.
async fn states(server: &NexrenderServer) -> BTreeMap<String, f64> {
    let mut by_state = BTreeMap::new();
    for job in server.jobs().await {
        *by_state
            .entry(job["state"].as_str().unwrap().to_owned())
            .or_insert(0.0) += 1.0;
    }
    by_state
}

/// Every state the server documents has a series, equal to the server's count.
fn assert_states_match(m: &str, truth: &BTreeMap<String, f64>) {
    for state in nexrender_exporter::status::SERVER_STATES {
        assert_eq!(
            jobs(m, "farm", state),
            Some(truth.get(state).copied().unwrap_or(0.0)),
            "nexrender_jobs{{status=\"{state}\"}}\n{m}"
        );
    }
}

/// A worker's life for job `uid`, as `@nexrender/worker` reports it:
/// picked, started `wait_ms` after creation, rendering, then finished
/// `render_ms` after the start (or failed then).
async fn render(
    server: &NexrenderServer,
    uid: &str,
    wait_ms: i64,
    render_ms: i64,
    fail: bool,
) -> (i64, i64) {
    let job = server.update(uid, json!({"state": "picked"})).await;
    let created = millis(&job["createdAt"]).unwrap();
    let started = created + wait_ms;
    server
        .update(uid, json!({"state": "started", "startedAt": iso(started)}))
        .await;
    server
        .update(
            uid,
            json!({"state": "render:dorender", "renderProgress": 50}),
        )
        .await;
    let ended = started + render_ms;
    let end = if fail {
        json!({"state": "error", "errorAt": iso(ended), "error": ["Error: missing font Helvetica"]})
    } else {
        json!({"state": "finished", "finishedAt": iso(ended), "renderProgress": 100})
    };
    server.update(uid, end).await;
    (started - created, ended - started)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_numbers_are_what_the_server_holds_and_each_end_counts_once() {
    // Before the exporter starts: a job that finished (the baseline, not
    // counted), one rendering, two queued.
    let Some(server) = NexrenderServer::start(SECRET, &[]).await else {
        return;
    };
    let before = server
        .create("https://cdn.example.com/t/promo.aep?sig=1", "tv")
        .await;
    render(&server, &before, 1_000, 2_000, false).await;
    let going = server
        .create("https://cdn.example.com/t/promo.aep?sig=2", "tv")
        .await;
    server
        .update(&going, json!({"state": "render:download"}))
        .await;
    for _ in 0..2 {
        server
            .create("file:///srv/aep/lower-third.aep", "web")
            .await;
    }
    let exporter = Exporter::start(&account(&server, "farm", ""), &[]);
    let m = exporter.first_poll("farm").await;
    assert_eq!(value(&m, "nexrender_up{account=\"farm\"}"), Some(1.0));
    assert_states_match(&m, &states(&server).await);
    assert_eq!(
        completed(&m, "farm", "finished"),
        Some(0.0),
        "the baseline is not counted"
    );
    assert_eq!(completed(&m, "farm", "error"), Some(0.0));
    assert!(
        !m.contains(
            "nexrender_jobs_completed_total{account=\"farm\",status=\"manually_cancelled\"}"
        ),
        "the server has no such status"
    );

    // After the start: a worker picks the oldest queued job; three new jobs
    // are rendered, one of them fails.
    let picked = server.pickup().await;
    assert_eq!(picked["state"], "picked");
    let mut waits = Vec::new();
    let mut renders = Vec::new();
    let mut turnarounds = Vec::new();
    for (i, fail) in [false, false, true].into_iter().enumerate() {
        let uid = server
            .create("https://cdn.example.com/t/promo.aep", "tv")
            .await;
        let (wait, took) = render(
            &server,
            &uid,
            1_500 + 1_000 * i as i64,
            30_000 + 7_250 * i as i64,
            fail,
        )
        .await;
        waits.push(wait as f64 / 1000.0);
        turnarounds.push((wait + took) as f64 / 1000.0);
        if !fail {
            renders.push(took as f64 / 1000.0);
        }
    }
    // The job rendering at the start finishes too.
    let job = server
        .jobs()
        .await
        .into_iter()
        .find(|j| j["uid"] == going.as_str())
        .unwrap();
    let going_start = millis(&job["createdAt"]).unwrap() + 500;
    server
        .update(&going, json!({"state": "finished", "startedAt": iso(going_start), "finishedAt": iso(going_start + 12_000)}))
        .await;
    renders.push(12.0);
    turnarounds.push(12.5);

    let m = exporter.polls("farm", 2).await;
    let truth = states(&server).await;
    assert_states_match(&m, &truth);
    assert_eq!(truth["picked"], 1.0);
    assert_eq!(completed(&m, "farm", "finished"), Some(3.0));
    assert_eq!(completed(&m, "farm", "error"), Some(1.0));
    assert_eq!(
        histogram(&m, "farm", "render_duration", "count"),
        Some(renders.len() as f64)
    );
    let sum = histogram(&m, "farm", "render_duration", "sum").unwrap();
    assert!(
        (sum - renders.iter().sum::<f64>()).abs() < 1e-6,
        "render durations {sum} vs {renders:?}"
    );
    // Turnaround: each end less its creation, the failed one too.
    assert_eq!(histogram(&m, "farm", "turnaround", "count"), Some(4.0));
    let sum = histogram(&m, "farm", "turnaround", "sum").unwrap();
    assert!(
        (sum - turnarounds.iter().sum::<f64>()).abs() < 1e-6,
        "turnarounds {sum} vs {turnarounds:?}"
    );
    // Queue waits of the jobs seen starting: the three rendered after the
    // start (the one rendering at the start had started already).
    assert_eq!(histogram(&m, "farm", "queue_wait", "count"), Some(3.0));
    let sum = histogram(&m, "farm", "queue_wait", "sum").unwrap();
    assert!(
        (sum - waits.iter().sum::<f64>()).abs() < 1e-6,
        "queue waits {sum} vs {waits:?}"
    );

    // More polls: nothing ends twice. Each poll reads the listing once.
    let again = exporter.polls("farm", 3).await;
    let polls = value(
        &again,
        "nexrender_exporter_polls_total{account=\"farm\",result=\"success\"}",
    )
    .unwrap();
    let reads = value(&again, "nexrender_exporter_api_requests_total{account=\"farm\",code=\"200\",endpoint=\"list_jobs\"}").unwrap();
    assert!(
        (polls..=polls + 1.0).contains(&reads),
        "{reads} listings for {polls} polls"
    );
    assert_eq!(
        value(&again, "nexrender_exporter_api_requests_total{account=\"farm\",code=\"200\",endpoint=\"get_job\"}"),
        None,
        "look-ups are answered from the listing"
    );
    assert_eq!(completed(&again, "farm", "finished"), Some(3.0));
    assert_eq!(completed(&again, "farm", "error"), Some(1.0));
    assert_eq!(
        histogram(&again, "farm", "render_duration", "count"),
        Some(3.0)
    );

    // A job deleted while queued leaves the numbers.
    let queued: Vec<String> = server
        .jobs()
        .await
        .into_iter()
        .filter(|j| j["state"] == "queued")
        .map(|j| j["uid"].as_str().unwrap().to_owned())
        .collect();
    server.remove(&queued[0]).await;
    let m = exporter.polls("farm", 2).await;
    assert_states_match(&m, &states(&server).await);
    assert_eq!(jobs(&m, "farm", "queued"), Some(0.0));
    assert!(
        !exporter.log().contains(SECRET),
        "the secret is never logged"
    );
    assert!(!m.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_a_dead_worker_left_is_stale_until_it_moves_again() {
    let now = support::now();
    let old = |uid: &str, state: &str, ago_ms: i64| -> Value {
        let worked = !matches!(state, "queued" | "picked");
        json!({
            "uid": uid, "state": state, "type": "default", "tags": "",
            "template": {"src": "file:///srv/aep/promo.aep", "composition": "main"},
            "assets": [], "actions": {"prerender": [], "postrender": []},
            "createdAt": iso(now - ago_ms - 60_000), "updatedAt": iso(now - ago_ms),
            "startedAt": worked.then(|| iso(now - ago_ms - 30_000)),
            "renderProgress": if state == "render:dorender" { 100 } else { 0 },
        })
    };
    // What @nexrender/worker reports, and so what the server shows: the
    // job `started` when the worker takes it on, `render:dorender` with
    // each whole percent of render progress, then its end; nothing while
    // it downloads assets or runs post-render actions. A worker died two
    // hours ago while downloading (the server shows `started`); another
    // 90 minutes ago in a post-render action (`render:dorender` at 100%);
    // a third holds a job it picked up 80 minutes ago; one job has waited
    // in the queue three hours (no worker's fault: the queue alerts judge
    // it); one render moved a minute ago.
    let seed = [
        old("dead-download", "started", 7_200_000),
        old("dead-encode", "render:dorender", 5_400_000),
        old("dead-picked", "picked", 4_800_000),
        old("waiting", "queued", 10_800_000),
        old("alive", "render:dorender", 60_000),
    ];
    let Some(server) = NexrenderServer::start(SECRET, &seed).await else {
        return;
    };
    let job_url = format!("{}/api/v1/jobs/{{id}}/status", server.url());
    let config = format!(
        "oldest_jobs:\n  job_url: '{job_url}'\n{}",
        account(&server, "farm", "    stale_after: 1h\n")
    );
    let exporter = Exporter::start(&config, &[]);
    let m = exporter.first_poll("farm").await;
    let stale = |m: &str, s: &str| {
        value(
            m,
            &format!("nexrender_jobs_stale{{account=\"farm\",status=\"{s}\"}}"),
        )
    };
    assert_eq!(stale(&m, "started"), Some(1.0), "{m}");
    assert_eq!(
        stale(&m, "render:dorender"),
        Some(1.0),
        "the dead one, not the live one"
    );
    assert_eq!(stale(&m, "picked"), Some(1.0));
    assert_eq!(stale(&m, "queued"), Some(1.0));
    assert_eq!(stale(&m, "render:download"), Some(0.0), "zero-filled");
    assert_eq!(stale(&m, "finished"), None, "ended jobs are never stale");
    // The longest-running job is the one the dead worker holds.
    let since = value(
        &m,
        "nexrender_oldest_job_started_timestamp_seconds{account=\"farm\",status=\"started\"}",
    );
    assert_eq!(since, Some((now - 7_200_000 - 30_000) as f64 / 1000.0));
    // The landing page and /api/v1/oldest-jobs list them by uid, each
    // linked to the server's own status of the job.
    let (code, body) = exporter.get("/api/v1/oldest-jobs").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<(String, String, String)> = v["accounts"][0]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let text = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
            (text("status"), text("id"), text("url"))
        })
        .collect();
    for (status, uid) in [
        ("started", "dead-download"),
        ("picked", "dead-picked"),
        ("queued", "waiting"),
    ] {
        let link = format!("{}/api/v1/jobs/{uid}/status", server.url());
        assert!(
            listed.contains(&(status.into(), uid.into(), link)),
            "{uid}: {listed:?}"
        );
    }
    let (_, page) = exporter.get("/").await.unwrap();
    assert!(
        page.contains("dead-download") && page.contains("farm"),
        "{page}"
    );

    // The worker comes back to it and renders: it is no longer stale.
    server
        .update(
            "dead-download",
            json!({"state": "render:dorender", "renderProgress": 3}),
        )
        .await;
    let m = exporter.polls("farm", 2).await;
    assert_eq!(stale(&m, "started"), Some(0.0));
    assert_eq!(stale(&m, "render:dorender"), Some(1.0));
    assert_eq!(jobs(&m, "farm", "render:dorender"), Some(3.0));
    assert_eq!(jobs(&m, "farm", "started"), Some(0.0));

    // A shorter stale_after on reload (SIGHUP) applies at the next poll,
    // without a restart of the account: the render that moved a minute ago
    // is stale now, the one just resumed is not.
    exporter.reconfigure("stale_after: 1h", "stale_after: 50s");
    let m = exporter
        .wait_for(
            |m| stale(m, "render:dorender") == Some(2.0),
            "the shorter stale_after",
        )
        .await;
    assert_eq!(stale(&m, "started"), Some(0.0));
    assert!(
        exporter.log().contains("new client policy for farm"),
        "{}",
        exporter.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_refused_and_said_so_without_showing_either_secret() {
    let Some(server) = NexrenderServer::start(SECRET, &[]).await else {
        return;
    };
    server.create("file:///srv/aep/promo.aep", "").await;
    let wrong = "wr0ng-secret-never-print-me";
    let yaml = format!(
        "accounts:\n  - name: farm\n    kind: server\n    api_url: {}/api/v1/\n    secret: {wrong}\n",
        server.url()
    );
    let exporter = Exporter::start(&yaml, &[]);
    let key = "nexrender_exporter_poll_errors_total{account=\"farm\",reason=\"unauthorized\"}";
    let m = exporter
        .wait_for(|m| value(m, key).unwrap_or(0.0) >= 1.0, "a refused poll")
        .await;
    assert_eq!(value(&m, "nexrender_up{account=\"farm\"}"), Some(0.0));
    assert!(
        value(&m, "nexrender_exporter_api_requests_total{account=\"farm\",code=\"403\",endpoint=\"list_jobs\"}")
            .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(
        jobs(&m, "farm", "queued"),
        None,
        "no numbers without a good poll"
    );
    let log = exporter.log();
    assert!(log.contains("403"), "{log}");
    for secret in [wrong, SECRET] {
        assert!(!log.contains(secret) && !m.contains(secret));
    }
    // The right secret on reload (SIGHUP): polled again, no restart.
    exporter.reconfigure(wrong, SECRET);
    let m = exporter
        .wait_for(
            |m| jobs(m, "farm", "queued") == Some(1.0),
            "the numbers with the right secret",
        )
        .await;
    assert_eq!(value(&m, "nexrender_up{account=\"farm\"}"), Some(1.0));
    assert!(!exporter.log().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_going_away_keeps_the_numbers_and_its_return_counts_nothing_twice() {
    let Some(mut server) = NexrenderServer::start(SECRET, &[]).await else {
        return;
    };
    server.create("file:///srv/aep/promo.aep", "").await;
    let exporter = Exporter::start(&account(&server, "farm", ""), &[]);
    exporter.first_poll("farm").await;
    let uid = server.create("file:///srv/aep/promo.aep", "").await;
    render(&server, &uid, 1_000, 4_000, false).await;
    let m = exporter.polls("farm", 2).await;
    assert_eq!(completed(&m, "farm", "finished"), Some(1.0));

    server.kill();
    let m = exporter
        .wait_for(
            |m| value(m, "nexrender_up{account=\"farm\"}") == Some(0.0),
            "nexrender_up 0 with the server gone",
        )
        .await;
    let refused = "nexrender_exporter_poll_errors_total{account=\"farm\",reason=\"connect\"}";
    assert!(value(&m, refused).is_some_and(|n| n >= 1.0), "{m}");
    assert_eq!(
        jobs(&m, "farm", "queued"),
        Some(1.0),
        "the last numbers stay"
    );
    assert_eq!(completed(&m, "farm", "finished"), Some(1.0));
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.restart().await;
    let uid = server.create("file:///srv/aep/promo.aep", "").await;
    render(&server, &uid, 1_000, 6_000, false).await;
    let m = exporter
        .wait_for(
            |m| {
                completed(m, "farm", "finished") == Some(2.0)
                    && value(m, "nexrender_up{account=\"farm\"}") == Some(1.0)
            },
            "the second finish, counted once the server is back",
        )
        .await;
    assert_eq!(histogram(&m, "farm", "render_duration", "sum"), Some(10.0));
    let m = exporter.polls("farm", 2).await;
    assert_eq!(
        completed(&m, "farm", "finished"),
        Some(2.0),
        "not counted twice"
    );
    assert_states_match(&m, &states(&server).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_filter_on_this_side_and_templates_come_from_each_jobs_source() {
    let Some(server) = NexrenderServer::start(SECRET, &[]).await else {
        return;
    };
    let config = format!(
        "metrics:\n  templates: {{enabled: true}}\n  error_reasons: [{{reason: missing_font, pattern: '(?i)missing font'}}]\n{}  - name: tv\n    kind: server\n    api_url: {}\n    secret: {SECRET}\n    tags: [tv]\n",
        account(&server, "farm", ""),
        server.url()
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.first_poll("tv").await;
    let signed =
        |n: u32| format!("https://user:pw@cdn.example.com/t/promo.aep?X-Amz-Signature={n}");
    for (i, (tags, fail)) in [("tv", false), ("tv,web", true), ("web", false), ("", false)]
        .into_iter()
        .enumerate()
    {
        let uid = server.create(&signed(i as u32), tags).await;
        render(&server, &uid, 1_000, 2_000, fail).await;
    }
    server
        .create("file:///srv/aep/lower-third.aep", "web, tv")
        .await;
    let m = exporter.polls("tv", 2).await;
    let m = if completed(&m, "farm", "finished").unwrap_or(0.0) < 3.0 {
        exporter.polls("farm", 1).await
    } else {
        m
    };
    // Every job for the farm; the jobs tagged tv (any of a job's
    // comma-separated tags) for tv.
    assert_eq!(completed(&m, "farm", "finished"), Some(3.0));
    assert_eq!(completed(&m, "farm", "error"), Some(1.0));
    assert_eq!(completed(&m, "tv", "finished"), Some(1.0));
    assert_eq!(completed(&m, "tv", "error"), Some(1.0));
    assert_eq!(jobs(&m, "tv", "queued"), Some(1.0));
    assert_eq!(jobs(&m, "farm", "queued"), Some(1.0));
    // The template is the source without its signature or credentials,
    // named by its file.
    let promo = "nexrender_template_jobs_completed_total{account=\"farm\",status=\"finished\",template=\"promo.aep\",template_id=\"https://cdn.example.com/t/promo.aep\"}";
    assert_eq!(value(&m, promo), Some(3.0), "{m}");
    assert!(
        !m.contains("nexrender_template_jobs_completed_total{account=\"farm\",status=\"manually_cancelled\""),
        "the server has no such status"
    );
    assert_eq!(
        value(
            &m,
            "nexrender_job_errors_total{account=\"tv\",reason=\"missing_font\"}"
        ),
        Some(1.0),
        "the error text of a failed job"
    );
    assert!(!m.contains("X-Amz-Signature") && !m.contains("user:pw"));
}

/// `n` jobs as the server stores them, created over the last 20 hours:
/// most finished, some failed, a few rendering or queued, each with two
/// assets and an encoding action, as a production job looks.
fn farm_of(n: usize, now: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let created = now - 72_000_000 + (i as i64 * 72_000_000 / n as i64);
            let (state, started, ended) = match i % 100 {
                _ if i + 20 >= n => ("queued", None, None),
                _ if i + 25 >= n => ("render:dorender", Some(created + 5_000), None),
                0 | 1 => ("error", Some(created + 5_000), Some(created + 65_000)),
                _ => ("finished", Some(created + 5_000), Some(created + 125_000)),
            };
            json!({
                "uid": format!("{i:0>8}-{:x}", i * 7919), "type": "default", "state": state,
                "output": format!("/renders/{i}.mp4"), "tags": if i % 3 == 0 { "tv" } else { "web" },
                "priority": 0, "timings": {"setup": 120, "dorender": 110_000},
                "template": {"src": format!("https://cdn.example.com/aep/t{}.aep", i % 12), "composition": "main"},
                "assets": [
                    {"type": "image", "src": format!("https://cdn.example.com/img/{i}.png"), "layerName": "photo.png"},
                    {"type": "data", "layerName": "title", "property": "Source Text", "value": format!("Title {i}")}
                ],
                "actions": {"prerender": [], "postrender": [{"module": "@nexrender/action-encode", "preset": "mp4", "output": "encoded.mp4"}]},
                "creator": "10.0.0.2", "executor": started.map(|_| "10.0.0.7"),
                "createdAt": iso(created), "updatedAt": iso(ended.or(started).unwrap_or(created)),
                "startedAt": started.map(iso), "finishedAt": (state == "finished").then(|| ended.map(iso)).flatten(),
                "errorAt": (state == "error").then(|| ended.map(iso)).flatten(),
                "error": (state == "error").then_some("Error: missing font Helvetica"),
                "renderProgress": if ended.is_some() { 100 } else { 0 },
            })
        })
        .collect()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What listing a server without paging costs: the real binary polls the
/// real server holding `n` jobs (`NEXRENDER_SERVER_COST_JOBS`, a comma list;
/// 2,000 by default, as a check that the numbers are right at some size),
/// beside an exporter polling an empty server for its idle memory. Prints
/// a poll's wall time, its bytes, resident memory per job above idle and
/// the peak, and the server's own time to answer the listing (what no
/// poll can beat). `docs/performance.md` has the figures and the command.
#[tokio::test(flavor = "multi_thread")]
async fn listing_cost() {
    let sizes: Vec<usize> = std::env::var("NEXRENDER_SERVER_COST_JOBS")
        .unwrap_or_else(|_| "2000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("a job count"))
        .collect();
    let Some(empty) = NexrenderServer::start(SECRET, &[]).await else {
        return;
    };
    // With NEXRENDER_SERVER_COST_TEMPLATES=1, the template breakdown is on:
    // whole jobs are read (`GET /api/v1/jobs`) instead of the projection.
    let templates = std::env::var_os("NEXRENDER_SERVER_COST_TEMPLATES").is_some();
    let config = |server: &NexrenderServer| {
        support::yaml_file(&format!(
            "poll:\n  interval: 5s\n  window: 48h\n  request_timeout: 60s\n  timeout: 120s\n  max_response_bytes: 268435456\nmetrics:\n  templates: {{enabled: {templates}}}\n{}",
            account(server, "farm", "")
        ))
    };
    let idle = Exporter::binary_with(config(&empty), &[]);
    idle.polls("farm", 2).await;
    let resident = |m: &str| value(m, "process_resident_memory_bytes").unwrap_or(0.0);
    let idle_rss = resident(&idle.metrics().await);
    for n in sizes {
        let now = support::now();
        let Some(server) = NexrenderServer::start(SECRET, &farm_of(n, now)).await else {
            return;
        };
        let reference = std::time::Instant::now();
        let listing = if templates { "jobs" } else { "jobs/status" };
        let body = reqwest::Client::new()
            .get(format!("{}/api/v1/{listing}", server.url()))
            .header("nexrender-secret", SECRET)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let server_alone = reference.elapsed();
        let exporter = Exporter::binary_with(config(&server), &[]);
        let first = exporter.first_poll("farm").await;
        let first_took = value(
            &first,
            "nexrender_exporter_poll_duration_seconds{account=\"farm\"}",
        );
        // The peak of the first poll (the baseline, which looks every
        // ended job up once for its creation time), then the peak counter
        // reset (`clear_refs` 5), for the peak of the polls after it.
        let first_peak = peak_rss_kib(exporter.pid());
        let _ = std::fs::write(format!("/proc/{}/clear_refs", exporter.pid()), "5");
        let m = exporter.polls("farm", 3).await;
        let truth = states(&server).await;
        assert_states_match(&m, &truth);
        let polls = value(
            &m,
            "nexrender_exporter_polls_total{account=\"farm\",result=\"success\"}",
        )
        .unwrap();
        let bytes = value(
            &m,
            "nexrender_exporter_api_response_bytes_total{account=\"farm\",endpoint=\"list_jobs\"}",
        )
        .unwrap();
        let took = value(
            &m,
            "nexrender_exporter_poll_duration_seconds{account=\"farm\"}",
        )
        .unwrap();
        let rss = resident(&m);
        println!(
            "self-hosted listing{}, {n} jobs: poll {:.0} ms (first {:.0} ms), {:.0} KiB a poll; the server alone answers /{listing} in {:.0} ms ({} KiB); \
             resident {:.1} MB, {:.0} bytes per job above an idle exporter ({:.1} MB), peak {:.1} MB in the first poll, {:.1} MB in the 3 after; tracked {}",
            if templates { " (templates on)" } else { "" },
            took * 1000.0,
            first_took.unwrap_or(0.0) * 1000.0,
            bytes / polls / 1024.0,
            server_alone.as_secs_f64() * 1000.0,
            body.len() / 1024,
            rss / 1e6,
            (rss - idle_rss) / n as f64,
            idle_rss / 1e6,
            first_peak as f64 * 1024.0 / 1e6,
            peak_rss_kib(exporter.pid()) as f64 * 1024.0 / 1e6,
            value(&m, "nexrender_exporter_tracked_jobs{account=\"farm\"}").unwrap_or(0.0),
        );
    }
}
