//! One account's metrics: a handle its poller owns. It records the polls,
//! the webhook deliveries, the breakdowns and the API requests of that
//! account, keeps what it needs to do so (which status series it set,
//! which templates have series of their own), and removes exactly its own
//! series when the last holder drops it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::api::{ApiError, Endpoint, RequestObserver, SkipReason, TemplateName};
use crate::board::ListedJob;
use crate::breakdown::{TemplateSeries, TemplateSlots, NO_TEMPLATE};
use crate::clock::UnixMillis;
use crate::status::{ApiKind, JobStatus, OTHER_STATUS};
use crate::tracker::{Completion, Delivered, InvalidValues, Outcome, QueueWait};

use super::{Metrics, QUEUE_WAIT, RENDER_DURATION, TURNAROUND, WEBHOOK_RESULTS};

/// What a successful poll says of the API besides its jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollNotes {
    /// Look-ups that failed for their job alone.
    pub lookups_failed: u64,
    /// Look-ups put off to the next poll (`poll.max_lookups`).
    pub lookups_deferred: u64,
    /// The listing of jobs not ended held ended ones (filter ignored).
    pub live_listing_unfiltered: bool,
    /// The API's clock less the exporter's, where its `Date` said.
    pub clock_offset_ms: Option<i64>,
}

/// The account's series state, under one lock.
#[derive(Default)]
struct State {
    /// Status label values of `nexrender_jobs` set at the last poll.
    jobs: BTreeSet<String>,
    /// Status label values of the oldest-job timestamp set at the last poll.
    oldest: BTreeSet<String>,
    /// Status label values of the longest-running job's start, likewise.
    oldest_started: BTreeSet<String>,
    /// The labels of `nexrender_oldest_job_info` set, by status label.
    oldest_info: BTreeMap<String, [String; 3]>,
    /// Templates with series of their own (breakdown on).
    slots: Option<TemplateSlots>,
    /// The API the account's jobs come from: which statuses are documented.
    kind: ApiKind,
    /// Status label values of `nexrender_jobs_stale` set (self-hosted).
    stale: BTreeSet<String>,
}

/// One account's metrics. Made by [`Metrics::account`]; shared by the
/// account's poller, its API client and its webhook route.
pub struct AccountMetrics {
    pub(super) all: Arc<Metrics>,
    pub(super) name: String,
    state: Mutex<State>,
}

impl AccountMetrics {
    /// Creates the account's counters with zeros so they exist before the
    /// first poll (rate() works from the start). Only [`Metrics::account`]
    /// calls it.
    pub(super) fn new(all: Arc<Metrics>, name: &str) -> Self {
        let slots = all
            .templates
            .as_ref()
            .map(|t| TemplateSlots::new(t.max_per_account, t.expire_after));
        let me = Self {
            all,
            name: name.to_owned(),
            state: Mutex::new(State {
                slots,
                ..State::default()
            }),
        };
        me.zero_fill();
        me
    }

    /// The API the account's jobs come from (the Cloud until said): which
    /// statuses have series of `nexrender_jobs` and of completions from
    /// the start.
    pub(crate) fn set_kind(&self, kind: ApiKind) {
        let (m, a) = (&*self.all, self.name.as_str());
        let mut state = self.lock();
        if std::mem::replace(&mut state.kind, kind) == kind {
            return;
        }
        m.changed();
        // Only a self-hosted server's polls say what is stale: an account
        // that is one no more loses those series at once.
        for gone in std::mem::take(&mut state.stale) {
            let _ = m.job.stale.remove_label_values(&[a, &gone]);
        }
        for s in JobStatus::TERMINAL {
            if kind.knows(&s) {
                m.job.completed.with_label_values(&[a, s.as_str()]);
            } else if m.job.completed.with_label_values(&[a, s.as_str()]).get() == 0 {
                let _ = m.job.completed.remove_label_values(&[a, s.as_str()]);
            }
        }
    }

    /// Counters and the exporter's own series, at zero. The job gauges
    /// (`nexrender_jobs`) are not among them: they have no series until
    /// the first successful poll, so a restart, or an API down from the
    /// start, shows no numbers rather than an empty farm.
    fn zero_fill(&self) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        for s in JobStatus::TERMINAL {
            m.job.completed.with_label_values(&[a, s.as_str()]);
        }
        for family in [&m.job.render_duration, &m.job.queue_wait, &m.job.turnaround] {
            family.with_label_values(&[a]);
        }
        m.poll.up.with_label_values(&[a]).set(0);
        m.poll.duration.with_label_values(&[a]);
        m.poll.tracked.with_label_values(&[a]);
        for family in [
            &m.poll.restarts,
            &m.api.lookup_failures,
            &m.api.lookups_deferred,
            &m.api.lookups_given_up,
            &m.poll.live_unfiltered,
        ] {
            family.with_label_values(&[a]);
        }
        let labelled: [(&prometheus::IntCounterVec, &[&str]); 3] = [
            (&m.poll.invalid, &InvalidValues::FIELDS),
            (&m.poll.polls, &["success", "failure"]),
            (&m.poll.errors, &ApiError::REASONS),
        ];
        for (family, values) in labelled {
            for v in values {
                family.with_label_values(&[a, v]);
            }
        }
        for r in SkipReason::ALL {
            m.poll.skipped.with_label_values(&[a, r.label()]);
        }
        for ep in [Endpoint::ListJobs, Endpoint::GetJob] {
            m.api.bytes.with_label_values(&[a, ep.label()]);
            m.api.duration.with_label_values(&[a, ep.label()]);
        }
        if m.templates.is_some() {
            m.api
                .bytes
                .with_label_values(&[a, Endpoint::ListTemplates.label()]);
            m.template.own.with_label_values(&[a]).set(0);
            for r in ["success", "failure"] {
                m.template.names.with_label_values(&[a, r]);
            }
        }
        if let Some(reasons) = &m.error_reasons {
            for r in reasons.labels() {
                m.job.errors.with_label_values(&[a, r]);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often the template names are read, when the breakdown is on.
    pub(crate) fn template_names_refresh(&self) -> Option<Duration> {
        self.all.templates.as_ref().map(|t| t.names_refresh)
    }

    /// Whether a template took series of its own after `since` and is
    /// still named by its id.
    pub(crate) fn templates_unnamed_since(&self, since: UnixMillis) -> bool {
        self.lock()
            .slots
            .as_ref()
            .is_some_and(|slots| slots.unnamed_since(since))
    }

    /// The answer to `GET /templates`: names for the templates with series
    /// of their own (a renamed one's series go on under the new name), or
    /// a failure, which changes nothing but its counter.
    pub(crate) fn template_names(&self, listed: Option<&[TemplateName]>) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        let result = if listed.is_some() {
            "success"
        } else {
            "failure"
        };
        m.template.names.with_label_values(&[a, result]).inc();
        let Some(listed) = listed else {
            return;
        };
        let renamed = match self.lock().slots.as_mut() {
            Some(slots) => slots.set_names(listed),
            None => return,
        };
        for series in renamed {
            self.remove_template_series(&series);
        }
    }

    fn remove_template_series(&self, series: &TemplateSeries) {
        let (m, a) = (&*self.all, self.name.as_str());
        let labels = [a, &series.template, &series.template_id];
        for s in JobStatus::TERMINAL {
            let _ = m.template.completed.remove_label_values(&[
                a,
                &series.template,
                &series.template_id,
                s.as_str(),
            ]);
        }
        let _ = m.template.render_duration.remove_label_values(&labels);
        let _ = m.template.queue_wait.remove_label_values(&labels);
    }

    /// Completions, render durations, queue waits and impossible values:
    /// the one path for a poll's and a delivery's, at `now` (the
    /// exporter's clock, which also frees the slots of quiet templates).
    fn count<'a>(
        &self,
        completions: impl Iterator<Item = &'a Completion> + Clone,
        waits: impl Iterator<Item = &'a QueueWait> + Clone,
        invalid: &InvalidValues,
        now: UnixMillis,
    ) {
        let (m, a) = (&*self.all, self.name.as_str());
        for c in completions.clone() {
            m.job
                .completed
                .with_label_values(&[a, c.status.as_str()])
                .inc();
            // Each observation is its bucket's exemplar (its job) until the
            // next one in that bucket.
            let job = || c.id.to_string();
            if let Some(d) = c.render_duration {
                m.job.render_duration.with_label_values(&[a]).observe(d);
                m.exemplars.observe(RENDER_DURATION, a, d, &job(), now);
            }
            if let Some(t) = c.turnaround {
                m.job.turnaround.with_label_values(&[a]).observe(t);
                m.exemplars.observe(TURNAROUND, a, t, &job(), now);
            }
        }
        for w in waits.clone() {
            m.job.queue_wait.with_label_values(&[a]).observe(w.seconds);
            m.exemplars
                .observe(QUEUE_WAIT, a, w.seconds, &w.id.to_string(), now);
        }
        for (field, n) in invalid.by_field() {
            if n > 0 {
                m.poll.invalid.with_label_values(&[a, field]).inc_by(n);
            }
        }
        if let Some(reasons) = &m.error_reasons {
            for c in completions.clone() {
                if c.status == JobStatus::Error {
                    let reason = reasons.classify(c.error.as_deref());
                    m.job.errors.with_label_values(&[a, reason]).inc();
                }
            }
        }
        self.count_by_template(completions, waits, now);
    }

    /// The template breakdown of [`Self::count`], when it is on.
    fn count_by_template<'a>(
        &self,
        completions: impl Iterator<Item = &'a Completion>,
        waits: impl Iterator<Item = &'a QueueWait>,
        now: UnixMillis,
    ) {
        let (m, a) = (&*self.all, self.name.as_str());
        let mut state = self.lock();
        let terminal = state.kind.terminal();
        let Some(slots) = state.slots.as_mut() else {
            return;
        };
        for gone in slots.expire(now) {
            self.remove_template_series(&gone);
        }
        let mut place = |template: Option<&str>| {
            let placed = slots.place(template, now);
            let s = placed.series;
            if placed.new {
                for status in &terminal {
                    m.template.completed.with_label_values(&[
                        a,
                        &s.template,
                        &s.template_id,
                        status.as_str(),
                    ]);
                }
                let labels = [a, &s.template, &s.template_id];
                m.template.render_duration.with_label_values(&labels);
                m.template.queue_wait.with_label_values(&labels);
            }
            s
        };
        for c in completions {
            let s = place(c.template.as_deref());
            m.template
                .completed
                .with_label_values(&[a, &s.template, &s.template_id, c.status.as_str()])
                .inc();
            if let Some(d) = c.render_duration {
                m.template
                    .render_duration
                    .with_label_values(&[a, &s.template, &s.template_id])
                    .observe(d);
            }
        }
        for w in waits {
            let s = place(w.template.as_deref());
            m.template
                .queue_wait
                .with_label_values(&[a, &s.template, &s.template_id])
                .observe(w.seconds);
        }
        m.template
            .own
            .with_label_values(&[a])
            .set(slots.len() as i64);
    }

    /// The account takes webhook deliveries (`on`) or no longer does: its
    /// delivery series exist exactly while it does.
    pub(crate) fn takes_webhooks(&self, on: bool) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        for r in WEBHOOK_RESULTS {
            if on {
                m.webhook.deliveries.with_label_values(&[a, r]);
            } else {
                let _ = m.webhook.deliveries.remove_label_values(&[a, r]);
            }
        }
        if on {
            m.webhook.previous_secret.with_label_values(&[a]);
        } else {
            let _ = m.webhook.last.remove_label_values(&[a]);
            let _ = m.webhook.previous_secret.remove_label_values(&[a]);
        }
    }

    /// A webhook request that carried a previous secret, not the current.
    pub(crate) fn webhook_previous_secret(&self) {
        self.all.changed();
        self.all
            .webhook
            .previous_secret
            .with_label_values(&[&self.name])
            .inc();
    }

    /// A delivery refused at the door, or dropped (`result` is one of
    /// [`WEBHOOK_RESULTS`]).
    pub(crate) fn webhook_refused(&self, result: &'static str) {
        self.all.changed();
        self.all
            .webhook
            .deliveries
            .with_label_values(&[&self.name, result])
            .inc();
    }

    /// What a delivery changed, applied at once: its completion, render
    /// duration and queue wait, and the job's move in `nexrender_jobs`.
    pub fn delivery(&self, d: &Delivered, at: UnixMillis) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        m.webhook
            .deliveries
            .with_label_values(&[a, d.verdict.label()])
            .inc();
        m.webhook
            .last
            .with_label_values(&[a])
            .set(at as f64 / 1000.0);
        self.count(d.completion.iter(), d.queue_wait.iter(), &d.invalid, at);
        if let Some((from, to)) = &d.moved {
            let state = self.lock();
            let shown = |s: &JobStatus| state.jobs.contains(s.as_str());
            // Only between series of their own: a status summed under
            // `other` is left to the next poll.
            if shown(to) && from.as_ref().is_none_or(shown) {
                if let Some(from) = from {
                    m.job.jobs.with_label_values(&[a, from.as_str()]).dec();
                }
                m.job.jobs.with_label_values(&[a, to.as_str()]).inc();
            }
        }
    }

    /// A successful poll's outcome, made at `now` (the exporter's clock),
    /// with the jobs it could not use and what it said of the API.
    pub(crate) fn poll_applied(
        &self,
        o: &Outcome,
        skipped: &[SkipReason],
        notes: &PollNotes,
        now: UnixMillis,
    ) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        self.set_statuses(o);
        self.count(o.completions.iter(), o.queue_waits.iter(), &o.invalid, now);
        m.poll.tracked.with_label_values(&[a]).set(o.tracked as i64);
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for r in skipped {
            *by.entry(r.label()).or_insert(0) += 1;
        }
        for (r, n) in by {
            m.poll.skipped.with_label_values(&[a, r]).inc_by(n);
        }
        m.api
            .lookup_failures
            .with_label_values(&[a])
            .inc_by(notes.lookups_failed);
        m.api
            .lookups_deferred
            .with_label_values(&[a])
            .inc_by(notes.lookups_deferred);
        m.api
            .lookups_given_up
            .with_label_values(&[a])
            .inc_by(o.given_up.len() as u64);
        if notes.live_listing_unfiltered {
            m.poll.live_unfiltered.with_label_values(&[a]).inc();
        }
        if let Some(offset) = notes.clock_offset_ms {
            m.poll
                .clock_offset
                .with_label_values(&[a])
                .set(offset as f64 / 1000.0);
        }
    }

    /// `nexrender_jobs` and the oldest-job timestamps as the poll found
    /// them; status values no longer seen lose their series (known ones
    /// stay, at 0).
    fn set_statuses(&self, o: &Outcome) {
        let (m, a) = (&*self.all, self.name.as_str());
        let kind = self.lock().kind;
        let labels = status_labels(
            o.jobs_by_status.iter().map(|(s, n)| (s.clone(), *n)),
            m.max_unknown,
            kind,
        );
        let mut counts: BTreeMap<String, i64> = kind
            .statuses()
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        for (s, n) in &o.jobs_by_status {
            *counts.entry(labels[s].clone()).or_insert(0) += *n as i64;
        }
        for (label, n) in &counts {
            m.job.jobs.with_label_values(&[a, label]).set(*n);
        }
        let mut state = self.lock();
        let now_jobs: BTreeSet<String> = counts.into_keys().collect();
        for gone in state.jobs.difference(&now_jobs) {
            let _ = m.job.jobs.remove_label_values(&[a, gone]);
        }
        state.jobs = now_jobs;
        let earliest = |times: &BTreeMap<JobStatus, UnixMillis>| {
            let mut by_label: BTreeMap<String, f64> = BTreeMap::new();
            for (s, t) in times {
                let label = labels.get(s).map_or(s.as_str(), String::as_str);
                let secs = *t as f64 / 1000.0;
                let e = by_label.entry(label.to_owned()).or_insert(secs);
                *e = e.min(secs);
            }
            by_label
        };
        set_times(
            a,
            &m.job.oldest,
            earliest(&o.oldest_created),
            &mut state.oldest,
        );
        set_times(
            a,
            &m.job.oldest_started,
            earliest(&o.oldest_started),
            &mut state.oldest_started,
        );
    }

    /// The oldest jobs of each status (for jobs in progress, the
    /// longest-running) as the poll listed them, by status
    /// label and with their template's display name, for the landing page;
    /// sets `nexrender_oldest_job_info` to the oldest of each label
    /// (replacing the one before, removing those of labels with none).
    pub(crate) fn oldest_listed(&self, o: &Outcome) -> Vec<ListedJob> {
        let (m, a) = (&*self.all, self.name.as_str());
        let mut state = self.lock();
        let labels = status_labels(
            o.jobs_by_status.iter().map(|(s, n)| (s.clone(), *n)),
            m.max_unknown,
            state.kind,
        );
        let named = |id: &str| {
            let name = state.slots.as_ref().and_then(|s| s.name_of(id));
            name.unwrap_or(id).to_owned()
        };
        let mut listed: Vec<ListedJob> = Vec::new();
        for (status, jobs) in &o.oldest_jobs {
            let label = labels.get(status).map_or(status.as_str(), String::as_str);
            listed.extend(jobs.iter().map(|j| ListedJob {
                status: label.to_owned(),
                id: j.id.to_string(),
                template: j.template_id.as_deref().map(&named),
                template_id: j.template_id.as_deref().map(str::to_owned),
                created: j.created,
                started: j.started,
                looked_up: j.looked_up,
            }));
        }
        // In the tracker's order within each label: waiting jobs by their
        // creation, jobs in progress by their start where known (statuses
        // folded into `other` merge).
        let rank = |j: &ListedJob| crate::oldest::rank(j.created, j.started);
        listed.sort_by(|x, y| (&x.status, rank(x), &x.id).cmp(&(&y.status, rank(y), &y.id)));
        let mut info: BTreeMap<String, [String; 3]> = BTreeMap::new();
        // An id too long for a label value (a Prometheus with
        // label_value_length_limit would refuse the whole scrape) gets no
        // info series; the page and the JSON still list it.
        for j in listed.iter().filter(|j| j.id.len() <= MAX_INFO_LABEL_BYTES) {
            info.entry(j.status.clone()).or_insert_with(|| {
                let template = match (&j.template, j.looked_up) {
                    (Some(t), _) => cut(t, MAX_INFO_LABEL_BYTES),
                    (None, true) => NO_TEMPLATE.to_owned(),
                    (None, false) => "unknown".to_owned(),
                };
                let url = m.job_links.get().and_then(|l| l.link(a, &j.id));
                [j.id.clone(), template, url.unwrap_or_default()]
            });
        }
        // The new series first, then the old ones go, then the render is
        // marked stale: a scrape in between sees both for an instant, never
        // neither.
        for (status, [id, template, url]) in &info {
            m.job
                .oldest_info
                .with_label_values(&[a, status, id, template, url])
                .set(1);
        }
        for (status, was) in &state.oldest_info {
            if info.get(status) != Some(was) {
                let [id, template, url] = was;
                let _ = m
                    .job
                    .oldest_info
                    .remove_label_values(&[a, status, id, template, url]);
            }
        }
        m.changed();
        state.oldest_info = info;
        listed
    }

    /// A poll that succeeded at `now_unix_secs` after `took`.
    pub(crate) fn poll_succeeded(&self, now: UnixMillis, took: Duration) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        m.poll.up.with_label_values(&[a]).set(1);
        m.poll
            .last_success
            .with_label_values(&[a])
            .set(now as f64 / 1000.0);
        m.poll
            .duration
            .with_label_values(&[a])
            .set(took.as_secs_f64());
        m.poll.polls.with_label_values(&[a, "success"]).inc();
    }

    /// A failed poll: the job numbers stay as they were.
    pub(crate) fn poll_failed(&self, reason: &str, took: Duration) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        m.poll.up.with_label_values(&[a]).set(0);
        m.poll
            .duration
            .with_label_values(&[a])
            .set(took.as_secs_f64());
        m.poll.polls.with_label_values(&[a, "failure"]).inc();
        m.poll.errors.with_label_values(&[a, reason]).inc();
    }

    /// `nexrender_jobs_stale` as a self-hosted server's poll found it: every
    /// status the server documents as not ended at 0 unless counted; other
    /// statuses by their label, gone when no longer counted.
    pub(crate) fn stale_jobs(&self, stale: &BTreeMap<JobStatus, u64>) {
        let (m, a) = (&*self.all, self.name.as_str());
        let mut state = self.lock();
        let labels = status_labels(
            stale.iter().map(|(s, n)| (s.clone(), *n)),
            m.max_unknown,
            state.kind,
        );
        let mut counts: BTreeMap<String, i64> = state
            .kind
            .statuses()
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        for (s, n) in stale {
            *counts.entry(labels[s].clone()).or_insert(0) += *n as i64;
        }
        m.changed();
        for (label, n) in &counts {
            m.job.stale.with_label_values(&[a, label]).set(*n);
        }
        let now: BTreeSet<String> = counts.into_keys().collect();
        for gone in state.stale.difference(&now) {
            let _ = m.job.stale.remove_label_values(&[a, gone]);
        }
        state.stale = now;
    }

    /// The account's poller died: the numbers stay, `nexrender_up` is 0
    /// until the restarted poller succeeds.
    pub(crate) fn poller_died(&self) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        m.poll.up.with_label_values(&[a]).set(0);
        m.poll.restarts.with_label_values(&[a]).inc();
    }
}

/// Maps statuses to label values: documented ones as themselves, the
/// first `max_unknown` undocumented ones (most jobs first) as themselves,
/// the rest as `other`.
fn status_labels(
    statuses: impl Iterator<Item = (JobStatus, u64)>,
    max_unknown: usize,
    kind: ApiKind,
) -> BTreeMap<JobStatus, String> {
    let mut unknown: Vec<(JobStatus, u64)> = Vec::new();
    let mut out = BTreeMap::new();
    for (s, n) in statuses {
        if kind.knows(&s) {
            let label = s.as_str().to_owned();
            out.insert(s, label);
        } else {
            unknown.push((s, n));
        }
    }
    unknown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (i, (s, _)) in unknown.into_iter().enumerate() {
        let label = if i < max_unknown && s.as_str() != OTHER_STATUS {
            s.as_str().to_owned()
        } else {
            OTHER_STATUS.to_owned()
        };
        out.insert(s, label);
    }
    out
}

impl RequestObserver for AccountMetrics {
    fn request_done(&self, endpoint: Endpoint, code: &str, elapsed: Duration) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        m.api
            .requests
            .with_label_values(&[a, endpoint.label(), code])
            .inc();
        m.api
            .duration
            .with_label_values(&[a, endpoint.label()])
            .observe(elapsed.as_secs_f64());
    }

    fn response_bytes(&self, endpoint: Endpoint, bytes: u64) {
        let (m, a) = (&*self.all, self.name.as_str());
        m.changed();
        m.api
            .bytes
            .with_label_values(&[a, endpoint.label()])
            .inc_by(bytes);
    }
}

/// The longest job id and template label value `nexrender_oldest_job_info`
/// carries (a ULID is 26 bytes; display names are cut shorter already).
const MAX_INFO_LABEL_BYTES: usize = 128;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Drop for AccountMetrics {
    /// The account left the configuration or was restarted: none of its
    /// series outlives its meaning.
    fn drop(&mut self) {
        self.all.forget(self);
    }
}

/// Sets account `a`'s series of `family` to `times` (by status label), and
/// removes those of the statuses in `shown` (set at the last poll) that
/// are not in it; `shown` becomes the labels set now.
fn set_times(
    a: &str,
    family: &prometheus::GaugeVec,
    times: BTreeMap<String, f64>,
    shown: &mut BTreeSet<String>,
) {
    for (label, t) in &times {
        family.with_label_values(&[a, label]).set(*t);
    }
    let now: BTreeSet<String> = times.into_keys().collect();
    for gone in shown.difference(&now) {
        let _ = family.remove_label_values(&[a, gone]);
    }
    *shown = now;
}
