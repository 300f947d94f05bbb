//! Every metric the exporter serves is defined here; each account's series
//! are written through its handle, [`AccountMetrics`] (`metrics/account.rs`),
//! from the tracker's outcomes and the client's request reports. This file
//! keeps the definitions, the few series of the whole exporter, and the
//! rendered exposition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::breakdown::ErrorReasons;
use crate::clock::UnixMillis;
use crate::config::{MetricsConfig, TemplatesConfig};
use crate::version::{REVISION, VERSION};

mod account;
pub mod openmetrics;
pub use account::{AccountMetrics, PollNotes};

/// A family with an `account` label, whose series of one account can be
/// removed whatever their other labels.
trait AccountFamily: Send + Sync {
    fn remove_account(&self, account: &str);
}

impl<T: MetricVecBuilder> AccountFamily for MetricVec<T> {
    fn remove_account(&self, account: &str) {
        for family in self.collect() {
            for m in family.get_metric() {
                let labels: HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                if labels.get("account") == Some(&account) {
                    let _ = self.remove(&labels);
                }
            }
        }
    }
}

pub struct Metrics {
    registry: Registry,
    job: JobFamilies,
    poll: PollFamilies,
    api: ApiFamilies,
    webhook: WebhookFamilies,
    template: TemplateFamilies,
    shard_info: IntGaugeVec,
    shard_accounts: IntGaugeVec,
    reload_successful: IntGaugeVec,
    reload_success_time: GaugeVec,
    /// `metrics.templates`, when on.
    templates: Option<TemplatesConfig>,
    /// `metrics.error_reasons`, when any.
    error_reasons: Option<ErrorReasons>,
    /// The latest job of each bucket of the job histograms, per account.
    exemplars: openmetrics::ExemplarStore,
    /// `oldest_jobs`: where a job id links to, once set at start.
    job_links: std::sync::OnceLock<crate::config::OldestJobsConfig>,
    max_unknown: usize,
    /// Every family labelled by account, to remove an account's series.
    by_account: Vec<Box<dyn AccountFamily>>,
    /// The accounts' live handles, by name.
    live: Mutex<HashMap<String, Weak<AccountMetrics>>>,
    /// Bumped on every change, to know when `rendered` is stale.
    generation: AtomicU64,
    rendered: Mutex<Option<Rendered>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only reachable with a bad metric definition in this file, which the
    // tests would catch; never on outside data.
    r.expect("metric definition")
}

/// Defines and registers the families; those labelled by account are also
/// listed, so an account's series can be removed without naming any.
#[derive(Default)]
struct Define {
    registry: Registry,
    by_account: std::cell::RefCell<Vec<Box<dyn AccountFamily>>>,
}

impl Define {
    fn add<T: MetricVecBuilder + 'static>(
        &self,
        family: MetricVec<T>,
        labels: &[&str],
    ) -> MetricVec<T> {
        must(self.registry.register(Box::new(family.clone())));
        if labels.contains(&"account") {
            self.by_account.borrow_mut().push(Box::new(family.clone()));
        }
        family
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(
            must(IntGaugeVec::new(Opts::new(name, help), labels)),
            labels,
        )
    }

    fn fgauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(must(GaugeVec::new(Opts::new(name, help), labels)), labels)
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(
            must(IntCounterVec::new(Opts::new(name, help), labels)),
            labels,
        )
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.add(must(HistogramVec::new(opts, labels)), labels)
    }
}

/// The per-account job histograms, which carry exemplars (job ids) in the
/// OpenMetrics exposition.
const RENDER_DURATION: &str = "nexrender_job_render_duration_seconds";
const QUEUE_WAIT: &str = "nexrender_job_queue_wait_seconds";
const TURNAROUND: &str = "nexrender_job_turnaround_seconds";

/// The job numbers: by status, completions, durations, failures by reason.
struct JobFamilies {
    jobs: IntGaugeVec,
    oldest: GaugeVec,
    oldest_started: GaugeVec,
    oldest_info: IntGaugeVec,
    stale: IntGaugeVec,
    completed: IntCounterVec,
    render_duration: HistogramVec,
    queue_wait: HistogramVec,
    turnaround: HistogramVec,
    errors: IntCounterVec,
}

impl JobFamilies {
    fn new(d: &Define, cfg: &MetricsConfig) -> Self {
        Self {
            jobs: d.gauge(
                "nexrender_jobs",
                "Jobs created inside the lookback window by current status, plus every non-terminal job whatever its age.",
                &["account", "status"],
            ),
            oldest: d.fgauge(
                "nexrender_oldest_job_created_timestamp_seconds",
                "Creation time (Unix seconds) of the oldest job now in each non-terminal status.",
                &["account", "status"],
            ),
            oldest_started: d.fgauge(
                "nexrender_oldest_job_started_timestamp_seconds",
                "Start time (startedAt, Unix seconds) of the longest-running job now in each status of a job in progress (started, not ended), from its look-up.",
                &["account", "status"],
            ),
            oldest_info: d.gauge(
                "nexrender_oldest_job_info",
                "1 for the job that has waited longest in each non-terminal status (in a status of jobs in progress, the longest-running by startedAt), by id: its template (display name; none without one, unknown until looked up) and a link (oldest_jobs.job_url, empty when unset). Replaced when the oldest changes, gone when none waits.",
                &["account", "status", "job_id", "template", "url"],
            ),
            stale: d.gauge(
                "nexrender_jobs_stale",
                "Self-hosted servers only: jobs in each status not ended whose updatedAt has not moved for the account's stale_after (a worker that died holding them; the server never times them out).",
                &["account", "status"],
            ),
            completed: d.counter(
                "nexrender_jobs_completed_total",
                "Jobs seen reaching finished, error or manually_cancelled, each counted once (jobs already terminal at start are not counted).",
                &["account", "status"],
            ),
            render_duration: d.histogram(
                RENDER_DURATION,
                "stats.renderDuration of each job seen finishing.",
                &["account"],
                cfg.render_duration_buckets.clone(),
            ),
            queue_wait: d.histogram(
                QUEUE_WAIT,
                "startedAt - createdAt of each job the exporter saw start.",
                &["account"],
                cfg.queue_wait_buckets.clone(),
            ),
            turnaround: d.histogram(
                TURNAROUND,
                "End (finishedAt, else errorAt) - createdAt of each job seen ending: the wait its customer felt, queue and render.",
                &["account"],
                cfg.turnaround_buckets.clone(),
            ),
            errors: d.counter(
                "nexrender_job_errors_total",
                "Jobs seen ending in error, by the reason their stats.error gives (metrics.error_reasons; other: no pattern matched; unknown: no error text was read).",
                &["account", "reason"],
            ),
        }
    }
}

/// How each account's polls go.
struct PollFamilies {
    up: IntGaugeVec,
    last_success: GaugeVec,
    duration: GaugeVec,
    polls: IntCounterVec,
    errors: IntCounterVec,
    skipped: IntCounterVec,
    invalid: IntCounterVec,
    tracked: IntGaugeVec,
    restarts: IntCounterVec,
    live_unfiltered: IntCounterVec,
    clock_offset: GaugeVec,
}

impl PollFamilies {
    fn new(d: &Define) -> Self {
        Self {
            up: d.gauge("nexrender_up", "1 if the last poll of the account fully succeeded, else 0.", &["account"]),
            last_success: d.fgauge(
                "nexrender_exporter_last_poll_success_timestamp_seconds",
                "Unix time of the last fully successful poll of the account.",
                &["account"],
            ),
            duration: d.fgauge(
                "nexrender_exporter_poll_duration_seconds",
                "Wall time of the last poll of the account.",
                &["account"],
            ),
            polls: d.counter(
                "nexrender_exporter_polls_total",
                "Polls by result (success or failure).",
                &["account", "result"],
            ),
            errors: d.counter(
                "nexrender_exporter_poll_errors_total",
                "Failed polls by reason.",
                &["account", "reason"],
            ),
            skipped: d.counter(
                "nexrender_exporter_jobs_skipped_total",
                "Jobs in API answers that could not be used, by reason.",
                &["account", "reason"],
            ),
            invalid: d.counter(
                "nexrender_exporter_invalid_values_total",
                "Impossible values from the API (createdAt or startedAt in the future or out of order, renderDuration negative, over 7 days or beyond any float such as 1e400), ignored, by field.",
                &["account", "field"],
            ),
            tracked: d.gauge(
                "nexrender_exporter_tracked_jobs",
                "Jobs the exporter remembers to count each exactly once.",
                &["account"],
            ),
            restarts: d.counter(
                "nexrender_exporter_poller_restarts_total",
                "Times the account's poller died (a panic or a bug) and was restarted.",
                &["account"],
            ),
            live_unfiltered: d.counter(
                "nexrender_exporter_live_listing_unfiltered_total",
                "Polls whose listing of jobs not ended (exclude_states) held ended jobs: the API ignored the filter, and the poll read from the oldest job still going instead.",
                &["account"],
            ),
            clock_offset: d.fgauge(
                "nexrender_exporter_api_clock_offset_seconds",
                "The API's clock (its Date header, whole seconds) less the exporter's, at the last successful poll; windows follow the API's clock.",
                &["account"],
            ),
        }
    }
}

/// The requests to the API, and the look-ups by id.
struct ApiFamilies {
    requests: IntCounterVec,
    duration: HistogramVec,
    bytes: IntCounterVec,
    lookup_failures: IntCounterVec,
    lookups_deferred: IntCounterVec,
    lookups_given_up: IntCounterVec,
}

impl ApiFamilies {
    fn new(d: &Define) -> Self {
        Self {
            requests: d.counter(
                "nexrender_exporter_api_requests_total",
                "HTTP calls to the Nexrender API by endpoint and HTTP status or error (timeout, connect, decode, too_large, error).",
                &["account", "endpoint", "code"],
            ),
            duration: d.histogram(
                "nexrender_exporter_api_request_duration_seconds",
                "Duration of HTTP calls to the Nexrender API.",
                &["account", "endpoint"],
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            bytes: d.counter(
                "nexrender_exporter_api_response_bytes_total",
                "Bytes of response bodies read from the Nexrender API, by endpoint.",
                &["account", "endpoint"],
            ),
            lookup_failures: d.counter(
                "nexrender_exporter_lookup_failures_total",
                "GET /jobs/{id} look-ups that failed for that job alone (an error status or not a job); the job stays as it was and is looked up again at the next polls, up to 5 in a row.",
                &["account"],
            ),
            lookups_deferred: d.counter(
                "nexrender_exporter_lookups_deferred_total",
                "Look-ups put off to the next poll because the poll had made poll.max_lookups already.",
                &["account"],
            ),
            lookups_given_up: d.counter(
                "nexrender_exporter_lookups_given_up_total",
                "Jobs whose GET /jobs/{id} look-up failed 5 polls in a row and was given up: an ended one is counted from the listing alone (no render duration, template or error text), one that left the listing of jobs not ended is forgotten until a listing shows it again.",
                &["account"],
            ),
        }
    }
}

/// The webhook receiver's deliveries.
struct WebhookFamilies {
    deliveries: IntCounterVec,
    previous_secret: IntCounterVec,
    last: GaugeVec,
    unroutable: IntCounterVec,
}

impl WebhookFamilies {
    fn new(d: &Define) -> Self {
        Self {
            deliveries: d.counter(
                "nexrender_exporter_webhook_deliveries_total",
                "Webhook deliveries by result: accepted (a completion counted now, confirmed by a look-up), duplicate (counted already, by a poll or an earlier delivery), not_counted (left to the polls: before the first poll, the job ended before the baseline or was created before the last poll unseen, or its look-up failed, could not be made or said not ended), unknown_job (the look-up said 404), not_terminal, unauthorized, bad_request (including a body too slow, 408), too_large, queue_full, dropped (answered 202 and queued, then never judged: the poller stopped or died first; the polls count those jobs).",
                &["account", "result"],
            ),
            previous_secret: d.counter(
                "nexrender_exporter_webhook_previous_secret_deliveries_total",
                "Webhook requests that carried one of the account's previous secrets (previous_webhook_secrets), not the current one: jobs created before a rotation. When it stays flat for longer than jobs live, the old secret can go.",
                &["account"],
            ),
            last: d.fgauge(
                "nexrender_exporter_webhook_last_delivery_timestamp_seconds",
                "Unix time the account's last webhook delivery taken from the queue was counted or judged (accepted, duplicate, not_counted or unknown_job).",
                &["account"],
            ),
            unroutable: d.counter(
                "nexrender_exporter_webhook_requests_unroutable_total",
                "Requests to the webhook listener for no account that takes deliveries (not_found: answered 401 under /webhooks/, 404 elsewhere), for an account another shard polls (other_shard, answered 401), or with a method other than POST or PUT (method_not_allowed).",
                &["reason"],
            ),
        }
    }
}

/// The breakdown by template (`metrics.templates`).
struct TemplateFamilies {
    completed: IntCounterVec,
    render_duration: HistogramVec,
    queue_wait: HistogramVec,
    own: IntGaugeVec,
    names: IntCounterVec,
}

impl TemplateFamilies {
    fn new(d: &Define, cfg: &MetricsConfig) -> Self {
        Self {
            completed: d.counter(
                "nexrender_template_jobs_completed_total",
                "Completions (as nexrender_jobs_completed_total) by template, when metrics.templates is on: the first metrics.templates.max_per_account templates of the account have series of their own, the rest are summed under template=\"other\", jobs without a template under \"none\". template is the display name, template_id the id.",
                &["account", "template", "template_id", "status"],
            ),
            render_duration: d.histogram(
                "nexrender_template_render_duration_seconds",
                "stats.renderDuration of each job seen finishing, by template (as nexrender_template_jobs_completed_total).",
                &["account", "template", "template_id"],
                cfg.render_duration_buckets.clone(),
            ),
            queue_wait: d.histogram(
                "nexrender_template_queue_wait_seconds",
                "startedAt - createdAt of each job the exporter saw start, by template (as nexrender_template_jobs_completed_total).",
                &["account", "template", "template_id"],
                cfg.queue_wait_buckets.clone(),
            ),
            own: d.gauge(
                "nexrender_exporter_templates_with_own_series",
                "Templates of the account that have series of their own now (at most metrics.templates.max_per_account).",
                &["account"],
            ),
            names: d.counter(
                "nexrender_exporter_template_name_refreshes_total",
                "Reads of GET /templates for display names, by result (success or failure); a failure keeps the names known (or the ids) and changes no job number.",
                &["account", "result"],
            ),
        }
    }
}

impl Metrics {
    pub fn new(cfg: &MetricsConfig) -> Arc<Self> {
        let d = Define::default();
        let info = d.gauge(
            "nexrender_exporter_build_info",
            "Version and revision of the exporter; always 1.",
            &["version", "revision"],
        );
        info.with_label_values(&[VERSION, REVISION]).set(1);
        let shard_info = d.gauge(
            "nexrender_exporter_shard_info",
            "1, labelled with this replica's shard (index from 0) and the number of shards sharing the accounts.",
            &["index", "total"],
        );
        let shard_accounts = d.gauge(
            "nexrender_exporter_shard_accounts",
            "Accounts of the configuration this replica polls (polled=\"here\") and those other shards poll (polled=\"elsewhere\"); summed over the shards, \"here\" is the number of accounts configured.",
            &["polled"],
        );
        // As blackbox_exporter and Prometheus name them.
        let reload_successful = d.gauge(
            "nexrender_exporter_config_last_reload_successful",
            "1 if the configuration was last loaded (at start, or on SIGHUP) without error and applied, 0 if the last reload was rejected or partly failed.",
            &[],
        );
        let reload_success_time = d.fgauge(
            "nexrender_exporter_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded and applied without error (Unix seconds): the start, or the last good SIGHUP.",
            &[],
        );
        #[cfg(target_os = "linux")]
        {
            if let Ok(pc) = crate::process::ProcessCollector::for_self() {
                let _ = d.registry.register(Box::new(pc));
            }
        }
        Arc::new(Self {
            job: JobFamilies::new(&d, cfg),
            poll: PollFamilies::new(&d),
            api: ApiFamilies::new(&d),
            webhook: WebhookFamilies::new(&d),
            template: TemplateFamilies::new(&d, cfg),
            shard_info,
            shard_accounts,
            reload_successful,
            reload_success_time,
            templates: cfg.templates.enabled.then(|| cfg.templates.clone()),
            error_reasons: ErrorReasons::new(&cfg.error_reasons).unwrap_or_else(|e| {
                // The configuration's check compiles every pattern first.
                tracing::error!(error = %e, "metrics.error_reasons: a pattern does not compile; reasons are off");
                None
            }),
            max_unknown: cfg.max_unknown_statuses,
            job_links: std::sync::OnceLock::new(),
            exemplars: openmetrics::ExemplarStore::new(&[
                (RENDER_DURATION, &cfg.render_duration_buckets),
                (QUEUE_WAIT, &cfg.queue_wait_buckets),
                (TURNAROUND, &cfg.turnaround_buckets),
            ]),
            by_account: d.by_account.take(),
            live: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            rendered: Mutex::new(None),
            registry: d.registry,
        })
    }

    /// Where job ids link to (`oldest_jobs.job_url`), set once at start:
    /// the `url` label of `nexrender_oldest_job_info`.
    pub fn link_jobs(&self, links: &crate::config::OldestJobsConfig) {
        let _ = self.job_links.set(links.clone());
    }

    /// The account's metrics handle: its series created with zeros, and
    /// removed when the last holder drops it. While a handle for `name`
    /// lives, this is that handle; a new one for a name whose old handle
    /// died starts from fresh series.
    pub fn account(self: &Arc<Self>, name: &str) -> Arc<AccountMetrics> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = live.get(name).and_then(Weak::upgrade) {
            return handle;
        }
        if live.remove(name).is_some() {
            // Its last holder is dropping it right now: its series go
            // first, so that drop cannot take the new handle's.
            self.remove_series(name);
        }
        let handle = Arc::new(AccountMetrics::new(self.clone(), name));
        live.insert(name.to_owned(), Arc::downgrade(&handle));
        handle
    }

    /// A handle is dropped: its series go, unless a newer handle for the
    /// same name took over (and removed them already).
    fn forget(&self, handle: &AccountMetrics) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let current = live
            .get(&handle.name)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), handle));
        if current {
            live.remove(&handle.name);
            self.remove_series(&handle.name);
        }
    }

    /// Removes every series labelled with `account`, of every family that
    /// has that label.
    fn remove_series(&self, account: &str) {
        self.changed();
        self.exemplars.remove_account(account);
        for family in &self.by_account {
            family.remove_account(account);
        }
    }

    /// The webhook listener is up: its own series exist from now.
    pub(crate) fn webhook_listener_started(&self) {
        self.changed();
        for r in WEBHOOK_UNROUTABLE_REASONS {
            self.webhook.unroutable.with_label_values(&[r]);
        }
    }

    /// This replica's shard and how many accounts it polls.
    pub(crate) fn set_shard(&self, shard: crate::shard::Shard, here: usize, elsewhere: usize) {
        self.changed();
        self.shard_info.reset();
        self.shard_info
            .with_label_values(&[&shard.index.to_string(), &shard.total.to_string()])
            .set(1);
        self.shard_accounts
            .with_label_values(&["here"])
            .set(here as i64);
        self.shard_accounts
            .with_label_values(&["elsewhere"])
            .set(elsewhere as i64);
    }

    /// The configuration loaded and applied at `now` (`ok`), or a reload
    /// rejected or partly failed: the running one stays.
    pub(crate) fn config_loaded(&self, ok: bool, now: UnixMillis) {
        self.changed();
        self.reload_successful
            .with_label_values::<&str>(&[])
            .set(i64::from(ok));
        if ok {
            self.reload_success_time
                .with_label_values::<&str>(&[])
                .set(now as f64 / 1000.0);
        }
    }

    pub(crate) fn webhook_unroutable(&self, reason: &'static str) {
        self.changed();
        self.webhook.unroutable.with_label_values(&[reason]).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// The OpenMetrics exposition, with exemplars (see [`openmetrics`]).
    pub fn encode_openmetrics(&self) -> Vec<u8> {
        openmetrics::encode(&self.registry.gather(), &self.exemplars).into_bytes()
    }

    /// The exposition for a scrape: rendered once and shared until a metric
    /// changes or [`RENDER_MAX_AGE`] passes (the `process_*` metrics move on
    /// their own), so a thousand concurrent scrapes cost one render.
    pub fn scrape(&self) -> bytes::Bytes {
        self.rendered(false)
    }

    /// The same exposition gzip-compressed, for scrapers that send
    /// `Accept-Encoding: gzip` (Prometheus does): compressed once per
    /// render, the first time a scraper asks for it, then shared the same way.
    pub fn scrape_gzip(&self) -> bytes::Bytes {
        self.rendered(true)
    }

    /// The OpenMetrics exposition for a scrape that asks for it, shared
    /// like [`Metrics::scrape`]; gzip-compressed when `gzip`.
    pub fn scrape_openmetrics(&self, gzip: bool) -> bytes::Bytes {
        self.rendered_as(Format::OpenMetrics, gzip)
    }

    fn rendered(&self, gzip: bool) -> bytes::Bytes {
        self.rendered_as(Format::Text, gzip)
    }

    fn rendered_as(&self, format: Format, gzip: bool) -> bytes::Bytes {
        let generation = self.generation.load(Ordering::Acquire);
        let mut cache = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cache
            .as_ref()
            .is_some_and(|c| c.generation == generation && c.at.elapsed() < RENDER_MAX_AGE);
        if !fresh {
            *cache = Some(Rendered {
                generation,
                at: Instant::now(),
                bodies: [None, None],
            });
        }
        let Some(c) = cache.as_mut() else {
            unreachable!("rendered just above")
        };
        let (body, compressed) = c.bodies[format as usize].get_or_insert_with(|| {
            let body = match format {
                Format::Text => self.encode(),
                Format::OpenMetrics => self.encode_openmetrics(),
            };
            (bytes::Bytes::from(body), None)
        });
        if !gzip {
            return body.clone();
        }
        compressed.get_or_insert_with(|| gzip_bytes(body)).clone()
    }

    /// Marks the rendered exposition stale.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Every `result` of `nexrender_exporter_webhook_deliveries_total`.
pub(crate) const WEBHOOK_RESULTS: [&str; 10] = [
    "accepted",
    "duplicate",
    "not_counted",
    "unknown_job",
    "not_terminal",
    "unauthorized",
    "bad_request",
    "too_large",
    "queue_full",
    "dropped",
];

/// Every `reason` of `nexrender_exporter_webhook_requests_unroutable_total`.
pub(crate) const WEBHOOK_UNROUTABLE_REASONS: [&str; 3] =
    ["not_found", "method_not_allowed", "other_shard"];

/// How long a rendered exposition may be served when nothing changed.
pub(crate) const RENDER_MAX_AGE: Duration = Duration::from_millis(500);

struct Rendered {
    generation: u64,
    at: Instant,
    /// By [`Format`]: the body, once a scraper asked for that format, and
    /// the body gzip-compressed, once one asked for that too.
    bodies: [Option<(bytes::Bytes, Option<bytes::Bytes>)>; 2],
}

/// The two expositions `/metrics` serves.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// The classic text format (0.0.4), the prometheus crate's encoder.
    Text = 0,
    /// OpenMetrics 1.0.0 with exemplars ([`openmetrics`]).
    OpenMetrics = 1,
}

/// gzip at the fastest level: the exposition is mostly repeated metric and
/// label names, which the fastest level already shrinks about tenfold, and
/// compressing is on the scrape's path once per render.
fn gzip_bytes(body: &[u8]) -> bytes::Bytes {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(body);
    bytes::Bytes::from(gz.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Endpoint, JobId, RequestObserver, TemplateName};
    use crate::status::JobStatus;
    use crate::tracker::{Completion, Outcome, QueueWait};

    fn applied(a: &AccountMetrics, o: &Outcome, now: i64) {
        a.poll_applied(o, &[], &PollNotes::default(), now);
    }

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.encode()).unwrap()
    }

    fn outcome(statuses: &[(&str, u64)]) -> Outcome {
        Outcome {
            jobs_by_status: statuses
                .iter()
                .map(|(s, n)| (JobStatus::parse(s), *n))
                .collect(),
            ..Outcome::default()
        }
    }

    #[test]
    fn job_gauges_wait_for_the_first_poll_and_counters_are_zero_from_the_start() {
        let m = Metrics::new(&MetricsConfig::default());
        let main = m.account("main");
        let t = text(&m);
        assert!(
            !t.contains("nexrender_jobs{"),
            "no numbers before they are known:\n{t}"
        );
        assert!(t.contains("nexrender_jobs_completed_total{account=\"main\",status=\"error\"} 0"));
        assert!(t.contains("nexrender_up{account=\"main\"} 0"));
        assert!(t.contains(
            "nexrender_exporter_poll_errors_total{account=\"main\",reason=\"unauthorized\"} 0"
        ));
        assert!(t.contains(
            "nexrender_exporter_jobs_skipped_total{account=\"main\",reason=\"missing_id\"} 0"
        ));
        assert!(t.contains(&format!(
            "nexrender_exporter_build_info{{revision=\"{REVISION}\",version=\"{VERSION}\"}} 1"
        )));
        // A failed poll changes nothing of that.
        main.poll_failed("server_error", Duration::from_secs(1));
        assert!(!text(&m).contains("nexrender_jobs{"));
        // The first good poll, of an empty farm: every known status, at 0.
        applied(&main, &outcome(&[]), 0);
        let t = text(&m);
        for s in [
            "queued",
            "pending",
            "render:dorender",
            "finished",
            "error",
            "manually_cancelled",
        ] {
            assert!(
                t.contains(&format!(
                    "nexrender_jobs{{account=\"main\",status=\"{s}\"}} 0"
                )),
                "{s}\n{t}"
            );
        }
    }

    #[test]
    fn unknown_statuses_are_capped_and_vanish_when_no_longer_seen() {
        let m = Metrics::new(&MetricsConfig {
            max_unknown_statuses: 2,
            ..MetricsConfig::default()
        });
        let a = m.account("a");
        applied(
            &a,
            &outcome(&[
                ("queued", 1),
                ("render:setup", 5),
                ("render:x", 3),
                ("render:y", 2),
                ("render:z", 1),
            ]),
            0,
        );
        let t = text(&m);
        assert!(t.contains("status=\"render:setup\"} 5"), "{t}");
        assert!(t.contains("status=\"render:x\"} 3"));
        assert!(
            t.contains("nexrender_jobs{account=\"a\",status=\"other\"} 3"),
            "{t}"
        );
        assert!(!t.contains("render:y"));
        applied(&a, &outcome(&[("queued", 1)]), 0);
        let t = text(&m);
        assert!(
            !t.contains("render:setup") && !t.contains("status=\"other\""),
            "{t}"
        );
        assert!(
            t.contains("nexrender_jobs{account=\"a\",status=\"finished\"} 0"),
            "known stay, at 0"
        );
    }

    #[test]
    fn dropping_an_account_s_handle_removes_all_its_series_and_only_those() {
        let m = with_breakdowns(5);
        let a = m.account("a");
        let b = m.account("b");
        let mut o = outcome(&[("queued", 1), ("render:x", 1)]);
        o.oldest_created.insert(JobStatus::Queued, 1);
        o.completions = vec![completion(
            Some("T1"),
            JobStatus::Error,
            Some("Missing font"),
        )];
        o.completions[0].turnaround = Some(12.0);
        o.oldest_jobs.insert(
            JobStatus::Queued,
            vec![crate::oldest::OldJob {
                id: JobId::Other("q".into()),
                created: 1,
                started: None,
                template_id: None,
                looked_up: true,
            }],
        );
        applied(&a, &o, 0);
        applied(&b, &o, 0);
        a.oldest_listed(&o);
        b.oldest_listed(&o);
        a.request_done(Endpoint::ListJobs, "200", Duration::from_millis(5));
        a.takes_webhooks(true);
        a.webhook_refused("unauthorized");
        let before = text(&m);
        for family in [
            "nexrender_jobs{",
            "nexrender_template_jobs_completed_total{",
            "nexrender_job_errors_total{",
            "nexrender_exporter_api_requests_total{",
            "nexrender_exporter_webhook_deliveries_total{",
            "nexrender_oldest_job_created_timestamp_seconds{",
            "nexrender_oldest_job_info{",
        ] {
            assert!(
                before.contains(&format!("{family}account=\"a\"")),
                "{family}"
            );
        }
        let exemplar = "nexrender_job_turnaround_seconds_bucket{account=\"a\",le=\"30\"} 1 # {job_id=\"j\"} 12";
        let om = String::from_utf8(m.encode_openmetrics()).unwrap();
        assert!(om.contains(exemplar), "{om}");
        drop(a);
        let t = text(&m);
        assert!(!t.contains("account=\"a\""), "{t}");
        let om = String::from_utf8(m.encode_openmetrics()).unwrap();
        assert!(
            !om.contains("account=\"a\""),
            "the exemplars went too: {om}"
        );
        let of_b = |t: &str| {
            t.lines()
                .filter(|l| l.contains("account=\"b\""))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(of_b(&t), of_b(&before), "b untouched");
        drop(b);
    }

    #[test]
    fn a_handle_taken_while_the_old_one_lives_is_the_same_series() {
        let m = Metrics::new(&MetricsConfig::default());
        let old = m.account("a");
        old.poll_failed("timeout", Duration::from_secs(1));
        // A restart holds the old handle while the new poller starts.
        let new = m.account("a");
        drop(old);
        let t = text(&m);
        assert!(
            t.contains("nexrender_exporter_polls_total{account=\"a\",result=\"failure\"} 1"),
            "counters go on across a restart: {t}"
        );
        new.poll_succeeded(1000, Duration::from_secs(1));
        assert!(text(&m).contains("nexrender_up{account=\"a\"} 1"));
        drop(new);
        // Once every holder is gone, a new handle starts from zeros.
        let again = m.account("a");
        assert!(
            text(&m).contains("nexrender_exporter_polls_total{account=\"a\",result=\"failure\"} 0")
        );
        drop(again);
    }

    #[test]
    fn an_account_that_stops_taking_webhooks_loses_only_its_webhook_series() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        a.takes_webhooks(true);
        a.webhook_refused("too_large");
        a.takes_webhooks(true); // a rotated secret: the counts go on
        assert!(text(&m).contains(
            "nexrender_exporter_webhook_deliveries_total{account=\"a\",result=\"too_large\"} 1"
        ));
        a.takes_webhooks(false);
        let t = text(&m);
        assert!(!t.contains("webhook_deliveries_total{account"), "{t}");
        assert!(t.contains("nexrender_up{account=\"a\"} 0"));
    }

    #[test]
    fn a_scrape_reuses_the_rendered_text_until_a_metric_changes() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        let first = m.scrape();
        assert_eq!(
            first.as_ptr(),
            m.scrape().as_ptr(),
            "shared, not rendered again"
        );
        a.poll_succeeded(1000, Duration::from_secs(1));
        let after = m.scrape();
        assert_ne!(first.as_ptr(), after.as_ptr());
        assert!(String::from_utf8_lossy(&after).contains("nexrender_up{account=\"a\"} 1"));
    }

    fn inflate(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).unwrap();
        out
    }

    #[test]
    fn the_gzip_scrape_is_the_rendered_text_compressed_once_per_render() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        let (plain, gzip) = (m.scrape(), m.scrape_gzip());
        assert_eq!(inflate(&gzip), plain);
        assert!(
            gzip.len() * 4 < plain.len(),
            "{} of {}",
            gzip.len(),
            plain.len()
        );
        assert_eq!(
            gzip.as_ptr(),
            m.scrape_gzip().as_ptr(),
            "shared, not compressed again"
        );
        assert_eq!(plain.as_ptr(), m.scrape().as_ptr(), "the same render");
        a.poll_succeeded(1000, Duration::from_secs(1));
        let after = m.scrape_gzip();
        assert_ne!(gzip.as_ptr(), after.as_ptr());
        assert_eq!(inflate(&after), m.scrape());
        assert!(String::from_utf8_lossy(&inflate(&after)).contains("nexrender_up{account=\"a\"} 1"));
    }

    #[test]
    fn oldest_timestamp_is_absent_when_no_job_waits() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        let mut o = outcome(&[("queued", 2)]);
        o.oldest_created
            .insert(JobStatus::Queued, 1_767_225_600_500);
        applied(&a, &o, 0);
        assert!(text(&m).contains("nexrender_oldest_job_created_timestamp_seconds{account=\"a\",status=\"queued\"} 1767225600.5"));
        applied(&a, &outcome(&[]), 0);
        assert!(!text(&m).contains("nexrender_oldest_job_created_timestamp_seconds{"));
    }

    #[test]
    fn a_self_hosted_account_shows_its_states_and_stale_jobs_until_it_is_one_no_more() {
        use crate::status::ApiKind;
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        a.set_kind(ApiKind::Server);
        applied(&a, &outcome(&[("picked", 2), ("render:download", 1)]), 0);
        a.stale_jobs(&[(JobStatus::Picked, 2)].into_iter().collect());
        let t = text(&m);
        for (status, n) in [
            ("picked", 2),
            ("render:download", 1),
            ("created", 0),
            ("render:cleanup", 0),
        ] {
            assert!(
                t.contains(&format!(
                    "nexrender_jobs{{account=\"a\",status=\"{status}\"}} {n}\n"
                )),
                "{status}\n{t}"
            );
        }
        assert!(!t.contains("status=\"pending\""), "a Cloud status: {t}");
        assert!(!t.contains("status=\"manually_cancelled\""), "{t}");
        assert!(
            t.contains("nexrender_jobs_stale{account=\"a\",status=\"picked\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("nexrender_jobs_stale{account=\"a\",status=\"started\"} 0\n"),
            "{t}"
        );
        assert!(
            !t.contains("nexrender_jobs_stale{account=\"a\",status=\"finished\""),
            "{t}"
        );
        // The account becomes a Cloud one (a reload): no stale series stays.
        a.set_kind(ApiKind::Cloud);
        let t = text(&m);
        assert!(!t.contains("nexrender_jobs_stale{"), "{t}");
        assert!(
            t.contains(
                "nexrender_jobs_completed_total{account=\"a\",status=\"manually_cancelled\"} 0"
            ),
            "{t}"
        );
    }

    #[test]
    fn the_longest_running_jobs_start_is_shown_while_a_job_is_in_progress() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        let mut o = outcome(&[("render:dorender", 1)]);
        o.oldest_created
            .insert(JobStatus::Rendering, 1_767_225_600_000);
        o.oldest_started
            .insert(JobStatus::Rendering, 1_767_228_300_000);
        applied(&a, &o, 0);
        let t = text(&m);
        assert!(t.contains("nexrender_oldest_job_started_timestamp_seconds{account=\"a\",status=\"render:dorender\"} 1767228300"), "{t}");
        assert!(t.contains("nexrender_oldest_job_created_timestamp_seconds{account=\"a\",status=\"render:dorender\"} 1767225600"), "{t}");
        applied(&a, &outcome(&[("finished", 1)]), 0);
        assert!(!text(&m).contains("nexrender_oldest_job_started_timestamp_seconds{"));
    }

    #[test]
    fn completions_feed_the_counter_and_the_histograms() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        let mut o = outcome(&[]);
        o.completions = vec![
            Completion {
                id: JobId::Other("a".into()),
                status: JobStatus::Finished,
                render_duration: Some(42.0),
                template: None,
                error: None,
                turnaround: Some(300.0),
            },
            Completion {
                id: JobId::Other("b".into()),
                status: JobStatus::Error,
                render_duration: None,
                template: None,
                error: None,
                turnaround: None,
            },
        ];
        o.queue_waits = vec![QueueWait {
            id: JobId::Other("w".into()),
            seconds: 3.0,
            template: None,
        }];
        applied(&a, &o, 0);
        let t = text(&m);
        assert!(t.contains("nexrender_jobs_completed_total{account=\"a\",status=\"finished\"} 1"));
        assert!(t.contains("nexrender_job_render_duration_seconds_sum{account=\"a\"} 42"));
        assert!(t.contains("nexrender_job_queue_wait_seconds_count{account=\"a\"} 1"));
        assert!(t.contains("nexrender_job_turnaround_seconds_sum{account=\"a\"} 300"));
        assert!(t.contains("nexrender_job_turnaround_seconds_count{account=\"a\"} 1"));
    }

    fn completion(template: Option<&str>, status: JobStatus, error: Option<&str>) -> Completion {
        Completion {
            id: JobId::Other("j".into()),
            status,
            render_duration: None,
            template: template.map(Into::into),
            error: error.map(Into::into),
            turnaround: None,
        }
    }

    fn with_breakdowns(max: usize) -> Arc<Metrics> {
        Metrics::new(&MetricsConfig {
            templates: TemplatesConfig {
                enabled: true,
                max_per_account: max,
                ..TemplatesConfig::default()
            },
            error_reasons: vec![crate::config::ErrorReason {
                reason: "missing_font".into(),
                pattern: "(?i)missing font".into(),
            }],
            ..MetricsConfig::default()
        })
    }

    #[test]
    fn template_series_follow_the_budget_and_go_away_when_quiet() {
        let m = with_breakdowns(1);
        let a = m.account("a");
        let mut o = outcome(&[]);
        o.completions = vec![
            completion(Some("T1"), JobStatus::Error, Some("Missing font: X")),
            completion(Some("T2"), JobStatus::Finished, None),
            completion(None, JobStatus::Error, Some("crash")),
            completion(Some("T2"), JobStatus::Error, None),
        ];
        applied(&a, &o, 0);
        let t = text(&m);
        let line = |template: &str, id: &str, status: &str, n: u64| {
            format!("nexrender_template_jobs_completed_total{{account=\"a\",status=\"{status}\",template=\"{template}\",template_id=\"{id}\"}} {n}")
        };
        for want in [
            line("T1", "T1", "error", 1),
            line("T1", "T1", "finished", 0),
            line("other", "other", "finished", 1),
            line("other", "other", "error", 1),
            line("none", "none", "error", 1),
            "nexrender_job_errors_total{account=\"a\",reason=\"missing_font\"} 1".into(),
            "nexrender_job_errors_total{account=\"a\",reason=\"other\"} 1".into(),
            "nexrender_job_errors_total{account=\"a\",reason=\"unknown\"} 1".into(),
            "nexrender_exporter_templates_with_own_series{account=\"a\"} 1".into(),
        ] {
            assert!(t.contains(&want), "{want}\n{t}");
        }
        assert!(!t.contains("template_id=\"T2\""), "over the budget: {t}");
        // Named: the series go on under the name.
        a.template_names(Some(&[TemplateName {
            id: "T1".into(),
            name: Some("Promo".into()),
        }]));
        let t = text(&m);
        assert!(!t.contains("template=\"T1\""), "old name removed: {t}");
        applied(
            &a,
            &Outcome {
                completions: vec![completion(Some("T1"), JobStatus::Finished, None)],
                ..outcome(&[])
            },
            1000,
        );
        assert!(text(&m).contains(&line("Promo", "T1", "finished", 1)));
        // A day and a bit without T1: its series go, T2 takes the place.
        let day = 24 * 3_600_000;
        applied(
            &a,
            &Outcome {
                completions: vec![completion(Some("T2"), JobStatus::Finished, None)],
                ..outcome(&[])
            },
            1000 + day + 1,
        );
        let t = text(&m);
        assert!(!t.contains("template_id=\"T1\""), "{t}");
        assert!(t.contains(&line("T2", "T2", "finished", 1)), "{t}");
        a.template_names(None);
        assert!(text(&m).contains(
            "nexrender_exporter_template_name_refreshes_total{account=\"a\",result=\"failure\"} 1"
        ));
        drop(a);
        assert!(!text(&m).contains("account=\"a\""));
    }

    #[test]
    fn breakdowns_off_add_no_series() {
        let m = Metrics::new(&MetricsConfig::default());
        let a = m.account("a");
        let mut o = outcome(&[]);
        o.completions = vec![completion(Some("T1"), JobStatus::Error, Some("x"))];
        applied(&a, &o, 0);
        let t = text(&m);
        assert!(!t.contains("nexrender_template_") && !t.contains("nexrender_job_errors_total"));
        assert!(!t.contains("template_name_refreshes"), "{t}");
        assert!(!t.contains("list_templates"), "{t}");
    }
}
