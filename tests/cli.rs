//! The command line as a user meets it.

mod support;

use std::process::Command;
use support::yaml_file;

fn exporter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nexrender-exporter"));
    c.env_remove("NEXRENDER_API_TOKEN")
        .env_remove("NEXRENDER_API_URL");
    c
}

/// `nexrender-exporter check-config FILE`.
fn check_config(f: &tempfile::NamedTempFile) -> Command {
    let mut c = exporter();
    c.arg("check-config").arg(f.path());
    c
}

#[test]
fn check_config_accepts_the_annotated_example() {
    // The example reads its secrets from /run/secrets; point them at a real file.
    let token = yaml_file("t0ken\n");
    let path = token.path().display().to_string();
    let example = std::fs::read_to_string("config/nexrender-exporter.example.yaml").unwrap();
    assert!(example.contains("/run/secrets/nexrender_token"));
    let accepted = |text: &str| {
        let f = yaml_file(
            &text
                .replace("/run/secrets/nexrender_token", &path)
                .replace("/run/secrets/nexrender_server_secret", &path),
        );
        let out = check_config(&f).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    };
    accepted(&example);
    // Its self-hosted account, uncommented, is valid too.
    let (head, studio) = example.split_at(example.find("  # - name: studio").unwrap());
    let studio: String = studio
        .lines()
        .map(|l| l.replacen("  # ", "  ", 1) + "\n")
        .collect();
    assert!(studio.contains("\n    kind: server\n"), "{studio}");
    accepted(&(head.to_owned() + &studio));
}

#[test]
fn check_config_names_the_bad_key_and_the_file_and_exits_non_zero() {
    for (body, key) in [
        (
            "poll:\n  interval: fast\naccounts: [{name: a, token: x}]\n",
            "interval",
        ),
        ("pol:\n  interval: 10s\n", "pol"),
        (
            "accounts: [{name: a, token: x}, {name: a, token: y}]\n",
            "accounts[1].name",
        ),
        ("accounts: [{name: a}]\n", "accounts[0].token"),
    ] {
        let f = yaml_file(body);
        let out = check_config(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key) && err.contains(&f.path().display().to_string()),
            "{body} -> {err}"
        );
    }
}

#[test]
fn environment_overrides_the_file_and_names_itself_when_wrong() {
    let f = yaml_file("accounts: [{name: a, token: x}]\n");
    let out = check_config(&f)
        .env("NEXRENDER_EXPORTER_POLL__INTERVAL", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NEXRENDER_EXPORTER_") && err.to_lowercase().contains("poll.interval"),
        "{err}"
    );
}

/// The systemd unit passes its extra flags in NEXRENDER_EXPORTER_ARGS
/// (its EnvironmentFile): that is not a config key, and the exporter
/// started with it set restart-looped on "unknown field".
#[test]
fn a_variable_with_the_prefix_but_no_section_is_not_a_config_key() {
    let out = check_config_with(
        "accounts: [{name: a, token: x}]\n",
        "NEXRENDER_EXPORTER_ARGS",
        "--log.level=debug",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check-config` of a file holding `body`, with `key=value` in the
/// environment.
fn check_config_with(body: &str, key: &str, value: &str) -> std::process::Output {
    check_config(&yaml_file(body))
        .env(key, value)
        .output()
        .unwrap()
}

/// A config file the service's user cannot read (the README's steps once
/// made its directory 0700, root's, for a DynamicUser service) is said to
/// be unreadable, not "not found". The test runs the check as `nobody`
/// (setpriv) against a file in a 0700 directory, where it runs as root.
#[test]
fn a_config_file_that_cannot_be_read_says_why() {
    use std::os::unix::fs::PermissionsExt;
    let out = exporter()
        .arg("check-config")
        .arg("/nonexistent/config.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("file not found"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = exporter()
        .arg("check-config")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));

    let root = std::process::Command::new("id").arg("-u").output();
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output();
    let (Ok(root), Ok(_)) = (root, setpriv) else {
        return eprintln!("setpriv or id missing: the permission case is not checked");
    };
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        return eprintln!("not root: the permission case is not checked");
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "accounts: [{name: a, token: x}]\n").unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_nexrender-exporter"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied") && !err.contains("not found"),
        "{err}"
    );
}

#[test]
fn nexrender_api_token_alone_configures_a_default_account() {
    let out = check_config_with("poll:\n  interval: 10s\n", "NEXRENDER_API_TOKEN", "abc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("default"));
}

#[test]
fn version_prints_the_version() {
    let out = exporter().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn starting_without_any_account_refuses_with_a_hint() {
    let f = yaml_file("{}\n");
    let out = exporter().arg("--config").arg(f.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NEXRENDER_API_TOKEN"));
}

#[cfg(not(feature = "demo"))]
#[test]
fn demo_mode_in_a_build_without_the_simulator_is_refused_as_a_usage_error() {
    let out = exporter().arg("--demo").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("this build has no demo backend; rebuild with the default feature `demo`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn demo_mode_serves_lively_numbers_from_the_built_in_simulator() {
    let port = support::free_port();
    let mut child = exporter()
        .args([
            "--demo",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
            "--log.format",
            "json",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    // Up, and the breakdowns at work: a named template's series, and the
    // tagged account polled.
    let shown = |text: &str| {
        support::value(text, "nexrender_up{account=\"demo\"}") == Some(1.0)
            && support::value(text, "nexrender_up{account=\"demo-broadcast\"}") == Some(1.0)
            && support::value(text, "nexrender_up{account=\"demo-self-hosted\"}") == Some(1.0)
            && text.contains("template=\"News intro\"")
            && text.contains(
                "account=\"demo-self-hosted\",status=\"finished\",template=\"News-intro.aep\"",
            )
    };
    for _ in 0..600 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Ok(r) = reqwest::get(&url).await {
            text = r.text().await.unwrap_or_default();
            if shown(&text) {
                break;
            }
        }
    }
    // The demo's new jobs deliver their ends to the exporter's own webhook
    // receiver: the first ones render for about 20 s.
    let accepted =
        "nexrender_exporter_webhook_deliveries_total{account=\"demo\",result=\"accepted\"}";
    let mut delivered = text.clone();
    for _ in 0..900 {
        if support::value(&delivered, accepted).is_some_and(|n| n > 0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Ok(r) = reqwest::get(&url).await {
            delivered = r.text().await.unwrap_or_default();
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        support::value(&text, "nexrender_up{account=\"demo\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        support::value(&delivered, accepted).is_some_and(|n| n > 0.0),
        "no webhook delivery in the demo: {delivered}"
    );
    let finished = support::jobs(&text, "demo", "finished").unwrap();
    assert!(finished > 1000.0, "a day of history: {finished}");
    assert!(shown(&text), "breakdowns in the demo: {text}");
    assert!(text.contains("nexrender_job_errors_total{account=\"demo\",reason=\"missing_font\"}"));
    let broadcast = support::jobs(&text, "demo-broadcast", "finished").unwrap();
    assert!(
        broadcast > 0.0 && broadcast < finished,
        "the broadcast pipeline is part of the farm: {broadcast} of {finished}"
    );
    // The same farm as a self-hosted server lists it: its states, its
    // templates by their sources' file names.
    let self_hosted = support::jobs(&text, "demo-self-hosted", "finished").unwrap();
    assert!(self_hosted > 1000.0, "{self_hosted}");
    assert!(support::jobs(&text, "demo-self-hosted", "picked").is_some());
    assert!(support::jobs(&text, "demo-self-hosted", "manually_cancelled").is_none());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.lines().next().is_some_and(|l| l.starts_with('{')),
        "json logs: {log}"
    );
}

/// Tokens that YAML reads as a number, a float or a boolean, and the texts
/// that would give them away (as written, and as the number YAML made of it).
const UNQUOTED_TOKENS: [(&str, &[&str]); 3] = [
    ("12345678901234567890", &["12345678901234567890"]),
    ("1e10", &["1e10", "10000000000"]),
    ("true", &["true"]),
];

/// The error names the token key and the file and shows none of `secrets`.
fn assert_names_the_token_key_but_not_its_value(err: &str, file: &str, secrets: &[&str]) {
    assert!(
        err.contains("token") && err.contains(file) && err.contains("quote it"),
        "{err}"
    );
    for s in secrets {
        assert!(!err.contains(s), "{s} echoed: {err}");
    }
}

#[test]
fn a_token_yaml_reads_as_a_number_or_boolean_is_never_echoed_by_check_config() {
    for (token, secrets) in UNQUOTED_TOKENS {
        let f = yaml_file(&format!("accounts:\n  - name: a\n    token: {token}\n"));
        let out = check_config(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{token}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_names_the_token_key_but_not_its_value(
            &err,
            &f.path().display().to_string(),
            secrets,
        );
    }
}

#[test]
fn a_token_yaml_reads_as_a_number_or_boolean_is_never_echoed_at_start() {
    for (token, secrets) in UNQUOTED_TOKENS {
        let f = yaml_file(&format!("accounts:\n  - name: a\n    token: {token}\n"));
        let out = exporter()
            .arg("--config")
            .arg(f.path())
            .arg("--web.listen-address")
            .arg("127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{token}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_names_the_token_key_but_not_its_value(
            &all,
            &f.path().display().to_string(),
            secrets,
        );
    }
}

/// `nexrender-exporter --web.listen-address ADDRESS healthcheck`: the probe a
/// container runs, finding the port the way the exporter does.
fn healthcheck(listen_address: &str) -> std::process::Output {
    exporter()
        .args(["--web.listen-address", listen_address, "healthcheck"])
        .output()
        .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_zero_once_the_exporter_is_ready() {
    let sim = support::scripted_simulator().await;
    let exp = support::Exporter::binary(
        &format!("accounts:\n{}", support::account_yaml("main", &sim)),
        &[],
    );
    exp.polls("main", 1).await;
    // 0.0.0.0 is where the exporter listens in a container; the probe goes to loopback.
    let out = healthcheck(&format!("0.0.0.0:{}", exp.port));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn healthcheck_exits_one_naming_the_account_while_its_first_poll_is_unanswered() {
    // An API that takes connections and never answers: the first poll waits.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = silent.local_addr().unwrap();
    let exp = support::Exporter::binary_with(
        yaml_file(&format!(
            "poll:\n  interval: 30s\n  request_timeout: 60s\naccounts:\n  - name: silent\n    api_url: http://{api}/api/v2\n    token: x\n"
        )),
        &[],
    );
    for _ in 0..100 {
        if exp.get("/healthz").await.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = healthcheck(&format!("127.0.0.1:{}", exp.port));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not ready (503") && err.contains("silent"),
        "{err}"
    );
}

#[test]
fn healthcheck_exits_one_saying_unreachable_when_nothing_listens() {
    let port = support::free_port();
    let out = healthcheck(&format!("127.0.0.1:{port}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}/readyz: unreachable")),
        "{err}"
    );
}
