//! One hand-moved clock for the simulator and the exporter in the same test.
//! The two crates each own their clock (the double must not borrow the
//! exporter's time code), so the exporter reads the simulator's clock
//! through this newtype.

use std::sync::Arc;
use std::time::Duration;

use nexrender_exporter::api::{ApiClient, ClientPolicy};
use nexrender_exporter::board::StatusBoard;
use nexrender_exporter::config::PollConfig;
use nexrender_exporter::config::{Account, MetricsConfig};
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
    let handle = metrics.account(name);
    let client = ApiClient::new(&sim.api_url(), Secret::new("t"), policy, handle.clone())
        .unwrap()
        .with_tags(&tags);
    let account = Account {
        name: name.into(),
        api_url: sim.api_url(),
        token: Secret::new("t"),
        webhook_secret: None,
        tags,
    };
    let board = StatusBoard::new(&[name.into()]);
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
