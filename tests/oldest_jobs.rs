//! From the alert to the job (issue #25): the oldest jobs of each status
//! not ended, by id. The real poller polls the real simulator on a clock the
//! test moves, while jobs arrive faster than two workers render them; after
//! every poll the listed jobs, and the job `nexrender_oldest_job_info`
//! names, are held against the farm's own oldest jobs.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use nexrender_exporter::config::PollConfig;
use nexrender_simulator::clock::Clock as _;
use nexrender_simulator::server::RunningSimulator;
use nexrender_simulator::{LifecycleConfig, PrefillConfig, SimulatorConfig};
use support::clock::Rig;

const LISTED: usize = 5;

fn backlogged_farm() -> SimulatorConfig {
    SimulatorConfig {
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 6.0,
            render_median: Duration::from_secs(60),
            workers: 2,
            ..LifecycleConfig::default()
        },
        prefill: PrefillConfig {
            jobs: 300,
            span: Duration::from_secs(86_400),
        },
        seed: 25,
        ..SimulatorConfig::default()
    }
}

fn settings() -> PollConfig {
    PollConfig {
        interval: Duration::from_secs(15),
        window: Duration::from_secs(86_400),
        page_size: 1000,
        detail_concurrency: 8,
        timeout: Duration::from_secs(60),
        ..PollConfig::default()
    }
}

/// A job as the farm has it: id and template id.
type Truth = BTreeMap<String, Vec<(String, Option<String>)>>;

/// The farm's `n` oldest jobs of each status not ended, oldest first (ties
/// by id; jobs in progress by their start, the longest-running first), with
/// their template ids.
fn farm_oldest(sim: &RunningSimulator, n: usize) -> Truth {
    sim.sim.with_farm(|f| {
        let mut by: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for j in f.jobs().iter().filter(|j| !j.status.is_terminal()) {
            let template = j.template.and_then(|t| f.template_id(t)).map(str::to_owned);
            // Jobs in progress rank by their start, waiting ones by their
            // creation.
            let rank = j.started_at.unwrap_or(j.created_at);
            by.entry(j.status.to_string()).or_default().push((
                rank,
                j.id,
                j.api_id().into_owned(),
                template,
            ));
        }
        by.into_iter()
            .map(|(status, mut jobs)| {
                jobs.sort();
                let kept = jobs
                    .into_iter()
                    .take(n)
                    .map(|(_, _, id, t)| (id, t))
                    .collect();
                (status, kept)
            })
            .collect()
    })
}

/// A label's value on one exposition line.
fn label<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
    let len = line[start..].find('"').expect("closing quote");
    &line[start..start + len]
}

/// `nexrender_oldest_job_info` of account main: status -> (job id, template).
fn info(m: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut by: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in m
        .lines()
        .filter(|l| l.starts_with("nexrender_oldest_job_info{"))
    {
        assert!(line.ends_with("} 1"), "{line}");
        by.entry(label(line, "status").to_owned())
            .or_default()
            .push((
                label(line, "job_id").to_owned(),
                label(line, "template").to_owned(),
            ));
    }
    by
}

async fn step(r: &mut Rig) -> String {
    r.clock.set(r.clock.now_millis() + 15_000);
    r.poller.poll().await;
    r.metrics()
}

/// Every poll's lists are the farm's oldest five of each status, in order;
/// the info series is one per status that has jobs, naming the oldest; a
/// listed job's template is known from the poll after it was listed; the
/// lists follow the farm as jobs start and end, and a status left with no
/// job loses its series.
#[tokio::test]
async fn the_listed_oldest_jobs_are_the_farms_and_follow_it() {
    let mut r = Rig::start(backlogged_farm(), settings()).await;
    let board = r.poller.board();
    let mut previous: BTreeSet<String> = BTreeSet::new();
    let mut oldest_queued_seen: HashSet<String> = HashSet::new();
    for poll in 0..40 {
        let m = step(&mut r).await;
        let truth = farm_oldest(&r.sim, LISTED);
        let listed = board.oldest("main");
        for (status, jobs) in &truth {
            let shown: Vec<&str> = listed
                .iter()
                .filter(|j| &j.status == status)
                .map(|j| j.id.as_str())
                .collect();
            let want: Vec<&str> = jobs.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(shown, want, "poll {poll}: the oldest {status} jobs");
        }
        assert!(
            listed.iter().all(|j| truth.contains_key(&j.status)),
            "poll {poll}: nothing listed under a status without jobs"
        );
        let info = info(&m);
        assert_eq!(
            info.keys().collect::<Vec<_>>(),
            truth.keys().collect::<Vec<_>>(),
            "poll {poll}: one info series per status with jobs, no more"
        );
        for (status, series) in &info {
            assert_eq!(series.len(), 1, "poll {poll}: {status}: {series:?}");
            assert_eq!(
                series[0].0, truth[status][0].0,
                "poll {poll}: the oldest {status}"
            );
        }
        // A job listed at the poll before was looked up since: its template
        // is the farm's.
        for j in listed.iter().filter(|j| previous.contains(&j.id)) {
            let want = truth[&j.status].iter().find(|(id, _)| *id == j.id).unwrap();
            assert!(j.looked_up, "poll {poll}: {} not looked up", j.id);
            assert_eq!(j.template_id, want.1, "poll {poll}: {}'s template", j.id);
        }
        previous = listed.iter().map(|j| j.id.clone()).collect();
        if let Some(q) = info.get("queued") {
            oldest_queued_seen.insert(q[0].0.clone());
        }
    }
    assert!(
        oldest_queued_seen.len() > 3,
        "the oldest queued job changed as jobs started: {oldest_queued_seen:?}"
    );

    // Arrivals stop and the workers drain the queue: no job waits, and the
    // queued series goes.
    r.sim.sim.with_farm(|f| f.stop_arrivals());
    let mut m = String::new();
    for _ in 0..400 {
        m = step(&mut r).await;
        if farm_oldest(&r.sim, LISTED).is_empty() {
            break;
        }
    }
    assert!(farm_oldest(&r.sim, LISTED).is_empty(), "the farm drained");
    m = if m.is_empty() { step(&mut r).await } else { m };
    assert!(
        info(&m).is_empty(),
        "no job waits or renders: no info series"
    );
    assert!(board.oldest("main").is_empty());
}

/// The look-ups the lists cost: at most one per job while it is listed,
/// against the same farm polled with the lists off.
#[tokio::test]
async fn listing_costs_at_most_one_look_up_per_listed_job() {
    let lookups = |m: &str| {
        support::value(
            m,
            "nexrender_exporter_api_request_duration_seconds_count{account=\"main\",endpoint=\"get_job\"}",
        )
        .unwrap_or(0.0)
    };
    let mut on = Rig::start(backlogged_farm(), settings()).await;
    let mut off = Rig::start(backlogged_farm(), settings()).await;
    off.poller = off.poller.clone().listing_oldest(0);
    let board = on.poller.board();
    let mut ever_listed: HashSet<String> = HashSet::new();
    let (mut with, mut without) = (String::new(), String::new());
    for _ in 0..40 {
        with = step(&mut on).await;
        without = step(&mut off).await;
        ever_listed.extend(board.oldest("main").into_iter().map(|j| j.id));
    }
    assert!(info(&without).is_empty(), "off: no info series");
    let extra = lookups(&with) - lookups(&without);
    println!(
        "40 polls: {} look-ups with the lists, {} without; {} jobs listed at some point",
        lookups(&with),
        lookups(&without),
        ever_listed.len()
    );
    assert!(extra >= 0.0);
    assert!(
        extra <= ever_listed.len() as f64,
        "{extra} extra look-ups for {} jobs ever listed",
        ever_listed.len()
    );
}

/// The whole exporter: `/api/v1/oldest-jobs` lists each account's oldest
/// jobs with their ages, starts and links (an id that is not a ULID
/// encoded in its link), the landing page shows them as a table, and when
/// the oldest queued job ends both move on to the next.
#[tokio::test]
async fn the_endpoint_and_the_landing_page_lead_from_the_account_to_the_job() {
    use nexrender_simulator::status::JobStatus;
    use nexrender_simulator::{ApiId, ScriptedJob};
    const MIN: i64 = 60_000;
    let sim = support::scripted_simulator().await;
    let (legacy, queued, rendering) = sim.sim.with_farm(|f| {
        let t = f.now();
        let legacy = f.insert_scripted(ScriptedJob {
            id: ApiId::Text("render-legacy/7".into()),
            ..ScriptedJob::queued(t - 50 * MIN)
        });
        let queued = f.insert_scripted(ScriptedJob::queued(t - 45 * MIN));
        f.insert_scripted(ScriptedJob::queued(t - 10 * MIN));
        let rendering = f.insert_scripted(ScriptedJob {
            status: JobStatus::Rendering,
            started_at: Some(t - 20 * MIN),
            ..ScriptedJob::queued(t - 30 * MIN)
        });
        (legacy, queued, rendering)
    });
    let config = format!(
        "poll:\n  interval: 1s\n  window: 1h\noldest_jobs:\n  per_status: 2\n  job_url: https://app.example.com/{{account}}/jobs/{{id}}\naccounts:\n{}",
        support::account_yaml("main", &sim)
    );
    let exp = support::Exporter::start_with(support::yaml_file(&config), &[]);
    let listed = |body: &str| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["accounts"][0]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["status"].as_str().unwrap().to_owned(),
                    j["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // The legacy id says no time: it is listed once its look-up gave its
    // createdAt, a poll or two in.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = exp.get("/api/v1/oldest-jobs").await.unwrap_or_default();
        if code == 200 && listed(&body).len() == 3 && listed(&body)[0].1 == "render-legacy/7" {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "never listed: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (queued, rendering) = (queued.to_string(), rendering.to_string());
    assert_eq!(
        listed(&body),
        [
            ("queued".into(), "render-legacy/7".into()),
            ("queued".into(), queued.clone()),
            ("render:dorender".into(), rendering.clone())
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let jobs = &v["accounts"][0]["jobs"];
    let age = jobs[0]["age_seconds"].as_f64().unwrap();
    assert!((3000.0..3060.0).contains(&age), "50 minutes old: {age}");
    assert_eq!(
        jobs[0]["url"],
        "https://app.example.com/main/jobs/render-legacy%2F7"
    );
    let running = jobs[2]["running_seconds"].as_f64().unwrap();
    assert!(
        (1200.0..1260.0).contains(&running),
        "started 20 minutes ago: {running}"
    );
    let (_, page) = exp.get("/").await.unwrap();
    assert!(
        page.contains(&format!(
            "<a href=\"https://app.example.com/main/jobs/{queued}\">{queued}</a>"
        )),
        "{page}"
    );
    let m = exp.metrics().await;
    assert!(
        m.contains("nexrender_oldest_job_info{account=\"main\",job_id=\"render-legacy/7\",status=\"queued\""),
        "{m}"
    );

    // The oldest queued job ends: the next one takes its place.
    sim.sim.with_farm(|f| {
        let at = f.now();
        f.script_status(legacy, JobStatus::Finished, at).unwrap();
    });
    let m = exp
        .wait_for(
            |m| m.contains(&format!("job_id=\"{queued}\",status=\"queued\"")),
            "the next oldest queued job in nexrender_oldest_job_info",
        )
        .await;
    assert_eq!(
        m.lines()
            .filter(
                |l| l.starts_with("nexrender_oldest_job_info{") && l.contains("status=\"queued\"")
            )
            .count(),
        1,
        "the old series went: {m}"
    );
}
