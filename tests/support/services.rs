//! Debian's Prometheus and Alertmanager, run for a test in a folder of
//! their own (tests/dashboards.rs, tests/alerting.rs).

use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A server, its port, and its data folder (removed on drop).
pub struct Service(pub Child, pub u16, pub tempfile::TempDir);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary `name` (or the path in the environment variable `env_bin`),
/// None when absent, unless the environment variable `require` is set:
/// then the test fails (CI sets it; scripts/test-all.sh installs the tools).
pub fn tool_bin(name: &str, env_bin: &str, require: &str) -> Option<String> {
    if let Ok(b) = std::env::var(env_bin) {
        return Some(b);
    }
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return Some(name.into());
    }
    assert!(
        std::env::var(require).is_err(),
        "{require} is set but no {name} binary was found"
    );
    eprintln!("{name} not installed: skipping (scripts/test-all.sh installs it)");
    None
}

pub fn prometheus_bin() -> Option<String> {
    tool_bin("prometheus", "PROMETHEUS_BIN", "REQUIRE_PROMETHEUS")
}

/// Starts `bin` with `config` written to `config_name` in a fresh folder,
/// `config_flag` pointing at it, `storage_flag` at a data folder in it,
/// and `--web.listen-address` on a free loopback port; `extra` flags last.
pub fn start_service(
    bin: &str,
    config_name: &str,
    config: &str,
    storage_flag: &str,
    extra: &[&str],
) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join(config_name);
    std::fs::write(&cfg, config).unwrap();
    let port = super::free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "{storage_flag}={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    Service(child, port, dir)
}

/// Prometheus with `config` (prometheus.yml text).
pub fn start_prometheus(bin: &str, config: &str, extra: &[&str]) -> Service {
    start_service(bin, "prometheus.yml", config, "--storage.tsdb.path", extra)
}

/// YAML to JSON through figment's YAML support, to avoid another dependency.
pub fn yaml_to_json(text: &str) -> Value {
    use figment::providers::{Format, Yaml};
    figment::Figment::from(Yaml::string(text))
        .extract()
        .unwrap()
}
