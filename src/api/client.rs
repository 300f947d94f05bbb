//! HTTP calls to the API. One request, one outcome: the caller decides
//! whether a failure ends the poll (retries belong to a layer above).

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use reqwest::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_ENCODING, RETRY_AFTER};
use reqwest::StatusCode;

use super::job::{
    parse_job, parse_minimal_page, parse_page, parse_server_jobs, ApiJob, JobId, MinimalJob, Page,
};
use super::server::{ServerOptions, Snapshot};
use super::template::{parse_templates, TemplateName};
use crate::clock::UnixMillis;
use crate::secret::Secret;
use crate::timefmt::format_millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ListJobs,
    GetJob,
    ListTemplates,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ListJobs => "list_jobs",
            Endpoint::GetJob => "get_job",
            Endpoint::ListTemplates => "list_templates",
        }
    }
}

/// Told about every HTTP call (the metrics layer implements it).
pub trait RequestObserver: Send + Sync {
    /// `code` is the HTTP status, or `timeout`, `connect`, `decode`,
    /// `too_large` or `error` when there was no usable answer.
    fn request_done(&self, endpoint: Endpoint, code: &str, elapsed: Duration);

    /// `bytes` of a response body were read (an answer or an error text).
    fn response_bytes(&self, _endpoint: Endpoint, _bytes: u64) {}
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout {
        endpoint: &'static str,
        timeout: Duration,
    },
    #[error("{endpoint}: cannot connect to the API: {detail}")]
    Connect {
        endpoint: &'static str,
        detail: String,
    },
    #[error("{endpoint}: the API refused the token (HTTP {code}); check the account's token or token_file (a self-hosted server's secret)")]
    Unauthorized { endpoint: &'static str, code: u16 },
    #[error("{endpoint}: the API is rate limiting (HTTP 429{})", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        endpoint: &'static str,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: HTTP {code}: {message}")]
    Status {
        endpoint: &'static str,
        code: u16,
        message: String,
    },
    #[error("{endpoint}: the answer is not the JSON expected: {detail}")]
    Decode {
        endpoint: &'static str,
        detail: String,
    },
    #[error("{endpoint}: the answer is larger than poll.max_response_bytes ({limit} bytes)")]
    TooLarge { endpoint: &'static str, limit: u64 },
    #[error("{endpoint}: {detail}")]
    Transport {
        endpoint: &'static str,
        detail: String,
    },
    #[error("the poll did not finish within poll.timeout ({timeout:?}); a poll that reads the whole window needs window jobs / page_size requests at poll.max_requests_per_second at most, so a big window needs a longer poll.timeout")]
    Deadline { timeout: Duration },
    #[error("list_jobs: {detail}; the poll is not applied and is tried again")]
    IncompleteScan { detail: String },
}

impl ApiError {
    /// Every value [`ApiError::reason`] can take, for zero-filled series.
    pub(crate) const REASONS: [&'static str; 11] = [
        "timeout",
        "connect",
        "unauthorized",
        "rate_limited",
        "server_error",
        "client_error",
        "decode",
        "too_large",
        "transport",
        "deadline",
        "incomplete_scan",
    ];

    /// Low-cardinality reason for error metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Timeout { .. } => "timeout",
            ApiError::Connect { .. } => "connect",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Status { code, .. } if *code >= 500 => "server_error",
            ApiError::Status { .. } => "client_error",
            ApiError::Decode { .. } => "decode",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::Transport { .. } => "transport",
            ApiError::Deadline { .. } => "deadline",
            ApiError::IncompleteScan { .. } => "incomplete_scan",
        }
    }

    /// Worth trying again soon: the network or the server had a moment.
    /// Not 401/403 (no retry storm on a bad token), not 429 (the client
    /// waits for `Retry-After` instead), not 4xx or undecodable answers.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Connect { .. } | ApiError::Transport { .. } => {
                true
            }
            ApiError::Status { code, .. } => *code >= 500,
            _ => false,
        }
    }

    /// When a `GET /jobs/{id}` fails this way, the trouble is that job's
    /// (an error status such as 500, 403 or 410, or an answer that is not a
    /// job), not the API's: the other look-ups can go on. A refused token
    /// (401), rate limiting, a gateway that cannot reach the API (502, 503,
    /// 504), timeouts and lost connections are the API's.
    pub(crate) fn is_about_one_job(&self) -> bool {
        match self {
            ApiError::Status { code, .. } => !matches!(code, 502..=504),
            ApiError::Decode { .. } | ApiError::TooLarge { .. } => true,
            ApiError::Unauthorized { code, .. } => *code == 403,
            _ => false,
        }
    }
}

/// Which jobs a `GET /jobs` listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListFilter {
    /// Jobs created within `[from_date, to_date]` (`from_date`/`to_date`).
    Created {
        from_date: UnixMillis,
        to_date: UnixMillis,
    },
    /// Every job not in a terminal status, whatever its age
    /// (`exclude_states=finished,error,manually_cancelled`, no dates).
    Live,
}

/// The terminal statuses, as `exclude_states` for [`ListFilter::Live`].
pub const TERMINAL_STATES: &str = "finished,error,manually_cancelled";

/// One `GET /jobs` page request. Whether it is a minimal listing is not
/// said here: [`ApiClient::list_jobs`] asks for whole jobs and
/// [`ApiClient::list_minimal`] for a minimal listing, each with the parser
/// for its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPageQuery {
    pub from: usize,
    pub limit: u32,
    pub filter: ListFilter,
}

/// How hard the client tries, and how gently.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientPolicy {
    /// Limit on one HTTP request, connect to last byte.
    pub timeout: Duration,
    /// Answers larger than this are refused.
    pub max_body: u64,
    /// Retries of a transient failure (5xx, timeout, connection error).
    pub max_retries: u32,
    /// First retry delay; it doubles, with full jitter, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Requests per second at most, with bursts of as many.
    pub max_requests_per_second: u32,
    /// Wait after a 429 that carries no usable `Retry-After`.
    pub rate_limit_default_wait: Duration,
    /// The longest wait a 429 can impose, whatever its `Retry-After` says:
    /// the header is outside data, and an hour-long or year-9999 answer
    /// must not silence the account until a restart.
    pub max_rate_limit_wait: Duration,
    /// Ask for gzip-compressed answers (`Accept-Encoding: gzip`). `max_body`
    /// bounds the answer both as sent and once decompressed.
    pub gzip: bool,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            max_body: 64 << 20,
            max_retries: 2,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_requests_per_second: 10,
            rate_limit_default_wait: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(600),
            gzip: true,
        }
    }
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: Secret,
    policy: ClientPolicy,
    limiter: DefaultDirectRateLimiter,
    /// No request before this instant (set by a 429).
    not_before: Mutex<Option<tokio::time::Instant>>,
    observer: Arc<dyn RequestObserver>,
}

/// A client for one account. Cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
    /// The `tags` filter of every job listing (comma-separated), if the
    /// account is one team's tagged jobs rather than all of them.
    tags: Option<Arc<str>>,
    /// A self-hosted server rather than the Cloud: its listing, read once
    /// a poll, answers the poll's pages and look-ups.
    server: Option<Arc<ServerSide>>,
}

/// What a client of a self-hosted server keeps.
struct ServerSide {
    options: ServerOptions,
    tags: Vec<String>,
    /// The listing read for the poll under way; let go when it is done, so
    /// that between polls only the tracker holds the jobs.
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    /// The template names of the last listing (whole jobs only), kept for
    /// the names read after the poll.
    names: Mutex<Arc<Vec<TemplateName>>>,
    /// Whole jobs are read: the breakdown wants templates, or the server's
    /// projection route does not work (see [`ApiClient::read_listing`]).
    whole: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.inner.base)
            .field("token", &self.inner.token)
            .field("server", &self.server.as_ref().map(|s| &s.options))
            .finish()
    }
}

impl ApiClient {
    pub fn new(
        base: &str,
        token: Secret,
        policy: ClientPolicy,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, ApiError> {
        let timeout = policy.timeout;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("nexrender-exporter/", env!("CARGO_PKG_VERSION")))
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| ApiError::Transport {
                endpoint: "client",
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        let rps = NonZeroU32::new(policy.max_requests_per_second).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: base.trim_end_matches('/').to_owned(),
                token,
                limiter: RateLimiter::direct(Quota::per_second(rps)),
                policy,
                not_before: Mutex::new(None),
                observer,
            }),
            tags: None,
            server: None,
        })
    }

    /// This client, reading a self-hosted server (`@nexrender/server`, API
    /// v1) at the base URL rather than the Cloud API: its secret goes in
    /// the `nexrender-secret` header (none when empty), `tags` filters its
    /// jobs on this side, and every poll reads its whole job list once.
    pub fn for_server(mut self, options: ServerOptions, tags: &[String]) -> Self {
        self.tags = None;
        self.server = Some(Arc::new(ServerSide {
            tags: tags.to_vec(),
            snapshot: Mutex::new(None),
            names: Mutex::default(),
            whole: std::sync::atomic::AtomicBool::new(options.whole_jobs),
            options,
        }));
        self
    }

    /// The stale jobs of the listing the poll under way read (a self-hosted
    /// server's), by status.
    pub(crate) fn stale_jobs(
        &self,
    ) -> Option<std::collections::BTreeMap<crate::status::JobStatus, u64>> {
        let side = self.server.as_ref()?;
        let held = side.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().map(|s| s.stale.clone())
    }

    /// Lets go of a self-hosted server's listing once the poll is done.
    pub(crate) fn release_listing(&self) {
        if let Some(side) = &self.server {
            let held = side
                .snapshot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if held.is_some() {
                drop(held);
                crate::alloc::give_back_free_memory();
            }
        }
    }

    /// The listing's body: the projection, or whole jobs. A server that
    /// keeps its jobs elsewhere than on disk (`NEXRENDER_DATABASE_PROVIDER`,
    /// Redis) answers 500 to every projection in 1.38.0 (its route maps the
    /// storage's promise, not its jobs), while whole jobs work: after a 500
    /// there, whole jobs are read from then on (said once in the log).
    async fn read_listing(&self, side: &ServerSide) -> Result<Fetched, ApiError> {
        use std::sync::atomic::Ordering;
        let ep = Endpoint::ListJobs;
        let url = |path: &str| format!("{}{path}", self.inner.base);
        if side.whole.load(Ordering::Relaxed) {
            return self.fetch(ep, &url(super::server::WHOLE_JOBS)).await;
        }
        match self.fetch(ep, &url(super::server::PROJECTION)).await {
            Err(ApiError::Status { code: 500, .. }) => {
                let whole = self.fetch(ep, &url(super::server::WHOLE_JOBS)).await?;
                side.whole.store(true, Ordering::Relaxed);
                tracing::warn!(
                    url = %self.inner.base,
                    "the server answers 500 to GET /api/v1/jobs/status (a server keeping its jobs in Redis does) but whole jobs work: reading GET /api/v1/jobs from now on, a bigger answer"
                );
                Ok(whole)
            }
            other => other,
        }
    }

    /// Reading template names costs no request: a self-hosted server's are
    /// the file names of its jobs' sources, in the listing already read.
    pub(crate) fn template_names_are_free(&self) -> bool {
        self.server.is_some()
    }

    /// The self-hosted server's listing for a poll's page `q`: read afresh
    /// at the poll's first page (the first of the listing of jobs not
    /// ended), or when none was read yet; else the one read.
    async fn server_listing(
        &self,
        side: &ServerSide,
        q: Option<&ListPageQuery>,
    ) -> Result<Arc<Snapshot>, ApiError> {
        let fresh = q.is_some_and(super::server::starts_a_poll);
        if !fresh {
            let held = side
                .snapshot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(held) = held {
                return Ok(held);
            }
        }
        let ep = Endpoint::ListJobs;
        let Fetched {
            bytes,
            code,
            started,
            server_time,
        } = self.read_listing(side).await?;
        // Tens of MB of JSON at a big server: read on a blocking thread, so
        // the runtime's workers go on serving scrapes meanwhile.
        let (tags, stale_after) = (side.tags.clone(), side.options.stale_after);
        let read = tokio::task::spawn_blocking(move || {
            let mut page = parse_server_jobs(&bytes)?;
            drop(bytes);
            page.server_time = server_time;
            let now = server_time.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            });
            Ok(Snapshot::new(page, &tags, stale_after, now))
        })
        .await
        .unwrap_or_else(|e| {
            Err(super::job::DecodeError::new(format!(
                "reading the listing stopped: {e}"
            )))
        });
        let observer = &self.inner.observer;
        let snapshot = match read {
            Ok(snapshot) => {
                observer.request_done(ep, &code, started.elapsed());
                Arc::new(snapshot)
            }
            Err(e) => {
                observer.request_done(ep, "decode", started.elapsed());
                return Err(ApiError::Decode {
                    endpoint: ep.label(),
                    detail: e.to_string(),
                });
            }
        };
        if side.options.whole_jobs {
            *side.names.lock().unwrap_or_else(|p| p.into_inner()) =
                Arc::new(snapshot.template_names());
        }
        *side.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// This client, listing only jobs with any of `tags` (the API's `tags`
    /// filter); none: every job.
    pub fn with_tags(mut self, tags: &[String]) -> Self {
        self.tags = (!tags.is_empty()).then(|| tags.join(",").into());
        self
    }

    /// When a 429 allows the next request, if one is pending.
    pub(crate) fn blocked_for(&self) -> Option<Duration> {
        let nb = *self
            .inner
            .not_before
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        nb.and_then(|t| t.checked_duration_since(tokio::time::Instant::now()))
    }

    /// Takes over a pending `Retry-After` wait from the client this one
    /// replaces (a reload with a new client policy), so that a reload does
    /// not send requests the API asked not to get yet.
    pub(crate) fn inherit_wait(&self, from: &ApiClient) {
        let theirs = *from
            .inner
            .not_before
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut ours = self
            .inner
            .not_before
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *ours = (*ours).max(theirs);
    }

    /// Waits for the API's `Retry-After` and for a place under the rate limit.
    async fn wait_turn(&self) {
        if let Some(d) = self.blocked_for() {
            tokio::time::sleep(d).await;
        }
        self.inner.limiter.until_ready().await;
    }

    /// One logical request: retried on transient failures with exponential
    /// backoff and jitter; a 429 blocks the whole account until its
    /// `Retry-After` has passed and fails this request.
    async fn fetch(&self, ep: Endpoint, url: &str) -> Result<Fetched, ApiError> {
        let p = &self.inner.policy;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(p.backoff)
            .with_max_delay(p.max_backoff)
            .with_max_times(p.max_retries as usize)
            .with_jitter()
            .build();
        loop {
            self.wait_turn().await;
            match self.fetch_once(ep, url).await {
                Err(ApiError::RateLimited {
                    endpoint,
                    retry_after,
                }) => {
                    let wait = retry_after
                        .unwrap_or(p.rate_limit_default_wait)
                        .min(p.max_rate_limit_wait);
                    // Checked even after the clamp: a huge configured maximum
                    // must not overflow the clock either.
                    let now = tokio::time::Instant::now();
                    let until = now
                        .checked_add(wait)
                        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
                        .unwrap_or(now);
                    let mut nb = self
                        .inner
                        .not_before
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    *nb = Some(nb.map_or(until, |t| t.max(until)));
                    return Err(ApiError::RateLimited {
                        endpoint,
                        retry_after: Some(wait),
                    });
                }
                Err(e) if e.is_transient() => match delays.next() {
                    Some(d) => {
                        tracing::debug!(endpoint = ep.label(), error = %e, retry_in = ?d, "retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    pub(crate) fn list_url(&self, q: &ListPageQuery, minimal: bool) -> String {
        let filter = match q.filter {
            ListFilter::Created { from_date, to_date } => format!(
                "from_date={}&to_date={}",
                format_millis(from_date),
                format_millis(to_date)
            ),
            ListFilter::Live => format!("exclude_states={TERMINAL_STATES}"),
        };
        // Tags are checked against the API's pattern when the configuration
        // loads (letters, digits, `-`, `_`): nothing to escape.
        let tags = self
            .tags
            .as_deref()
            .map_or(String::new(), |t| format!("&tags={t}"));
        format!(
            "{}/jobs?minimal={}&sort=oldest_first&from={}&limit={}&{filter}{tags}",
            self.inner.base, minimal, q.from, q.limit,
        )
    }

    /// `GET /templates`: every template's id and display name.
    pub(crate) async fn list_templates(&self) -> Result<Vec<TemplateName>, ApiError> {
        if let Some(side) = &self.server {
            // The server has no template list: the names are the file
            // names of the sources its jobs render, in the last listing.
            let names = side.names.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Ok(names.to_vec());
        }
        let ep = Endpoint::ListTemplates;
        let body = self
            .fetch(ep, &format!("{}/templates", self.inner.base))
            .await?;
        let names = parse_templates(&body.bytes);
        self.report(ep, &body, names.is_ok());
        names.map_err(|e| ApiError::Decode {
            endpoint: ep.label(),
            detail: e.to_string(),
        })
    }

    /// `GET /jobs` for one page of whole jobs.
    pub async fn list_jobs(&self, q: &ListPageQuery) -> Result<Page, ApiError> {
        match &self.server {
            Some(side) => Ok(self.server_listing(side, Some(q)).await?.page(q)),
            None => self.list(q, false, parse_page).await,
        }
    }

    /// `GET /jobs?minimal=true` for one page, as the window scan reads it.
    pub async fn list_minimal(&self, q: &ListPageQuery) -> Result<Page<MinimalJob>, ApiError> {
        match &self.server {
            Some(side) => Ok(self.server_listing(side, Some(q)).await?.minimal_page(q)),
            None => self.list(q, true, parse_minimal_page).await,
        }
    }

    async fn list<J>(
        &self,
        q: &ListPageQuery,
        minimal: bool,
        parse: fn(&[u8]) -> Result<Page<J>, super::job::DecodeError>,
    ) -> Result<Page<J>, ApiError> {
        let ep = Endpoint::ListJobs;
        let body = self.fetch(ep, &self.list_url(q, minimal)).await?;
        let page = parse(&body.bytes).map(|mut page| {
            page.server_time = body.server_time;
            page
        });
        self.report(ep, &body, page.is_ok());
        page.map_err(|e| ApiError::Decode {
            endpoint: ep.label(),
            detail: e.to_string(),
        })
    }

    /// `GET /jobs/{id}`; `None` when the API says the job does not exist:
    /// 404, or 410 (deleted: some APIs say it so).
    pub async fn get_job(&self, id: &JobId) -> Result<Option<ApiJob>, ApiError> {
        if let Some(side) = &self.server {
            // As the poll's listing shows it: what a `GET /api/v1/jobs/{uid}`
            // would say a moment later, without a request per job.
            return Ok(self.server_listing(side, None).await?.job(id));
        }
        let ep = Endpoint::GetJob;
        // An id that is not a ULID may hold any character (`/`, `?`, `..`):
        // it goes as one path segment, percent-encoded.
        let segment: String = form_urlencoded::byte_serialize(id.to_string().as_bytes())
            .collect::<String>()
            .replace('+', "%20")
            .replace('.', "%2E");
        let url = format!("{}/jobs/{}", self.inner.base, segment);
        let body = match self.fetch(ep, &url).await {
            Ok(b) => b,
            Err(ApiError::Status {
                code: 404 | 410, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let job = parse_job(&body.bytes);
        self.report(ep, &body, job.is_ok());
        job.map(Some).map_err(|e| ApiError::Decode {
            endpoint: ep.label(),
            detail: e.to_string(),
        })
    }

    /// Reports a 2xx call once its body is decoded: its status, or `decode`.
    fn report(&self, ep: Endpoint, body: &Fetched, decoded: bool) {
        let code = if decoded {
            body.code.as_str()
        } else {
            "decode"
        };
        self.inner
            .observer
            .request_done(ep, code, body.started.elapsed());
    }

    /// Sends a GET and reads the whole 2xx body, bounded in size. Reports
    /// the call to the observer, except a 2xx whose body will still be
    /// decoded: that is reported by the caller (as its code or `decode`).
    async fn fetch_once(&self, ep: Endpoint, url: &str) -> Result<Fetched, ApiError> {
        let inner = &self.inner;
        let started = Instant::now();
        let done = |code: &str| inner.observer.request_done(ep, code, started.elapsed());
        let mut req = match &self.server {
            None => inner.http.get(url).bearer_auth(inner.token.expose()),
            Some(_) if inner.token.is_empty() => inner.http.get(url),
            Some(_) => match reqwest::header::HeaderValue::from_str(inner.token.expose()) {
                Ok(mut secret) => {
                    secret.set_sensitive(true);
                    inner.http.get(url).header("nexrender-secret", secret)
                }
                // The configuration takes printable ASCII only; never here.
                Err(_) => inner.http.get(url),
            },
        };
        if inner.policy.gzip {
            req = req.header(ACCEPT_ENCODING, "gzip");
        }
        let resp = req.send().await.map_err(|e| {
            let err = transport_error(ep, &e, inner.policy.timeout);
            done(match &err {
                ApiError::Timeout { .. } => "timeout",
                ApiError::Connect { .. } => "connect",
                _ => "error",
            });
            err
        })?;
        let status = resp.status();
        let code = status.as_u16().to_string();
        if !status.is_success() {
            let retry_after = parse_retry_after(
                resp.headers(),
                std::time::SystemTime::now(),
                inner.policy.max_rate_limit_wait,
            );
            let text = read_limited(resp, 4096).await.unwrap_or_default();
            inner.observer.response_bytes(ep, text.len() as u64);
            done(&code);
            return Err(status_error(ep, status, retry_after, &text));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > inner.policy.max_body)
        {
            done("too_large");
            return Err(self.too_large(ep));
        }
        let server_time = server_time(resp.headers());
        let bytes = self.read_body(ep, resp, &done).await?;
        Ok(Fetched {
            bytes,
            code,
            started,
            server_time,
        })
    }

    /// Reads and decodes a 2xx body, bounded in size. A failure is
    /// reported through `done`, with its code.
    async fn read_body(
        &self,
        ep: Endpoint,
        resp: reqwest::Response,
        done: &impl Fn(&str),
    ) -> Result<Vec<u8>, ApiError> {
        let policy = &self.inner.policy;
        let encoding = Encoding::of(resp.headers());
        let bytes = match read_limited(resp, policy.max_body).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLarge) => {
                done("too_large");
                return Err(self.too_large(ep));
            }
            Err(ReadError::Transport(e)) => {
                let err = transport_error(ep, &e, policy.timeout);
                done(if matches!(err, ApiError::Timeout { .. }) {
                    "timeout"
                } else {
                    "error"
                });
                return Err(err);
            }
        };
        // The bytes the API sent, compressed or not: what it costs.
        self.inner.observer.response_bytes(ep, bytes.len() as u64);
        match encoding.decode(bytes, policy.max_body) {
            Ok(b) => Ok(b),
            Err(InflateError::TooLarge) => {
                done("too_large");
                Err(self.too_large(ep))
            }
            Err(InflateError::Invalid(detail)) => {
                done("decode");
                Err(ApiError::Decode {
                    endpoint: ep.label(),
                    detail,
                })
            }
        }
    }

    /// An answer larger than `poll.max_response_bytes`.
    fn too_large(&self, ep: Endpoint) -> ApiError {
        ApiError::TooLarge {
            endpoint: ep.label(),
            limit: self.inner.policy.max_body,
        }
    }
}

struct Fetched {
    bytes: Vec<u8>,
    code: String,
    started: Instant,
    /// The server's `Date` header.
    server_time: Option<UnixMillis>,
}

enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// How a 2xx body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, PartialEq)]
enum Encoding {
    Identity,
    Gzip,
    /// One the client never asks for.
    Other(String),
}

enum InflateError {
    TooLarge,
    Invalid(String),
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Self {
        match headers
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        {
            None => Encoding::Identity,
            Some(e) if e.is_empty() || e == "identity" => Encoding::Identity,
            Some(e) if e == "gzip" || e == "x-gzip" => Encoding::Gzip,
            Some(e) => Encoding::Other(e),
        }
    }

    /// The body as JSON bytes, at most `limit` of them once decompressed
    /// (a small gzip body can inflate a thousandfold).
    fn decode(&self, body: Vec<u8>, limit: u64) -> Result<Vec<u8>, InflateError> {
        match self {
            Encoding::Identity => Ok(body),
            Encoding::Gzip => {
                use std::io::Read;
                let mut out = Vec::with_capacity((body.len() * 8).min(limit as usize));
                flate2::read::GzDecoder::new(&body[..])
                    .take(limit + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| {
                        InflateError::Invalid(format!("the gzip answer does not inflate: {e}"))
                    })?;
                if out.len() as u64 > limit {
                    return Err(InflateError::TooLarge);
                }
                Ok(out)
            }
            Encoding::Other(e) => Err(InflateError::Invalid(format!(
                "the answer is encoded as '{e}', which was not asked for"
            ))),
        }
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn transport_error(ep: Endpoint, e: &reqwest::Error, timeout: Duration) -> ApiError {
    let endpoint = ep.label();
    // The URL in reqwest's message has no secret in it (the token travels
    // in a header), but keep only the error chain, not the URL.
    let mut detail = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        if !detail.is_empty() {
            detail.push_str(": ");
        }
        detail.push_str(&s.to_string());
        src = s.source();
    }
    if detail.is_empty() {
        detail = e.without_url_string();
    }
    if e.is_timeout() {
        ApiError::Timeout { endpoint, timeout }
    } else if e.is_connect() {
        ApiError::Connect { endpoint, detail }
    } else if e.is_body() || e.is_decode() {
        ApiError::Transport {
            endpoint,
            detail: format!("the answer broke off: {detail}"),
        }
    } else {
        ApiError::Transport { endpoint, detail }
    }
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut e = self.to_string();
        if let Some(u) = self.url() {
            e = e.replace(u.as_str(), "");
        }
        e
    }
}

fn status_error(
    ep: Endpoint,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ApiError {
    let endpoint = ep.label();
    let code = status.as_u16();
    match code {
        401 | 403 => ApiError::Unauthorized { endpoint, code },
        429 => ApiError::RateLimited {
            endpoint,
            retry_after,
        },
        _ => {
            // The API's error bodies are {"error": "..."}; keep it short.
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            let message: String = message.chars().take(200).collect();
            ApiError::Status {
                endpoint,
                code,
                message,
            }
        }
    }
}

/// Redirects are followed within the API's own origin only (scheme, host
/// and port), at most 10: a self-hosted server's secret travels in a header
/// of its own, which the HTTP client would carry to any host a redirect
/// names (it strips only `Authorization` and cookies). A redirect elsewhere
/// is answered as the 3xx it is.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if from.is_some_and(|o| o == attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The server's clock from its `Date` header (whole seconds), if it sent a
/// valid one.
fn server_time(headers: &HeaderMap) -> Option<UnixMillis> {
    let text = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let at = httpdate::parse_http_date(text).ok()?;
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`, at most
/// `max`. A date in the past is no wait; anything else (negative numbers,
/// fractions, garbage) is `None`, for the caller's default wait.
pub(crate) fn parse_retry_after(
    headers: &HeaderMap,
    now: std::time::SystemTime,
    max: Duration,
) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
        // More digits than u64 holds is still "very long": the maximum.
        v.parse::<u64>().map_or(max, Duration::from_secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::JobStatus;
    use reqwest::header::HeaderValue;

    const MAX: Duration = Duration::from_secs(600);

    struct Quiet;
    impl RequestObserver for Quiet {
        fn request_done(&self, _: Endpoint, _: &str, _: Duration) {}
    }

    fn client(addr: std::net::SocketAddr, policy: ClientPolicy) -> ApiClient {
        ApiClient::new(
            &format!("http://{addr}"),
            Secret::new("t"),
            policy,
            Arc::new(Quiet),
        )
        .unwrap()
    }

    fn gzip(body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).unwrap();
        gz.finish().unwrap()
    }

    /// A server answering every request with `body` under `Content-Encoding:
    /// encoding`, and recording whether the request asked for gzip.
    async fn encoded_server(
        body: Vec<u8>,
        encoding: &'static str,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<bool>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let addr = nexrender_simulator::testkit::fake_server(move |req| {
            let body = body.clone();
            let seen = seen.clone();
            async move {
                let gzip = req
                    .headers()
                    .get(ACCEPT_ENCODING)
                    .is_some_and(|v| v.as_bytes() == b"gzip");
                seen.lock().unwrap().push(gzip);
                let mut r = nexrender_simulator::testkit::ok(body);
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
                r
            }
        })
        .await;
        (addr, asked)
    }

    const PAGE: &[u8] = br#"[{"id":"01KDWWB6B8Q7N1ZJ0ME8ZC0Z4Y","status":"queued","stats":{"createdAt":"2026-01-01T00:00:00.000Z"}}]"#;

    fn first_page() -> ListPageQuery {
        ListPageQuery {
            from: 0,
            limit: 1000,
            filter: ListFilter::Live,
        }
    }

    /// A self-hosted server's listing, as of `Date: Sat, 05 Dec 2026
    /// 12:00:00 GMT` (hours away from any clock the test runs on): a job
    /// rendering whose worker last reported 2 hours before that, one that
    /// reported a minute before, one finished. Counts the requests and
    /// keeps the secrets they carried.
    async fn self_hosted(requests: Arc<Mutex<Vec<Option<String>>>>) -> std::net::SocketAddr {
        nexrender_simulator::testkit::fake_server(move |req| {
            let requests = requests.clone();
            async move {
                let secret = req.headers().get("nexrender-secret");
                let secret = secret.map(|v| v.to_str().unwrap_or_default().to_owned());
                requests.lock().unwrap().push(secret);
                let body = r#"[
                  {"uid":"dead","state":"render:dorender","createdAt":"2026-12-05T09:00:00.000Z","updatedAt":"2026-12-05T10:00:00.000Z","startedAt":"2026-12-05T09:30:00.000Z"},
                  {"uid":"alive","state":"render:dorender","createdAt":"2026-12-05T11:00:00.000Z","updatedAt":"2026-12-05T11:59:00.000Z","startedAt":"2026-12-05T11:10:00.000Z"},
                  {"uid":"done","state":"finished","createdAt":"2026-12-05T08:00:00.000Z","updatedAt":"2026-12-05T08:10:00.000Z","startedAt":"2026-12-05T08:01:00.000Z","finishedAt":"2026-12-05T08:09:30.250Z"}]"#;
                let mut r = nexrender_simulator::testkit::ok(body);
                r.headers_mut().insert(
                    reqwest::header::DATE,
                    HeaderValue::from_static("Sat, 05 Dec 2026 12:00:00 GMT"),
                );
                r
            }
        })
        .await
    }

    fn stale_after_an_hour() -> ServerOptions {
        ServerOptions {
            stale_after: Duration::from_secs(3600),
            whole_jobs: false,
        }
    }

    #[tokio::test]
    async fn a_self_hosted_poll_reads_the_listing_once_and_judges_staleness_by_its_date() {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let addr = self_hosted(requests.clone()).await;
        let api = client(addr, ClientPolicy::default()).for_server(stale_after_an_hour(), &[]);
        // A poll: the live listing's first page reads the listing...
        let live = api.list_minimal(&first_page()).await.unwrap();
        assert_eq!(live.jobs.len(), 2);
        assert_eq!(
            live.server_time,
            crate::timefmt::parse_millis("2026-12-05T12:00:00Z")
        );
        // ...and the window's pages and the look-ups are answered from it.
        let window = ListPageQuery {
            from: 0,
            limit: 2,
            filter: ListFilter::Created {
                from_date: 0,
                to_date: i64::MAX,
            },
        };
        let page = api.list_jobs(&window).await.unwrap();
        let ids: Vec<String> = page.jobs.iter().map(|j| j.id.to_string()).collect();
        assert_eq!(ids, ["done", "dead"], "oldest first, cut at the limit");
        let done = api.get_job(&JobId::parse("done")).await.unwrap().unwrap();
        assert_eq!(done.render_duration, Some(510.25));
        assert_eq!(api.get_job(&JobId::parse("gone")).await.unwrap(), None);
        assert_eq!(requests.lock().unwrap().len(), 1, "one request a poll");
        // Stale by the server's Date: the job whose worker went quiet two
        // hours before it, not the one a minute before (by the test's own
        // clock, both would be months or years off).
        let stale = api.stale_jobs().unwrap();
        assert_eq!(stale.get(&JobStatus::Rendering), Some(&1));
        assert_eq!(stale.len(), 1);
        // The poll is over: the listing goes, and the next poll reads anew.
        api.release_listing();
        assert!(api.stale_jobs().is_none());
        api.list_minimal(&first_page()).await.unwrap();
        let sent = requests.lock().unwrap().clone();
        assert_eq!(sent, [Some("t".to_owned()), Some("t".to_owned())]);
    }

    #[tokio::test]
    async fn a_server_whose_projection_fails_is_read_whole_from_then_on_and_no_secret_is_none() {
        // A server keeping its jobs in Redis: `/jobs/status` answers 500,
        // `/jobs` works. It runs without a secret: none is sent.
        let paths = Arc::new(Mutex::new(Vec::new()));
        let asked = paths.clone();
        let addr = nexrender_simulator::testkit::fake_server(move |req| {
            let secret = req.headers().contains_key("nexrender-secret");
            asked
                .lock()
                .unwrap()
                .push((req.uri().path().to_owned(), secret));
            async move {
                let mut r = nexrender_simulator::testkit::ok(
                    r#"[{"uid":"a","state":"queued","template":{"src":"file:///t/promo.aep"}}]"#,
                );
                if req.uri().path() == "/api/v1/jobs/status" {
                    *r.status_mut() = reqwest::StatusCode::INTERNAL_SERVER_ERROR;
                }
                r
            }
        })
        .await;
        let policy = ClientPolicy {
            max_retries: 0,
            ..ClientPolicy::default()
        };
        let api = ApiClient::new(
            &format!("http://{addr}"),
            Secret::new(""),
            policy,
            Arc::new(Quiet),
        )
        .unwrap()
        .for_server(stale_after_an_hour(), &[]);
        for _ in 0..2 {
            let live = api.list_minimal(&first_page()).await.unwrap();
            assert_eq!(live.jobs.len(), 1);
            api.release_listing();
        }
        let asked = paths.lock().unwrap().clone();
        let want = [
            ("/api/v1/jobs/status".to_owned(), false),
            ("/api/v1/jobs".to_owned(), false),
            ("/api/v1/jobs".to_owned(), false),
        ];
        assert_eq!(asked, want);
    }

    #[tokio::test]
    async fn a_servers_secret_never_follows_a_redirect_to_another_origin() {
        let elsewhere = Arc::new(Mutex::new(Vec::new()));
        let other = self_hosted(elsewhere.clone()).await;
        let target = format!("http://{other}/api/v1/jobs/status");
        let paths = Arc::new(Mutex::new(Vec::new()));
        let asked = paths.clone();
        let addr = nexrender_simulator::testkit::fake_server(move |req| {
            let target = target.clone();
            asked.lock().unwrap().push(req.uri().path().to_owned());
            async move {
                // Within the origin first, then away.
                let to = if req.uri().path() == "/api/v1/jobs/status" {
                    "/moved".to_owned()
                } else {
                    target
                };
                let mut r = nexrender_simulator::testkit::ok("");
                *r.status_mut() = reqwest::StatusCode::FOUND;
                r.headers_mut().insert(
                    reqwest::header::LOCATION,
                    HeaderValue::from_str(&to).unwrap(),
                );
                r
            }
        })
        .await;
        let api = client(addr, ClientPolicy::default()).for_server(stale_after_an_hour(), &[]);
        let err = api.list_minimal(&first_page()).await.unwrap_err();
        assert!(matches!(err, ApiError::Status { code: 302, .. }), "{err}");
        assert_eq!(
            *paths.lock().unwrap(),
            ["/api/v1/jobs/status", "/moved"],
            "the redirect within the origin is followed"
        );
        assert!(
            elsewhere.lock().unwrap().is_empty(),
            "the other origin got a request"
        );
        assert!(!format!("{api:?}").contains("\"t\""), "{api:?}");
    }

    #[tokio::test]
    async fn a_gzip_answer_is_asked_for_and_inflated() {
        let (addr, asked) = encoded_server(gzip(PAGE), "gzip").await;
        let page = client(addr, ClientPolicy::default())
            .list_jobs(&first_page())
            .await
            .unwrap();
        assert_eq!(page.jobs.len(), 1);
        assert_eq!(page.jobs[0].status.to_string(), "queued");
        assert_eq!(*asked.lock().unwrap(), [true]);
    }

    #[tokio::test]
    async fn with_gzip_off_no_compression_is_asked_for() {
        let (addr, asked) = encoded_server(PAGE.to_vec(), "identity").await;
        let policy = ClientPolicy {
            gzip: false,
            ..ClientPolicy::default()
        };
        let page = client(addr, policy).list_jobs(&first_page()).await.unwrap();
        assert_eq!(page.jobs.len(), 1);
        assert_eq!(*asked.lock().unwrap(), [false]);
    }

    #[tokio::test]
    async fn a_gzip_answer_that_inflates_past_the_cap_is_refused() {
        // 10 KiB of gzip inflating to 10 MiB: small on the wire, a bomb in memory.
        let bomb = gzip(&vec![b' '; 10 << 20]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let (addr, _) = encoded_server(bomb, "gzip").await;
        let policy = ClientPolicy {
            max_body: 1 << 20,
            ..ClientPolicy::default()
        };
        let err = client(addr, policy)
            .list_jobs(&first_page())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "too_large", "{err}");
    }

    #[tokio::test]
    async fn a_broken_gzip_answer_or_an_encoding_not_asked_for_is_a_decode_error() {
        let mut broken = gzip(PAGE);
        broken.truncate(broken.len() / 2);
        for (body, encoding) in [(broken, "gzip"), (PAGE.to_vec(), "br")] {
            let (addr, _) = encoded_server(body, encoding).await;
            let err = client(addr, ClientPolicy::default())
                .list_jobs(&first_page())
                .await
                .unwrap_err();
            assert_eq!(err.reason(), "decode", "{encoding}: {err}");
        }
    }

    #[tokio::test]
    async fn a_client_that_replaces_another_keeps_its_retry_after_wait() {
        // The API asks for a minute's pause; a reload brings a new client
        // policy (and a new client) meanwhile.
        let addr = nexrender_simulator::testkit::fake_server(|_| async {
            let mut r = nexrender_simulator::testkit::ok("");
            *r.status_mut() = reqwest::StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("60"));
            r
        })
        .await;
        let old = client(addr, ClientPolicy::default());
        let err = old.get_job(&JobId::Other("a".into())).await.unwrap_err();
        assert_eq!(err.reason(), "rate_limited");
        let wait = old.blocked_for().expect("a pause");
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        let new = client(
            addr,
            ClientPolicy {
                max_retries: 5,
                ..ClientPolicy::default()
            },
        );
        assert_eq!(new.blocked_for(), None);
        new.inherit_wait(&old);
        assert!(new
            .blocked_for()
            .is_some_and(|w| w > Duration::from_secs(50)));
    }

    fn retry_after(value: &'static str) -> Option<Duration> {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(value));
        parse_retry_after(&h, now, MAX)
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        assert_eq!(retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Thu, 01 Jan 2026 00:02:00 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after("0"), Some(Duration::ZERO));
    }

    #[test]
    fn a_retry_after_date_in_the_past_means_no_wait() {
        assert_eq!(
            retry_after("Wed, 31 Dec 2025 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn huge_retry_after_values_are_clamped_to_the_maximum() {
        assert_eq!(retry_after("18446744073709551615"), Some(MAX));
        assert_eq!(retry_after("99999999999999999999999999"), Some(MAX));
        assert_eq!(retry_after("601"), Some(MAX));
        assert_eq!(retry_after("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX));
    }

    #[test]
    fn garbage_and_negative_retry_after_values_are_ignored() {
        for v in ["soon", "-5", "1.5", "", "5s", "Thu, 99 Foo 2026"] {
            assert_eq!(retry_after(v), None, "{v:?}");
        }
        let now = std::time::UNIX_EPOCH;
        assert_eq!(parse_retry_after(&HeaderMap::new(), now, MAX), None);
    }

    #[test]
    fn error_bodies_become_short_messages() {
        let e = status_error(
            Endpoint::ListJobs,
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":"limit must be..."}"#,
        );
        assert_eq!(e.to_string(), "list_jobs: HTTP 400: limit must be...");
        assert_eq!(e.reason(), "client_error");
        let e = status_error(Endpoint::GetJob, StatusCode::BAD_GATEWAY, None, b"<html>");
        assert_eq!(e.to_string(), "get_job: HTTP 502: Bad Gateway");
        assert_eq!(
            status_error(Endpoint::GetJob, StatusCode::UNAUTHORIZED, None, b"").reason(),
            "unauthorized"
        );
    }
}
