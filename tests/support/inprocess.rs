//! The exporter in the test's process: the binary's own startup
//! ([`Cli`] parsed from the same flags, [`Startup::load`], [`Startup::run`])
//! on a thread and a runtime of its own, logging as the binary would (its
//! configured level and format) into memory. What it does not have is the
//! binary's: signals (SIGHUP is a reload sent by the test, SIGTERM a stop),
//! its process environment, its exit code, its panic hook, fault drills.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use clap::Parser;
use nexrender_exporter::cli::{self, Cli, Startup};
use nexrender_exporter::clock::SystemClock;
use nexrender_exporter::config::{self, ConfigError, Environment, FlagOverrides, Loaded};
use tokio::sync::{mpsc, watch};

use super::clock::Log;

/// No environment: the configuration is the file and the flags.
pub struct NoEnv;

impl Environment for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// Makes per-thread logging reliable in a test process. With a single
/// dispatcher registered, tracing-core judges a callsite by the default of
/// the thread that first reaches it (its one-dispatcher shortcut): a test
/// thread logging nowhere would turn that log line off for every
/// exporter in the process. A global default that takes nothing keeps the
/// count above one, so every callsite asks every exporter's log.
pub fn log_per_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let none = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let _ = tracing::dispatcher::set_global_default(none);
    });
}

pub struct App {
    cli: Cli,
    flags: FlagOverrides,
    requires_accounts: bool,
    stop: watch::Sender<bool>,
    reloads: mpsc::UnboundedSender<Result<Loaded, ConfigError>>,
    log: Log,
    thread: Mutex<Option<JoinHandle<i32>>>,
    exit: Mutex<Option<i32>>,
}

impl App {
    /// Starts the exporter as `nexrender-exporter --config <config>
    /// --web.listen-address 127.0.0.1:<port> <extra_args>` would. A start
    /// the binary would refuse panics with its message.
    pub fn start(config: &Path, port: u16, extra_args: &[&str]) -> App {
        let address = format!("127.0.0.1:{port}");
        let mut args = vec!["nexrender-exporter", "--config"];
        let config = config.to_str().unwrap();
        args.extend([config, "--web.listen-address", &address]);
        args.extend(extra_args);
        let cli = Cli::try_parse_from(&args).unwrap();
        let flags = cli.flags();
        let startup = Startup::load(&cli, &flags, &NoEnv)
            .unwrap_or_else(|e| panic!("the exporter would not start: {e}"));
        log_per_thread();
        let log = Log::default();
        let settings = &startup.loaded.config.log;
        let writer = log.clone();
        let dispatch = cli::log_dispatch(&settings.level, settings.format, move || writer.clone());
        let requires_accounts = startup.requires_accounts();
        let (stop, stopped) = watch::channel(false);
        let (reloads, reloaded) = mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || serve(startup, dispatch, stopped, reloaded));
        App {
            cli,
            flags,
            requires_accounts,
            stop,
            reloads,
            log,
            thread: Mutex::new(Some(thread)),
            exit: Mutex::new(None),
        }
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.0.lock().unwrap()).into_owned()
    }

    /// What SIGHUP does: the configuration read again and handed over.
    pub fn reload(&self) {
        let loaded = config::load(
            self.cli.config.as_deref(),
            &self.flags,
            &NoEnv,
            self.requires_accounts,
        );
        let _ = self.reloads.send(loaded);
    }

    /// What SIGTERM does: the exporter stops.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The exit status the binary would have, once the exporter stopped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut thread = self.thread.lock().unwrap();
        if thread.as_ref().is_some_and(|t| t.is_finished()) {
            let code = thread.take().unwrap().join().unwrap_or(101);
            *self.exit.lock().unwrap() = Some(code);
        }
        self.exit
            .lock()
            .unwrap()
            .map(|code| ExitStatus::from_raw(code << 8))
    }
}

/// The exporter's runtime (two workers, as many as the machine's cores),
/// every thread of it logging through `dispatch`, until `stop`.
fn serve(
    startup: Startup,
    dispatch: tracing::Dispatch,
    stop: watch::Receiver<bool>,
    reloads: mpsc::UnboundedReceiver<Result<Loaded, ConfigError>>,
) -> i32 {
    let _log = tracing::dispatcher::set_default(&dispatch);
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads end with it.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
        })
        .build()
        .unwrap();
    match runtime.block_on(startup.run(Arc::new(SystemClock), stop, reloads)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            1
        }
    }
}

impl Drop for App {
    /// Stopped, and given the binary's 10 s to end, so its ports are free
    /// when the test ends.
    fn drop(&mut self) {
        self.stop();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.exit_status().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
