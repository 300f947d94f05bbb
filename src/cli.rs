//! The command line: its flags, and what they name (the config file, the
//! web and webhook TLS files), read before anything starts. The binary and
//! the tests that run the exporter in their own process start it the same
//! way: [`Cli`] parsed, [`Startup::load`], [`Startup::run`].

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::app::{self, AppError};
use crate::clock::SharedClock;
use crate::config::{self, ConfigError, Environment, FlagOverrides, Loaded, LogFormat};
use crate::webconfig::{self, TlsReloader, WebSecurity};

#[derive(Parser)]
#[command(
    name = "nexrender-exporter",
    version,
    about = "Prometheus exporter for Nexrender Cloud render jobs",
    after_help = "Environment: NEXRENDER_API_URL and NEXRENDER_API_TOKEN configure an account named `default` when the \
                  config lists none; NEXRENDER_EXPORTER_<SECTION>__<KEY> sets any config key (e.g. NEXRENDER_EXPORTER_POLL__INTERVAL=10s)."
)]
pub struct Cli {
    /// YAML (or .toml) config file; see config/nexrender-exporter.example.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve metrics on [default: 0.0.0.0:9847].
    #[arg(long = "web.listen-address", value_name = "ADDRESS")]
    pub listen_address: Option<String>,
    /// TLS and basic auth, in the format of Prometheus's exporter-toolkit
    /// (see config/web-config.example.yaml).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Path under which to expose metrics [default: /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log line format [default: logfmt].
    #[arg(long = "log.format", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Address to take the API's webhook deliveries on (off when unset);
    /// see webhook.* in the config.
    #[arg(long = "webhook.listen-address", value_name = "ADDRESS")]
    pub webhook_listen_address: Option<String>,
    /// TLS for the webhook listener, in the format of --web.config.file
    /// (tls_server_config only).
    #[arg(long = "webhook.config.file", value_name = "FILE")]
    pub webhook_config_file: Option<PathBuf>,
    /// This replica's shard, from 0 to --shard.total - 1: it polls only the
    /// accounts whose name hashes to it (FNV-1a) [default: 0].
    #[arg(long = "shard.index", value_name = "N")]
    pub shard_index: Option<u32>,
    /// How many replicas share the configured accounts [default: 1].
    #[arg(long = "shard.total", value_name = "N")]
    pub shard_total: Option<u32>,
    /// Poll a built-in simulated Nexrender API with lively defaults.
    #[arg(long)]
    pub demo: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check a config file (and the environment) without starting; exits 1 naming the bad key.
    CheckConfig { file: PathBuf },
    /// Ask a running exporter's /readyz whether it is ready; exits 0 if so,
    /// 1 if not or unreachable. For container healthchecks: the image has no
    /// shell and no curl. The --web.listen-address port on loopback, over
    /// HTTPS (certificate not verified) when --web.config.file has
    /// tls_server_config, unless --url says otherwise; it sends no
    /// credentials (see probes_without_auth).
    Healthcheck {
        /// Full URL to probe, e.g. https://exporter.example:9847/readyz
        /// (an https URL here needs a certificate valid for its host name).
        #[arg(long)]
        url: Option<String>,
    },
}

impl Cli {
    /// The flags that override the configuration file.
    pub fn flags(&self) -> FlagOverrides {
        FlagOverrides {
            listen_address: self.listen_address.clone(),
            telemetry_path: self.telemetry_path.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            webhook_listen_address: self.webhook_listen_address.clone(),
            webhook_config_file: self.webhook_config_file.clone(),
            shard_index: self.shard_index,
            shard_total: self.shard_total,
        }
    }
}

/// Everything read before the exporter starts: a bad file is an error
/// here, before anything listens.
pub struct Startup {
    pub loaded: Loaded,
    demo: bool,
    web: Option<WebSecurity>,
    webhook_tls: Option<Arc<TlsReloader>>,
}

impl Startup {
    /// The configuration as `cli`, `flags` and `env` say, and the TLS and
    /// basic-auth files it names.
    pub fn load(cli: &Cli, flags: &FlagOverrides, env: &dyn Environment) -> Result<Self, String> {
        let loaded = config::load(cli.config.as_deref(), flags, env, !cli.demo)
            .map_err(|e| e.to_string())?;
        let web = match &cli.web_config_file {
            None => None,
            Some(f) => Some(webconfig::load(f).map_err(|e| e.to_string())?),
        };
        let webhook_tls = match &loaded.config.webhook.config_file {
            None => None,
            Some(f) => match webconfig::load(f) {
                Ok(w) if w.auth.is_some() => return Err(format!("webhook.config_file {}: basic_auth_users is not used by the webhook listener; deliveries are checked with each account's webhook_secret", f.display())),
                Ok(w) => w.tls,
                Err(e) => return Err(format!("webhook.config_file: {e}")),
            },
        };
        Ok(Self {
            loaded,
            demo: cli.demo,
            web,
            webhook_tls,
        })
    }

    /// Whether a reload must find an account (not in demo mode).
    pub fn requires_accounts(&self) -> bool {
        !self.demo
    }

    /// The exporter until `stop` turns true, each configuration on
    /// `reloads` applied as it comes (see [`app::run`]).
    pub async fn run(
        self,
        clock: SharedClock,
        stop: watch::Receiver<bool>,
        reloads: mpsc::UnboundedReceiver<Result<Loaded, ConfigError>>,
    ) -> Result<(), AppError> {
        app::run(
            self.loaded,
            self.demo,
            self.web,
            self.webhook_tls,
            clock,
            stop,
            reloads,
        )
        .await
    }
}

/// The log as `--log.level` and `--log.format` say, written to `writer`.
pub fn log_dispatch<W>(level: &str, format: LogFormat, writer: W) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => tracing::Dispatch::new(
            registry.with(tracing_subscriber::fmt::layer().json().with_writer(writer)),
        ),
        LogFormat::Logfmt => tracing::Dispatch::new(
            registry.with(tracing_logfmt::builder().layer().with_writer(writer)),
        ),
    }
}
