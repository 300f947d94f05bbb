//! One hand-moved clock for the simulator and the exporter in the same test.
//! The two crates each own their clock (the double must not borrow the
//! exporter's time code), so the exporter reads the simulator's clock
//! through this newtype.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexrender_exporter::api::{ApiClient, ClientPolicy};
use nexrender_exporter::board::StatusBoard;
use nexrender_exporter::config::PollConfig;
use nexrender_exporter::config::{Account, FlagOverrides, MetricsConfig};

use super::inprocess::NoEnv;
use nexrender_exporter::metrics::Metrics;
use nexrender_exporter::poller::AccountPoller;
use nexrender_exporter::secret::Secret;
use nexrender_simulator::clock::{Clock as _, ManualClock};
use nexrender_simulator::server::{start, RunningSimulator};
use nexrender_simulator::SimulatorConfig;

/// 2026-01-01T00:00:00Z, where simulated time starts.
pub const T0: i64 = 1_767_225_600_000;

/// The simulator's [`ManualClock`], seen as the exporter's clock.
pub struct SimulatedTime(pub Arc<ManualClock>);

impl nexrender_exporter::clock::Clock for SimulatedTime {
    fn now_millis(&self) -> nexrender_exporter::clock::UnixMillis {
        self.0.now_millis()
    }
}

/// The real poller of account `main` and the simulator on one clock that
/// starts at [`T0`] and moves only when the test says.
pub struct Rig {
    pub clock: Arc<ManualClock>,
    pub sim: RunningSimulator,
    pub poller: AccountPoller,
    pub metrics: Arc<Metrics>,
}

/// Account `main`'s real poller in the test's process, on the simulator's
/// hand-moved clock, configured as the binary is (see [`scripted`]): the
/// in-process twin of [`super::Exporter`], where a poll is made when the
/// test asks instead of waited for.
pub struct InProcess {
    pub clock: Arc<ManualClock>,
    pub poller: AccountPoller,
    pub metrics: Arc<Metrics>,
    /// What the poller logged at `info` and above, as the binary would.
    log: Log,
    _logging: tracing::subscriber::DefaultGuard,
    /// The configured poll interval: each poll after the first comes this
    /// much later (the binary's first poll is at once).
    interval: Duration,
    polled: bool,
}

/// A log kept in memory, as text.
#[derive(Clone, Default)]
pub(crate) struct Log(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs of this thread (the test's, where a `#[tokio::test]` runs every
/// task) go to `log`, at `info` and above as the binary's default.
fn capture(log: &Log) -> tracing::subscriber::DefaultGuard {
    super::inprocess::log_per_thread();
    let log = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || log.clone())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// How many polls [`InProcess::polls`] and [`InProcess::wait_for`] make at most:
/// the binary's tests waited 30 s for one poll a second.
const MAX_POLLS: usize = 30;

impl Rig {
    /// The simulator as `cfg` says (its tokens replaced), polled with
    /// `settings` by a client that never retries or waits.
    pub async fn start(cfg: SimulatorConfig, settings: PollConfig) -> Rig {
        Self::start_with(cfg, settings, MetricsConfig::default()).await
    }

    /// The same, with the exporter's metrics set up as `metrics` says.
    pub async fn start_with(
        cfg: SimulatorConfig,
        settings: PollConfig,
        metrics: MetricsConfig,
    ) -> Rig {
        let clock = ManualClock::new(T0);
        let cfg = SimulatorConfig {
            tokens: vec!["t".into()],
            ..cfg
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = start(&cfg, clock.clone(), listener).unwrap();
        let metrics = Metrics::new(&metrics);
        let poller = account_poller(&sim, &clock, &metrics, "main", &[], settings);
        Rig {
            clock,
            sim,
            poller,
            metrics,
        }
    }

    /// Another account's poller on the same simulator, clock and metrics,
    /// listing only jobs with any of `tags` (none: all).
    pub fn poller(&self, name: &str, tags: &[&str], settings: PollConfig) -> AccountPoller {
        account_poller(&self.sim, &self.clock, &self.metrics, name, tags, settings)
    }

    /// The exporter's metrics now, as text.
    pub fn metrics(&self) -> String {
        String::from_utf8(self.metrics.encode()).unwrap()
    }
}

fn account_poller(
    sim: &RunningSimulator,
    clock: &Arc<ManualClock>,
    metrics: &Arc<Metrics>,
    name: &str,
    tags: &[&str],
    settings: PollConfig,
) -> AccountPoller {
    let policy = ClientPolicy {
        max_retries: 0,
        max_requests_per_second: 10_000,
        rate_limit_default_wait: Duration::from_millis(1),
        // Bytes as the naive poll is priced: uncompressed answers.
        gzip: false,
        ..ClientPolicy::default()
    };
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let account = Account {
        name: name.into(),
        kind: nexrender_exporter::status::ApiKind::Cloud,
        stale_after: nexrender_exporter::config::DEFAULT_STALE_AFTER,
        api_url: sim.api_url(),
        token: Secret::new("t"),
        webhook_secret: None,
        previous_webhook_secrets: Vec::new(),
        tags,
    };
    poller_on(account, policy, metrics, clock, settings)
}

/// `account`'s real poller, its client as `policy` says, its metrics in
/// `metrics`, on the hand-moved `clock`.
fn poller_on(
    account: Account,
    policy: ClientPolicy,
    metrics: &Arc<Metrics>,
    clock: &Arc<ManualClock>,
    settings: PollConfig,
) -> AccountPoller {
    let handle = metrics.account(&account.name);
    let client = ApiClient::new(
        &account.api_url,
        account.token.clone(),
        policy,
        handle.clone(),
    )
    .unwrap()
    .with_tags(&account.tags);
    let board = StatusBoard::new(std::slice::from_ref(&account.name));
    AccountPoller::new(
        account,
        client,
        handle,
        board,
        Arc::new(SimulatedTime(clock.clone())),
        settings,
        1024,
    )
}

/// A simulator with scripted jobs only (no arrivals; `edit` may change
/// its config), and account `main` polling it as the binary's tests
/// configure it ([`super::poll_config`] with `overrides`), read by the
/// real configuration loader: its poll settings and its client policy,
/// retries and rate limit included.
pub async fn scripted(
    edit: impl FnOnce(&mut SimulatorConfig),
    overrides: &[(&str, &str)],
) -> (RunningSimulator, InProcess) {
    let clock = ManualClock::new(T0);
    let mut cfg = super::scripted_config();
    edit(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = start(&cfg, clock.clone(), listener).unwrap();
    let file = super::yaml_file(&super::poll_config(&sim, overrides));
    let loaded = nexrender_exporter::config::load(
        Some(file.path()),
        &FlagOverrides::default(),
        &NoEnv,
        true,
    )
    .unwrap();
    let poll = loaded.config.poll.clone();
    let metrics = Metrics::new(&loaded.config.metrics);
    let account = loaded.accounts[0].clone();
    let interval = poll.interval;
    let poller = poller_on(account, poll.client_policy(), &metrics, &clock, poll);
    let log = Log::default();
    let exp = InProcess {
        _logging: capture(&log),
        log,
        clock,
        poller,
        metrics,
        interval,
        polled: false,
    };
    (sim, exp)
}

impl InProcess {
    /// The simulated time now (the exporter's and the simulator's).
    pub fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// What the poller logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.0.lock().unwrap()).into_owned()
    }

    /// One poll interval later (the first poll: now), one poll; the
    /// metrics then.
    pub async fn tick(&mut self) -> String {
        if std::mem::replace(&mut self.polled, true) {
            self.clock
                .set(self.clock.now_millis() + self.interval.as_millis() as i64);
        }
        self.poller.poll().await;
        self.metrics()
    }

    /// Polls one interval apart until `n` more of them succeeded than
    /// now; the metrics then.
    pub async fn polls(&mut self, account: &str, n: u64) -> String {
        let key =
            format!("nexrender_exporter_polls_total{{account=\"{account}\",result=\"success\"}}");
        let start = super::value(&self.metrics(), &key).unwrap_or(0.0) as u64;
        self.wait_for(
            |m| super::value(m, &key).unwrap_or(0.0) as u64 >= start + n,
            &format!("{n} successful polls"),
        )
        .await
    }

    /// Polls one interval apart until `pred` holds of the metrics (checked
    /// first, and after each poll), at most [`MAX_POLLS`] polls.
    pub async fn wait_for(&mut self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let mut m = self.metrics();
        for _ in 0..MAX_POLLS {
            if pred(&m) {
                return m;
            }
            m = self.tick().await;
        }
        assert!(
            pred(&m),
            "{what}: not after {MAX_POLLS} polls\nmetrics:\n{m}\nlog:\n{}",
            self.log()
        );
        m
    }

    /// The exporter's metrics now, as text.
    pub fn metrics(&self) -> String {
        String::from_utf8(self.metrics.encode()).unwrap()
    }
}
