//! A faithful double of the Nexrender Cloud API v2 job endpoints: the
//! exporter's demo backend, test fixture and benchmark load.
//!
//! It is a crate of its own and speaks the API's vocabulary from the
//! vendor's spec and the project's notes ([`status`], [`timefmt`]), never
//! from the exporter it tests, so a mistake in the exporter's names or
//! dates shows up as a failing test instead of being mirrored.
//!
//! - [`model`]: the farm (jobs and their lifecycle), pure and seeded.
//! - [`query`] and [`listing`]: `GET /jobs` parameters and pages.
//! - [`faults`]: which request fails how, and when.
//! - [`server`]: HTTP, auth and carrying out faults.
//! - [`webhook`]: delivering terminal jobs to their webhooks, with retries.
//! - [`status`], [`timefmt`], [`clock`]: statuses, timestamps and time.
//! - `testkit` (feature `testkit`): a one-closure HTTP server for tests.

pub mod clock;
pub mod faults;
pub mod listing;
pub mod model;
pub mod query;
pub mod server;
pub mod status;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timefmt;
pub mod webhook;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use faults::{Endpoint, Fault, FaultRule, RetryAfter, Schedule};
pub use model::{ApiId, LifecycleConfig, Poison, ScriptedJob, Simulation};
pub use server::{RunningSimulator, Simulator};

/// Whether `from_date`/`to_date` include a job created exactly at the bound.
/// The API does not say; the exporter must work with either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateBounds {
    #[default]
    Inclusive,
    Exclusive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefillConfig {
    /// Ended jobs to create at start, spread over `span` before now.
    pub jobs: usize,
    #[serde(with = "humantime_serde")]
    pub span: Duration,
}

impl Default for PrefillConfig {
    fn default() -> Self {
        Self {
            jobs: 0,
            span: Duration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Retries after a failed first delivery (Nexrender: 3).
    pub retries: u32,
    /// First retry delay; each retry doubles it.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// A receiver slower than this counts as failed (Nexrender asks for 2 s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Every job the farm creates on its own carries this webhook (jobs
    /// made through `POST /jobs` carry their own, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub farm: Option<model::Webhook>,
    /// A delivery the receiver took is sent this many times in all (more
    /// than 1: duplicates, as a receiver must expect).
    pub copies: u32,
    /// Wait this long before the first attempt (deliveries behind polls).
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Every n-th delivery is lost: never sent (0: none).
    pub lose_one_in: u32,
    /// What a delivery carries: the whole job, as `GET /jobs/{id}` shows
    /// it, or only what the vendor's example shows (`id`, `status`,
    /// `outputUrl`, `stats.finishedAt`/`errorAt`, `stats.renderDuration`:
    /// no `createdAt` or `startedAt`).
    pub payload: WebhookPayload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookPayload {
    #[default]
    Full,
    Documented,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retries: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            farm: None,
            copies: 1,
            delay: Duration::ZERO,
            lose_one_in: 0,
            payload: WebhookPayload::Full,
        }
    }
}

/// Everything the simulator can be told, from a YAML or TOML file or code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Bearer tokens that are accepted.
    pub tokens: Vec<String>,
    /// Seed for every random draw: the same seed gives the same farm.
    pub seed: u64,
    pub lifecycle: LifecycleConfig,
    pub prefill: PrefillConfig,
    /// Ended jobs older than this are forgotten (memory stays bounded).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub date_bounds: DateBounds,
    pub webhook: WebhookConfig,
    /// How often the farm moves forward when nobody asks (webhooks fire on time).
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// The simulated API's clock less the clock it is given, in seconds
    /// (negative: behind). Its jobs' times and its `Date` header follow it.
    pub clock_offset_seconds: i64,
    /// Whether answers carry a `Date` header (the API's clock). Without
    /// one, a client knows the API's time only from its jobs.
    pub date_header: bool,
    /// The status of `GET /jobs/{id}` for a job deleted through
    /// [`Simulation::remove`]: 410 (gone) or 404 (as if it never was).
    pub deleted_status: u16,
    /// How long a `hang` fault keeps the connection open before closing it.
    #[serde(with = "humantime_serde")]
    pub hang_for: Duration,
    pub faults: Vec<FaultRule>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["sim-token".into()],
            seed: 1,
            lifecycle: LifecycleConfig::default(),
            prefill: PrefillConfig::default(),
            retention: Duration::from_secs(7 * 86_400),
            date_bounds: DateBounds::Inclusive,
            webhook: WebhookConfig::default(),
            tick: Duration::from_millis(250),
            clock_offset_seconds: 0,
            date_header: true,
            deleted_status: 410,
            hang_for: Duration::from_secs(3600),
            faults: Vec::new(),
        }
    }
}

impl SimulatorConfig {
    /// The `--demo` farm: busy, with a day of history.
    pub fn demo() -> Self {
        Self {
            lifecycle: LifecycleConfig::lively(),
            prefill: PrefillConfig {
                jobs: 20_000,
                span: Duration::from_secs(86_400),
            },
            seed: 2026,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.tokens.iter().any(|t| t.is_empty()) {
            return Err("tokens: a token must not be empty".into());
        }
        self.lifecycle
            .validate()
            .map_err(|e| format!("lifecycle.{e}"))?;
        if !(400..=599).contains(&self.deleted_status) {
            return Err("deleted_status: must be an error status (400..=599)".into());
        }
        if self.tick.is_zero() {
            return Err("tick: must be longer than 0s".into());
        }
        for (i, f) in self.faults.iter().enumerate() {
            f.validate().map_err(|e| format!("faults[{i}].{e}"))?;
        }
        Ok(())
    }
}

/// Reads a simulator config from a YAML (`.yaml`/`.yml`) or TOML file over
/// the defaults. Errors name the file and the key.
pub fn load_config(path: &std::path::Path) -> Result<SimulatorConfig, String> {
    use figment::providers::{Format, Serialized, Toml, Yaml};
    let base = figment::Figment::from(Serialized::defaults(SimulatorConfig::default()));
    let fig = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => base.merge(Toml::file_exact(path)),
        _ => base.merge(Yaml::file_exact(path)),
    };
    let cfg: SimulatorConfig = fig
        .extract()
        .map_err(|e| format!("simulator config {}: {e}", path.display()))?;
    cfg.validate()
        .map_err(|e| format!("simulator config {}, key {e}", path.display()))?;
    Ok(cfg)
}
