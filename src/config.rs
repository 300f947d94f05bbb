//! Configuration: built-in defaults < file (YAML or TOML) < environment
//! (`NEXRENDER_EXPORTER_`, `__` for nesting) < command-line flags.
//!
//! The structs below are the one source of defaults; the annotated file
//! `config/nexrender-exporter.example.yaml` documents them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::shard::Shard;
use crate::status::ApiKind;

pub(crate) const DEFAULT_API_URL: &str = "https://api.nexrender.com/api/v2";
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9847";
pub(crate) const ENV_PREFIX: &str = "NEXRENDER_EXPORTER_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub poll: PollConfig,
    pub web: WebConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub webhook: WebhookConfig,
    /// The oldest jobs of each waiting or running status, by id.
    pub oldest_jobs: OldestJobsConfig,
    /// This replica's share of `accounts`, when several replicas share them.
    pub shard: Shard,
    pub accounts: Vec<AccountConfig>,
}

/// The oldest jobs of each status not ended, listed by id on the landing
/// page, at `/api/v1/oldest-jobs` and (the oldest one) in
/// `nexrender_oldest_job_info`, so an alert leads to its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OldestJobsConfig {
    /// How many per account and status, at most
    /// [`crate::oldest::MAX_PER_STATUS`]; 0 turns the lists, the endpoint's
    /// jobs and the info series off. Each listed job is looked up once
    /// (for its template) while it stays listed.
    pub per_status: usize,
    /// A link for each job id, `{id}` (and `{account}`) replaced, e.g.
    /// `https://app.example.com/jobs/{id}`; no links when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_url: Option<String>,
}

impl Default for OldestJobsConfig {
    fn default() -> Self {
        Self {
            per_status: crate::oldest::DEFAULT_PER_STATUS,
            job_url: None,
        }
    }
}

impl OldestJobsConfig {
    /// The link to job `id` of `account`, when `job_url` is set. The id
    /// and account are percent-encoded: an id is the API's text.
    pub fn link(&self, account: &str, id: &str) -> Option<String> {
        use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
        // RFC 3986's unreserved characters stay as they are.
        const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let url = self.job_url.as_deref()?;
        Some(
            url.replace("{id}", &utf8_percent_encode(id, SEGMENT).to_string())
                .replace(
                    "{account}",
                    &utf8_percent_encode(account, SEGMENT).to_string(),
                ),
        )
    }
}

/// The webhook receiver: its own listener, off unless `listen_address` is
/// set, taking the API's terminal-state deliveries for accounts with a
/// `webhook_secret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Address to take deliveries on (`/webhooks/<account>`); unset: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// TLS for the listener, in the format of `--web.config.file`
    /// (`tls_server_config` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// The request header that carries the account's `webhook_secret`
    /// (set it in the job's `webhook.headers`).
    pub secret_header: String,
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Deliveries accepted and waiting to be counted, per account; when
    /// full, 503 (the API retries).
    pub queue_capacity: usize,
    /// Connections the receiver serves at once (more wait to be
    /// accepted): its own cap, lower than `web.max_connections`, so a
    /// flood at the public receiver cannot take the file descriptors
    /// scrapes need.
    pub max_connections: usize,
}

pub(crate) const DEFAULT_WEBHOOK_SECRET_HEADER: &str = "X-Nexrender-Webhook-Secret";

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            listen_address: None,
            config_file: None,
            secret_header: DEFAULT_WEBHOOK_SECRET_HEADER.into(),
            max_body_bytes: 1 << 20,
            queue_capacity: 1024,
            max_connections: 512,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// How often each account is polled.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Lookback of the `from_date`/`to_date` window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Jobs per `GET /jobs` page (1..1000).
    pub page_size: u32,
    /// Limit on one HTTP request to the API, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `GET /jobs/{id}` look-ups in flight at once per account.
    pub detail_concurrency: u32,
    /// Responses larger than this are refused (bytes).
    pub max_response_bytes: u64,
    /// Retries of a request that failed transiently (5xx, timeout, connection error).
    pub max_retries: u32,
    /// First retry delay; doubles with jitter up to `max_retry_backoff`.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_retry_backoff: Duration,
    /// Requests per second to the API at most, per account.
    pub max_requests_per_second: u32,
    /// Wait after a 429 without a usable Retry-After header.
    #[serde(with = "humantime_serde")]
    pub rate_limit_wait: Duration,
    /// The longest wait a 429 imposes, whatever its Retry-After says.
    #[serde(with = "humantime_serde")]
    pub max_rate_limit_wait: Duration,
    /// A whole poll (all pages, look-ups and retries) longer than this fails.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `timeout`'s first name, refused with a message saying the new one.
    #[serde(rename = "cycle_timeout", skip_serializing)]
    pub renamed_cycle_timeout: Option<serde::de::IgnoredAny>,
    /// How often every page of the window is read again. In between, polls
    /// read only what changed since the last poll (new jobs, and jobs that
    /// left the listing of live jobs). 0s reads the whole window every poll.
    #[serde(with = "humantime_serde")]
    pub full_scan_interval: Duration,
    /// Single `GET /jobs/{id}` look-ups per poll; more wait for the next.
    pub max_lookups: u32,
    /// After an outage, the first good poll reads back to where the last
    /// good one ended, at most this far back before now; completions
    /// further back are not counted. 0s: never further back than `window`.
    #[serde(with = "humantime_serde")]
    pub max_catch_up: Duration,
    /// Ask the API for gzip-compressed answers (`Accept-Encoding: gzip`);
    /// `max_response_bytes` bounds them both compressed and inflated.
    pub gzip: bool,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            window: Duration::from_secs(24 * 3600),
            page_size: 1000,
            request_timeout: Duration::from_secs(15),
            detail_concurrency: 8,
            max_response_bytes: 64 << 20,
            max_retries: 2,
            retry_backoff: Duration::from_millis(500),
            max_retry_backoff: Duration::from_secs(10),
            max_requests_per_second: 10,
            rate_limit_wait: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(600),
            timeout: Duration::from_secs(300),
            renamed_cycle_timeout: None,
            full_scan_interval: Duration::from_secs(3600),
            max_lookups: 500,
            max_catch_up: Duration::from_secs(48 * 3600),
            gzip: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub listen_address: String,
    pub telemetry_path: String,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to send its request headers; also how long a
    /// kept-alive connection waits for the next request.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_address: DEFAULT_LISTEN_ADDRESS.into(),
            telemetry_path: "/metrics".into(),
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Logfmt,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Logfmt,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Upper bounds (seconds) of `nexrender_job_render_duration_seconds`.
    pub render_duration_buckets: Vec<f64>,
    /// Upper bounds (seconds) of `nexrender_job_queue_wait_seconds`.
    pub queue_wait_buckets: Vec<f64>,
    /// Upper bounds (seconds) of `nexrender_job_turnaround_seconds`.
    pub turnaround_buckets: Vec<f64>,
    /// Distinct undocumented statuses exported under their own name per
    /// account; the rest are summed under `other`.
    pub max_unknown_statuses: usize,
    /// Completions, render durations and queue waits by template
    /// (`nexrender_template_*`), within a series budget.
    pub templates: TemplatesConfig,
    /// Failed jobs by the reason their `stats.error` gives
    /// (`nexrender_job_errors_total`): the first pattern that matches names
    /// it, none matching is `other`. Empty: off.
    pub error_reasons: Vec<ErrorReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    pub enabled: bool,
    /// Templates per account with series of their own; the rest are summed
    /// under `template="other"`.
    pub max_per_account: usize,
    /// A template with no completion or queue wait for this long gives up
    /// its series (they are removed) and its place.
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
    /// How often `GET /templates` is read for display names.
    #[serde(with = "humantime_serde")]
    pub names_refresh: Duration,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_per_account: 10,
            expire_after: Duration::from_secs(24 * 3600),
            names_refresh: Duration::from_secs(3600),
        }
    }
}

pub use crate::breakdown::ErrorReason;

/// Most values of `reason`, so the label stays small.
pub(crate) const MAX_ERROR_REASONS: usize = 20;

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            // After Effects renders: seconds for a still, hours for long video.
            render_duration_buckets: vec![
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
            ],
            queue_wait_buckets: vec![
                1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
            ],
            // Minutes to a day: creation to delivery, queue and render.
            turnaround_buckets: vec![
                30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
                86400.0,
            ],
            max_unknown_statuses: 10,
            templates: TemplatesConfig::default(),
            error_reasons: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The `account` label.
    pub name: String,
    /// `cloud` (the default): the Nexrender Cloud API v2. `server`: a
    /// self-hosted `@nexrender/server` (API v1) at `api_url`.
    #[serde(default)]
    pub kind: ApiKind,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The Cloud's API token, or a self-hosted server's secret (`secret`
    /// says the same).
    #[serde(default, alias = "secret", skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(
        default,
        alias = "secret_file",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_file: Option<PathBuf>,
    /// Self-hosted servers: a job not ended whose `updatedAt` has not
    /// moved for this long counts in `nexrender_jobs_stale` (default 1h).
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stale_after: Option<Duration>,
    /// The shared secret its jobs' webhooks send in `webhook.secret_header`;
    /// without it (or `webhook_secret_file`) the account takes no deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Secrets still accepted after a rotation, for jobs created with them
    /// (their webhooks keep the header they were created with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_webhook_secrets: Vec<Secret>,
    /// Only jobs with any of these tags (the API's `tags` filter): one
    /// team's pipeline or customer under its own `account` label. Each
    /// entry polls on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.into()
}

impl PollConfig {
    /// The API client's side of these settings.
    pub fn client_policy(&self) -> crate::api::ClientPolicy {
        crate::api::ClientPolicy {
            timeout: self.request_timeout,
            max_body: self.max_response_bytes,
            max_retries: self.max_retries,
            backoff: self.retry_backoff,
            max_backoff: self.max_retry_backoff,
            max_requests_per_second: self.max_requests_per_second,
            rate_limit_default_wait: self.rate_limit_wait,
            max_rate_limit_wait: self.max_rate_limit_wait,
            gzip: self.gzip,
        }
    }
}

/// An account ready to poll: its token read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    /// Which API `api_url` is.
    pub kind: ApiKind,
    /// Without a trailing slash.
    pub api_url: String,
    /// The Cloud's token; a self-hosted server's secret (empty: none).
    pub token: Secret,
    /// Self-hosted servers: when a job not ended that has not moved is stale.
    pub stale_after: Duration,
    /// Deliveries for this account must carry it; `None`: none are taken.
    pub webhook_secret: Option<Secret>,
    /// Also accepted: the secrets before a rotation (from
    /// `previous_webhook_secrets`, or the lines after the first of
    /// `webhook_secret_file`).
    pub previous_webhook_secrets: Vec<Secret>,
    /// The `tags` filter of its listings; empty: every job.
    pub tags: Vec<String>,
}

/// Settings given on the command line; `None` leaves the layers below.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_listen_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_config_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_total: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Syntax, unknown keys and wrong types, as figment reports them (with
    /// the key and the file or environment variable).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}, key {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// The loaded configuration and its accounts.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The accounts this replica polls: all of them, or its shard's.
    pub accounts: Vec<Account>,
    /// Accounts of the configuration that other shards poll (their tokens
    /// are not read here).
    pub other_shards: Vec<String>,
}

/// Environment lookups, injectable for tests.
pub trait Environment {
    fn var(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

fn origin(file: Option<&Path>) -> String {
    match file {
        Some(f) => format!("config file {}", f.display()),
        None => "configuration (defaults, environment and flags)".into(),
    }
}

fn figment(file: Option<&Path>, flags: &FlagOverrides) -> Figment {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(f) = file {
        fig = match f.extension().and_then(|e| e.to_str()) {
            Some("toml") => fig.merge(Toml::file_exact(f)),
            _ => fig.merge(Yaml::file_exact(f)),
        };
    }
    // NEXRENDER_EXPORTER_POLL__INTERVAL=10s sets poll.interval. Every key
    // is in a section, so a variable without `__` is not one: the systemd
    // unit's NEXRENDER_EXPORTER_ARGS (its extra flags) is left alone.
    fig = fig.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    );
    let mut web = serde_json::Map::new();
    let mut log = serde_json::Map::new();
    if let Some(v) = &flags.listen_address {
        web.insert("listen_address".into(), v.clone().into());
    }
    if let Some(v) = &flags.telemetry_path {
        web.insert("telemetry_path".into(), v.clone().into());
    }
    if let Some(v) = &flags.log_level {
        log.insert("level".into(), v.clone().into());
    }
    if let Some(v) = flags.log_format {
        log.insert("format".into(), serde_json::to_value(v).unwrap_or_default());
    }
    if !web.is_empty() {
        fig = fig.merge(Serialized::default("web", web));
    }
    if !log.is_empty() {
        fig = fig.merge(Serialized::default("log", log));
    }
    let mut webhook = serde_json::Map::new();
    if let Some(v) = &flags.webhook_listen_address {
        webhook.insert("listen_address".into(), v.clone().into());
    }
    if let Some(v) = &flags.webhook_config_file {
        webhook.insert("config_file".into(), v.display().to_string().into());
    }
    if !webhook.is_empty() {
        fig = fig.merge(Serialized::default("webhook", webhook));
    }
    let mut shard = serde_json::Map::new();
    if let Some(v) = flags.shard_index {
        shard.insert("index".into(), v.into());
    }
    if let Some(v) = flags.shard_total {
        shard.insert("total".into(), v.into());
    }
    if !shard.is_empty() {
        fig = fig.merge(Serialized::default("shard", shard));
    }
    fig
}

/// Loads and checks the configuration. `require_accounts` is false only in
/// demo mode, which brings its own account.
/// Why the configuration file cannot be read, if it cannot: not there,
/// not a file, or not readable by this user (a directory or file mode the
/// service's user cannot pass, said as such, not as "not found").
fn unreadable(f: &Path) -> Option<String> {
    let denied = |e: &std::io::Error| {
        (e.kind() == std::io::ErrorKind::PermissionDenied).then(|| {
            format!("permission denied: this user cannot read it (check the mode of the file and of every directory above it): {e}")
        })
    };
    match std::fs::metadata(f) {
        Err(e) => Some(denied(&e).unwrap_or_else(|| format!("file not found ({e})"))),
        Ok(m) if !m.is_file() => Some("not a regular file".into()),
        Ok(_) => std::fs::File::open(f)
            .err()
            .map(|e| denied(&e).unwrap_or_else(|| e.to_string())),
    }
}

pub fn load(
    file: Option<&Path>,
    flags: &FlagOverrides,
    env: &dyn Environment,
    require_accounts: bool,
) -> Result<Loaded, ConfigError> {
    let origin = origin(file);
    if let Some(f) = file {
        if let Some(message) = unreadable(f) {
            return Err(ConfigError::Parse { origin, message });
        }
    }
    let mut config: Config = figment(file, flags)
        .extract()
        .map_err(|e| ConfigError::Parse {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
    if config.accounts.is_empty() {
        let url = env.var("NEXRENDER_API_URL");
        let token = env.var("NEXRENDER_API_TOKEN");
        if url.is_some() || token.is_some() {
            config.accounts.push(AccountConfig {
                name: "default".into(),
                kind: ApiKind::Cloud,
                api_url: url.unwrap_or_else(default_api_url),
                token: token.map(Secret::new),
                token_file: None,
                stale_after: None,
                webhook_secret: None,
                webhook_secret_file: None,
                previous_webhook_secrets: Vec::new(),
                tags: Vec::new(),
            });
        }
    }
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: origin.clone(),
        key: key.into(),
        message,
    };
    validate(&config).map_err(|(k, m)| invalid(&k, m))?;
    if require_accounts && config.accounts.is_empty() {
        return Err(invalid(
            "accounts",
            "no account configured: list accounts in the file, or set NEXRENDER_API_TOKEN (and NEXRENDER_API_URL)".into(),
        ));
    }
    let mut accounts = Vec::new();
    let mut other_shards = Vec::new();
    for (i, a) in config.accounts.iter().enumerate() {
        if !config.shard.owns(&a.name) {
            other_shards.push(a.name.clone());
            continue;
        }
        accounts.push(resolve(a).map_err(|(k, m)| invalid(&format!("accounts[{i}].{k}"), m))?);
    }
    Ok(Loaded {
        config,
        accounts,
        other_shards,
    })
}

/// A configuration key and what is wrong with its value.
type Checked = Result<(), (String, String)>;

fn err(key: &str, why: String) -> Checked {
    Err((key.to_owned(), why))
}

/// Checks every value a file or the environment can get wrong, section by
/// section; the first error names its key.
fn validate(c: &Config) -> Checked {
    check_poll(&c.poll)?;
    check_web(&c.web)?;
    check_log(&c.log)?;
    check_metrics(&c.metrics)?;
    check_webhook(&c.webhook)?;
    check_oldest_jobs(&c.oldest_jobs)?;
    check_shard(&c.shard)?;
    check_accounts(&c.accounts)
}

fn check_poll(p: &PollConfig) -> Checked {
    if p.renamed_cycle_timeout.is_some() {
        return err(
            "poll.cycle_timeout",
            "is now called poll.timeout (the same setting): rename the key".to_owned(),
        );
    }
    if p.interval < Duration::from_secs(1) {
        return err(
            "poll.interval",
            format!("must be at least 1s, got {:?}", p.interval),
        );
    }
    if p.window < Duration::from_secs(60) {
        return err(
            "poll.window",
            format!("must be at least 1m, got {:?}", p.window),
        );
    }
    // The API keeps jobs for a while, not for ages; a window of years is a
    // typo, and would overflow the arithmetic of dates.
    if p.window > Duration::from_secs(366 * 86_400) {
        return err(
            "poll.window",
            format!("must be at most 366d, got {:?}", p.window),
        );
    }
    if p.max_catch_up > Duration::from_secs(366 * 86_400) {
        return err(
            "poll.max_catch_up",
            format!("must be at most 366d, got {:?}", p.max_catch_up),
        );
    }
    if p.max_lookups == 0 {
        return err(
            "poll.max_lookups",
            "must be at least 1 (jobs that ended outside the window are looked up by id)".into(),
        );
    }
    if !(1..=1000).contains(&p.page_size) {
        return err(
            "poll.page_size",
            format!(
                "must be between 1 and 1000 (the API's limit), got {}",
                p.page_size
            ),
        );
    }
    if p.request_timeout.is_zero() {
        return err("poll.request_timeout", "must be longer than 0s".into());
    }
    if p.detail_concurrency == 0 {
        return err("poll.detail_concurrency", "must be at least 1".into());
    }
    if p.max_response_bytes < 1024 {
        return err(
            "poll.max_response_bytes",
            format!("must be at least 1024, got {}", p.max_response_bytes),
        );
    }
    if p.max_rate_limit_wait.is_zero() {
        return err("poll.max_rate_limit_wait", "must be longer than 0s".into());
    }
    if p.rate_limit_wait > p.max_rate_limit_wait {
        return err(
            "poll.rate_limit_wait",
            format!(
                "must not be longer than poll.max_rate_limit_wait ({:?}), got {:?}",
                p.max_rate_limit_wait, p.rate_limit_wait
            ),
        );
    }
    Ok(())
}

fn check_web(w: &WebConfig) -> Checked {
    if !w.telemetry_path.starts_with('/') || w.telemetry_path == "/" {
        return err(
            "web.telemetry_path",
            format!(
                "must start with / and not be / itself, got '{}'",
                w.telemetry_path
            ),
        );
    }
    if w.max_connections == 0 {
        return err("web.max_connections", "must be at least 1".into());
    }
    for (key, d) in [
        ("web.header_timeout", w.header_timeout),
        ("web.idle_timeout", w.idle_timeout),
    ] {
        if d < Duration::from_secs(1) {
            return err(key, format!("must be at least 1s, got {d:?}"));
        }
    }
    Ok(())
}

fn check_log(l: &LogConfig) -> Checked {
    let lvl = l.level.to_ascii_lowercase();
    let plain = ["error", "warn", "info", "debug", "trace", "off"].contains(&lvl.as_str());
    // Besides the plain levels, tracing directives such as `info,nexrender_exporter=debug`.
    let directive = lvl.contains('=') && tracing_subscriber::EnvFilter::try_new(&lvl).is_ok();
    if !plain && !directive {
        return err(
            "log.level",
            format!(
                "expected error, warn, info, debug or trace, got '{}'",
                l.level
            ),
        );
    }
    Ok(())
}

fn check_oldest_jobs(o: &OldestJobsConfig) -> Checked {
    let max = crate::oldest::MAX_PER_STATUS;
    if o.per_status > max {
        return err(
            "oldest_jobs.per_status",
            format!(
                "{} is over {max}: each listed job may cost a look-up",
                o.per_status
            ),
        );
    }
    if let Some(url) = &o.job_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) || !url.contains("{id}") {
            return err(
                "oldest_jobs.job_url",
                "expected an http(s) URL with {id} where the job id goes, e.g. https://app.example.com/jobs/{id}".into(),
            );
        }
    }
    Ok(())
}

fn check_metrics(m: &MetricsConfig) -> Checked {
    for (key, b) in [
        (
            "metrics.render_duration_buckets",
            &m.render_duration_buckets,
        ),
        ("metrics.queue_wait_buckets", &m.queue_wait_buckets),
        ("metrics.turnaround_buckets", &m.turnaround_buckets),
    ] {
        if b.is_empty()
            || b.iter().any(|x| !x.is_finite() || *x < 0.0)
            || b.windows(2).any(|w| w[0] >= w[1])
        {
            return err(
                key,
                format!("expected increasing, finite, non-negative seconds, got {b:?}"),
            );
        }
    }
    let t = &m.templates;
    if !(1..=1000).contains(&t.max_per_account) {
        return err(
            "metrics.templates.max_per_account",
            format!("must be between 1 and 1000, got {}", t.max_per_account),
        );
    }
    for (key, d) in [
        ("metrics.templates.expire_after", t.expire_after),
        ("metrics.templates.names_refresh", t.names_refresh),
    ] {
        if d < Duration::from_secs(60) {
            return err(key, format!("must be at least 1m, got {d:?}"));
        }
    }
    check_error_reasons(&m.error_reasons)
}

/// `metrics.error_reasons`: each reason a label value of its own, each
/// pattern a regular expression.
fn check_error_reasons(configured: &[ErrorReason]) -> Checked {
    if configured.len() > MAX_ERROR_REASONS {
        return err(
            "metrics.error_reasons",
            format!(
                "at most {MAX_ERROR_REASONS} reasons (each is a label value), got {}",
                configured.len()
            ),
        );
    }
    let mut reasons = HashSet::new();
    for (i, r) in configured.iter().enumerate() {
        let label_like = r.reason.len() <= 40
            && r.reason.starts_with(|ch: char| ch.is_ascii_lowercase())
            && r.reason
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
        if !label_like
            || r.reason == crate::breakdown::OTHER
            || r.reason == crate::breakdown::UNREAD
        {
            return err(
                &format!("metrics.error_reasons[{i}].reason"),
                format!(
                    "expected lowercase letters, digits and _ (at most 40, not 'other' or 'unknown'), got '{}'",
                    r.reason
                ),
            );
        }
        if !reasons.insert(r.reason.as_str()) {
            return err(
                &format!("metrics.error_reasons[{i}].reason"),
                format!("duplicate reason '{}'", r.reason),
            );
        }
        if let Err(e) = regex::Regex::new(&r.pattern) {
            return err(
                &format!("metrics.error_reasons[{i}].pattern"),
                format!("not a valid regular expression: {e}"),
            );
        }
    }
    Ok(())
}

fn check_webhook(w: &WebhookConfig) -> Checked {
    if w.max_connections == 0 {
        return err("webhook.max_connections", "must be at least 1".into());
    }
    if hyper::header::HeaderName::from_bytes(w.secret_header.as_bytes()).is_err() {
        return err(
            "webhook.secret_header",
            format!("not an HTTP header name: '{}'", w.secret_header),
        );
    }
    if w.max_body_bytes < 1024 {
        return err(
            "webhook.max_body_bytes",
            format!("must be at least 1024, got {}", w.max_body_bytes),
        );
    }
    if w.queue_capacity == 0 {
        return err("webhook.queue_capacity", "must be at least 1".into());
    }
    if w.listen_address.as_deref() == Some("") {
        return err(
            "webhook.listen_address",
            "must be host:port; leave it unset to turn the receiver off".into(),
        );
    }
    Ok(())
}

fn check_shard(s: &Shard) -> Checked {
    if s.total == 0 {
        return err("shard.total", "must be at least 1".into());
    }
    if s.index >= s.total {
        return err(
            "shard.index",
            format!(
                "must be below shard.total ({}): shards are numbered from 0, got {}",
                s.total, s.index
            ),
        );
    }
    Ok(())
}

fn check_accounts(accounts: &[AccountConfig]) -> Checked {
    let mut names = HashSet::new();
    for (i, a) in accounts.iter().enumerate() {
        for tag in &a.tags {
            let ok = !tag.is_empty()
                && tag
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !ok {
                return err(
                    &format!("accounts[{i}].tags"),
                    format!("a tag is letters, digits, - and _ (the API's pattern), got '{tag}'"),
                );
            }
        }
        if a.name.trim().is_empty() {
            return err(&format!("accounts[{i}].name"), "must not be empty".into());
        }
        if !names.insert(a.name.as_str()) {
            return err(
                &format!("accounts[{i}].name"),
                format!("duplicate account name '{}'", a.name),
            );
        }
    }
    Ok(())
}

/// A secret given as `key` or read from the file `key`_file (trimmed),
/// not both; `None` if neither is set.
fn read_secret(
    key: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, (String, String)> {
    match (value, file) {
        (Some(_), Some(_)) => Err((key.to_owned(), format!("set {key} or {key}_file, not both"))),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(Secret::new(s.trim()))),
            Err(e) => Err((
                format!("{key}_file"),
                format!("cannot read {}: {e}", path.display()),
            )),
        },
        (None, None) => Ok(None),
    }
}

/// How long a self-hosted server's job may go without an update before it
/// counts as stale, unless the account says.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(3600);

fn resolve(a: &AccountConfig) -> Result<Account, (String, String)> {
    if a.kind == ApiKind::Server {
        return resolve_server(a);
    }
    if a.stale_after.is_some() {
        return Err((
            "stale_after".into(),
            format!(
                "account '{}': stale_after is for self-hosted servers (kind: server); the Cloud times jobs out itself",
                a.name
            ),
        ));
    }
    let url = check_url(&a.api_url)?;
    let token = read_secret("token", &a.token, &a.token_file)?.ok_or_else(|| {
        (
            "token".to_owned(),
            format!("account '{}' has no token: set token or token_file", a.name),
        )
    })?;
    if token.is_empty() {
        return Err((
            "token".into(),
            format!("account '{}' has an empty token", a.name),
        ));
    }
    let (webhook_secret, previous_webhook_secrets) = webhook_secrets(a)?;
    for secret in webhook_secret.iter().chain(&previous_webhook_secrets) {
        // It travels as a header value; the value itself is never shown.
        if secret.is_empty()
            || !secret
                .expose()
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err((
                "webhook_secret".into(),
                format!(
                    "account '{}': the webhook secret must be non-empty printable ASCII (it is sent as an HTTP header value)",
                    a.name
                ),
            ));
        }
    }
    Ok(Account {
        name: a.name.clone(),
        kind: ApiKind::Cloud,
        api_url: url,
        token,
        stale_after: DEFAULT_STALE_AFTER,
        webhook_secret,
        previous_webhook_secrets,
        tags: a.tags.clone(),
    })
}

/// `api_url` without its trailing slash, if it is an http(s) URL.
fn check_url(api_url: &str) -> Result<String, (String, String)> {
    let url = api_url.trim_end_matches('/');
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(url.to_owned()),
        _ => Err((
            "api_url".into(),
            format!("expected an http(s) URL, got '{api_url}'"),
        )),
    }
}

/// A self-hosted server's account: its URL given (the server's base, with
/// or without `/api/v1`), its secret optional (a server started without
/// one asks none), no webhooks (the server sends none).
fn resolve_server(a: &AccountConfig) -> Result<Account, (String, String)> {
    let name = &a.name;
    if a.api_url == DEFAULT_API_URL {
        return Err((
            "api_url".into(),
            format!("account '{name}' is kind: server: set api_url to the server's address (for example http://nexrender.internal:3000)"),
        ));
    }
    let url = check_url(&a.api_url)?;
    let url = url.strip_suffix("/api/v1").unwrap_or(&url).to_owned();
    let secret = read_secret("token", &a.token, &a.token_file)?.unwrap_or_else(|| Secret::new(""));
    if !secret
        .expose()
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err((
            "token".into(),
            format!("account '{name}': the server's secret must be printable ASCII (it is sent as the nexrender-secret header)"),
        ));
    }
    if a.webhook_secret.is_some()
        || a.webhook_secret_file.is_some()
        || !a.previous_webhook_secrets.is_empty()
    {
        return Err((
            "webhook_secret".into(),
            format!("account '{name}' is kind: server: a self-hosted server sends no webhooks"),
        ));
    }
    let stale_after = a.stale_after.unwrap_or(DEFAULT_STALE_AFTER);
    if stale_after.is_zero() {
        return Err((
            "stale_after".into(),
            format!("account '{name}': stale_after must be more than 0s"),
        ));
    }
    Ok(Account {
        name: name.clone(),
        kind: ApiKind::Server,
        api_url: url,
        token: secret,
        stale_after,
        webhook_secret: None,
        previous_webhook_secrets: Vec::new(),
        tags: a.tags.clone(),
    })
}

/// The account's current webhook secret and the previous ones still
/// accepted: `webhook_secret` and `previous_webhook_secrets`, or the lines
/// of `webhook_secret_file`, current first (a Kubernetes Secret or a file
/// rotated by writing the new secret above the old).
fn webhook_secrets(a: &AccountConfig) -> Result<(Option<Secret>, Vec<Secret>), (String, String)> {
    let current = read_secret("webhook_secret", &a.webhook_secret, &a.webhook_secret_file)?;
    let mut previous = a.previous_webhook_secrets.clone();
    let current = match (current, &a.webhook_secret_file) {
        (Some(text), Some(_)) => {
            let mut lines = text
                .expose()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Secret::new);
            let first = lines.next().unwrap_or_else(|| Secret::new(""));
            previous.extend(lines);
            Some(first)
        }
        (current, _) => current,
    };
    if current.is_none() && !previous.is_empty() {
        return Err((
            "previous_webhook_secrets".into(),
            format!(
                "account '{}': previous secrets without a current webhook_secret",
                a.name
            ),
        ));
    }
    Ok((current, previous))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    struct FakeEnv(HashMap<&'static str, &'static str>);
    impl Environment for FakeEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| v.to_string())
        }
    }
    fn no_env() -> FakeEnv {
        FakeEnv(HashMap::new())
    }

    fn file(ext: &str, body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f
    }

    fn load_yaml(body: &str) -> Result<Loaded, ConfigError> {
        let f = file(".yaml", body);
        load(Some(f.path()), &FlagOverrides::default(), &no_env(), true)
    }

    const GOOD: &str = "poll:\n  interval: 10s\naccounts:\n  - name: main\n    api_url: https://api.nexrender.com/api/v2/\n    token: t0k\n";

    #[test]
    fn a_minimal_yaml_file_fills_the_rest_with_defaults() {
        let l = load_yaml(GOOD).unwrap();
        assert_eq!(l.config.poll.interval, Duration::from_secs(10));
        assert_eq!(l.config.poll.window, Duration::from_secs(86_400));
        assert_eq!(l.accounts[0].api_url, "https://api.nexrender.com/api/v2");
        assert_eq!(l.accounts[0].token.expose(), "t0k");
    }

    #[test]
    fn poll_timeout_under_its_first_name_cycle_timeout_is_refused_saying_the_new_one() {
        let with =
            |key: &str| GOOD.replace("interval: 10s", &format!("interval: 10s\n  {key}: 7m"));
        let l = load_yaml(&with("timeout")).unwrap();
        assert_eq!(l.config.poll.timeout, Duration::from_secs(420));
        let e = load_yaml(&with("cycle_timeout")).unwrap_err().to_string();
        assert!(
            e.contains("poll.cycle_timeout") && e.contains("is now called poll.timeout"),
            "{e}"
        );
        assert_eq!(
            load_yaml(GOOD).unwrap().config.poll.timeout,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn a_rotated_webhook_secret_keeps_the_previous_ones_accepted() {
        let w = "webhook:\n  listen_address: 127.0.0.1:0\n";
        let l = load_yaml(&format!("{w}accounts: [{{name: a, token: x, webhook_secret: new1, previous_webhook_secrets: [old1, old0]}}]\n")).unwrap();
        let a = &l.accounts[0];
        assert_eq!(a.webhook_secret.as_ref().map(Secret::expose), Some("new1"));
        let previous: Vec<&str> = a
            .previous_webhook_secrets
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(previous, ["old1", "old0"]);
        // A file: the current secret first, the previous ones below.
        let f = file(".txt", "new2\n\nold2 \n");
        let l = load_yaml(&format!(
            "{w}accounts: [{{name: a, token: x, webhook_secret_file: {}}}]\n",
            f.path().display()
        ))
        .unwrap();
        let a = &l.accounts[0];
        assert_eq!(a.webhook_secret.as_ref().map(Secret::expose), Some("new2"));
        let previous: Vec<&str> = a
            .previous_webhook_secrets
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(previous, ["old2"]);
        let e = err_of("accounts: [{name: a, token: x, previous_webhook_secrets: [old9]}]\n");
        assert!(
            e.contains("previous_webhook_secrets") && !e.contains("old9"),
            "{e}"
        );
        let e = err_of("accounts: [{name: a, token: x, webhook_secret: ok, previous_webhook_secrets: [\"zq9\\u0007\"]}]\n");
        assert!(e.contains("webhook_secret") && !e.contains("zq9"), "{e}");
        assert!(!format!("{a:?}").contains("old2"));
    }

    #[test]
    fn a_webhook_secret_that_cannot_be_a_header_value_is_refused_without_showing_it() {
        let e = err_of("accounts: [{name: a, token: x, webhook_secret: \"zq9ë\\nvalue\"}]\n");
        assert!(e.contains("accounts[0].webhook_secret"), "{e}");
        assert!(!e.contains("zq9"), "{e}");
        let l = load_yaml("webhook:\n  listen_address: 127.0.0.1:0\naccounts: [{name: a, token: x, webhook_secret: s3cr3t}]\n").unwrap();
        assert_eq!(
            l.accounts[0].webhook_secret.as_ref().map(Secret::expose),
            Some("s3cr3t")
        );
        assert!(!format!("{:?}", l.accounts[0]).contains("s3cr3t"));
    }

    #[test]
    fn a_shard_polls_and_reads_the_tokens_of_its_own_accounts_only() {
        // Eight accounts; the others' token files do not exist here, as a
        // replica may mount only its own.
        let names: Vec<String> = (0..8).map(|i| format!("team-{i}")).collect();
        let mut body = String::from("shard:\n  total: 2\naccounts:\n");
        for n in &names {
            if crate::shard::Shard::of(n, 2) == 1 {
                body += &format!("  - {{name: {n}, token_file: /nonexistent/{n}}}\n");
            } else {
                body += &format!("  - {{name: {n}, token: t-{n}}}\n");
            }
        }
        let l = load_yaml(&body).unwrap();
        let mine: Vec<&str> = l.accounts.iter().map(|a| a.name.as_str()).collect();
        let want: Vec<&str> = names
            .iter()
            .filter(|n| crate::shard::Shard::of(n, 2) == 0)
            .map(String::as_str)
            .collect();
        assert_eq!(mine, want);
        assert!(!mine.is_empty() && mine.len() < 8, "{mine:?}");
        assert_eq!(l.accounts.len() + l.other_shards.len(), 8);
        // Shard 1 of the same file (a flag) must read those token files.
        let f = file(".yaml", &body);
        let flags = FlagOverrides {
            shard_index: Some(1),
            ..FlagOverrides::default()
        };
        let e = load(Some(f.path()), &flags, &no_env(), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token_file") && e.contains("/nonexistent/"),
            "{e}"
        );
    }

    #[test]
    fn a_shard_index_outside_the_shards_is_refused() {
        let e = err_of("shard: {index: 2, total: 2}\naccounts: [{name: a, token: x}]\n");
        assert!(
            e.contains("shard.index") && e.contains("below shard.total (2)"),
            "{e}"
        );
        let e = err_of("shard: {total: 0}\naccounts: [{name: a, token: x}]\n");
        assert!(e.contains("shard.total"), "{e}");
    }

    #[test]
    fn toml_works_too() {
        let f = file(
            ".toml",
            "[poll]\nwindow = \"6h\"\n[[accounts]]\nname = \"a\"\ntoken = \"x\"\n",
        );
        let l = load(Some(f.path()), &FlagOverrides::default(), &no_env(), true).unwrap();
        assert_eq!(l.config.poll.window, Duration::from_secs(6 * 3600));
    }

    fn err_of(body: &str) -> String {
        load_yaml(body).unwrap_err().to_string()
    }

    #[test]
    fn bad_input_is_refused_naming_the_key_and_the_file() {
        let cases = [
            ("poll:\n  intervall: 10s\naccounts: []\n", "intervall"),
            ("poll:\n  interval: fast\n", "interval"),
            (
                "poll:\n  page_size: 5000\naccounts: [{name: a, token: x}]\n",
                "poll.page_size",
            ),
            (
                "accounts: [{name: a, token: x}, {name: a, token: y}]\n",
                "accounts[1].name",
            ),
            ("accounts: [{name: a}]\n", "accounts[0].token"),
            (
                "accounts: [{name: a, token_file: /nonexistent/tok}]\n",
                "accounts[0].token_file",
            ),
            (
                "accounts: [{name: a, token: x, api_url: 'ftp://x'}]\n",
                "accounts[0].api_url",
            ),
            (
                "metrics:\n  queue_wait_buckets: [5, 1]\naccounts: [{name: a, token: x}]\n",
                "metrics.queue_wait_buckets",
            ),
            (
                "webhook:\n  max_connections: 0\naccounts: [{name: a, token: x}]\n",
                "webhook.max_connections",
            ),
            (
                "log:\n  level: loud\naccounts: [{name: a, token: x}]\n",
                "log.level",
            ),
            (
                "poll:\n  rate_limit_wait: 11m\naccounts: [{name: a, token: x}]\n",
                "poll.rate_limit_wait",
            ),
            (
                "poll:\n  max_rate_limit_wait: 0s\naccounts: [{name: a, token: x}]\n",
                "poll.max_rate_limit_wait",
            ),
            ("{}\n", "accounts"),
            (
                "webhook:\n  secret_header: 'bad header'\naccounts: [{name: a, token: x}]\n",
                "webhook.secret_header",
            ),
            (
                "webhook:\n  queue_capacity: 0\naccounts: [{name: a, token: x}]\n",
                "webhook.queue_capacity",
            ),
            (
                "webhook:\n  max_body_bytes: 10\naccounts: [{name: a, token: x}]\n",
                "webhook.max_body_bytes",
            ),
            (
                "accounts: [{name: a, token: x, webhook_secret: s, webhook_secret_file: /f}]\n",
                "accounts[0].webhook_secret",
            ),
            (
                "accounts: [{name: a, token: x, webhook_secret_file: /nonexistent/s}]\n",
                "accounts[0].webhook_secret_file",
            ),
            ("accounts: [{name: a, kind: server}]\n", "accounts[0].api_url"),
            (
                "accounts: [{name: a, kind: serve, api_url: 'http://h:3000'}]\n",
                "accounts.0.kind",
            ),
            (
                "accounts: [{name: a, kind: server, api_url: 'http://h:3000', webhook_secret: w}]\n",
                "accounts[0].webhook_secret",
            ),
            (
                "accounts: [{name: a, kind: server, api_url: 'http://h:3000', stale_after: 0s}]\n",
                "accounts[0].stale_after",
            ),
            (
                "accounts: [{name: a, token: x, stale_after: 1h}]\n",
                "accounts[0].stale_after",
            ),
            (
                "accounts: [{name: a, kind: server, api_url: 'http://h:3000', secret: \"a\\nb\"}]\n",
                "accounts[0].token",
            ),
        ];
        for (body, key) in cases {
            let e = err_of(body);
            assert!(e.contains(key), "{body:?} -> {e}");
            assert!(
                e.contains("config file") && e.contains(".yaml"),
                "names the file: {e}"
            );
        }
    }

    #[test]
    fn a_self_hosted_server_needs_only_its_kind_url_and_secret() {
        let sec = file(".txt", "srv-s3cret\n");
        let l = load_yaml(&format!(
            "accounts:\n  - {{name: farm, kind: server, api_url: 'http://render:3000/api/v1/', secret_file: {}}}\n  - {{name: open, kind: server, api_url: 'http://render:3000', stale_after: 20m}}\n",
            sec.path().display()
        ))
        .unwrap();
        let (farm, open) = (&l.accounts[0], &l.accounts[1]);
        assert_eq!(farm.kind, ApiKind::Server);
        assert_eq!(farm.api_url, "http://render:3000");
        assert_eq!(farm.token.expose(), "srv-s3cret");
        assert_eq!(farm.stale_after, DEFAULT_STALE_AFTER);
        assert!(open.token.is_empty(), "a server without a secret asks none");
        assert_eq!(open.stale_after, Duration::from_secs(1200));
        assert!(!format!("{l:?}").contains("srv-s3cret"));
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let tok = file(".txt", "s3cret\n");
        let body = format!(
            "accounts: [{{name: a, token_file: {}}}]\n",
            tok.path().display()
        );
        assert_eq!(
            load_yaml(&body).unwrap().accounts[0].token.expose(),
            "s3cret"
        );
    }

    #[test]
    fn env_api_url_and_token_make_a_default_account_when_none_is_listed() {
        let env = FakeEnv(HashMap::from([
            ("NEXRENDER_API_TOKEN", "envtok"),
            ("NEXRENDER_API_URL", "http://127.0.0.1:1/api/v2"),
        ]));
        let l = load(None, &FlagOverrides::default(), &env, true).unwrap();
        assert_eq!(l.accounts.len(), 1);
        assert_eq!(l.accounts[0].name, "default");
        assert_eq!(l.accounts[0].token.expose(), "envtok");
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file(
            ".yaml",
            "web:\n  listen_address: 127.0.0.1:1\naccounts: [{name: a, token: x}]\n",
        );
        let flags = FlagOverrides {
            listen_address: Some("127.0.0.1:2".into()),
            log_format: Some(LogFormat::Json),
            ..Default::default()
        };
        let l = load(Some(f.path()), &flags, &no_env(), true).unwrap();
        assert_eq!(l.config.web.listen_address, "127.0.0.1:2");
        assert_eq!(l.config.log.format, LogFormat::Json);
    }

    #[test]
    fn the_config_debug_output_never_shows_the_token() {
        let l = load_yaml(GOOD).unwrap();
        let dbg = format!("{l:?}");
        assert!(!dbg.contains("t0k"), "{dbg}");
    }

    #[test]
    fn breakdown_settings_and_tags_are_checked_naming_the_key() {
        for (extra, key) in [
            (
                "metrics:\n  templates:\n    max_per_account: 0\n",
                "metrics.templates.max_per_account",
            ),
            (
                "metrics:\n  templates:\n    expire_after: 10s\n",
                "metrics.templates.expire_after",
            ),
            (
                "metrics:\n  error_reasons: [{reason: Font, pattern: x}]\n",
                "metrics.error_reasons[0].reason",
            ),
            (
                "metrics:\n  error_reasons: [{reason: other, pattern: x}]\n",
                "metrics.error_reasons[0].reason",
            ),
            (
                "metrics:\n  error_reasons: [{reason: a, pattern: x}, {reason: a, pattern: y}]\n",
                "metrics.error_reasons[1].reason",
            ),
            (
                "metrics:\n  error_reasons: [{reason: a, pattern: '(unclosed'}]\n",
                "metrics.error_reasons[0].pattern",
            ),
        ] {
            let err = load_yaml(&format!("{GOOD}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let err = load_yaml("accounts:\n  - name: a\n    token: t\n    tags: ['a b']\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("accounts[0].tags"), "{err}");
        let l = load_yaml(
            "metrics:\n  templates: {enabled: true}\n  error_reasons: [{reason: missing_font, pattern: '(?i)font'}]\naccounts:\n  - name: a\n    token: t\n    tags: [broadcast, social_2]\n",
        )
        .unwrap();
        assert!(l.config.metrics.templates.enabled);
        assert_eq!(l.accounts[0].tags, ["broadcast", "social_2"]);
    }
}
