//! SIGHUP reloads the config file: accounts come and go, settings change,
//! counters of unchanged accounts stay, a bad file changes nothing.

mod support;

use nexrender_simulator::status::JobStatus;
use nexrender_simulator::ScriptedJob;
use support::*;

fn config(body: &str) -> String {
    format!("poll:\n  interval: 1s\n  window: 1h\naccounts:\n{body}")
}

#[tokio::test]
async fn sighup_adds_and_removes_accounts_keeps_counters_and_rejects_a_bad_file() {
    let one = scripted_simulator().await;
    let two = scripted_simulator().await;
    let t = now();
    let id = one
        .sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - 60_000)));
    two.sim
        .with_farm(|f| f.insert_scripted(ScriptedJob::queued(t - 60_000)));
    let exp = Exporter::binary_with(yaml_file(&config(&account_yaml("one", &one))), &[]);
    exp.polls("one", 1).await;
    set_status(&one, id, JobStatus::Finished);
    exp.wait_for(
        |m| completed(m, "one", "finished") == Some(1.0),
        "one's job counted",
    )
    .await;

    // Add account two.
    std::fs::write(
        exp.config.path(),
        config(&format!(
            "{}{}",
            account_yaml("one", &one),
            account_yaml("two", &two)
        )),
    )
    .unwrap();
    exp.signal("HUP");
    let m = exp.polls("two", 1).await;
    assert_eq!(jobs(&m, "two", "queued"), Some(1.0));
    assert_eq!(
        completed(&m, "one", "finished"),
        Some(1.0),
        "one's counter kept across the reload"
    );
    let m = exp.polls("one", 2).await;
    assert_eq!(
        completed(&m, "one", "finished"),
        Some(1.0),
        "and one's tracker too: nothing recounted"
    );

    // A broken file is rejected; both accounts go on.
    std::fs::write(exp.config.path(), "poll:\n  interval: soon\n").unwrap();
    exp.signal("HUP");
    exp.polls("one", 2).await;
    exp.polls("two", 2).await;
    assert!(exp.log().contains("reload rejected"), "{}", exp.log());

    // Remove account one: its series go.
    std::fs::write(exp.config.path(), config(&account_yaml("two", &two))).unwrap();
    exp.signal("HUP");
    let m = exp
        .wait_for(|m| !m.contains("account=\"one\""), "one's series removed")
        .await;
    assert_eq!(jobs(&m, "two", "queued"), Some(1.0));
    let m = exp.polls("two", 1).await;
    assert!(!m.contains("account=\"one\""));
    let (_, page) = exp.get("/").await.unwrap();
    assert!(!page.contains("<td>one</td>") && page.contains("<td>two</td>"));
    let log = exp.log();
    assert!(
        log.contains("added two") && log.contains("removed one"),
        "{log}"
    );
}

#[tokio::test]
async fn a_reload_rejected_for_an_unquoted_numeric_or_boolean_token_never_echoes_it() {
    let sim = scripted_simulator().await;
    let good = config(&account_yaml("one", &sim));
    let exp = Exporter::start_with(yaml_file(&good), &[]);
    let m = exp.polls("one", 1).await;
    let reloaded = |m: &str| value(m, "nexrender_exporter_config_last_reload_successful");
    let reloaded_at = |m: &str| {
        value(
            m,
            "nexrender_exporter_config_last_reload_success_timestamp_seconds",
        )
    };
    assert_eq!(reloaded(&m), Some(1.0), "the start's load counts");
    let started_at = reloaded_at(&m).unwrap();
    assert!(
        (started_at - now() as f64 / 1000.0).abs() < 60.0,
        "{started_at}"
    );
    let file = exp.config.path().display().to_string();
    let tokens: [(&str, &[&str]); 3] = [
        ("12345678901234567890", &["12345678901234567890"]),
        ("1e10", &["1e10", "10000000000"]),
        ("true", &["true"]),
    ];
    for (n, (token, secrets)) in tokens.into_iter().enumerate() {
        std::fs::write(
            exp.config.path(),
            config(&format!(
                "  - name: one\n    api_url: {}\n    token: {token}\n",
                sim.api_url()
            )),
        )
        .unwrap();
        exp.signal("HUP");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while exp.log().matches("reload rejected").count() <= n {
            assert!(
                std::time::Instant::now() < deadline,
                "no rejection for {token}:\n{}",
                exp.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let log = exp.log();
        let line = log
            .lines()
            .filter(|l| l.contains("reload rejected"))
            .nth(n)
            .unwrap();
        assert!(
            line.contains("token") && line.contains(&file) && line.contains("quote it"),
            "{line}"
        );
        for s in secrets {
            assert!(!log.contains(s), "{s} echoed:\n{log}");
        }
    }
    // The running account went on polling with its good token, and the
    // rejection is on /metrics (as blackbox_exporter says it).
    let m = exp.polls("one", 1).await;
    assert_eq!(reloaded(&m), Some(0.0));
    assert_eq!(
        reloaded_at(&m),
        Some(started_at),
        "the last good load's time stays"
    );
    // A good file again: 1, and a later time.
    std::fs::write(exp.config.path(), &good).unwrap();
    exp.signal("HUP");
    let m = exp
        .wait_for(|m| reloaded(m) == Some(1.0), "the good reload")
        .await;
    assert!(reloaded_at(&m).unwrap() >= started_at);
}
