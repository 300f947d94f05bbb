//! Wiring: one poller task per account, the HTTP server, and shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{ApiClient, ApiError};
use crate::clock::SharedClock;
use crate::config::{Account, Loaded};
use crate::http::{serve, WebState};
use crate::metrics::Metrics;
use crate::poller::{AccountPoller, PollSettings, StatusBoard};
use crate::secret::Secret;
use crate::simulator::{self, SimulatorConfig};

/// Polling interval of `--demo`: something moves on every look.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {address} (web.listen_address): {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("account {account}: {source}")]
    Client { account: String, source: ApiError },
    #[error("cannot start the demo simulator: {0}")]
    Demo(std::io::Error),
}

/// Runs the exporter until `stop` turns true. With `demo`, an in-process
/// simulator with lively defaults is the only account.
pub async fn run(
    mut loaded: Loaded,
    demo: bool,
    clock: SharedClock,
    stop: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let _simulator = if demo {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(AppError::Demo)?;
        let sim = simulator::server::start(&SimulatorConfig::demo(), clock.clone(), listener)
            .map_err(AppError::Demo)?;
        tracing::info!(api_url = %sim.api_url(), "demo: polling the built-in Nexrender API simulator");
        loaded.accounts = vec![Account {
            name: "demo".into(),
            api_url: sim.api_url(),
            token: Secret::new("sim-token"),
        }];
        loaded.config.poll.interval = loaded.config.poll.interval.min(DEMO_INTERVAL);
        Some(sim)
    } else {
        None
    };
    let cfg = &loaded.config;
    let address = cfg.web.listen_address.clone();
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| AppError::Listen {
            address: address.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(address);
    let metrics = Metrics::new(&cfg.metrics);
    let names: Vec<String> = loaded.accounts.iter().map(|a| a.name.clone()).collect();
    let board = StatusBoard::new(&names);
    let mut tasks = tokio::task::JoinSet::new();
    for account in &loaded.accounts {
        let client = ApiClient::new(
            &account.api_url,
            account.token.clone(),
            cfg.poll.client_policy(),
            metrics.observer(&account.name),
        )
        .map_err(|source| AppError::Client {
            account: account.name.clone(),
            source,
        })?;
        let poller = AccountPoller::new(
            account.clone(),
            client,
            metrics.clone(),
            board.clone(),
            clock.clone(),
            PollSettings::from(&cfg.poll),
        );
        tasks.spawn(poller.run(stop.clone()));
    }
    tracing::info!(
        address = %local,
        telemetry_path = %cfg.web.telemetry_path,
        accounts = %names.join(","),
        interval = ?cfg.poll.interval,
        window = ?cfg.poll.window,
        "nexrender-exporter listening"
    );
    let state = Arc::new(WebState {
        metrics,
        board,
        telemetry_path: cfg.web.telemetry_path.clone(),
    });
    serve(listener, state, stop, Duration::from_secs(5)).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}
