//! Sharding across replicas: two shards and one unsharded exporter, each
//! started in this process as the binary starts it (`--shard.*` flags), against the same simulated accounts (one simulator per
//! account, so each simulator's request count is that account's).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nexrender_exporter::shard::Shard;
use nexrender_simulator::server::RunningSimulator;
use nexrender_simulator::ScriptedJob;
use support::*;

const SECRET: &str = "whs-shard-never-print-me";

/// Accounts `team-0`..`team-7`, each on its own simulator with its own
/// number of finished and queued jobs.
async fn accounts() -> Vec<(String, RunningSimulator)> {
    let mut out = Vec::new();
    let t = now();
    for i in 0..8 {
        let sim = scripted_simulator().await;
        sim.sim.with_farm(|f| {
            for j in 0..(10 + 7 * i) {
                f.insert_scripted(finished(t - 50 * 60_000 + j * 1000, 2000, 30_000));
            }
            for j in 0..i {
                f.insert_scripted(ScriptedJob::queued(t - 10 * 60_000 + j * 1000));
            }
        });
        out.push((format!("team-{i}"), sim));
    }
    out
}

/// The same configuration for every process: every account, a webhook
/// secret each, an hour between polls (so the first poll is the only one).
fn config(accounts: &[(String, RunningSimulator)], webhook_port: u16) -> String {
    let mut c = format!(
        "poll:\n  interval: 1h\n  window: 1h\n  page_size: 50\n  request_timeout: 2s\nwebhook:\n  listen_address: 127.0.0.1:{webhook_port}\naccounts:\n"
    );
    for (name, sim) in accounts {
        c += &format!(
            "  - name: {name}\n    api_url: {}\n    token: {TOKEN}\n    webhook_secret: {SECRET}\n",
            sim.api_url()
        );
    }
    c
}

async fn ready(exp: &Exporter) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = exp.get("/readyz").await {
            return exp.metrics().await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready: {}",
            exp.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every series that names an account, without its value, by account.
fn series_by_account(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, _)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Some(rest) = series.split("account=\"").nth(1) {
            let account = rest.split('"').next().unwrap_or_default();
            out.entry(account.to_owned())
                .or_default()
                .insert(series.to_owned());
        }
    }
    out
}

fn api_requests(text: &str, account: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("nexrender_exporter_api_requests_total{")
                && l.contains(&format!("account=\"{account}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_shards_add_up_to_one_unsharded_exporter_and_no_account_is_polled_twice() {
    let accounts = accounts().await;
    let names: Vec<&str> = accounts.iter().map(|(n, _)| n.as_str()).collect();
    let owners: Vec<u32> = names.iter().map(|n| Shard::of(n, 2)).collect();
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "both shards have accounts: {owners:?}"
    );
    let start = |shard: Option<u32>| {
        let port = free_port();
        let file = yaml_file(&config(&accounts, port));
        let args: Vec<String> = match shard {
            Some(i) => vec![
                "--shard.index".into(),
                i.to_string(),
                "--shard.total".into(),
                "2".into(),
            ],
            None => vec![],
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (Exporter::start_with(file, &args), port)
    };
    let (shard0, hook0) = start(Some(0));
    let (shard1, _) = start(Some(1));
    let (whole, _) = start(None);
    let (m0, m1, all) = (
        ready(&shard0).await,
        ready(&shard1).await,
        ready(&whole).await,
    );

    // The union of the shards' series is the unsharded exporter's, account
    // by account, and no account has series in both shards.
    let (s0, s1, sall) = (
        series_by_account(&m0),
        series_by_account(&m1),
        series_by_account(&all),
    );
    let mut union = s0.clone();
    for (account, series) in &s1 {
        assert!(
            !s0.contains_key(account),
            "{account} has series in both shards"
        );
        union.insert(account.clone(), series.clone());
    }
    assert_eq!(union, sall, "the shards' series, added up");
    assert_eq!(sall.len(), 8, "{:?}", sall.keys());
    for (i, name) in names.iter().enumerate() {
        let shard_text = if owners[i] == 0 { &m0 } else { &m1 };
        for status in ["finished", "queued"] {
            assert_eq!(
                jobs(shard_text, name, status),
                jobs(&all, name, status),
                "{name} {status}"
            );
        }
        assert_eq!(
            jobs(&all, name, "finished"),
            Some((10 + 7 * i) as f64),
            "{name}"
        );
    }

    // Each account's simulator was asked exactly what the unsharded
    // exporter and the one shard that owns it say they asked: nothing from
    // the other shard, nothing unaccounted for.
    for (i, (name, sim)) in accounts.iter().enumerate() {
        let (mine, other) = if owners[i] == 0 {
            (&m0, &m1)
        } else {
            (&m1, &m0)
        };
        assert!(api_requests(mine, name) > 0.0, "{name} polled by its shard");
        assert_eq!(
            api_requests(other, name),
            0.0,
            "{name} not polled by the other shard"
        );
        assert_eq!(
            sim.sim.requests() as f64,
            api_requests(mine, name) + api_requests(&all, name),
            "{name}: the simulator's own count"
        );
    }

    // Each process says which shard it is, and how many accounts it polls.
    let here = |m: &str| value(m, "nexrender_exporter_shard_accounts{polled=\"here\"}").unwrap();
    assert_eq!(here(&m0) + here(&m1), 8.0);
    assert_eq!(here(&all), 8.0);
    assert_eq!(
        value(
            &m1,
            "nexrender_exporter_shard_info{index=\"1\",total=\"2\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "nexrender_exporter_shard_info{index=\"0\",total=\"1\"}"
        ),
        Some(1.0)
    );
    let (_, landing) = shard1.get("/").await.unwrap();
    assert!(landing.contains("Shard 1 of 2"), "{landing}");

    // A delivery for an account of shard 1 sent to shard 0's receiver is
    // refused (401, as for any name this receiver does not take) and
    // counted as misdirected, not as a completion.
    let stranger = names[owners.iter().position(|&o| o == 1).unwrap()];
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook0}/webhooks/{stranger}"))
        .header("X-Nexrender-Webhook-Secret", SECRET)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let m0 = shard0
        .wait_for(
            |m| {
                value(
                    m,
                    "nexrender_exporter_webhook_requests_unroutable_total{reason=\"other_shard\"}",
                ) == Some(1.0)
            },
            "the misdirected delivery counted",
        )
        .await;
    assert!(!m0.contains(&format!("account=\"{stranger}\"")));

    // Every queued job ends; all three processes poll every second from
    // now on (SIGHUP). Once each has polled each of its accounts twice
    // more, the shards' farm numbers equal the unsharded exporter's, value
    // for value, completions and histograms included.
    let t = now();
    for (_, sim) in &accounts {
        let queued: Vec<ulid::Ulid> = sim.sim.with_farm(|f| {
            f.jobs()
                .iter()
                .filter(|j| !j.status.is_terminal())
                .map(|j| j.id)
                .collect()
        });
        for id in queued {
            sim.sim
                .with_farm(|f| {
                    f.script_status(id, nexrender_simulator::status::JobStatus::Finished, t)
                })
                .unwrap();
        }
    }
    for exp in [&shard0, &shard1, &whole] {
        exp.reconfigure("interval: 1h", "interval: 1s");
    }
    for (i, name) in names.iter().enumerate() {
        let shard = if owners[i] == 0 { &shard0 } else { &shard1 };
        shard.polls(name, 2).await;
        whole.polls(name, 2).await;
    }
    let (m0, m1, all) = (
        shard0.metrics().await,
        shard1.metrics().await,
        whole.metrics().await,
    );
    let farm = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| {
                [
                    "nexrender_jobs{",
                    "nexrender_jobs_completed_total{",
                    "nexrender_job_render_duration_seconds_",
                    "nexrender_job_queue_wait_seconds_",
                    "nexrender_oldest_job_created_timestamp_seconds{",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(series, value)| (series.to_owned(), value.to_owned()))
            .collect()
    };
    let mut union = farm(&m0);
    union.extend(farm(&m1));
    assert_eq!(union, farm(&all), "the shards' numbers, value for value");
    let ended: f64 = (0..8).map(|i| i as f64).sum();
    let counted: f64 = names
        .iter()
        .map(|n| completed(&all, n, "finished").unwrap_or(0.0))
        .sum();
    assert_eq!(counted, ended, "every queued job's end counted once");
}
