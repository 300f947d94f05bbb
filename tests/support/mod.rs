//! Running the exporter (the real binary, or its startup in the test's
//! process) against an in-process simulator.
#![allow(dead_code)]

pub mod clock;
pub mod inprocess;
pub mod nexrender_server;
pub mod services;
pub mod truth;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexrender_simulator::clock::{Clock, SystemClock};
use nexrender_simulator::server::{start, RunningSimulator};
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::{LifecycleConfig, ScriptedJob, SimulatorConfig};
#[allow(unused_imports)]
pub use truth::*;

pub const TOKEN: &str = "tok-7f3c9a-never-print-me";

/// A simulator whose lifecycle engine is off: only scripted jobs exist and
/// they move only when the test says so.
pub async fn scripted_simulator() -> RunningSimulator {
    scripted_simulator_with(|_| {}).await
}

/// As [`scripted_simulator`], with `edit` made to its config first (a
/// prefill of ended jobs, a clock offset, a second token...).
pub async fn scripted_simulator_with(edit: impl FnOnce(&mut SimulatorConfig)) -> RunningSimulator {
    let mut cfg = scripted_config();
    edit(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(&cfg, Arc::new(SystemClock), listener).unwrap()
}

/// The configuration of a scripted simulator: [`TOKEN`] its one token, no
/// jobs arriving of themselves.
pub fn scripted_config() -> SimulatorConfig {
    SimulatorConfig {
        tokens: vec![TOKEN.into()],
        lifecycle: LifecycleConfig {
            arrivals_per_minute: 0.0,
            ..LifecycleConfig::default()
        },
        ..SimulatorConfig::default()
    }
}

/// A temporary `.yaml` file holding `body`.
pub fn yaml_file(body: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(body.as_bytes()).unwrap();
    f
}

/// Moves scripted job `id` to `status` now, by the simulator's clock
/// (which may be set off ours).
pub fn set_status(sim: &RunningSimulator, id: ulid::Ulid, status: JobStatus) {
    sim.sim
        .with_farm(|f| {
            let at = f.now();
            f.script_status(id, status, at)
        })
        .unwrap();
}

/// A scripted job created at `created` that waited `wait_ms`, rendered
/// `render_ms` and finished.
pub fn finished(created: i64, wait_ms: i64, render_ms: i64) -> ScriptedJob {
    ScriptedJob {
        created_at: created,
        status: JobStatus::Finished,
        started_at: Some(created + wait_ms),
        ended_at: Some(created + wait_ms + render_ms),
        ..ScriptedJob::queued(created)
    }
}

pub fn now() -> i64 {
    SystemClock.now_millis()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The exporter under test: the real binary, or the same startup
/// ([`Cli`] parsed, [`Startup::load`], [`Startup::run`]) in this process on
/// a thread and runtime of its own. Tests use the binary only for what
/// only it shows: signals, exit codes, the environment, fault drills.
pub struct Exporter {
    run: Run,
    pub port: u16,
    pub config: tempfile::NamedTempFile,
    _dir: tempfile::TempDir,
}

enum Run {
    Binary { child: Child, log: PathBuf },
    InProcess(Box<inprocess::App>),
}

impl Exporter {
    /// Starts the exporter in this process with a YAML config made of
    /// `accounts_yaml` and a 1 s poll interval over a one-hour window.
    pub fn start(accounts_yaml: &str, extra_args: &[&str]) -> Exporter {
        Self::start_with(one_hour_every_second(accounts_yaml), extra_args)
    }

    /// The exporter in this process, started as the binary starts it with
    /// `--config` `config` and `extra_args`.
    pub fn start_with(config: tempfile::NamedTempFile, extra_args: &[&str]) -> Exporter {
        let port = free_port();
        let app = inprocess::App::start(config.path(), port, extra_args);
        Exporter {
            run: Run::InProcess(Box::new(app)),
            port,
            config,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// As [`Self::start`], the real binary.
    pub fn binary(accounts_yaml: &str, extra_args: &[&str]) -> Exporter {
        Self::binary_with(one_hour_every_second(accounts_yaml), extra_args)
    }

    /// As [`Self::start_with`], the real binary.
    pub fn binary_with(config: tempfile::NamedTempFile, extra_args: &[&str]) -> Exporter {
        Self::binary_with_env(config, extra_args, &[])
    }

    /// As [`Self::binary_with`], with `env` added to the environment.
    pub fn binary_with_env(
        config: tempfile::NamedTempFile,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Exporter {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("exporter.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nexrender-exporter"))
            .arg("--config")
            .arg(config.path())
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra_args)
            .env_remove("NEXRENDER_API_TOKEN")
            .env_remove("NEXRENDER_API_URL")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Exporter {
            run: Run::Binary { child, log },
            port,
            config,
            _dir: dir,
        }
    }

    /// The process id, to pin it to a core in a benchmark.
    pub fn pid(&self) -> u32 {
        match &self.run {
            Run::Binary { child, .. } => child.id(),
            Run::InProcess(_) => panic!("an in-process exporter has no process of its own"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::Client::new()
            .get(self.url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.ok()?))
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    /// Waits until `n` more successful polls of `account` than now are
    /// reported, and returns the metrics then.
    pub async fn polls(&self, account: &str, n: u64) -> String {
        let key =
            format!("nexrender_exporter_polls_total{{account=\"{account}\",result=\"success\"}}");
        let start = value(&self.metrics().await, &key).unwrap_or(0.0) as u64;
        self.wait_for(
            |m| value(m, &key).unwrap_or(0.0) as u64 >= start + n,
            &format!("{n} polls of {account}"),
        )
        .await
    }

    /// Waits for the first successful poll of `account` since the start,
    /// and returns the metrics then. Right after a start, use this rather
    /// than `polls(account, 1)`: that counts from the first scrape, which
    /// may come after the first poll, and then waits a whole interval.
    pub async fn first_poll(&self, account: &str) -> String {
        let key =
            format!("nexrender_exporter_polls_total{{account=\"{account}\",result=\"success\"}}");
        self.wait_for(
            |m| value(m, &key).unwrap_or(0.0) >= 1.0,
            &format!("the first poll of {account}"),
        )
        .await
    }

    /// Polls `/metrics` until `pred` holds (at most 30 s).
    pub async fn wait_for(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.metrics().await;
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\nmetrics:\n{m}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the exporter logged so far.
    pub fn log(&self) -> String {
        match &self.run {
            Run::Binary { log, .. } => std::fs::read_to_string(log).unwrap_or_default(),
            Run::InProcess(app) => app.log(),
        }
    }

    /// Sends the binary `sig` (`HUP`, `TERM`...). In process, `HUP`
    /// reloads the configuration as SIGHUP does and `TERM` stops.
    pub fn signal(&self, sig: &str) {
        match &self.run {
            Run::Binary { child, .. } => {
                Command::new("kill")
                    .arg(format!("-{sig}"))
                    .arg(child.id().to_string())
                    .status()
                    .unwrap();
            }
            Run::InProcess(app) => match sig {
                "HUP" => app.reload(),
                "TERM" | "INT" => app.stop(),
                _ => panic!("an in-process exporter takes no SIG{sig}"),
            },
        }
    }

    /// Replaces `from` by `to` in the config file and reloads it (SIGHUP).
    pub fn reconfigure(&self, from: &str, to: &str) {
        let path = self.config.path();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{from} not in the config:\n{text}");
        std::fs::write(path, text.replace(from, to)).unwrap();
        self.signal("HUP");
    }

    /// Sends SIGTERM (in process: stops) and waits for the exit status.
    pub fn stop(mut self) -> (std::process::ExitStatus, Duration, String) {
        let t = Instant::now();
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = match &mut self.run {
                Run::Binary { child, .. } => child.try_wait().unwrap(),
                Run::InProcess(app) => app.exit_status(),
            };
            if let Some(status) = exited {
                return (status, t.elapsed(), self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "exporter did not exit within 10 s of SIGTERM\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        match &mut self.run {
            Run::Binary { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Run::InProcess(app) => app.stop(),
        }
    }
}

fn one_hour_every_second(accounts_yaml: &str) -> tempfile::NamedTempFile {
    yaml_file(&format!("poll:\n  interval: 1s\n  window: 1h\n  page_size: 50\n  request_timeout: 2s\n{accounts_yaml}"))
}

/// The config of an exporter polling `sim` as account `main` every second
/// with quick retries; `overrides` are `key: value` lines replacing or
/// adding to the poll settings.
pub fn poll_config(sim: &RunningSimulator, overrides: &[(&str, &str)]) -> String {
    let mut poll: Vec<(&str, &str)> = vec![
        ("interval", "1s"),
        ("window", "1h"),
        ("page_size", "50"),
        ("request_timeout", "1s"),
        ("retry_backoff", "100ms"),
        ("max_retry_backoff", "200ms"),
    ];
    for (k, v) in overrides {
        poll.retain(|(pk, _)| pk != k);
        poll.push((k, v));
    }
    let mut config = String::from("poll:\n");
    for (k, v) in poll {
        config += &format!("  {k}: {v}\n");
    }
    config + &format!("accounts:\n{}", account_yaml("main", sim))
}

/// The exporter running [`poll_config`].
pub fn exporter(sim: &RunningSimulator, overrides: &[(&str, &str)]) -> Exporter {
    Exporter::start_with(yaml_file(&poll_config(sim, overrides)), &[])
}

pub fn up(m: &str) -> Option<f64> {
    value(m, "nexrender_up{account=\"main\"}")
}

/// The value of counter `name{account="main",label="v"}`, 0 when absent.
pub fn main_counter(m: &str, name: &str, label: &str, v: &str) -> f64 {
    value(m, &format!("{name}{{account=\"main\",{label}=\"{v}\"}}")).unwrap_or(0.0)
}

pub fn poll_errors(m: &str, reason: &str) -> f64 {
    main_counter(m, "nexrender_exporter_poll_errors_total", "reason", reason)
}

pub fn account_yaml(name: &str, sim: &RunningSimulator) -> String {
    format!(
        "  - name: {name}\n    api_url: {}\n    token: {TOKEN}\n",
        sim.api_url()
    )
}

/// The value of one exact series (`name{labels}`) in exposition text.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

pub fn jobs(text: &str, account: &str, status: &str) -> Option<f64> {
    value(
        text,
        &format!("nexrender_jobs{{account=\"{account}\",status=\"{status}\"}}"),
    )
}

/// `part` (`count` or `sum`) of the job histogram `name` (`render_duration`
/// or `queue_wait`).
pub fn histogram(text: &str, account: &str, name: &str, part: &str) -> Option<f64> {
    value(
        text,
        &format!("nexrender_job_{name}_seconds_{part}{{account=\"{account}\"}}"),
    )
}

pub fn completed(text: &str, account: &str, status: &str) -> Option<f64> {
    value(
        text,
        &format!("nexrender_jobs_completed_total{{account=\"{account}\",status=\"{status}\"}}"),
    )
}
