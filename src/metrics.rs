//! Every metric the exporter serves is defined here, and updated only from
//! the tracker's [`Outcome`] and the client's request reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::api::{ApiError, Endpoint, RequestObserver, SkipReason, TemplateName};
use crate::breakdown::{ErrorReasons, TemplateSeries, TemplateSlots};
use crate::clock::UnixMillis;
use crate::config::{MetricsConfig, TemplatesConfig};
use crate::cycle::PollResult;
use crate::status::{JobStatus, OTHER_STATUS};
use crate::tracker::{Completion, Delivered, InvalidValues, Outcome, QueueWait};
use crate::version::{REVISION, VERSION};

/// Status label values of one account's `nexrender_jobs` and
/// `nexrender_oldest_job_created_timestamp_seconds` series.
#[derive(Default)]
struct ExportedLabels {
    jobs: BTreeSet<String>,
    oldest: BTreeSet<String>,
}

pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    oldest: GaugeVec,
    completed: IntCounterVec,
    render_duration: HistogramVec,
    queue_wait: HistogramVec,
    up: IntGaugeVec,
    last_success: GaugeVec,
    poll_duration: GaugeVec,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    api_bytes: IntCounterVec,
    polls: IntCounterVec,
    poll_errors: IntCounterVec,
    jobs_skipped: IntCounterVec,
    invalid: IntCounterVec,
    tracked: IntGaugeVec,
    poller_restarts: IntCounterVec,
    lookup_failures: IntCounterVec,
    lookups_deferred: IntCounterVec,
    lookups_given_up: IntCounterVec,
    live_unfiltered: IntCounterVec,
    clock_offset: GaugeVec,
    webhook_deliveries: IntCounterVec,
    webhook_last: GaugeVec,
    webhook_unroutable: IntCounterVec,
    template_completed: IntCounterVec,
    template_render_duration: HistogramVec,
    template_queue_wait: HistogramVec,
    template_own: IntGaugeVec,
    template_names: IntCounterVec,
    job_errors: IntCounterVec,
    /// `metrics.templates`, when on.
    templates: Option<TemplatesConfig>,
    /// Each account's templates with series of their own.
    template_slots: Mutex<HashMap<String, TemplateSlots>>,
    /// `metrics.error_reasons`, when any.
    error_reasons: Option<ErrorReasons>,
    shard_info: IntGaugeVec,
    shard_accounts: IntGaugeVec,
    max_unknown: usize,
    /// Status label values set per account at the last update, so values no
    /// longer seen can be removed: (jobs, oldest).
    exported: Mutex<HashMap<String, ExportedLabels>>,
    /// Bumped on every change, to know when `rendered` is stale.
    generation: AtomicU64,
    rendered: Mutex<Option<Rendered>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only reachable with a bad metric definition in this file, which the
    // tests would catch; never on outside data.
    r.expect("metric definition")
}

impl Metrics {
    pub fn new(cfg: &MetricsConfig) -> Arc<Self> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let fgauge = |name: &str, help: &str, labels: &[&str]| {
            let g = must(GaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = must(HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                labels,
            ));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let m = Self {
            jobs: gauge(
                "nexrender_jobs",
                "Jobs created inside the lookback window by current status, plus every non-terminal job whatever its age.",
                &["account", "status"],
            ),
            oldest: fgauge(
                "nexrender_oldest_job_created_timestamp_seconds",
                "Creation time (Unix seconds) of the oldest job now in each non-terminal status.",
                &["account", "status"],
            ),
            completed: counter(
                "nexrender_jobs_completed_total",
                "Jobs seen reaching finished, error or manually_cancelled, each counted once (jobs already terminal at start are not counted).",
                &["account", "status"],
            ),
            render_duration: histogram(
                "nexrender_job_render_duration_seconds",
                "stats.renderDuration of each job seen finishing.",
                &["account"],
                cfg.render_duration_buckets.clone(),
            ),
            queue_wait: histogram(
                "nexrender_job_queue_wait_seconds",
                "startedAt - createdAt of each job the exporter saw start.",
                &["account"],
                cfg.queue_wait_buckets.clone(),
            ),
            up: gauge("nexrender_up", "1 if the last poll of the account fully succeeded, else 0.", &["account"]),
            last_success: fgauge(
                "nexrender_exporter_last_poll_success_timestamp_seconds",
                "Unix time of the last fully successful poll of the account.",
                &["account"],
            ),
            poll_duration: fgauge(
                "nexrender_exporter_poll_duration_seconds",
                "Wall time of the last poll cycle of the account.",
                &["account"],
            ),
            api_requests: counter(
                "nexrender_exporter_api_requests_total",
                "HTTP calls to the Nexrender API by endpoint and HTTP status or error (timeout, connect, decode, too_large, error).",
                &["account", "endpoint", "code"],
            ),
            api_duration: histogram(
                "nexrender_exporter_api_request_duration_seconds",
                "Duration of HTTP calls to the Nexrender API.",
                &["account", "endpoint"],
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            api_bytes: counter(
                "nexrender_exporter_api_response_bytes_total",
                "Bytes of response bodies read from the Nexrender API, by endpoint.",
                &["account", "endpoint"],
            ),
            polls: counter(
                "nexrender_exporter_polls_total",
                "Poll cycles by result (success or failure).",
                &["account", "result"],
            ),
            poll_errors: counter(
                "nexrender_exporter_poll_errors_total",
                "Failed poll cycles by reason.",
                &["account", "reason"],
            ),
            jobs_skipped: counter(
                "nexrender_exporter_jobs_skipped_total",
                "Jobs in API answers that could not be used, by reason.",
                &["account", "reason"],
            ),
            invalid: counter(
                "nexrender_exporter_invalid_values_total",
                "Impossible values from the API (createdAt or startedAt in the future or out of order, renderDuration negative, over 7 days or beyond any float such as 1e400), ignored, by field.",
                &["account", "field"],
            ),
            tracked: gauge(
                "nexrender_exporter_tracked_jobs",
                "Jobs the exporter remembers to count each exactly once.",
                &["account"],
            ),
            poller_restarts: counter(
                "nexrender_exporter_poller_restarts_total",
                "Times the account's poller died (a panic or a bug) and was restarted.",
                &["account"],
            ),
            lookup_failures: counter(
                "nexrender_exporter_lookup_failures_total",
                "GET /jobs/{id} look-ups that failed for that job alone (an error status or not a job); the job stays as it was and is looked up again at the next polls, up to 5 in a row.",
                &["account"],
            ),
            lookups_deferred: counter(
                "nexrender_exporter_lookups_deferred_total",
                "Look-ups put off to the next poll because the poll had made poll.max_lookups already.",
                &["account"],
            ),
            lookups_given_up: counter(
                "nexrender_exporter_lookups_given_up_total",
                "Jobs whose GET /jobs/{id} look-up failed 5 polls in a row and was given up: an ended one is counted from the listing alone (no render duration, template or error text), one that left the listing of jobs not ended is forgotten until a listing shows it again.",
                &["account"],
            ),
            live_unfiltered: counter(
                "nexrender_exporter_live_listing_unfiltered_total",
                "Polls whose listing of jobs not ended (exclude_states) held ended jobs: the API ignored the filter, and the poll read from the oldest job still going instead.",
                &["account"],
            ),
            clock_offset: fgauge(
                "nexrender_exporter_api_clock_offset_seconds",
                "The API's clock (its Date header, whole seconds) less the exporter's, at the last successful poll; windows follow the API's clock.",
                &["account"],
            ),
            webhook_deliveries: counter(
                "nexrender_exporter_webhook_deliveries_total",
                "Webhook deliveries by result: accepted (a completion counted now, confirmed by a look-up), duplicate (counted already, by a poll or an earlier delivery), not_counted (left to the polls: before the first poll, the job ended before the baseline or was created before the last poll unseen, or its look-up failed, could not be made or said not ended), unknown_job (the look-up said 404), not_terminal, unauthorized, bad_request (including a body too slow, 408), too_large, queue_full, dropped (answered 202 and queued, then never judged: the poller stopped or died first; the polls count those jobs).",
                &["account", "result"],
            ),
            webhook_last: fgauge(
                "nexrender_exporter_webhook_last_delivery_timestamp_seconds",
                "Unix time the account's last webhook delivery taken from the queue was counted or judged (accepted, duplicate, not_counted or unknown_job).",
                &["account"],
            ),
            webhook_unroutable: counter(
                "nexrender_exporter_webhook_requests_unroutable_total",
                "Requests to the webhook listener for no account that takes deliveries (not_found: answered 401 under /webhooks/, 404 elsewhere), for an account another shard polls (other_shard, answered 401), or with a method other than POST or PUT (method_not_allowed).",
                &["reason"],
            ),
            template_completed: counter(
                "nexrender_template_jobs_completed_total",
                "Completions (as nexrender_jobs_completed_total) by template, when metrics.templates is on: the first metrics.templates.max_per_account templates of the account have series of their own, the rest are summed under template=\"other\", jobs without a template under \"none\". template is the display name, template_id the id.",
                &["account", "template", "template_id", "status"],
            ),
            template_render_duration: histogram(
                "nexrender_template_render_duration_seconds",
                "stats.renderDuration of each job seen finishing, by template (as nexrender_template_jobs_completed_total).",
                &["account", "template", "template_id"],
                cfg.render_duration_buckets.clone(),
            ),
            template_queue_wait: histogram(
                "nexrender_template_queue_wait_seconds",
                "startedAt - createdAt of each job the exporter saw start, by template (as nexrender_template_jobs_completed_total).",
                &["account", "template", "template_id"],
                cfg.queue_wait_buckets.clone(),
            ),
            template_own: gauge(
                "nexrender_exporter_templates_with_own_series",
                "Templates of the account that have series of their own now (at most metrics.templates.max_per_account).",
                &["account"],
            ),
            template_names: counter(
                "nexrender_exporter_template_name_refreshes_total",
                "Reads of GET /templates for display names, by result (success or failure); a failure keeps the names known (or the ids) and changes no job number.",
                &["account", "result"],
            ),
            job_errors: counter(
                "nexrender_job_errors_total",
                "Jobs seen ending in error, by the reason their stats.error gives (metrics.error_reasons; other: no pattern matched; unknown: no error text was read).",
                &["account", "reason"],
            ),
            templates: cfg.templates.enabled.then(|| cfg.templates.clone()),
            template_slots: Mutex::new(HashMap::new()),
            error_reasons: ErrorReasons::new(&cfg.error_reasons).unwrap_or_else(|e| {
                // The configuration's check compiles every pattern first.
                tracing::error!(error = %e, "metrics.error_reasons: a pattern does not compile; reasons are off");
                None
            }),
            shard_info: gauge(
                "nexrender_exporter_shard_info",
                "1, labelled with this replica's shard (index from 0) and the number of shards sharing the accounts.",
                &["index", "total"],
            ),
            shard_accounts: gauge(
                "nexrender_exporter_shard_accounts",
                "Accounts of the configuration this replica polls (polled=\"here\") and those other shards poll (polled=\"elsewhere\"); summed over the shards, \"here\" is the number of accounts configured.",
                &["polled"],
            ),
            max_unknown: cfg.max_unknown_statuses,
            exported: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            rendered: Mutex::new(None),
            registry: registry.clone(),
        };
        let info = gauge(
            "nexrender_exporter_build_info",
            "Version and revision of the exporter; always 1.",
            &["version", "revision"],
        );
        info.with_label_values(&[VERSION, REVISION]).set(1);
        #[cfg(target_os = "linux")]
        {
            if let Ok(pc) = crate::process::ProcessCollector::for_self() {
                let _ = m.registry.register(Box::new(pc));
            }
        }
        Arc::new(m)
    }

    /// Creates the account's series with zeros so they exist before the
    /// first poll: rate() works from the start and dashboards are not empty.
    pub fn register_account(&self, account: &str) {
        self.changed();
        for s in JobStatus::KNOWN {
            self.jobs.with_label_values(&[account, s.as_str()]).set(0);
        }
        for s in JobStatus::TERMINAL {
            self.completed.with_label_values(&[account, s.as_str()]);
        }
        self.render_duration.with_label_values(&[account]);
        self.queue_wait.with_label_values(&[account]);
        self.up.with_label_values(&[account]).set(0);
        self.poll_duration.with_label_values(&[account]);
        self.tracked.with_label_values(&[account]);
        self.poller_restarts.with_label_values(&[account]);
        self.lookup_failures.with_label_values(&[account]);
        self.lookups_deferred.with_label_values(&[account]);
        self.lookups_given_up.with_label_values(&[account]);
        self.live_unfiltered.with_label_values(&[account]);
        for f in InvalidValues::FIELDS {
            self.invalid.with_label_values(&[account, f]);
        }
        for r in ["success", "failure"] {
            self.polls.with_label_values(&[account, r]);
        }
        for r in ApiError::REASONS {
            self.poll_errors.with_label_values(&[account, r]);
        }
        for r in SkipReason::ALL {
            self.jobs_skipped.with_label_values(&[account, r.label()]);
        }
        for e in [Endpoint::ListJobs, Endpoint::GetJob] {
            self.api_bytes.with_label_values(&[account, e.label()]);
        }
        for ep in [Endpoint::ListJobs, Endpoint::GetJob] {
            self.api_duration.with_label_values(&[account, ep.label()]);
        }
        if self.templates.is_some() {
            self.api_bytes
                .with_label_values(&[account, Endpoint::ListTemplates.label()]);
            self.template_own.with_label_values(&[account]).set(0);
            for r in ["success", "failure"] {
                self.template_names.with_label_values(&[account, r]);
            }
        }
        if let Some(reasons) = &self.error_reasons {
            for r in reasons.labels() {
                self.job_errors.with_label_values(&[account, r]);
            }
        }
    }

    /// How often an account's template names are read, when the template
    /// breakdown is on.
    pub fn template_names_refresh(&self) -> Option<Duration> {
        self.templates.as_ref().map(|t| t.names_refresh)
    }

    /// Whether a template of `account` took series of its own after
    /// `since` and is still named by its id.
    pub fn templates_unnamed_since(&self, account: &str, since: UnixMillis) -> bool {
        self.template_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .is_some_and(|slots| slots.unnamed_since(since))
    }

    /// The answer to `GET /templates`: names for the templates with series
    /// of their own (a renamed one's series go on under the new name), or
    /// a failure, which changes nothing but its counter.
    pub(crate) fn template_names(&self, account: &str, listed: Option<&[TemplateName]>) {
        self.changed();
        let Some(listed) = listed else {
            self.template_names
                .with_label_values(&[account, "failure"])
                .inc();
            return;
        };
        self.template_names
            .with_label_values(&[account, "success"])
            .inc();
        let renamed = match self
            .template_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(account)
        {
            Some(slots) => slots.set_names(listed),
            None => return,
        };
        for series in renamed {
            self.remove_template_series(account, &series);
        }
    }

    fn remove_template_series(&self, account: &str, series: &TemplateSeries) {
        let labels = [account, &series.template, &series.template_id];
        for s in JobStatus::TERMINAL {
            let _ = self.template_completed.remove_label_values(&[
                account,
                &series.template,
                &series.template_id,
                s.as_str(),
            ]);
        }
        let _ = self.template_render_duration.remove_label_values(&labels);
        let _ = self.template_queue_wait.remove_label_values(&labels);
    }

    /// Counts completions and queue waits by template and failures by
    /// reason, at `now` (the exporter's clock: it also frees the slots of
    /// templates quiet for `metrics.templates.expire_after`).
    fn observe_breakdowns<'a>(
        &self,
        account: &str,
        completions: impl Iterator<Item = &'a Completion> + Clone,
        waits: impl Iterator<Item = &'a QueueWait>,
        now: UnixMillis,
    ) {
        if let Some(reasons) = &self.error_reasons {
            for c in completions.clone() {
                if c.status == JobStatus::Error {
                    let reason = reasons.classify(c.error.as_deref());
                    self.job_errors.with_label_values(&[account, reason]).inc();
                }
            }
        }
        let Some(cfg) = &self.templates else {
            return;
        };
        let mut all = self
            .template_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slots = all
            .entry(account.to_owned())
            .or_insert_with(|| TemplateSlots::new(cfg.max_per_account, cfg.expire_after));
        for gone in slots.expire(now) {
            self.remove_template_series(account, &gone);
        }
        let mut place = |template: Option<&str>| {
            let placed = slots.place(template, now);
            let s = placed.series;
            if placed.new {
                for status in JobStatus::TERMINAL {
                    self.template_completed.with_label_values(&[
                        account,
                        &s.template,
                        &s.template_id,
                        status.as_str(),
                    ]);
                }
                let labels = [account, &s.template, &s.template_id];
                self.template_render_duration.with_label_values(&labels);
                self.template_queue_wait.with_label_values(&labels);
            }
            s
        };
        for c in completions {
            let s = place(c.template.as_deref());
            self.template_completed
                .with_label_values(&[account, &s.template, &s.template_id, c.status.as_str()])
                .inc();
            if let Some(d) = c.render_duration {
                self.template_render_duration
                    .with_label_values(&[account, &s.template, &s.template_id])
                    .observe(d);
            }
        }
        for w in waits {
            let s = place(w.template.as_deref());
            self.template_queue_wait
                .with_label_values(&[account, &s.template, &s.template_id])
                .observe(w.seconds);
        }
        self.template_own
            .with_label_values(&[account])
            .set(slots.len() as i64);
    }

    /// Creates the webhook series of an account that takes deliveries.
    pub fn register_webhook_account(&self, account: &str) {
        self.changed();
        for r in WEBHOOK_RESULTS {
            self.webhook_deliveries.with_label_values(&[account, r]);
        }
    }

    /// Removes them (its webhook secret was taken out of the configuration).
    pub fn remove_webhook_account(&self, account: &str) {
        self.changed();
        for r in WEBHOOK_RESULTS {
            let _ = self.webhook_deliveries.remove_label_values(&[account, r]);
        }
        let _ = self.webhook_last.remove_label_values(&[account]);
    }

    /// The webhook listener is up: its own series exist from now.
    pub fn webhook_listener_started(&self) {
        self.changed();
        for r in WEBHOOK_UNROUTABLE_REASONS {
            self.webhook_unroutable.with_label_values(&[r]);
        }
    }

    /// A delivery refused at the door (`result` is one of [`WEBHOOK_RESULTS`]).
    pub fn webhook_refused(&self, account: &str, result: &'static str) {
        self.changed();
        self.webhook_deliveries
            .with_label_values(&[account, result])
            .inc();
    }

    /// This replica's shard and how many accounts it polls.
    pub fn set_shard(&self, shard: crate::shard::Shard, here: usize, elsewhere: usize) {
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

    pub fn webhook_unroutable(&self, reason: &'static str) {
        self.changed();
        self.webhook_unroutable.with_label_values(&[reason]).inc();
    }

    /// What a delivery changed, applied at once: its completion, render
    /// duration and queue wait, and the job's move in `nexrender_jobs`.
    pub(crate) fn apply_delivery(&self, account: &str, d: &Delivered, at_unix_secs: f64) {
        self.changed();
        self.webhook_deliveries
            .with_label_values(&[account, d.verdict.label()])
            .inc();
        self.webhook_last
            .with_label_values(&[account])
            .set(at_unix_secs);
        if let Some(c) = &d.completion {
            self.completed
                .with_label_values(&[account, c.status.as_str()])
                .inc();
            if let Some(duration) = c.render_duration {
                self.render_duration
                    .with_label_values(&[account])
                    .observe(duration);
            }
        }
        if let Some(w) = &d.queue_wait {
            self.queue_wait
                .with_label_values(&[account])
                .observe(w.seconds);
        }
        self.observe_breakdowns(
            account,
            d.completion.iter(),
            d.queue_wait.iter(),
            (at_unix_secs * 1000.0) as UnixMillis,
        );
        for (field, n) in d.invalid.by_field() {
            if n > 0 {
                self.invalid.with_label_values(&[account, field]).inc_by(n);
            }
        }
        if let Some((from, to)) = &d.moved {
            let exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
            let shown = |s: &JobStatus| {
                exported
                    .get(account)
                    .is_some_and(|e| e.jobs.contains(s.as_str()))
            };
            // Only between series of their own: a status summed under
            // `other` is left to the next poll.
            if shown(to) && from.as_ref().is_none_or(shown) {
                if let Some(from) = from {
                    self.jobs.with_label_values(&[account, from.as_str()]).dec();
                }
                self.jobs.with_label_values(&[account, to.as_str()]).inc();
            }
        }
    }

    /// Maps statuses to label values: documented ones as themselves, the
    /// first `max_unknown` undocumented ones (most jobs first) as
    /// themselves, the rest as `other`.
    fn status_labels(
        &self,
        statuses: impl Iterator<Item = (JobStatus, u64)>,
    ) -> BTreeMap<JobStatus, String> {
        let mut unknown: Vec<(JobStatus, u64)> = Vec::new();
        let mut out = BTreeMap::new();
        for (s, n) in statuses {
            if s.is_known() {
                let label = s.as_str().to_owned();
                out.insert(s, label);
            } else {
                unknown.push((s, n));
            }
        }
        unknown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (i, (s, _)) in unknown.into_iter().enumerate() {
            let label = if i < self.max_unknown && s.as_str() != OTHER_STATUS {
                s.as_str().to_owned()
            } else {
                OTHER_STATUS.to_owned()
            };
            out.insert(s, label);
        }
        out
    }

    /// Applies a successful poll's outcome, made at `now` (the exporter's
    /// clock).
    pub(crate) fn apply_outcome(&self, account: &str, o: &Outcome, now: UnixMillis) {
        self.changed();
        let labels = self.status_labels(o.jobs_by_status.iter().map(|(s, n)| (s.clone(), *n)));
        let mut counts: BTreeMap<&str, i64> =
            JobStatus::KNOWN.iter().map(|s| (s.as_str(), 0)).collect();
        for (s, n) in &o.jobs_by_status {
            *counts.entry(labels[s].as_str()).or_insert(0) += *n as i64;
        }
        let mut oldest: BTreeMap<&str, f64> = BTreeMap::new();
        for (s, t) in &o.oldest_created {
            let label = labels.get(s).map_or(s.as_str(), String::as_str);
            let secs = *t as f64 / 1000.0;
            let e = oldest.entry(label).or_insert(secs);
            *e = e.min(secs);
        }
        for (label, n) in &counts {
            self.jobs.with_label_values(&[account, label]).set(*n);
        }
        for (label, t) in &oldest {
            self.oldest.with_label_values(&[account, label]).set(*t);
        }
        {
            let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
            let prev = exported.entry(account.to_owned()).or_default();
            let now_jobs: BTreeSet<String> = counts.keys().map(|s| s.to_string()).collect();
            let now_oldest: BTreeSet<String> = oldest.keys().map(|s| s.to_string()).collect();
            for gone in prev.jobs.difference(&now_jobs) {
                let _ = self.jobs.remove_label_values(&[account, gone]);
            }
            for gone in prev.oldest.difference(&now_oldest) {
                let _ = self.oldest.remove_label_values(&[account, gone]);
            }
            prev.jobs = now_jobs;
            prev.oldest = now_oldest;
        }
        for c in &o.completions {
            self.completed
                .with_label_values(&[account, c.status.as_str()])
                .inc();
            if let Some(d) = c.render_duration {
                self.render_duration
                    .with_label_values(&[account])
                    .observe(d);
            }
        }
        for w in &o.queue_waits {
            self.queue_wait
                .with_label_values(&[account])
                .observe(w.seconds);
        }
        self.observe_breakdowns(account, o.completions.iter(), o.queue_waits.iter(), now);
        for (field, n) in o.invalid.by_field() {
            if n > 0 {
                self.invalid.with_label_values(&[account, field]).inc_by(n);
            }
        }
        self.tracked
            .with_label_values(&[account])
            .set(o.tracked as i64);
    }

    pub(crate) fn jobs_skipped(&self, account: &str, reasons: &[SkipReason]) {
        self.changed();
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for r in reasons {
            *by.entry(r.label()).or_insert(0) += 1;
        }
        for (r, n) in by {
            self.jobs_skipped.with_label_values(&[account, r]).inc_by(n);
        }
    }

    pub(crate) fn poll_succeeded(&self, account: &str, now_unix_secs: f64, took: Duration) {
        self.changed();
        self.up.with_label_values(&[account]).set(1);
        self.last_success
            .with_label_values(&[account])
            .set(now_unix_secs);
        self.poll_duration
            .with_label_values(&[account])
            .set(took.as_secs_f64());
        self.polls.with_label_values(&[account, "success"]).inc();
    }

    /// A failed poll: the job numbers stay as they were.
    pub(crate) fn poll_failed(&self, account: &str, reason: &str, took: Duration) {
        self.changed();
        self.up.with_label_values(&[account]).set(0);
        self.poll_duration
            .with_label_values(&[account])
            .set(took.as_secs_f64());
        self.polls.with_label_values(&[account, "failure"]).inc();
        self.poll_errors.with_label_values(&[account, reason]).inc();
    }

    /// What a successful poll says of the API besides the jobs.
    pub(crate) fn poll_notes(&self, account: &str, result: &PollResult) {
        self.changed();
        let a = &[account];
        self.lookup_failures
            .with_label_values(a)
            .inc_by(result.lookups_failed);
        self.lookups_deferred
            .with_label_values(a)
            .inc_by(result.lookups_deferred);
        self.lookups_given_up
            .with_label_values(a)
            .inc_by(result.outcome.given_up.len() as u64);
        if result.live_listing_unfiltered {
            self.live_unfiltered.with_label_values(a).inc();
        }
        if let Some(offset) = result.clock_offset_ms {
            self.clock_offset
                .with_label_values(a)
                .set(offset as f64 / 1000.0);
        }
    }

    /// The account's poller died: the numbers stay, `nexrender_up` is 0
    /// until the restarted poller succeeds.
    pub(crate) fn poller_died(&self, account: &str) {
        self.changed();
        self.up.with_label_values(&[account]).set(0);
        self.poller_restarts.with_label_values(&[account]).inc();
    }

    /// Removes every series of an account (it left the configuration), so
    /// none outlives its meaning.
    pub(crate) fn remove_account(&self, account: &str) {
        self.changed();
        for mf in self.registry.gather() {
            for m in mf.get_metric() {
                let labels: HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                if labels.get("account") != Some(&account) {
                    continue;
                }
                let _ = match mf.name() {
                    "nexrender_jobs" => self.jobs.remove(&labels),
                    "nexrender_oldest_job_created_timestamp_seconds" => self.oldest.remove(&labels),
                    "nexrender_jobs_completed_total" => self.completed.remove(&labels),
                    "nexrender_job_render_duration_seconds" => self.render_duration.remove(&labels),
                    "nexrender_job_queue_wait_seconds" => self.queue_wait.remove(&labels),
                    "nexrender_up" => self.up.remove(&labels),
                    "nexrender_exporter_last_poll_success_timestamp_seconds" => {
                        self.last_success.remove(&labels)
                    }
                    "nexrender_exporter_poll_duration_seconds" => {
                        self.poll_duration.remove(&labels)
                    }
                    "nexrender_exporter_api_requests_total" => self.api_requests.remove(&labels),
                    "nexrender_exporter_api_request_duration_seconds" => {
                        self.api_duration.remove(&labels)
                    }
                    "nexrender_exporter_api_response_bytes_total" => self.api_bytes.remove(&labels),
                    "nexrender_exporter_polls_total" => self.polls.remove(&labels),
                    "nexrender_exporter_poll_errors_total" => self.poll_errors.remove(&labels),
                    "nexrender_exporter_jobs_skipped_total" => self.jobs_skipped.remove(&labels),
                    "nexrender_exporter_invalid_values_total" => self.invalid.remove(&labels),
                    "nexrender_exporter_tracked_jobs" => self.tracked.remove(&labels),
                    "nexrender_exporter_poller_restarts_total" => {
                        self.poller_restarts.remove(&labels)
                    }
                    "nexrender_exporter_lookup_failures_total" => {
                        self.lookup_failures.remove(&labels)
                    }
                    "nexrender_exporter_lookups_deferred_total" => {
                        self.lookups_deferred.remove(&labels)
                    }
                    "nexrender_exporter_lookups_given_up_total" => {
                        self.lookups_given_up.remove(&labels)
                    }
                    "nexrender_exporter_live_listing_unfiltered_total" => {
                        self.live_unfiltered.remove(&labels)
                    }
                    "nexrender_exporter_api_clock_offset_seconds" => {
                        self.clock_offset.remove(&labels)
                    }
                    "nexrender_exporter_webhook_deliveries_total" => {
                        self.webhook_deliveries.remove(&labels)
                    }
                    "nexrender_exporter_webhook_last_delivery_timestamp_seconds" => {
                        self.webhook_last.remove(&labels)
                    }
                    "nexrender_template_jobs_completed_total" => {
                        self.template_completed.remove(&labels)
                    }
                    "nexrender_template_render_duration_seconds" => {
                        self.template_render_duration.remove(&labels)
                    }
                    "nexrender_template_queue_wait_seconds" => {
                        self.template_queue_wait.remove(&labels)
                    }
                    "nexrender_exporter_templates_with_own_series" => {
                        self.template_own.remove(&labels)
                    }
                    "nexrender_exporter_template_name_refreshes_total" => {
                        self.template_names.remove(&labels)
                    }
                    "nexrender_job_errors_total" => self.job_errors.remove(&labels),
                    _ => Ok(()),
                };
            }
        }
        self.exported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
        self.template_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
    }

    /// The request observer for one account's client.
    pub fn observer(self: &Arc<Self>, account: &str) -> Arc<dyn RequestObserver> {
        Arc::new(AccountRequests {
            metrics: self.clone(),
            account: account.to_owned(),
        })
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
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

    fn rendered(&self, gzip: bool) -> bytes::Bytes {
        let generation = self.generation.load(Ordering::Acquire);
        let mut cache = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cache
            .as_ref()
            .is_some_and(|c| c.generation == generation && c.at.elapsed() < RENDER_MAX_AGE);
        if !fresh {
            *cache = Some(Rendered {
                generation,
                at: Instant::now(),
                body: bytes::Bytes::from(self.encode()),
                gzip: None,
            });
        }
        let Some(c) = cache.as_mut() else {
            unreachable!("rendered just above")
        };
        if !gzip {
            return c.body.clone();
        }
        c.gzip.get_or_insert_with(|| gzip_bytes(&c.body)).clone()
    }

    /// Marks the rendered exposition stale.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Every `result` of `nexrender_exporter_webhook_deliveries_total`.
pub const WEBHOOK_RESULTS: [&str; 10] = [
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
pub const WEBHOOK_UNROUTABLE_REASONS: [&str; 3] =
    ["not_found", "method_not_allowed", "other_shard"];

/// How long a rendered exposition may be served when nothing changed.
pub const RENDER_MAX_AGE: Duration = Duration::from_millis(500);

struct Rendered {
    generation: u64,
    at: Instant,
    body: bytes::Bytes,
    /// `body` gzip-compressed, once a scraper has asked for it.
    gzip: Option<bytes::Bytes>,
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

struct AccountRequests {
    metrics: Arc<Metrics>,
    account: String,
}

impl RequestObserver for AccountRequests {
    fn request_done(&self, endpoint: Endpoint, code: &str, elapsed: Duration) {
        let m = &self.metrics;
        m.changed();
        m.api_requests
            .with_label_values(&[&self.account, endpoint.label(), code])
            .inc();
        m.api_duration
            .with_label_values(&[&self.account, endpoint.label()])
            .observe(elapsed.as_secs_f64());
    }

    fn response_bytes(&self, endpoint: Endpoint, bytes: u64) {
        let m = &self.metrics;
        m.changed();
        m.api_bytes
            .with_label_values(&[&self.account, endpoint.label()])
            .inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::JobId;
    use crate::tracker::Completion;

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
    fn known_statuses_are_zero_filled_before_the_first_poll() {
        let m = Metrics::new(&MetricsConfig::default());
        m.register_account("main");
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
    }

    #[test]
    fn unknown_statuses_are_capped_and_vanish_when_no_longer_seen() {
        let m = Metrics::new(&MetricsConfig {
            max_unknown_statuses: 2,
            ..MetricsConfig::default()
        });
        m.register_account("a");
        m.apply_outcome(
            "a",
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
        m.apply_outcome("a", &outcome(&[("queued", 1)]), 0);
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
    fn removing_an_account_removes_all_its_series_and_only_those() {
        let m = Metrics::new(&MetricsConfig::default());
        m.register_account("a");
        m.register_account("b");
        let mut o = outcome(&[("queued", 1), ("render:x", 1)]);
        o.oldest_created.insert(JobStatus::Queued, 1);
        m.apply_outcome("a", &o, 0);
        m.observer("a")
            .request_done(Endpoint::ListJobs, "200", Duration::from_millis(5));
        m.remove_account("a");
        let t = text(&m);
        assert!(!t.contains("account=\"a\""), "{t}");
        assert!(t.contains("nexrender_up{account=\"b\"} 0"));
    }

    #[test]
    fn a_scrape_reuses_the_rendered_text_until_a_metric_changes() {
        let m = Metrics::new(&MetricsConfig::default());
        m.register_account("a");
        let first = m.scrape();
        assert_eq!(
            first.as_ptr(),
            m.scrape().as_ptr(),
            "shared, not rendered again"
        );
        m.poll_succeeded("a", 1.0, Duration::from_secs(1));
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
        m.register_account("a");
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
        m.poll_succeeded("a", 1.0, Duration::from_secs(1));
        let after = m.scrape_gzip();
        assert_ne!(gzip.as_ptr(), after.as_ptr());
        assert_eq!(inflate(&after), m.scrape());
        assert!(String::from_utf8_lossy(&inflate(&after)).contains("nexrender_up{account=\"a\"} 1"));
    }

    #[test]
    fn oldest_timestamp_is_absent_when_no_job_waits() {
        let m = Metrics::new(&MetricsConfig::default());
        let mut o = outcome(&[("queued", 2)]);
        o.oldest_created
            .insert(JobStatus::Queued, 1_767_225_600_500);
        m.apply_outcome("a", &o, 0);
        assert!(text(&m).contains("nexrender_oldest_job_created_timestamp_seconds{account=\"a\",status=\"queued\"} 1767225600.5"));
        m.apply_outcome("a", &outcome(&[]), 0);
        assert!(!text(&m).contains("nexrender_oldest_job_created_timestamp_seconds{"));
    }

    #[test]
    fn completions_feed_the_counter_and_the_histograms() {
        let m = Metrics::new(&MetricsConfig::default());
        let mut o = outcome(&[]);
        o.completions = vec![
            Completion {
                id: JobId::Other("a".into()),
                status: JobStatus::Finished,
                render_duration: Some(42.0),
                template: None,
                error: None,
            },
            Completion {
                id: JobId::Other("b".into()),
                status: JobStatus::Error,
                render_duration: None,
                template: None,
                error: None,
            },
        ];
        o.queue_waits = vec![QueueWait {
            seconds: 3.0,
            template: None,
        }];
        m.apply_outcome("a", &o, 0);
        let t = text(&m);
        assert!(t.contains("nexrender_jobs_completed_total{account=\"a\",status=\"finished\"} 1"));
        assert!(t.contains("nexrender_job_render_duration_seconds_sum{account=\"a\"} 42"));
        assert!(t.contains("nexrender_job_queue_wait_seconds_count{account=\"a\"} 1"));
    }

    fn completion(template: Option<&str>, status: JobStatus, error: Option<&str>) -> Completion {
        Completion {
            id: JobId::Other("j".into()),
            status,
            render_duration: None,
            template: template.map(Into::into),
            error: error.map(Into::into),
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
        m.register_account("a");
        let mut o = outcome(&[]);
        o.completions = vec![
            completion(Some("T1"), JobStatus::Error, Some("Missing font: X")),
            completion(Some("T2"), JobStatus::Finished, None),
            completion(None, JobStatus::Error, Some("crash")),
            completion(Some("T2"), JobStatus::Error, None),
        ];
        m.apply_outcome("a", &o, 0);
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
        m.template_names(
            "a",
            Some(&[TemplateName {
                id: "T1".into(),
                name: Some("Promo".into()),
            }]),
        );
        let t = text(&m);
        assert!(!t.contains("template=\"T1\""), "old name removed: {t}");
        m.apply_outcome(
            "a",
            &Outcome {
                completions: vec![completion(Some("T1"), JobStatus::Finished, None)],
                ..outcome(&[])
            },
            1000,
        );
        assert!(text(&m).contains(&line("Promo", "T1", "finished", 1)));
        // A day and a bit without T1: its series go, T2 takes the place.
        let day = 24 * 3_600_000;
        m.apply_outcome(
            "a",
            &Outcome {
                completions: vec![completion(Some("T2"), JobStatus::Finished, None)],
                ..outcome(&[])
            },
            1000 + day + 1,
        );
        let t = text(&m);
        assert!(!t.contains("template_id=\"T1\""), "{t}");
        assert!(t.contains(&line("T2", "T2", "finished", 1)), "{t}");
        m.template_names("a", None);
        assert!(text(&m).contains(
            "nexrender_exporter_template_name_refreshes_total{account=\"a\",result=\"failure\"} 1"
        ));
        m.remove_account("a");
        assert!(!text(&m).contains("account=\"a\""));
    }

    #[test]
    fn breakdowns_off_add_no_series() {
        let m = Metrics::new(&MetricsConfig::default());
        m.register_account("a");
        let mut o = outcome(&[]);
        o.completions = vec![completion(Some("T1"), JobStatus::Error, Some("x"))];
        m.apply_outcome("a", &o, 0);
        let t = text(&m);
        assert!(!t.contains("nexrender_template_") && !t.contains("nexrender_job_errors_total"));
        assert!(!t.contains("template_name_refreshes"), "{t}");
        assert!(!t.contains("list_templates"), "{t}");
    }
}
