//! nexrender-exporter: a Prometheus exporter for Nexrender Cloud render jobs.
//! The API simulator it is built, tested and demonstrated against is the
//! separate crate `nexrender-simulator` (`simulator/`).

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod http;
pub mod metrics;
pub mod poller;
#[cfg(target_os = "linux")]
pub mod process;
pub mod scan;
pub mod secret;
/// Only so that `benches/poll_cycle.rs`, which is being rewritten
/// elsewhere, still finds the simulator at its old path; new code imports
/// `nexrender_simulator` directly. Remove with that bench's next change.
#[cfg(feature = "demo")]
pub use nexrender_simulator as simulator;
pub mod status;
pub mod timefmt;
pub mod tracker;
pub mod webconfig;
