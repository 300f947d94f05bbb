//! Wiring: one poller task per account, the HTTP server, reloads and
//! shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::{ApiClient, ApiError, ClientPolicy, ServerOptions};
use crate::board::StatusBoard;
use crate::clock::SharedClock;
use crate::config::{Account, Config, ConfigError, Loaded, PollConfig};
use crate::http::{serve, ServerLimits, WebState};
use crate::metrics::{AccountMetrics, Metrics};
use crate::poller::{supervise, AccountPoller};
use crate::status::ApiKind;
use crate::webconfig::{TlsReloader, WebSecurity};
use crate::webhook::{self, Route};

/// Polling interval of `--demo`: something moves on every look.
pub(crate) const DEMO_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {address} ({key}): {source}")]
    Listen {
        key: &'static str,
        address: String,
        source: std::io::Error,
    },
    #[error("account {account}: {source}")]
    Client { account: String, source: ApiError },
    #[error("cannot start the demo simulator: {0}")]
    Demo(std::io::Error),
    #[error("this build has no demo backend; rebuild with the default feature `demo`")]
    NoDemo,
}

/// Whether this build carries the simulator `--demo` polls (cargo feature
/// `demo`, on by default).
pub const DEMO_AVAILABLE: bool = cfg!(feature = "demo");

/// The demo backend: the simulator's busy farm on a loopback port, on the
/// simulator's own wall clock (the exporter's clock is the exporter's), and
/// the one account that polls it. With `webhook_port`, every job the farm
/// creates delivers its end to the exporter's receiver on that port, with a
/// secret made for this run.
#[cfg(feature = "demo")]
async fn start_demo(
    webhook_port: Option<u16>,
) -> Result<(nexrender_simulator::RunningSimulator, Account), AppError> {
    use crate::secret::Secret;
    use nexrender_simulator::{clock::SystemClock, model::Webhook, server, SimulatorConfig};
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(AppError::Demo)?;
    let mut cfg = SimulatorConfig::demo();
    let secret = Secret::new(format!("demo-{}", ulid::Ulid::new()));
    if let Some(port) = webhook_port {
        cfg.webhook.farm = Some(Webhook {
            url: format!("http://127.0.0.1:{port}/webhooks/demo"),
            method: "POST".into(),
            headers: [(
                crate::config::DEFAULT_WEBHOOK_SECRET_HEADER.to_owned(),
                secret.expose().to_owned(),
            )]
            .into(),
            data: None,
            custom: false,
        });
    }
    let sim = server::start(&cfg, Arc::new(SystemClock), listener).map_err(AppError::Demo)?;
    tracing::info!(api_url = %sim.api_url(), webhooks = webhook_port.is_some(), "demo: polling the built-in Nexrender API simulator");
    let account = Account {
        name: "demo".into(),
        kind: crate::status::ApiKind::Cloud,
        api_url: sim.api_url(),
        token: Secret::new("sim-token"),
        stale_after: crate::config::DEFAULT_STALE_AFTER,
        webhook_secret: webhook_port.map(|_| secret),
        previous_webhook_secrets: Vec::new(),
        tags: Vec::new(),
    };
    Ok((sim, account))
}

#[cfg(not(feature = "demo"))]
async fn start_demo(
    _webhook_port: Option<u16>,
) -> Result<(std::convert::Infallible, Account), AppError> {
    Err(AppError::NoDemo)
}

/// The demo's accounts: the whole farm, its `broadcast` pipeline as an
/// account of its own (the `tags` filter at work), and the same farm read
/// as a self-hosted server would list it (`kind: server`, the simulator's
/// `/api/v1/jobs`).
fn demo_accounts(farm: Account) -> Vec<Account> {
    // The farm's jobs deliver to the whole farm's account only.
    let broadcast = Account {
        name: format!("{}-broadcast", farm.name),
        tags: vec!["broadcast".into()],
        webhook_secret: None,
        ..farm.clone()
    };
    let self_hosted = Account {
        name: format!("{}-self-hosted", farm.name),
        kind: ApiKind::Server,
        api_url: farm
            .api_url
            .strip_suffix("/api/v2")
            .unwrap_or(&farm.api_url)
            .to_owned(),
        webhook_secret: None,
        ..farm.clone()
    };
    vec![farm, broadcast, self_hosted]
}

/// The demo shows every breakdown: by template, and failures by the
/// reasons the simulator's error texts give (the same patterns as the
/// example configuration).
fn demo_breakdowns(metrics: &mut crate::config::MetricsConfig) {
    metrics.templates.enabled = true;
    if metrics.error_reasons.is_empty() {
        metrics.error_reasons = [
            ("missing_font", "(?i)missing font"),
            ("asset_download", "(?i)download failed|HTTP [45][0-9][0-9]"),
            ("ae_crash", "(?i)after effects crashed|aerender"),
            ("timeout", "(?i)timed out"),
            ("missing_layer", "(?i)layer .* not found"),
        ]
        .into_iter()
        .map(|(reason, pattern)| crate::config::ErrorReason {
            reason: reason.into(),
            pattern: pattern.into(),
        })
        .collect();
    }
}

struct RunningPoller {
    account: Account,
    policy: ClientPolicy,
    /// A clone of the running poller: it shares the bookkeeping, so a
    /// poller with a new client can take it over.
    poller: AccountPoller,
    stop: watch::Sender<bool>,
    settings: watch::Sender<PollConfig>,
    task: JoinHandle<()>,
}

/// The account pollers, started, changed and stopped as the configuration
/// says. Counters of accounts that stay are never touched.
struct Pollers {
    metrics: Arc<Metrics>,
    board: Arc<StatusBoard>,
    clock: SharedClock,
    running: HashMap<String, RunningPoller>,
    /// The webhook receiver, when it listens: its routes follow the pollers.
    webhooks: Option<Arc<webhook::Receiver>>,
    delivery_queue_capacity: usize,
    /// `oldest_jobs.per_status`, as the exporter started.
    oldest_per_status: usize,
}

/// The same account as far as polling goes: the same API and jobs (the
/// webhook secret can change without touching the bookkeeping).
fn same_api(a: &Account, b: &Account) -> bool {
    a.name == b.name
        && a.kind == b.kind
        && a.api_url == b.api_url
        && a.token == b.token
        && a.tags == b.tags
}

impl Pollers {
    fn client(
        account: &Account,
        policy: &ClientPolicy,
        metrics: Arc<AccountMetrics>,
    ) -> Result<ApiClient, AppError> {
        metrics.set_kind(account.kind);
        // Only whole jobs say their template (a self-hosted server's
        // projection does not): read them when the breakdown needs them.
        let templates = metrics.template_names_refresh().is_some();
        ApiClient::new(
            &account.api_url,
            account.token.clone(),
            policy.clone(),
            metrics,
        )
        .map(|client| match account.kind {
            ApiKind::Cloud => client.with_tags(&account.tags),
            ApiKind::Server => client.for_server(
                ServerOptions {
                    stale_after: account.stale_after,
                    whole_jobs: templates,
                },
                &account.tags,
            ),
        })
        .map_err(|source| AppError::Client {
            account: account.name.clone(),
            source,
        })
    }

    /// Starts a fresh poller: its first poll is a baseline.
    fn start(
        &mut self,
        account: &Account,
        policy: &ClientPolicy,
        settings: &PollConfig,
    ) -> Result<(), AppError> {
        let metrics = self.metrics.account(&account.name);
        let client = Self::client(account, policy, metrics.clone())?;
        self.board.add(&account.name);
        let poller = AccountPoller::new(
            account.clone(),
            client,
            metrics,
            self.board.clone(),
            self.clock.clone(),
            settings.clone(),
            self.delivery_queue_capacity,
        )
        .listing_oldest(self.oldest_per_status);
        self.spawn(poller, account, policy, settings);
        Ok(())
    }

    /// Points the account's webhook path at its poller's queue, or takes
    /// no more deliveries for it if it has no webhook secret.
    fn route(&self, account: &Account, poller: &AccountPoller) {
        let Some(webhooks) = &self.webhooks else {
            return;
        };
        match &account.webhook_secret {
            Some(secret) => webhooks.set_route(
                &account.name,
                Route {
                    secret: secret.clone(),
                    previous: account.previous_webhook_secrets.clone(),
                    queue: poller.delivery_queue(),
                    metrics: poller.metrics(),
                },
            ),
            None => webhooks.remove_route(&account.name),
        }
    }

    fn spawn(
        &mut self,
        poller: AccountPoller,
        account: &Account,
        policy: &ClientPolicy,
        settings: &PollConfig,
    ) {
        let (stop, stop_rx) = watch::channel(false);
        let (settings_tx, settings_rx) = watch::channel(settings.clone());
        let running = poller.clone();
        self.route(account, &poller);
        let task = tokio::spawn(supervise(poller, stop_rx, settings_rx));
        self.running.insert(
            account.name.clone(),
            RunningPoller {
                account: account.clone(),
                policy: policy.clone(),
                poller: running,
                stop,
                settings: settings_tx,
                task,
            },
        );
    }

    /// Stops a poller and waits for it, so old and new never poll at once.
    async fn stop(&mut self, name: &str) {
        if let Some(r) = self.running.remove(name) {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// Brings the running pollers in line with `loaded`. Returns what changed.
    async fn apply(&mut self, loaded: &Loaded) -> Result<Vec<String>, AppError> {
        let settings = loaded.config.poll.clone();
        let policy = loaded.config.poll.client_policy();
        let mut changes = Vec::new();
        let wanted: Vec<&str> = loaded.accounts.iter().map(|a| a.name.as_str()).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !wanted.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(webhooks) = &self.webhooks {
                webhooks.remove_route(&name);
            }
            // Its metrics handle goes with its poller and route, and
            // with it every series of the account.
            self.stop(&name).await;
            self.board.remove(&name);
            changes.push(format!("removed {name}"));
        }
        for account in &loaded.accounts {
            match self.running.get(&account.name) {
                Some(r)
                    if same_api(&r.account, account)
                        && r.policy == policy
                        && r.account.stale_after == account.stale_after =>
                {
                    let changed = r.settings.send_if_modified(|s| {
                        let differs = *s != settings;
                        *s = settings.clone();
                        differs
                    });
                    if changed {
                        changes.push(format!("new poll settings for {}", account.name));
                    }
                    if r.account.webhook_secret != account.webhook_secret
                        || r.account.previous_webhook_secrets != account.previous_webhook_secrets
                    {
                        self.route(account, &r.poller);
                        if let Some(r) = self.running.get_mut(&account.name) {
                            r.account = account.clone();
                        }
                        changes.push(format!("new webhook secret for {}", account.name));
                    }
                }
                Some(r) if same_api(&r.account, account) => {
                    // Only how the client behaves changed (timeouts, retries,
                    // rate limit, a server's stale_after): the same API and jobs, so a poller with
                    // the new client takes over the bookkeeping.
                    let taken_over = r.poller.clone();
                    let client = Self::client(account, &policy, taken_over.metrics())?;
                    self.stop(&account.name).await;
                    let mut poller = taken_over.with_client(client);
                    poller.set_settings(settings.clone());
                    self.spawn(poller, account, &policy, &settings);
                    changes.push(format!("new client policy for {}", account.name));
                }
                Some(r) => {
                    // A new URL or token: maybe another team's jobs. A fresh
                    // poller, whose first poll is a baseline again. Its
                    // series go on (held across the restart): counters of
                    // an account that stays are never reset.
                    let series = r.poller.metrics();
                    self.stop(&account.name).await;
                    self.start(account, &policy, &settings)?;
                    drop(series);
                    changes.push(format!("restarted {}", account.name));
                }
                None => {
                    self.start(account, &policy, &settings)?;
                    changes.push(format!("added {}", account.name));
                }
            }
        }
        Ok(changes)
    }

    /// Says which shard this is (metrics, landing page), and tells the
    /// webhook receiver which accounts other shards poll.
    fn show_shard(&self, loaded: &Loaded) {
        let shard = loaded.config.shard;
        self.metrics
            .set_shard(shard, loaded.accounts.len(), loaded.other_shards.len());
        self.board.set_shard(shard, loaded.other_shards.len());
        if let Some(webhooks) = &self.webhooks {
            webhooks.set_other_shards(&loaded.other_shards);
        }
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for r in self.running.values() {
            let _ = r.stop.send(true);
        }
        for n in names {
            self.stop(&n).await;
        }
    }
}

/// Binds `address` (the value of config key `key`, for the error).
async fn listen(key: &'static str, address: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| AppError::Listen {
            key,
            address: address.to_owned(),
            source,
        })
}

fn local_address(listener: &TcpListener) -> Option<String> {
    listener.local_addr().ok().map(|a| a.to_string())
}

/// The demo's simulator started, and `loaded` made the demo's
/// configuration: its accounts, no shards, a lively interval, every
/// breakdown. Its jobs deliver to `webhooks` when that listens.
#[cfg_attr(not(feature = "demo"), allow(unused_variables, unreachable_code))]
async fn demo(loaded: &mut Loaded, webhooks: Option<&TcpListener>) -> Result<impl Sized, AppError> {
    let webhook_port = webhooks.and_then(|l| l.local_addr().ok()).map(|a| a.port());
    let (sim, account) = start_demo(webhook_port).await?;
    loaded.accounts = demo_accounts(account);
    loaded.other_shards.clear();
    loaded.config.shard = Default::default();
    loaded.config.poll.interval = loaded.config.poll.interval.min(DEMO_INTERVAL);
    demo_breakdowns(&mut loaded.config.metrics);
    Ok(sim)
}

/// The webhook receiver's server, when it listens; warns about secrets
/// that no listener takes, or a listener no secret uses.
fn serve_webhooks(
    listener: Option<TcpListener>,
    receiver: Option<Arc<webhook::Receiver>>,
    tls: Option<Arc<TlsReloader>>,
    loaded: &Loaded,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let with_secret: Vec<&str> = loaded
        .accounts
        .iter()
        .filter(|a| a.webhook_secret.is_some())
        .map(|a| a.name.as_str())
        .collect();
    let (Some(listener), Some(receiver)) = (listener, receiver) else {
        if !with_secret.is_empty() {
            tracing::warn!(accounts = %with_secret.join(","), "accounts have a webhook_secret but webhook.listen_address is not set: no deliveries are taken");
        }
        return None;
    };
    let local = local_address(&listener).unwrap_or_default();
    tracing::info!(address = %local, tls = tls.is_some(), accounts = %with_secret.join(","), "webhook receiver listening on /webhooks/<account>");
    if with_secret.is_empty() {
        tracing::warn!("webhook.listen_address is set but no account has a webhook_secret: every delivery gets 404");
    }
    Some(tokio::spawn(serve(
        listener,
        receiver,
        tls,
        ServerLimits {
            max_connections: loaded.config.webhook.max_connections,
            ..ServerLimits::from(&loaded.config.web)
        },
        stop.clone(),
        Duration::from_secs(5),
    )))
}

/// Under systemd's `Type=notify` (the shipped unit): READY=1 once the
/// listeners are bound, STOPPING=1 on the way out. Nothing without
/// NOTIFY_SOCKET.
fn tell_systemd(state: sd_notify::NotifyState) {
    #[cfg(target_os = "linux")]
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "cannot tell systemd the service's state (NOTIFY_SOCKET)");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state;
}

/// The log line that says the exporter is up, and what it polls.
fn log_started(loaded: &Loaded, local: &str) {
    let cfg = &loaded.config;
    let names: Vec<&str> = loaded.accounts.iter().map(|a| a.name.as_str()).collect();
    if cfg.shard.is_sharded() {
        tracing::info!(
            index = cfg.shard.index,
            total = cfg.shard.total,
            polled_here = loaded.accounts.len(),
            polled_elsewhere = loaded.other_shards.len(),
            "sharded: polling the accounts whose name hashes to this shard"
        );
    }
    tracing::info!(
        address = %local,
        telemetry_path = %cfg.web.telemetry_path,
        accounts = %names.join(","),
        interval = ?cfg.poll.interval,
        window = ?cfg.poll.window,
        "nexrender-exporter listening"
    );
}

impl Pollers {
    /// A configuration loaded on SIGHUP (or its error): the pollers follow
    /// it; settings read only at start are said to wait for a restart.
    async fn reload(&mut self, running: &Config, reload: Result<Loaded, ConfigError>) {
        let now = self.clock.now_millis();
        let new = match reload {
            Err(e) => {
                self.metrics.config_loaded(false, now);
                return tracing::error!(error = %e, "reload rejected; the running configuration stays");
            }
            Ok(new) => new,
        };
        let c = &new.config;
        if c.web != running.web
            || c.metrics != running.metrics
            || c.log != running.log
            || c.webhook != running.webhook
            || c.oldest_jobs != running.oldest_jobs
        {
            tracing::warn!("web, webhook, metrics, oldest_jobs and log settings take effect only after a restart (accounts' webhook secrets are reloaded)");
        }
        let applied = self.apply(&new).await;
        self.show_shard(&new);
        self.metrics.config_loaded(applied.is_ok(), now);
        match applied {
            Ok(changes) if changes.is_empty() => {
                tracing::info!("configuration reloaded: nothing changed")
            }
            Ok(changes) => {
                tracing::info!(changes = %changes.join("; "), "configuration reloaded")
            }
            Err(e) => tracing::error!(error = %e, "reload partly failed"),
        }
    }
}

/// Runs the exporter until `stop` turns true. Each message on `reloads` is
/// a freshly loaded configuration (SIGHUP): applied if it loaded, logged
/// and ignored if not. With `demo`, an in-process simulator with lively
/// defaults is the only account and reloads are ignored.
pub async fn run(
    mut loaded: Loaded,
    demo: bool,
    web: Option<WebSecurity>,
    webhook_tls: Option<Arc<TlsReloader>>,
    clock: SharedClock,
    mut stop: watch::Receiver<bool>,
    mut reloads: mpsc::UnboundedReceiver<Result<Loaded, ConfigError>>,
) -> Result<(), AppError> {
    // The webhook receiver's port first: the demo's jobs deliver to it. In
    // demo mode it listens on a loopback port of its own unless one is set.
    let webhook_listener = match (&loaded.config.webhook.listen_address, demo) {
        (Some(address), _) => Some(listen("webhook.listen_address", address).await?),
        (None, true) => Some(listen("webhook.listen_address", "127.0.0.1:0").await?),
        (None, false) => None,
    };
    let _simulator = match demo {
        true => Some(self::demo(&mut loaded, webhook_listener.as_ref()).await?),
        false => None,
    };
    let cfg = loaded.config.clone();
    let listener = listen("web.listen_address", &cfg.web.listen_address).await?;
    let local = local_address(&listener).unwrap_or(cfg.web.listen_address.clone());
    let metrics = Metrics::new(&cfg.metrics);
    metrics.link_jobs(&cfg.oldest_jobs);
    let board = StatusBoard::new(&[]);
    let webhooks = webhook_listener
        .as_ref()
        .map(|_| webhook::Receiver::new(&cfg.webhook, metrics.clone()));
    let mut pollers = Pollers {
        metrics: metrics.clone(),
        board: board.clone(),
        clock,
        running: HashMap::new(),
        webhooks: webhooks.clone(),
        delivery_queue_capacity: cfg.webhook.queue_capacity,
        oldest_per_status: cfg.oldest_jobs.per_status,
    };
    pollers.apply(&loaded).await?;
    metrics.config_loaded(true, pollers.clock.now_millis());
    pollers.show_shard(&loaded);
    let webhook_server = serve_webhooks(webhook_listener, webhooks, webhook_tls, &loaded, &stop);
    log_started(&loaded, &local);
    tell_systemd(sd_notify::NotifyState::Ready);
    let (tls, auth, open_probes) =
        web.map_or((None, None, false), |w| (w.tls, w.auth, w.open_probes));
    let state = Arc::new(WebState {
        metrics,
        board,
        telemetry_path: cfg.web.telemetry_path.clone(),
        auth,
        open_probes,
        oldest_jobs: cfg.oldest_jobs.clone(),
        clock: pollers.clock.clone(),
    });
    let limits = ServerLimits::from(&cfg.web);
    let grace = Duration::from_secs(5);
    let server = tokio::spawn(serve(listener, state, tls, limits, stop.clone(), grace));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(reload) = reloads.recv() => match demo {
                true => tracing::warn!("reload ignored in demo mode"),
                false => pollers.reload(&cfg, reload).await,
            },
        }
    }
    tell_systemd(sd_notify::NotifyState::Stopping);
    pollers.stop_all().await;
    let _ = server.await;
    if let Some(webhook_server) = webhook_server {
        let _ = webhook_server.await;
    }
    tracing::info!("stopped");
    Ok(())
}
