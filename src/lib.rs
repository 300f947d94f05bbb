//! nexrender-exporter: a Prometheus exporter for Nexrender Cloud render jobs.
//! The API simulator it is built, tested and demonstrated against is the
//! separate crate `nexrender-simulator` (`simulator/`).

pub mod alloc;
pub mod api;
pub mod app;
pub mod board;
mod breakdown;
pub mod cli;
pub mod clock;
pub mod config;
mod http;
pub mod metrics;
pub mod oldest;
mod oldest_view;
pub mod poll;
pub mod poller;
#[cfg(target_os = "linux")]
pub mod process;
pub mod scan;
pub mod secret;
pub mod shard;
mod stall;
pub mod status;
pub mod timefmt;
pub mod tracker;
mod version;
pub mod webconfig;
mod webhook;
