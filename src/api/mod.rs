//! The Nexrender Cloud API v2, and the self-hosted server's API v1 read as
//! if it were the Cloud's (api/server.rs): HTTP, JSON and nothing about
//! metrics.

pub mod client;
pub mod job;
pub mod server;
pub mod template;

pub use client::{
    ApiClient, ApiError, ClientPolicy, Endpoint, ListFilter, ListPageQuery, RequestObserver,
    TERMINAL_STATES,
};
pub use job::{
    parse_delivery, parse_job, parse_minimal_page, parse_page, parse_server_jobs, ApiJob, JobId,
    MinimalJob, Page, ServerJob, SkipReason,
};
pub use server::{ServerOptions, Snapshot};
pub use template::{parse_templates, TemplateName};
