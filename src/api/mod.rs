//! The Nexrender Cloud API v2: HTTP, JSON and nothing about metrics.

pub mod client;
pub mod job;
pub mod template;

pub use client::{
    ApiClient, ApiError, ClientPolicy, Endpoint, ListFilter, ListPageQuery, RequestObserver,
    TERMINAL_STATES,
};
pub use job::{
    parse_delivery, parse_job, parse_minimal_page, parse_page, ApiJob, JobId, MinimalJob, Page,
    SkipReason,
};
pub use template::{parse_templates, TemplateName};
