//! `nexrender-exporter`: flags, config, logging; the rest is the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use nexrender_exporter::app;
use nexrender_exporter::clock::SystemClock;
use nexrender_exporter::config::{self, ConfigError, FlagOverrides, Loaded, LogFormat, ProcessEnv};
use nexrender_exporter::webconfig::{self, TlsReloader, WebSecurity};
use tokio::sync::{mpsc, watch};
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(
    name = "nexrender-exporter",
    version,
    about = "Prometheus exporter for Nexrender Cloud render jobs",
    after_help = "Environment: NEXRENDER_API_URL and NEXRENDER_API_TOKEN configure an account named `default` when the \
                  config lists none; NEXRENDER_EXPORTER_<SECTION>__<KEY> sets any config key (e.g. NEXRENDER_EXPORTER_POLL__INTERVAL=10s)."
)]
struct Cli {
    /// YAML (or .toml) config file; see config/nexrender-exporter.example.yaml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve metrics on [default: 0.0.0.0:9847].
    #[arg(long = "web.listen-address", value_name = "ADDRESS")]
    listen_address: Option<String>,
    /// TLS and basic auth, in the format of Prometheus's exporter-toolkit
    /// (see config/web-config.example.yaml).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Path under which to expose metrics [default: /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    telemetry_path: Option<String>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log line format [default: logfmt].
    #[arg(long = "log.format", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Address to take the API's webhook deliveries on (off when unset);
    /// see webhook.* in the config.
    #[arg(long = "webhook.listen-address", value_name = "ADDRESS")]
    webhook_listen_address: Option<String>,
    /// TLS for the webhook listener, in the format of --web.config.file
    /// (tls_server_config only).
    #[arg(long = "webhook.config.file", value_name = "FILE")]
    webhook_config_file: Option<PathBuf>,
    /// This replica's shard, from 0 to --shard.total - 1: it polls only the
    /// accounts whose name hashes to it (FNV-1a) [default: 0].
    #[arg(long = "shard.index", value_name = "N")]
    shard_index: Option<u32>,
    /// How many replicas share the configured accounts [default: 1].
    #[arg(long = "shard.total", value_name = "N")]
    shard_total: Option<u32>,
    /// Poll a built-in simulated Nexrender API with lively defaults.
    #[arg(long)]
    demo: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file (and the environment) without starting; exits 1 naming the bad key.
    CheckConfig { file: PathBuf },
    /// Ask a running exporter's /readyz whether it is ready; exits 0 if so,
    /// 1 if not or unreachable. For container healthchecks: the image has no
    /// shell and no curl. Plain HTTP to the --web.listen-address port on
    /// loopback unless --url says otherwise; it sends no credentials.
    Healthcheck {
        /// Full URL to probe, e.g. https://exporter.example:9847/readyz
        /// (an https URL needs a certificate valid for its host name).
        #[arg(long)]
        url: Option<String>,
    },
}

/// The /readyz URL on loopback at the port of `listen_address`: a probe runs
/// beside the exporter, and 0.0.0.0 or [::] is not an address to connect to.
fn readyz_url(listen_address: &str) -> String {
    let port = listen_address.rsplit(':').next().unwrap_or_default();
    format!("http://127.0.0.1:{port}/readyz")
}

/// GET `url`, exit 0 on 200, else 1 with the reason (and /readyz's body,
/// which names each account not ready) on stderr.
fn healthcheck(url: &str) -> ExitCode {
    let probe = async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?
            .get(url)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(r) => r.block_on(probe),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match outcome {
        Ok((status, _)) if status.is_success() => ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("{url}: not ready ({status}): {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            // The chain of causes says why (refused, timed out, bad certificate).
            let e = e.without_url();
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why += &format!(": {s}");
                source = s.source();
            }
            eprintln!("{url}: unreachable: {why}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    nexrender_exporter::alloc::return_big_blocks_to_the_system();
    let cli = Cli::parse();
    let flags = FlagOverrides {
        listen_address: cli.listen_address.clone(),
        telemetry_path: cli.telemetry_path.clone(),
        log_level: cli.log_level.clone(),
        log_format: cli.log_format,
        webhook_listen_address: cli.webhook_listen_address.clone(),
        webhook_config_file: cli.webhook_config_file.clone(),
        shard_index: cli.shard_index,
        shard_total: cli.shard_total,
    };
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file, &flags),
        Some(Command::Healthcheck { url }) => {
            let listen = flags
                .listen_address
                .as_deref()
                .unwrap_or(config::DEFAULT_LISTEN_ADDRESS);
            return healthcheck(url.as_deref().unwrap_or(&readyz_url(listen)));
        }
        None => {}
    }
    if cli.demo && !app::DEMO_AVAILABLE {
        // A usage error, so clap's exit code for one.
        eprintln!("error: {}", app::AppError::NoDemo);
        return ExitCode::from(2);
    }
    match Startup::load(&cli, &flags) {
        Ok(startup) => startup.run(cli.config, flags),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config FILE`: loads it as a start would, says the accounts (and
/// the shard) or the error.
fn check_config(file: &Path, flags: &FlagOverrides) -> ExitCode {
    let l = match config::load(Some(file), flags, &ProcessEnv, true) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<&str> = l.accounts.iter().map(|a| a.name.as_str()).collect();
    let shard = l.config.shard;
    let elsewhere = if shard.is_sharded() {
        format!(
            "; shard {} of {}, {} more polled by the other shards",
            shard.index,
            shard.total,
            l.other_shards.len()
        )
    } else {
        String::new()
    };
    println!(
        "{}: OK ({} account(s): {}{elsewhere})",
        file.display(),
        names.len(),
        names.join(", ")
    );
    ExitCode::SUCCESS
}

/// Everything read before the exporter starts: a bad file is an error
/// here, before anything listens.
struct Startup {
    loaded: Loaded,
    demo: bool,
    web: Option<WebSecurity>,
    webhook_tls: Option<Arc<TlsReloader>>,
}

impl Startup {
    fn load(cli: &Cli, flags: &FlagOverrides) -> Result<Self, String> {
        let loaded = config::load(cli.config.as_deref(), flags, &ProcessEnv, !cli.demo)
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

    /// Logs, the panic hook and the runtime; then the exporter until
    /// SIGTERM or Ctrl-C, reloading on SIGHUP.
    fn run(self, config_file: Option<PathBuf>, flags: FlagOverrides) -> ExitCode {
        let log = &self.loaded.config.log;
        init_logging(&log.level, log.format);
        log_panics();
        // Fault drills for the tests (FAILPOINTS=name=action;...), only in
        // a build with the `failpoints` feature.
        #[cfg(feature = "failpoints")]
        let _drills = fail::FailScenario::setup();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let require_accounts = !self.demo;
        runtime.block_on(async move {
            let stop = stop_on_signal();
            let reloads = reload_on_hangup(config_file, flags, require_accounts);
            let ran = app::run(
                self.loaded,
                self.demo,
                self.web,
                self.webhook_tls,
                Arc::new(SystemClock),
                stop,
                reloads,
            )
            .await;
            match ran {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "exiting");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        })
    }
}

/// A panic is one structured log line (with where it happened) instead of
/// bare text on stderr; the poller supervisor then logs the restart.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        tracing::error!(%location, panic = message, "panicked");
    }));
}

/// Turns true on SIGTERM or Ctrl-C.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// SIGHUP: the config file (and the environment) read again, each result
/// sent to the running exporter.
fn reload_on_hangup(
    config_file: Option<PathBuf>,
    flags: FlagOverrides,
    require_accounts: bool,
) -> mpsc::UnboundedReceiver<Result<Loaded, ConfigError>> {
    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let loaded = config::load(
                    config_file.as_deref(),
                    &flags,
                    &ProcessEnv,
                    require_accounts,
                );
                if reload_tx.send(loaded).is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (config_file, flags, require_accounts, reload_tx);
    reload_rx
}
