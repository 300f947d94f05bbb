//! `nexrender-exporter`: flags, config, logging; the rest is the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use nexrender_exporter::app;
use nexrender_exporter::cli::{self, Cli, Command, Startup};
use nexrender_exporter::clock::SystemClock;
use nexrender_exporter::config::{self, ConfigError, FlagOverrides, Loaded, ProcessEnv};
use nexrender_exporter::webconfig;
use tokio::sync::{mpsc, watch};

/// The /readyz URL on loopback at the port of `listen_address`: a probe runs
/// beside the exporter, and 0.0.0.0 or [::] is not an address to connect to.
fn readyz_url(listen_address: &str, scheme: &str) -> String {
    let port = listen_address.rsplit(':').next().unwrap_or_default();
    format!("{scheme}://127.0.0.1:{port}/readyz")
}

/// One GET: the status and body, or why there was no answer (the chain of
/// causes: refused, timed out, bad certificate). `unverified`: the URL is
/// the exporter's own port on loopback, whose certificate names the host's
/// public name, so it is not checked (as the kubelet's probes do not).
async fn probe(url: &str, unverified: bool) -> Result<(reqwest::StatusCode, String), String> {
    let answer = async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .danger_accept_invalid_certs(unverified)
            .build()?
            .get(url)
            .send()
            .await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
    };
    answer.await.map_err(|e| {
        let e = e.without_url();
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why += &format!(": {s}");
            source = s.source();
        }
        why
    })
}

/// `healthcheck`: exit 0 when /readyz answers 200, else 1 with the reason
/// (and /readyz's body, which names each account not ready) on stderr.
/// Without --url: HTTPS when --web.config.file serves TLS; without that
/// flag (the image's HEALTHCHECK has none), HTTP and, if the port does
/// not speak it, HTTPS.
fn healthcheck(url: Option<&str>, listen: &str, web_config: Option<&Path>) -> ExitCode {
    let schemes: &[&str] = match web_config.map(webconfig::load) {
        None => &["http", "https"],
        Some(Ok(web)) if web.tls.is_some() => &["https"],
        Some(Ok(_)) => &["http"],
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tries: Vec<(String, bool)> = match url {
        Some(url) => vec![(url.to_owned(), false)],
        None => schemes
            .iter()
            .map(|s| (readyz_url(listen, s), true))
            .collect(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut unreachable = Vec::new();
    for (url, unverified) in &tries {
        match runtime.block_on(probe(url, *unverified)) {
            Ok((status, _)) if status.is_success() => return ExitCode::SUCCESS,
            Ok((reqwest::StatusCode::UNAUTHORIZED, _)) => {
                eprintln!("{url}: 401: basic auth is on; set probes_without_auth: true in the web config to probe without credentials");
                return ExitCode::FAILURE;
            }
            Ok((status, body)) => {
                eprintln!("{url}: not ready ({status}): {}", body.trim());
                return ExitCode::FAILURE;
            }
            Err(why) => unreachable.push(format!("{url}: unreachable: {why}")),
        }
    }
    eprintln!("{}", unreachable.join("; "));
    ExitCode::FAILURE
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
    let flags = cli.flags();
    match &cli.command {
        Some(Command::CheckConfig { file }) => return check_config(file, &flags),
        Some(Command::Healthcheck { url }) => {
            // The port as the exporter beside it has it: the flag, else the
            // environment (a container's env reaches its HEALTHCHECK too).
            let listen = flags
                .listen_address
                .clone()
                .or_else(|| std::env::var("NEXRENDER_EXPORTER_WEB__LISTEN_ADDRESS").ok())
                .unwrap_or_else(|| config::DEFAULT_LISTEN_ADDRESS.to_owned());
            return healthcheck(url.as_deref(), &listen, cli.web_config_file.as_deref());
        }
        None => {}
    }
    if cli.demo && !app::DEMO_AVAILABLE {
        // A usage error, so clap's exit code for one.
        eprintln!("error: {}", app::AppError::NoDemo);
        return ExitCode::from(2);
    }
    match Startup::load(&cli, &flags, &ProcessEnv) {
        Ok(startup) => run(startup, cli.config, flags),
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

/// The exporter as the binary runs it: its log, its panic hook and its
/// runtime; then the exporter until SIGTERM or Ctrl-C, reloading on SIGHUP.
fn run(startup: Startup, config_file: Option<PathBuf>, flags: FlagOverrides) -> ExitCode {
    let log = &startup.loaded.config.log;
    if tracing::dispatcher::set_global_default(cli::log_dispatch(
        &log.level,
        log.format,
        std::io::stderr,
    ))
    .is_err()
    {
        eprintln!("error: a logger was already set");
    }
    log_panics();
    #[cfg(target_os = "linux")]
    match nexrender_exporter::process::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(
                from = before,
                to = after,
                "raised the open files limit to the hard limit"
            )
        }
        Ok((_, limit)) => tracing::info!(limit, "open files limit"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open files limit; process_max_fds says what it is")
        }
    }
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
    let require_accounts = startup.requires_accounts();
    runtime.block_on(async move {
        let stop = stop_on_signal();
        let reloads = reload_on_hangup(config_file, flags, require_accounts);
        match startup.run(Arc::new(SystemClock), stop, reloads).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "exiting");
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
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
