//! The simulated render farm: a store of jobs ordered by id (ULIDs sort by
//! creation time) and a discrete-event model of their lives.
//!
//! Nothing here touches sockets or clocks: [`Simulation::advance_to`] is told
//! what time it is, and every random draw comes from one seeded generator,
//! so a seed and a sequence of calls always give the same farm.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::clock::UnixMillis;
use crate::status::JobStatus;

/// How jobs arrive and live. Defaults look like a mid-sized production team:
/// a few jobs a minute with occasional bursts, eight workers, renders of a
/// few minutes, a few percent failing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Mean job arrivals per minute (a Poisson process).
    pub arrivals_per_minute: f64,
    /// Chance that an arrival is a burst (a batch submitted at once).
    pub burst_probability: f64,
    /// Jobs in a burst, drawn uniformly from `burst_size[0]..=burst_size[1]`.
    pub burst_size: [u32; 2],
    /// Mean delay before a queued job can be picked up, even with idle workers.
    #[serde(with = "humantime_serde")]
    pub pickup_delay: Duration,
    /// Median render time (log-normal).
    #[serde(with = "humantime_serde")]
    pub render_median: Duration,
    /// Log-normal sigma of the render time: 0 makes every render the median.
    pub render_spread: f64,
    /// Share of rendering jobs that end in `error`.
    pub error_ratio: f64,
    /// Share of jobs cancelled through the API while still waiting.
    pub cancel_ratio: f64,
    /// A job to be cancelled is cancelled within this time of its creation.
    #[serde(with = "humantime_serde")]
    pub cancel_within: Duration,
    /// Share of jobs that are parents with nested child jobs (`pending`).
    pub nested_ratio: f64,
    /// Children per parent, drawn uniformly from 1 to this.
    pub max_children: u32,
    /// Render workers: at most this many jobs render at once.
    pub workers: u32,
    /// Templates in the farm's catalogue (1..=65535). The first eight have
    /// names and characters of their own (see [`CATALOGUE`]); the rest are
    /// plain `Template n`.
    pub templates: u16,
    /// The catalogue's templates fail and take as long as their entry in
    /// [`CATALOGUE`] says; off, every template renders like the farm's
    /// defaults (so a render spread of 0 makes every render the median).
    pub templates_differ: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            arrivals_per_minute: 2.0,
            burst_probability: 0.02,
            burst_size: [10, 40],
            pickup_delay: Duration::from_secs(5),
            render_median: Duration::from_secs(180),
            render_spread: 0.7,
            error_ratio: 0.04,
            cancel_ratio: 0.01,
            cancel_within: Duration::from_secs(600),
            nested_ratio: 0.05,
            max_children: 3,
            workers: 8,
            templates: 8,
            templates_differ: false,
        }
    }
}

impl LifecycleConfig {
    /// Busy defaults for `--demo`: something changes on every scrape.
    pub fn lively() -> Self {
        Self {
            arrivals_per_minute: 40.0,
            burst_probability: 0.03,
            burst_size: [10, 30],
            pickup_delay: Duration::from_secs(2),
            render_median: Duration::from_secs(20),
            render_spread: 0.6,
            error_ratio: 0.06,
            cancel_ratio: 0.02,
            cancel_within: Duration::from_secs(60),
            nested_ratio: 0.05,
            max_children: 3,
            workers: 14,
            templates: 8,
            templates_differ: true,
        }
    }

    /// A big farm at a steady pace, for measuring the API cost of a poll:
    /// about 200 jobs arrive and 200 end a minute, about 500 render at any
    /// time, no bursts, no nested jobs.
    pub fn steady() -> Self {
        Self {
            arrivals_per_minute: 200.0,
            burst_probability: 0.0,
            pickup_delay: Duration::from_secs(5),
            render_median: Duration::from_secs(150),
            render_spread: 0.3,
            workers: 600,
            nested_ratio: 0.0,
            ..Self::default()
        }
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let ratio = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name}: expected a ratio between 0 and 1, got {v}"))
            }
        };
        if !(self.arrivals_per_minute.is_finite() && self.arrivals_per_minute >= 0.0) {
            return Err(format!(
                "arrivals_per_minute: expected a number >= 0, got {}",
                self.arrivals_per_minute
            ));
        }
        ratio("burst_probability", self.burst_probability)?;
        ratio("error_ratio", self.error_ratio)?;
        ratio("cancel_ratio", self.cancel_ratio)?;
        ratio("nested_ratio", self.nested_ratio)?;
        if self.templates == 0 {
            return Err("templates: expected at least 1".into());
        }
        if self.burst_size[0] == 0 || self.burst_size[0] > self.burst_size[1] {
            return Err(format!(
                "burst_size: expected [min, max] with 1 <= min <= max, got {:?}",
                self.burst_size
            ));
        }
        if !(self.render_spread.is_finite() && self.render_spread >= 0.0) {
            return Err(format!(
                "render_spread: expected a number >= 0, got {}",
                self.render_spread
            ));
        }
        if self.render_median.is_zero() {
            return Err("render_median: must be longer than 0s".into());
        }
        if self.workers == 0 {
            return Err("workers: must be at least 1".into());
        }
        if self.max_children == 0 {
            return Err("max_children: must be at least 1".into());
        }
        Ok(())
    }
}

/// Where a job created through `POST /jobs` reports its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    #[serde(default = "default_webhook_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Send only `data` instead of the job.
    #[serde(default)]
    pub custom: bool,
}

fn default_webhook_method() -> String {
    "POST".into()
}

/// Parent/child bookkeeping for nested jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub parent: Option<Ulid>,
    pub children_left: u32,
    pub child_failed: bool,
}

/// What will happen to a job once it renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Finish,
    /// Fails after this many thousandths of its render time.
    FailAt(u16),
}

/// Whether the lifecycle engine drives a job or a test moves it by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Engine,
    Script,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimJob {
    pub id: Ulid,
    pub status: JobStatus,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    /// `finishedAt` for finished jobs, `errorAt` for failed or cancelled ones.
    pub ended_at: Option<UnixMillis>,
    /// Planned render time (engine jobs) in milliseconds.
    pub render_ms: u32,
    pub fate: Fate,
    pub driver: Driver,
    pub template: Option<u16>,
    pub total_assets: u16,
    pub tags: u8,
    pub error: Option<Box<str>>,
    pub webhook: Option<Box<Webhook>>,
    pub family: Option<Box<Family>>,
    /// The id the API shows, when it is not `id` (scripted jobs only).
    /// `id` stays the store's key, minted at `createdAt`, so the store
    /// stays in creation order whatever the API shows.
    pub shown_id: Option<Box<str>>,
}

impl SimJob {
    /// The job's id as the API writes it and answers `GET /jobs/{id}` to.
    pub fn api_id(&self) -> Cow<'_, str> {
        match &self.shown_id {
            Some(shown) => Cow::Borrowed(shown),
            None => Cow::Owned(self.id.to_string()),
        }
    }

    pub fn created_at(&self) -> UnixMillis {
        self.created_at
    }

    pub fn finished_at(&self) -> Option<UnixMillis> {
        (self.status == JobStatus::Finished)
            .then_some(self.ended_at)
            .flatten()
    }

    pub fn error_at(&self) -> Option<UnixMillis> {
        matches!(self.status, JobStatus::Error | JobStatus::ManuallyCancelled)
            .then_some(self.ended_at)
            .flatten()
    }

    /// `stats.renderDuration` in seconds: only for finished jobs, and always
    /// exactly `finishedAt - startedAt`.
    pub fn render_duration_seconds(&self) -> Option<f64> {
        match (self.finished_at(), self.started_at) {
            (Some(f), Some(s)) => Some((f - s) as f64 / 1000.0),
            _ => None,
        }
    }

    /// Progress in percent, one decimal, as of `now`.
    pub fn progress(&self, now: UnixMillis) -> f64 {
        match (&self.status, self.started_at) {
            (JobStatus::Finished, _) => 100.0,
            (JobStatus::Rendering, Some(s)) if self.render_ms > 0 => {
                let p = (now - s) as f64 / self.render_ms as f64 * 100.0;
                (p.clamp(0.0, 99.9) * 10.0).floor() / 10.0
            }
            (JobStatus::Error, Some(_)) => match self.fate {
                Fate::FailAt(permille) => f64::from(permille) / 10.0,
                Fate::Finish => 0.0,
            },
            _ => 0.0,
        }
    }

    pub fn has_tag(&self, mask: u8) -> bool {
        self.tags & mask != 0
    }
}

/// The tags the simulated team uses. Tags are a filter only: the v2 Job
/// schema does not return them.
pub const TAGS: [&str; 4] = ["social", "broadcast", "preview", "batch"];

/// The bit of a tag in [`SimJob::tags`], or 0 for a tag nobody uses.
pub fn tag_bit(tag: &str) -> u8 {
    TAGS.iter()
        .position(|t| *t == tag)
        .map(|i| 1u8 << i)
        .unwrap_or(0)
}

/// The named templates of the catalogue: display name, how much more (or
/// less) often than `error_ratio` its renders fail, and how much longer
/// (or shorter) than `render_median` they take. Both average 1 over the
/// eight, so the farm as a whole keeps its configured error ratio and
/// render time. "News intro" fails often, and always on a missing font.
pub const CATALOGUE: [(&str, f64, f64); 8] = [
    ("Promo 30s", 0.5, 1.0),
    ("Social square", 0.5, 0.5),
    ("Lower third", 0.25, 0.25),
    ("News intro", 3.5, 1.5),
    ("Product showcase", 1.0, 1.5),
    ("Year in review", 1.0, 2.0),
    ("Event recap", 1.0, 1.0),
    ("Logo sting", 0.25, 0.25),
];

/// The catalogue entry whose renders all fail on this text.
const FONT_TROUBLE: usize = 3;

/// One template of the farm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimTemplate {
    pub id: String,
    #[serde(rename = "displayName")]
    pub display_name: String,
    /// Times `error_ratio`.
    #[serde(skip)]
    pub error_factor: f64,
    /// Times `render_median`.
    #[serde(skip)]
    pub render_factor: f64,
}

impl SimTemplate {
    fn numbered(id: String, n: usize) -> Self {
        match CATALOGUE.get(n) {
            Some((name, error_factor, render_factor)) => SimTemplate {
                id,
                display_name: (*name).into(),
                error_factor: *error_factor,
                render_factor: *render_factor,
            },
            None => SimTemplate {
                id,
                display_name: format!("Template {}", n + 1),
                error_factor: 1.0,
                render_factor: 1.0,
            },
        }
    }
}

const ERRORS: [&str; 5] = [
    "After Effects crashed while rendering (aerender exit code 1)",
    "Missing font: Montserrat-Bold",
    "Asset download failed: HTTP 404 for footage/intro.mp4",
    "Render timed out",
    "Layer 'headline' not found in composition 'main'",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    /// A queued job may now be picked up by a worker.
    Eligible,
    /// A render ends (finished or failed, by the job's fate).
    RenderEnd,
    /// The user cancels the job if it is still waiting.
    Cancel,
}

/// The id the API shows for a scripted job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ApiId {
    /// A ULID minted at `createdAt`, as the API mints them.
    #[default]
    Minted,
    /// A ULID whose time is `createdAt` plus this many milliseconds
    /// (negative: before), as when ids and `createdAt` come from two clocks.
    UlidOffsetMs(i64),
    /// This text, a ULID or not (an id from an older system, say). Ids are
    /// the caller's to keep unique: `GET /jobs/{id}` finds the latest job
    /// given a repeated one.
    Text(String),
}

/// A job to put into the store as it is, for tests and scripted scenarios.
#[derive(Debug, Clone)]
pub struct ScriptedJob {
    pub created_at: UnixMillis,
    pub status: JobStatus,
    pub started_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
    pub error: Option<String>,
    pub id: ApiId,
    /// Where its end is delivered when a script moves it to a terminal
    /// status (a job inserted already ended delivers nothing).
    pub webhook: Option<Webhook>,
}

impl ScriptedJob {
    pub fn queued(created_at: UnixMillis) -> Self {
        Self {
            created_at,
            status: JobStatus::Queued,
            started_at: None,
            ended_at: None,
            error: None,
            id: ApiId::Minted,
            webhook: None,
        }
    }
}

/// A request to create a job through the lifecycle engine (`POST /jobs`).
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub template: Option<u16>,
    pub children: u32,
    pub tags: u8,
    pub total_assets: u16,
    pub webhook: Option<Webhook>,
}

/// Why a scripted change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("job {0} not found")]
    NotFound(Ulid),
    #[error("job {0} is {1}, a terminal status: it never changes again")]
    Terminal(Ulid, String),
    #[error("job {0} is {1}: only queued and pending jobs can be cancelled")]
    NotCancellable(Ulid, String),
    #[error("job {0} is driven by the lifecycle engine, not by a script")]
    NotScripted(Ulid),
    #[error("job {0} is {1}: only an ended job can be queued again")]
    NotEnded(Ulid, String),
}

pub struct Simulation {
    cfg: LifecycleConfig,
    rng: ChaCha8Rng,
    jobs: VecDeque<SimJob>,
    events: BinaryHeap<Reverse<(UnixMillis, u64, EventKind, Ulid)>>,
    event_seq: u64,
    /// Jobs eligible for pickup, first come first served.
    ready: VecDeque<Ulid>,
    busy_workers: u32,
    next_arrival: Option<UnixMillis>,
    now: UnixMillis,
    retention_ms: i64,
    last_trim: UnixMillis,
    templates: Vec<SimTemplate>,
    /// Jobs with a webhook that reached a terminal status since the last drain.
    webhook_due: Vec<Ulid>,
    /// The webhook of every job the farm creates on its own.
    farm_webhook: Option<Webhook>,
    /// Store keys of the jobs whose API id is not their key, by API id.
    shown_ids: HashMap<Box<str>, Ulid>,
    /// API ids of jobs deleted through [`Simulation::delete`]: a look-up
    /// of one is told it is gone, not that it never was.
    deleted: HashSet<Box<str>>,
    /// Jobs whose whole JSON carries what a parser may refuse.
    poisoned: HashMap<Ulid, Poison>,
}

/// What a poisoned job's whole JSON (look-ups, full pages, webhook
/// deliveries) carries; its minimal listing entry stays clean, as the
/// API's would (minimal pages carry no `stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// `stats.error` ends in half a UTF-16 surrogate pair (`"\ud83d"`):
    /// valid JSON text, which JavaScript can write and serde_json refuses.
    LoneSurrogate,
    /// `stats.renderDuration` is `1e400`: valid JSON, beyond any f64.
    HugeNumber,
    /// `stats.error` holds a byte that is not UTF-8: not JSON at all, so
    /// no reader can take the job, and a page holding it fails whole.
    InvalidUtf8,
}

impl Simulation {
    /// A farm with no jobs at `now`. Arrivals start right away.
    pub fn new(cfg: LifecycleConfig, seed: u64, now: UnixMillis) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let templates = (0..usize::from(cfg.templates.max(1)))
            .map(|n| {
                let id = Ulid::from_parts(now.max(0) as u64 - 86_400_000 * 30, rng.gen());
                SimTemplate::numbered(id.to_string(), n)
            })
            .collect();
        let mut sim = Self {
            cfg,
            rng,
            jobs: VecDeque::new(),
            events: BinaryHeap::new(),
            event_seq: 0,
            ready: VecDeque::new(),
            busy_workers: 0,
            next_arrival: None,
            now,
            retention_ms: 7 * 86_400_000,
            last_trim: now,
            templates,
            webhook_due: Vec::new(),
            farm_webhook: None,
            shown_ids: HashMap::new(),
            deleted: HashSet::new(),
            poisoned: HashMap::new(),
        };
        sim.next_arrival = sim.draw_next_arrival(now);
        sim
    }

    /// Jobs created longer ago than this and terminal are dropped, so a
    /// long-running simulator's memory stays bounded.
    pub fn set_retention(&mut self, retention: Duration) {
        self.retention_ms = retention.as_millis().min(i64::MAX as u128) as i64;
    }

    pub fn config(&self) -> &LifecycleConfig {
        &self.cfg
    }

    pub fn now(&self) -> UnixMillis {
        self.now
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The index of a template id, adding it if there is room (65536 templates).
    pub fn template_index(&mut self, id: &str) -> Option<u16> {
        if let Some(i) = self.templates.iter().position(|t| t.id == id) {
            return u16::try_from(i).ok();
        }
        // Indexes stay below u16::MAX, so the count itself fits a u16.
        let i = u16::try_from(self.templates.len())
            .ok()
            .filter(|i| *i < u16::MAX)?;
        let n = self.templates.len();
        self.templates.push(SimTemplate::numbered(id.to_owned(), n));
        Some(i)
    }

    /// The catalogue, as `GET /templates` shows it.
    pub fn templates(&self) -> &[SimTemplate] {
        &self.templates
    }

    /// Renames a template (`displayName`), as a user would in the web app.
    pub fn rename_template(&mut self, idx: u16, name: &str) -> bool {
        match self.templates.get_mut(usize::from(idx)) {
            Some(t) => {
                t.display_name = name.to_owned();
                true
            }
            None => false,
        }
    }

    pub fn template_id(&self, idx: u16) -> Option<&str> {
        self.templates.get(usize::from(idx)).map(|t| t.id.as_str())
    }

    /// The template whose character a job of `idx` renders with, if the
    /// catalogue's templates differ.
    fn template_of(&self, idx: Option<u16>) -> Option<&SimTemplate> {
        let i = idx.filter(|_| self.cfg.templates_differ)?;
        self.templates.get(usize::from(i))
    }

    /// All jobs, oldest first.
    pub fn jobs(&self) -> &VecDeque<SimJob> {
        &self.jobs
    }

    pub fn job(&self, id: Ulid) -> Option<&SimJob> {
        self.position(id).map(|i| &self.jobs[i])
    }

    /// The job the API knows as `api_id` (what `GET /jobs/{id}` is given).
    pub fn job_by_api_id(&self, api_id: &str) -> Option<&SimJob> {
        match self.shown_ids.get(api_id) {
            Some(key) => self.job(*key),
            // A job shown under another id is not found by its key.
            None => Ulid::from_string(api_id)
                .ok()
                .and_then(|key| self.job(key))
                .filter(|job| job.shown_id.is_none()),
        }
    }

    /// No more jobs arrive on their own from now on (scripted ones still
    /// can be inserted), so a test can let the farm settle.
    pub fn stop_arrivals(&mut self) {
        self.cfg.arrivals_per_minute = 0.0;
        self.next_arrival = None;
    }

    /// Whether the API id is of a job deleted through [`Simulation::remove`].
    pub fn was_deleted(&self, api_id: &str) -> bool {
        self.deleted.contains(api_id)
    }

    /// Poisons a job's whole JSON from now on (see [`Poison`]).
    pub fn poison(&mut self, id: Ulid, poison: Poison) {
        self.poisoned.insert(id, poison);
    }

    /// How a job's whole JSON is poisoned, if it is.
    pub fn poisoned(&self, id: Ulid) -> Option<Poison> {
        self.poisoned.get(&id).copied()
    }

    fn position(&self, id: Ulid) -> Option<usize> {
        let i = self.jobs.partition_point(|j| j.id < id);
        (i < self.jobs.len() && self.jobs[i].id == id).then_some(i)
    }

    fn job_mut(&mut self, id: Ulid) -> Option<&mut SimJob> {
        self.position(id).map(move |i| &mut self.jobs[i])
    }

    /// Index range of jobs created within `[from, to]` (either bound optional,
    /// both inclusive), for the listing code.
    pub fn created_range(
        &self,
        from: Option<UnixMillis>,
        to: Option<UnixMillis>,
    ) -> (usize, usize) {
        let lo = from.map_or(0, |f| self.jobs.partition_point(|j| j.created_at < f));
        let hi = to.map_or(self.jobs.len(), |t| {
            self.jobs.partition_point(|j| j.created_at <= t)
        });
        (lo, hi.max(lo))
    }

    /// Jobs the farm creates on its own from now on carry `webhook`.
    pub fn set_farm_webhook(&mut self, webhook: Option<Webhook>) {
        self.farm_webhook = webhook;
    }

    /// Ids of jobs with a webhook that became terminal since the last call.
    pub fn take_webhooks_due(&mut self) -> Vec<Ulid> {
        std::mem::take(&mut self.webhook_due)
    }

    fn draw_next_arrival(&mut self, after: UnixMillis) -> Option<UnixMillis> {
        let per_ms = self.cfg.arrivals_per_minute / 60_000.0;
        if per_ms <= 0.0 {
            return None;
        }
        let gap = Exp::new(per_ms).ok()?.sample(&mut self.rng);
        Some(after + gap.ceil().max(1.0) as i64)
    }

    fn schedule(&mut self, at: UnixMillis, kind: EventKind, id: Ulid) {
        self.event_seq += 1;
        self.events.push(Reverse((at, self.event_seq, kind, id)));
    }

    fn draw_render_ms(&mut self, template: Option<u16>) -> u32 {
        let factor = self.template_of(template).map_or(1.0, |t| t.render_factor);
        let median = self.cfg.render_median.as_millis() as f64 * factor;
        let ms = if self.cfg.render_spread == 0.0 {
            median
        } else {
            LogNormal::new(median.ln(), self.cfg.render_spread)
                .map(|d| d.sample(&mut self.rng))
                .unwrap_or(median)
        };
        // Bounded so one freak draw does not occupy a worker for days.
        ms.clamp(1_000.0, median * 20.0).min(u32::MAX as f64) as u32
    }

    fn draw_pickup_ms(&mut self) -> i64 {
        let mean = self.cfg.pickup_delay.as_millis() as f64;
        if mean == 0.0 {
            return 0;
        }
        Exp::new(1.0 / mean)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(mean)
            .min(mean * 20.0) as i64
    }

    fn draw_fate(&mut self, template: Option<u16>) -> Fate {
        let factor = self.template_of(template).map_or(1.0, |t| t.error_factor);
        if self
            .rng
            .gen_bool((self.cfg.error_ratio * factor).clamp(0.0, 1.0))
        {
            Fate::FailAt(self.rng.gen_range(1..1000))
        } else {
            Fate::Finish
        }
    }

    /// A failed render's `stats.error`: the drawn text, except for the
    /// catalogue's font-trouble template, which always fails the same way.
    fn error_text(&self, template: Option<u16>, drawn: &'static str) -> &'static str {
        if self.cfg.templates_differ && template.map(usize::from) == Some(FONT_TROUBLE) {
            ERRORS[1]
        } else {
            drawn
        }
    }

    fn mint_id(&mut self, created_at: UnixMillis) -> Ulid {
        loop {
            let id = Ulid::from_parts(created_at.max(0) as u64, self.rng.gen());
            if self.position(id).is_none() {
                return id;
            }
        }
    }

    fn insert(&mut self, job: SimJob) {
        match self.jobs.back() {
            Some(last) if last.id > job.id => {
                let i = self.jobs.partition_point(|j| j.id < job.id);
                self.jobs.insert(i, job);
            }
            _ => self.jobs.push_back(job),
        }
    }

    fn blank_job(&mut self, created_at: UnixMillis, status: JobStatus) -> SimJob {
        let template =
            (!self.rng.gen_bool(0.1)).then(|| self.rng.gen_range(0..self.templates.len() as u16));
        let tags = self.rng.gen_range(0..16u8);
        let total_assets = self.rng.gen_range(1..30);
        SimJob {
            id: self.mint_id(created_at),
            status,
            created_at,
            updated_at: created_at,
            started_at: None,
            ended_at: None,
            render_ms: 0,
            fate: Fate::Finish,
            driver: Driver::Engine,
            template,
            total_assets,
            tags,
            error: None,
            webhook: None,
            family: None,
            shown_id: None,
        }
    }

    /// Creates a job through the engine at the current time, as `POST /jobs`
    /// does. Returns the parent's id and its children's ids.
    pub fn create_job(&mut self, req: NewJob) -> (Ulid, Vec<Ulid>) {
        let now = self.now;
        let status = if req.children > 0 {
            JobStatus::Pending
        } else {
            JobStatus::Queued
        };
        let mut job = self.blank_job(now, status);
        if req.template.is_some() {
            job.template = req.template;
        }
        job.tags = req.tags;
        job.total_assets = req.total_assets.max(1);
        job.webhook = req.webhook.map(Box::new);
        job.render_ms = self.draw_render_ms(job.template);
        job.fate = self.draw_fate(job.template);
        let parent_id = job.id;
        let mut children = Vec::new();
        if req.children > 0 {
            job.family = Some(Box::new(Family {
                parent: None,
                children_left: req.children,
                child_failed: false,
            }));
        }
        let cancels = self.rng.gen_bool(self.cfg.cancel_ratio);
        self.insert(job);
        for _ in 0..req.children {
            let mut child = self.blank_job(now, JobStatus::Queued);
            child.tags = req.tags;
            child.render_ms = self.draw_render_ms(child.template);
            child.fate = self.draw_fate(child.template);
            child.family = Some(Box::new(Family {
                parent: Some(parent_id),
                children_left: 0,
                child_failed: false,
            }));
            let cid = child.id;
            self.insert(child);
            let at = now + self.draw_pickup_ms();
            self.schedule(at, EventKind::Eligible, cid);
            children.push(cid);
        }
        if req.children == 0 {
            let at = now + self.draw_pickup_ms();
            self.schedule(at, EventKind::Eligible, parent_id);
        }
        if cancels {
            let within = self.cfg.cancel_within.as_millis().max(1) as i64;
            let at = now + self.rng.gen_range(0..within);
            self.schedule(at, EventKind::Cancel, parent_id);
        }
        (parent_id, children)
    }

    fn arrive(&mut self) {
        let count = if self.rng.gen_bool(self.cfg.burst_probability) {
            let [lo, hi] = self.cfg.burst_size;
            self.rng.gen_range(lo..=hi)
        } else {
            1
        };
        for _ in 0..count {
            let children = if self.rng.gen_bool(self.cfg.nested_ratio) {
                self.rng.gen_range(1..=self.cfg.max_children)
            } else {
                0
            };
            let tags = self.rng.gen_range(0..16u8);
            let total_assets = self.rng.gen_range(1..30);
            let webhook = self.farm_webhook.clone();
            self.create_job(NewJob {
                template: None,
                children,
                tags,
                total_assets,
                webhook,
            });
        }
    }

    /// Moves the farm forward to `t`, processing every arrival and event due
    /// by then in time order. A `t` in the past is ignored.
    pub fn advance_to(&mut self, t: UnixMillis) {
        loop {
            let next_event = self.events.peek().map(|Reverse((at, ..))| *at);
            let next = match (self.next_arrival, next_event) {
                (Some(a), Some(e)) => a.min(e),
                (Some(a), None) => a,
                (None, Some(e)) => e,
                (None, None) => break,
            };
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if Some(next) == self.next_arrival && next_event.is_none_or(|e| next <= e) {
                self.arrive();
                self.next_arrival = self.draw_next_arrival(next);
                continue;
            }
            if let Some(Reverse((_, _, kind, id))) = self.events.pop() {
                self.handle(kind, id);
            }
        }
        self.now = self.now.max(t);
        self.trim();
    }

    fn handle(&mut self, kind: EventKind, id: Ulid) {
        let now = self.now;
        let Some(job) = self.job_mut(id) else { return };
        match kind {
            EventKind::Eligible => {
                if job.status == JobStatus::Queued {
                    self.ready.push_back(id);
                    self.dispatch();
                }
            }
            EventKind::Cancel => {
                if matches!(job.status, JobStatus::Queued | JobStatus::Pending) {
                    let children_pending = job.family.as_ref().is_some_and(|f| f.children_left > 0);
                    self.end(
                        id,
                        JobStatus::ManuallyCancelled,
                        Some("Job was manually cancelled"),
                    );
                    if children_pending {
                        self.cancel_children(id, now);
                    }
                }
            }
            EventKind::RenderEnd => {
                if job.status != JobStatus::Rendering {
                    return;
                }
                let (fate, template) = (job.fate, job.template);
                let (status, err) = match fate {
                    Fate::Finish => (JobStatus::Finished, None),
                    Fate::FailAt(_) => {
                        let drawn = ERRORS[self.rng.gen_range(0..ERRORS.len())];
                        (JobStatus::Error, Some(self.error_text(template, drawn)))
                    }
                };
                self.busy_workers = self.busy_workers.saturating_sub(1);
                self.end(id, status, err);
                self.dispatch();
            }
        }
    }

    fn cancel_children(&mut self, parent: Ulid, _now: UnixMillis) {
        let ids: Vec<Ulid> = self
            .jobs
            .iter()
            .filter(|j| {
                j.family.as_ref().and_then(|f| f.parent) == Some(parent)
                    && matches!(j.status, JobStatus::Queued | JobStatus::Pending)
            })
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.end(
                id,
                JobStatus::ManuallyCancelled,
                Some("Parent job was manually cancelled"),
            );
        }
    }

    /// Starts queued jobs while workers are free.
    fn dispatch(&mut self) {
        let now = self.now;
        while self.busy_workers < self.cfg.workers {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(job) = self.job_mut(id) else {
                continue;
            };
            if job.status != JobStatus::Queued {
                continue; // cancelled while waiting
            }
            job.status = JobStatus::Rendering;
            job.started_at = Some(now);
            job.updated_at = now;
            let run = match job.fate {
                Fate::Finish => i64::from(job.render_ms),
                Fate::FailAt(p) => (i64::from(job.render_ms) * i64::from(p) / 1000).max(1),
            };
            self.busy_workers += 1;
            self.schedule(now + run, EventKind::RenderEnd, id);
        }
    }

    /// Puts a job into a terminal status and tells its parent.
    fn end(&mut self, id: Ulid, status: JobStatus, error: Option<&str>) {
        let now = self.now;
        let Some(job) = self.job_mut(id) else { return };
        job.status = status.clone();
        job.ended_at = Some(now);
        job.updated_at = now;
        job.error = error.map(Into::into);
        let parent = job.family.as_ref().and_then(|f| f.parent);
        if job.webhook.is_some() {
            self.webhook_due.push(id);
        }
        let Some(pid) = parent else { return };
        let pickup = self.draw_pickup_ms();
        let Some(p) = self.job_mut(pid) else { return };
        let Some(fam) = p.family.as_mut() else { return };
        fam.children_left = fam.children_left.saturating_sub(1);
        fam.child_failed |= status != JobStatus::Finished;
        if fam.children_left > 0 || p.status != JobStatus::Pending {
            return;
        }
        if fam.child_failed {
            self.end(
                pid,
                JobStatus::Error,
                Some("A nested child job did not finish"),
            );
        } else {
            p.status = JobStatus::Queued;
            p.updated_at = now;
            self.schedule(now + pickup, EventKind::Eligible, pid);
        }
    }

    /// Drops terminal jobs created before the retention cutoff. Jobs that
    /// never ended stay whatever their age, as on the real service. Runs at
    /// most once a simulated minute, since it walks the whole store.
    fn trim(&mut self) {
        let cutoff = self.now.saturating_sub(self.retention_ms);
        if self.now - self.last_trim < 60_000
            || self.jobs.front().is_none_or(|j| j.created_at >= cutoff)
        {
            return;
        }
        self.last_trim = self.now;
        self.jobs
            .retain(|j| !(j.created_at < cutoff && j.status.is_terminal()));
        if !self.shown_ids.is_empty() {
            let kept: HashSet<Ulid> = self
                .jobs
                .iter()
                .filter(|j| j.shown_id.is_some())
                .map(|j| j.id)
                .collect();
            self.shown_ids.retain(|_, key| kept.contains(key));
        }
    }

    /// Fills `[now - span, now - margin]` with `count` jobs that already
    /// ended, as if the farm had been running. Used for the demo and for
    /// scale tests; `margin` keeps every job's end in the past.
    pub fn prefill(&mut self, count: usize, span: Duration) {
        if count == 0 {
            return;
        }
        let now = self.now;
        let span_ms = span.as_millis() as i64;
        let margin = (span_ms / 10).clamp(1, 3_600_000);
        let start = now - span_ms;
        let width = (span_ms - margin).max(1);
        let step = width as f64 / count as f64;
        let mut batch = Vec::with_capacity(count);
        for i in 0..count {
            let created = start + (i as f64 * step + self.rng.gen_range(0.0..step.max(1.0))) as i64;
            let created = created.min(now - margin);
            let mut job = self.blank_job(created, JobStatus::Queued);
            let room = (now - created).max(2);
            if self.rng.gen_bool(self.cfg.cancel_ratio) {
                let at = created
                    + self
                        .rng
                        .gen_range(0..room.min(self.cfg.cancel_within.as_millis().max(1) as i64));
                job.status = JobStatus::ManuallyCancelled;
                job.ended_at = Some(at);
                job.updated_at = at;
                job.error = Some("Job was manually cancelled".into());
            } else {
                let wait = self.draw_pickup_ms().min(room / 2);
                let started = created + wait;
                let render = i64::from(self.draw_render_ms(job.template))
                    .min(now - started)
                    .max(1);
                job.render_ms = render as u32;
                job.started_at = Some(started);
                job.fate = self.draw_fate(job.template);
                let (status, end) = match job.fate {
                    Fate::Finish => (JobStatus::Finished, started + render),
                    Fate::FailAt(p) => (JobStatus::Error, started + render * i64::from(p) / 1000),
                };
                if status == JobStatus::Error {
                    let drawn = ERRORS[self.rng.gen_range(0..ERRORS.len())];
                    job.error = Some(self.error_text(job.template, drawn).into());
                }
                job.status = status;
                job.ended_at = Some(end);
                job.updated_at = end;
            }
            batch.push(job);
        }
        batch.sort_by_key(|j| j.id);
        if self.jobs.is_empty() {
            self.jobs = batch.into();
        } else {
            for j in batch {
                self.insert(j);
            }
        }
    }

    /// Puts a hand-made job into the store. The engine never moves it; the
    /// script does, with [`Simulation::script_status`].
    pub fn insert_scripted(&mut self, s: ScriptedJob) -> Ulid {
        let mut job = self.blank_job(s.created_at, s.status);
        job.driver = Driver::Script;
        job.started_at = s.started_at;
        job.ended_at = s.ended_at;
        job.updated_at = s.ended_at.or(s.started_at).unwrap_or(s.created_at);
        job.error = s.error.map(Into::into);
        job.webhook = s.webhook.map(Box::new);
        if let (Some(st), Some(en)) = (job.started_at, job.ended_at) {
            job.render_ms = (en - st).clamp(0, u32::MAX as i64) as u32;
        }
        let shown: Option<Box<str>> = match s.id {
            ApiId::Minted => None,
            ApiId::UlidOffsetMs(offset) => {
                let at = s.created_at.saturating_add(offset).max(0) as u64;
                Some(Ulid::from_parts(at, self.rng.gen()).to_string().into())
            }
            ApiId::Text(text) => Some(text.into()),
        };
        if let Some(shown) = &shown {
            self.shown_ids.insert(shown.clone(), job.id);
        }
        job.shown_id = shown;
        let id = job.id;
        self.insert(job);
        id
    }

    /// Puts an ended scripted job back in the queue at `at`, as when a
    /// team re-queues a job upstream: `queued`, its start, end and error
    /// cleared. From there [`Simulation::script_status`] moves it again.
    pub fn requeue(&mut self, id: Ulid, at: UnixMillis) -> Result<(), ChangeError> {
        let job = self.job_mut(id).ok_or(ChangeError::NotFound(id))?;
        if job.driver != Driver::Script {
            return Err(ChangeError::NotScripted(id));
        }
        if !job.status.is_terminal() {
            return Err(ChangeError::NotEnded(id, job.status.to_string()));
        }
        job.status = JobStatus::Queued;
        job.updated_at = at;
        job.started_at = None;
        job.ended_at = None;
        job.render_ms = 0;
        job.error = None;
        Ok(())
    }

    /// Moves a scripted job to `status` at time `at`, setting its timestamps
    /// the way the API would: `startedAt` when it starts rendering,
    /// `finishedAt` or `errorAt` when it ends. Terminal jobs do not move,
    /// unless put back in the queue with [`Simulation::requeue`].
    pub fn script_status(
        &mut self,
        id: Ulid,
        status: JobStatus,
        at: UnixMillis,
    ) -> Result<(), ChangeError> {
        let job = self.job_mut(id).ok_or(ChangeError::NotFound(id))?;
        if job.driver != Driver::Script {
            return Err(ChangeError::NotScripted(id));
        }
        if job.status.is_terminal() {
            return Err(ChangeError::Terminal(id, job.status.to_string()));
        }
        job.updated_at = at;
        match &status {
            JobStatus::Finished | JobStatus::Error => {
                let started = *job.started_at.get_or_insert(at);
                job.ended_at = Some(at);
                job.render_ms = (at - started).clamp(0, u32::MAX as i64) as u32;
                if status == JobStatus::Error {
                    job.error = Some(ERRORS[0].into());
                }
            }
            JobStatus::ManuallyCancelled => {
                job.ended_at = Some(at);
                job.error = Some("Job was manually cancelled".into());
            }
            JobStatus::Queued | JobStatus::Pending => {}
            JobStatus::Rendering | JobStatus::Other(_) => {
                job.started_at.get_or_insert(at);
            }
        }
        job.status = status;
        if job.status.is_terminal() && job.webhook.is_some() {
            self.webhook_due.push(id);
        }
        Ok(())
    }

    /// Deletes a job, as when a team removes it upstream: gone from every
    /// listing, and a look-up says it is gone (the simulator's
    /// `deleted_status`), not that it never was. Returns whether it existed.
    pub fn remove(&mut self, id: Ulid) -> bool {
        let Some(i) = self.position(id) else {
            return false;
        };
        let Some(job) = self.jobs.remove(i) else {
            return false;
        };
        self.ready.retain(|r| *r != id);
        if job.driver == Driver::Engine && job.status == JobStatus::Rendering {
            self.busy_workers = self.busy_workers.saturating_sub(1);
        }
        if let Some(shown) = &job.shown_id {
            self.shown_ids.remove(shown);
        }
        self.poisoned.remove(&id);
        self.deleted.insert(job.api_id().into());
        true
    }

    /// Cancels a queued or pending job now (`PATCH /jobs/{id}/cancel`).
    pub fn cancel(&mut self, id: Ulid) -> Result<(), ChangeError> {
        let job = self.job(id).ok_or(ChangeError::NotFound(id))?;
        if !matches!(job.status, JobStatus::Queued | JobStatus::Pending) {
            return Err(ChangeError::NotCancellable(id, job.status.to_string()));
        }
        let children = job.family.as_ref().is_some_and(|f| f.children_left > 0);
        let now = self.now;
        self.end(
            id,
            JobStatus::ManuallyCancelled,
            Some("Job was manually cancelled"),
        );
        if children {
            self.cancel_children(id, now);
        }
        Ok(())
    }

    /// Jobs per status, for the simulator's own status line and tests.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for j in &self.jobs {
            *m.entry(j.status.to_string()).or_insert(0) += 1;
        }
        m
    }

    pub fn busy_workers(&self) -> u32 {
        self.busy_workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const HOUR: i64 = 3_600_000;

    fn run(cfg: LifecycleConfig, seed: u64, hours: i64) -> Simulation {
        let mut sim = Simulation::new(cfg, seed, T0);
        for m in 0..hours * 60 {
            sim.advance_to(T0 + m * 60_000);
        }
        sim
    }

    fn check_invariants(sim: &Simulation) {
        for j in sim.jobs() {
            let created = j.created_at;
            assert_eq!(
                j.id.timestamp_ms() as i64,
                created,
                "ULID time is createdAt"
            );
            if let Some(s) = j.started_at {
                assert!(created <= s, "created <= started for {}", j.id);
            }
            if let Some(e) = j.ended_at {
                assert!(
                    j.started_at.unwrap_or(created) <= e,
                    "started <= ended for {}",
                    j.id
                );
                assert!(j.status.is_terminal());
            }
            match j.status {
                JobStatus::Finished => {
                    let d = j
                        .render_duration_seconds()
                        .expect("finished has a duration");
                    let expect = (j.finished_at().unwrap() - j.started_at.unwrap()) as f64 / 1000.0;
                    assert!((d - expect).abs() < 0.001);
                    assert!(j.error.is_none());
                }
                JobStatus::Error => {
                    assert!(j.error.is_some() && j.render_duration_seconds().is_none())
                }
                JobStatus::ManuallyCancelled => assert!(j.started_at.is_none()),
                JobStatus::Rendering => assert!(j.started_at.is_some() && j.ended_at.is_none()),
                _ => assert!(j.ended_at.is_none()),
            }
            assert!(j.updated_at >= created && j.updated_at <= sim.now());
        }
    }

    #[test]
    fn every_job_keeps_its_timestamps_in_order_over_a_simulated_day() {
        let sim = run(LifecycleConfig::lively(), 7, 24);
        assert!(sim.len() > 10_000, "lively farm made {} jobs", sim.len());
        check_invariants(&sim);
        let counts = sim.counts();
        for s in ["finished", "error", "manually_cancelled"] {
            assert!(counts.get(s).copied().unwrap_or(0) > 0, "{s} in {counts:?}");
        }
    }

    #[test]
    fn terminal_jobs_never_change_again() {
        let mut sim = Simulation::new(LifecycleConfig::lively(), 3, T0);
        sim.advance_to(T0 + HOUR);
        let terminal: Vec<SimJob> = sim
            .jobs()
            .iter()
            .filter(|j| j.status.is_terminal())
            .cloned()
            .collect();
        assert!(!terminal.is_empty());
        sim.advance_to(T0 + 3 * HOUR);
        for before in terminal {
            assert_eq!(sim.job(before.id), Some(&before));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_farm() {
        let a = run(LifecycleConfig::default(), 42, 6);
        let b = run(LifecycleConfig::default(), 42, 6);
        assert_eq!(a.jobs(), b.jobs());
        let c = run(LifecycleConfig::default(), 43, 6);
        assert_ne!(a.jobs(), c.jobs());
    }

    #[test]
    fn catalogue_templates_differ_in_failures_render_time_and_error_text() {
        let cfg = LifecycleConfig {
            templates_differ: true,
            error_ratio: 0.1,
            ..LifecycleConfig::default()
        };
        let mut sim = Simulation::new(cfg, 5, T0);
        sim.prefill(20_000, Duration::from_secs(86_400));
        let names: Vec<&str> = sim
            .templates()
            .iter()
            .map(|t| t.display_name.as_str())
            .collect();
        assert_eq!(names[3], "News intro");
        let of = |n: u16| sim.jobs().iter().filter(move |j| j.template == Some(n));
        let error_ratio = |n: u16| {
            let ended = of(n).filter(|j| j.started_at.is_some()).count() as f64;
            of(n).filter(|j| j.status == JobStatus::Error).count() as f64 / ended
        };
        let mean_render = |n: u16| {
            let r: Vec<f64> = of(n).filter_map(|j| j.render_duration_seconds()).collect();
            r.iter().sum::<f64>() / r.len() as f64
        };
        // News intro fails 3.5 times the farm's ratio, Logo sting a quarter.
        assert!(error_ratio(3) > 0.25, "{}", error_ratio(3));
        assert!(error_ratio(7) < 0.06, "{}", error_ratio(7));
        assert!(of(3)
            .filter(|j| j.status == JobStatus::Error)
            .all(|j| j.error.as_deref() == Some(ERRORS[1])));
        // Year in review renders 2x the median, Lower third a quarter.
        assert!(mean_render(5) > 4.0 * mean_render(2));
    }

    #[test]
    fn workers_bound_how_many_jobs_render_at_once_and_a_backlog_drains() {
        let cfg = LifecycleConfig {
            arrivals_per_minute: 0.0,
            workers: 3,
            render_median: Duration::from_secs(60),
            render_spread: 0.0,
            error_ratio: 0.0,
            cancel_ratio: 0.0,
            nested_ratio: 0.0,
            pickup_delay: Duration::ZERO,
            ..LifecycleConfig::default()
        };
        let mut sim = Simulation::new(cfg, 1, T0);
        for _ in 0..10 {
            sim.create_job(NewJob::default());
        }
        sim.advance_to(T0 + 1);
        let c = sim.counts();
        assert_eq!(c.get("render:dorender"), Some(&3));
        assert_eq!(c.get("queued"), Some(&7));
        sim.advance_to(T0 + 61_000);
        assert_eq!(sim.counts().get("finished"), Some(&3));
        sim.advance_to(T0 + 10 * 60_000);
        assert_eq!(sim.counts().get("finished"), Some(&10));
        // Queue wait grew for later jobs: the last started 3 minutes in.
        let last_start = sim
            .jobs()
            .iter()
            .filter_map(|j| j.started_at)
            .max()
            .unwrap();
        assert_eq!(last_start, T0 + 180_000);
        check_invariants(&sim);
    }

    #[test]
    fn a_parent_waits_pending_until_its_children_finish() {
        let cfg = LifecycleConfig {
            arrivals_per_minute: 0.0,
            error_ratio: 0.0,
            cancel_ratio: 0.0,
            render_spread: 0.0,
            ..LifecycleConfig::default()
        };
        let mut sim = Simulation::new(cfg, 1, T0);
        let (parent, kids) = sim.create_job(NewJob {
            children: 2,
            ..NewJob::default()
        });
        assert_eq!(kids.len(), 2);
        assert_eq!(sim.job(parent).unwrap().status, JobStatus::Pending);
        sim.advance_to(T0 + 60_000);
        assert_eq!(sim.job(parent).unwrap().status, JobStatus::Pending);
        sim.advance_to(T0 + HOUR);
        for k in &kids {
            assert_eq!(sim.job(*k).unwrap().status, JobStatus::Finished);
        }
        let p = sim.job(parent).unwrap();
        assert_eq!(p.status, JobStatus::Finished);
        assert!(p.started_at.unwrap() >= sim.job(kids[0]).unwrap().ended_at.unwrap());
    }

    #[test]
    fn error_and_cancel_ratios_show_in_a_large_sample() {
        let sim = run(
            LifecycleConfig {
                error_ratio: 0.2,
                cancel_ratio: 0.1,
                nested_ratio: 0.0,
                ..LifecycleConfig::lively()
            },
            11,
            12,
        );
        let c = sim.counts();
        let total: usize = c.values().sum();
        let err = c["error"] as f64 / total as f64;
        let can = c["manually_cancelled"] as f64 / total as f64;
        assert!((0.12..0.25).contains(&err), "error share {err}");
        assert!((0.04..0.12).contains(&can), "cancel share {can}");
    }

    #[test]
    fn prefill_puts_a_million_ended_jobs_in_order() {
        let mut sim = Simulation::new(LifecycleConfig::default(), 5, T0);
        sim.prefill(1_000_000, Duration::from_secs(86_400));
        assert_eq!(sim.len(), 1_000_000);
        assert!(sim
            .jobs()
            .iter()
            .zip(sim.jobs().iter().skip(1))
            .all(|(a, b)| a.id < b.id));
        assert!(sim.jobs().front().unwrap().created_at >= T0 - 86_400_000);
        assert!(sim
            .jobs()
            .iter()
            .all(|j| j.status.is_terminal() && j.ended_at.unwrap() <= T0));
    }

    #[test]
    fn scripted_jobs_move_only_when_told_and_terminal_ones_refuse() {
        let mut sim = Simulation::new(
            LifecycleConfig {
                arrivals_per_minute: 0.0,
                ..Default::default()
            },
            1,
            T0,
        );
        let id = sim.insert_scripted(ScriptedJob::queued(T0 - 25 * HOUR));
        sim.advance_to(T0 + HOUR);
        assert_eq!(sim.job(id).unwrap().status, JobStatus::Queued);
        sim.script_status(id, JobStatus::Rendering, T0 + HOUR)
            .unwrap();
        sim.script_status(id, JobStatus::Finished, T0 + HOUR + 90_500)
            .unwrap();
        assert_eq!(sim.job(id).unwrap().render_duration_seconds(), Some(90.5));
        let err = sim
            .script_status(id, JobStatus::Error, T0 + 2 * HOUR)
            .unwrap_err();
        assert!(matches!(err, ChangeError::Terminal(..)));
        // Inserted in the past, it still sorts by creation time.
        assert_eq!(sim.jobs().front().unwrap().id, id);
    }

    #[test]
    fn an_ended_scripted_job_requeued_waits_again_and_ends_again() {
        let mut sim = Simulation::new(
            LifecycleConfig {
                arrivals_per_minute: 0.0,
                ..Default::default()
            },
            1,
            T0,
        );
        let id = sim.insert_scripted(ScriptedJob::queued(T0 - HOUR));
        let err = sim.requeue(id, T0).unwrap_err();
        assert!(matches!(err, ChangeError::NotEnded(..)), "{err}");
        sim.script_status(id, JobStatus::Error, T0).unwrap();
        sim.requeue(id, T0 + 60_000).unwrap();
        let job = sim.job(id).unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!((job.started_at, job.ended_at), (None, None));
        assert!(job.error.is_none() && job.updated_at == T0 + 60_000);
        assert_eq!(job.created_at, T0 - HOUR, "still the same job");
        sim.script_status(id, JobStatus::Rendering, T0 + 120_000)
            .unwrap();
        sim.script_status(id, JobStatus::Finished, T0 + 150_000)
            .unwrap();
        assert_eq!(sim.job(id).unwrap().render_duration_seconds(), Some(30.0));
        // Engine jobs are the engine's.
        let (engine, _) = sim.create_job(NewJob::default());
        assert!(matches!(
            sim.requeue(engine, T0),
            Err(ChangeError::NotScripted(_))
        ));
    }

    #[test]
    fn a_scripted_job_can_show_an_id_that_is_not_a_ulid_or_not_its_creation_time() {
        let mut sim = Simulation::new(
            LifecycleConfig {
                arrivals_per_minute: 0.0,
                ..Default::default()
            },
            1,
            T0,
        );
        let scripted = |id| ScriptedJob {
            id,
            ..ScriptedJob::queued(T0 - HOUR)
        };
        let plain = sim.insert_scripted(scripted(ApiId::Minted));
        let text = sim.insert_scripted(scripted(ApiId::Text("render-legacy-7".into())));
        let late = sim.insert_scripted(scripted(ApiId::UlidOffsetMs(10 * 60_000)));
        let early = sim.insert_scripted(scripted(ApiId::UlidOffsetMs(-10 * 60_000)));
        let api_id = |key| sim.job(key).unwrap().api_id().into_owned();
        assert_eq!(api_id(plain), plain.to_string());
        assert_eq!(api_id(text), "render-legacy-7");
        for (key, offset) in [(late, 10 * 60_000), (early, -10 * 60_000)] {
            let shown = Ulid::from_string(&api_id(key)).unwrap();
            assert_eq!(shown.timestamp_ms() as i64, T0 - HOUR + offset);
            assert_eq!(sim.job(key).unwrap().created_at, T0 - HOUR);
        }
        // `GET /jobs/{id}` finds each by what the API shows, not by its key.
        for key in [plain, text, late, early] {
            assert_eq!(sim.job_by_api_id(&api_id(key)).unwrap().id, key);
        }
        assert!(sim.job_by_api_id(&late.to_string()).is_none());
        assert!(sim.job_by_api_id("render-legacy-8").is_none());
        // The store stays in creation order, so date filters still hold.
        check_invariants(&sim);
        assert_eq!(sim.created_range(Some(T0 - HOUR), None), (0, 4));
        assert!(sim.remove(text));
        assert!(sim.job_by_api_id("render-legacy-7").is_none());
    }

    #[test]
    fn retention_drops_old_terminal_jobs_and_keeps_stuck_ones() {
        let mut sim = Simulation::new(LifecycleConfig::lively(), 2, T0);
        sim.set_retention(Duration::from_secs(2 * 3600));
        let stuck = sim.insert_scripted(ScriptedJob::queued(T0));
        for h in 1..=6 {
            sim.advance_to(T0 + h * HOUR);
        }
        assert!(sim.job(stuck).is_some(), "a job that never ended is kept");
        // Trimming runs once a simulated minute: allow one minute of slack.
        let cutoff = sim.now() - 2 * HOUR - 60_000;
        assert!(sim
            .jobs()
            .iter()
            .all(|j| j.created_at >= cutoff || !j.status.is_terminal()));
    }
}
