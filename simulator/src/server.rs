//! The simulator's HTTP face: routing, bearer auth, faults, JSON answers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    RETRY_AFTER, VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use ulid::Ulid;

use super::faults::{Endpoint, Fault, FaultPlan, FaultRule, RetryAfter, Target};
use super::listing::{select, write_job, write_page, write_server_listing};
use super::model::{tag_bit, NewJob, Simulation, Webhook};
use super::query::ListQuery;
use super::webhook::{Delivery, Dispatcher, Outgoing};
use super::WebhookPayload;
use super::{DateBounds, SimulatorConfig};
use crate::clock::{OffsetClock, SharedClock};

/// A body that is either whole or cut short (the connection then closes).
pub enum SimBody {
    Full(Option<Bytes>),
    /// Sends its bytes, waits a moment (so they reach the client), then fails.
    Cut(Option<Bytes>, Pin<Box<tokio::time::Sleep>>),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            SimBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Cut(b, pause) => {
                if let Some(b) = b.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                match pause.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "truncated by fault injection",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Cut(..) => SizeHint::default(),
        }
    }
}

/// What the simulator answers; `Reset` closes the connection with no answer.
pub enum Reply {
    Answer(Response<SimBody>),
    Reset,
}

fn answer(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut r = Response::new(SimBody::Full(Some(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Reply::Answer(r)
}

fn error(status: StatusCode, message: &str) -> Reply {
    answer(status, json!({ "error": message }).to_string().into_bytes())
}

fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(SimBody::Full(None));
    *r.status_mut() = status;
    Reply::Answer(r)
}

enum Route {
    List,
    /// The self-hosted server's `GET /api/v1/jobs/status` (or, `whole`,
    /// `GET /api/v1/jobs`), for a demo of a self-hosted account.
    ServerListing {
        whole: bool,
    },
    ServerHealth,
    Templates,
    Get(String),
    Create,
    Status,
    NotFound,
    MethodNotAllowed,
}

fn route(method: &Method, path: &str) -> Route {
    if let Some(v1) = path.strip_prefix("/api/v1") {
        return match (method, v1.trim_end_matches('/')) {
            (&Method::GET, "/jobs/status") => Route::ServerListing { whole: false },
            (&Method::GET, "/jobs") => Route::ServerListing { whole: true },
            (&Method::GET, "/health") => Route::ServerHealth,
            _ => Route::NotFound,
        };
    }
    let path = path.strip_prefix("/api/v2").unwrap_or(path);
    let path = path.trim_end_matches('/');
    match (method, path) {
        (&Method::GET, "/_sim/status") => Route::Status,
        (&Method::GET, "/jobs") => Route::List,
        (&Method::GET, "/templates") => Route::Templates,
        (_, "/templates") => Route::MethodNotAllowed,
        (&Method::POST, "/jobs") => Route::Create,
        (_, "/jobs") => Route::MethodNotAllowed,
        (m, p) => match p.strip_prefix("/jobs/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                if m == Method::GET {
                    // The API's router decodes the segment (`%2F` is `/`).
                    let decoded = percent_encoding::percent_decode_str(id).decode_utf8();
                    Route::Get(decoded.map_or_else(|_| id.to_owned(), |d| d.into_owned()))
                } else {
                    Route::MethodNotAllowed
                }
            }
            _ => Route::NotFound,
        },
    }
}

struct State {
    sim: Simulation,
    faults: FaultPlan,
    requests: u64,
    /// Body bytes of the API's answers as sent, compressed when the client
    /// asked for gzip (not `/_sim/status`).
    response_bytes: u64,
}

/// The simulator shared by the HTTP server, the ticker and tests.
pub struct Simulator {
    state: Mutex<State>,
    clock: SharedClock,
    tokens: Vec<String>,
    bounds: DateBounds,
    hang_for: Duration,
    seed: u64,
    webhooks: Dispatcher,
    webhook_payload: WebhookPayload,
    date_header: bool,
    deleted_status: StatusCode,
}

/// A delivery as the vendor's docs show one: the end, not the whole job.
fn documented_payload(sim: &Simulation, job: &super::model::SimJob) -> Vec<u8> {
    let full: serde_json::Value =
        serde_json::from_slice(&write_job(sim, job, sim.now())).unwrap_or_default();
    let stats = &full["stats"];
    let mut kept = serde_json::Map::new();
    for key in ["finishedAt", "errorAt", "renderDuration"] {
        if let Some(v) = stats.get(key).filter(|v| !v.is_null()) {
            kept.insert(key.into(), v.clone());
        }
    }
    serde_json::to_vec(&serde_json::json!({
        "id": full["id"],
        "status": full["status"],
        "outputUrl": full["outputUrl"],
        "stats": kept,
    }))
    .unwrap_or_default()
}

impl Simulator {
    /// A simulator whose farm starts at the clock's now. Must be called
    /// inside a tokio runtime (webhooks are delivered by a task).
    pub fn new(cfg: &SimulatorConfig, clock: SharedClock) -> Arc<Self> {
        let clock: SharedClock = if cfg.clock_offset_seconds == 0 {
            clock
        } else {
            Arc::new(OffsetClock {
                inner: clock,
                offset_ms: cfg.clock_offset_seconds.saturating_mul(1000),
            })
        };
        let now = clock.now_millis();
        let mut sim = Simulation::new(cfg.lifecycle.clone(), cfg.seed, now);
        sim.set_retention(cfg.retention);
        sim.prefill(cfg.prefill.jobs, cfg.prefill.span);
        sim.set_farm_webhook(cfg.webhook.farm.clone());
        let mut faults = FaultPlan::new(now, cfg.seed);
        faults.set(cfg.faults.clone());
        Arc::new(Self {
            state: Mutex::new(State {
                sim,
                faults,
                requests: 0,
                response_bytes: 0,
            }),
            clock,
            tokens: cfg.tokens.clone(),
            bounds: cfg.date_bounds,
            hang_for: cfg.hang_for,
            seed: cfg.seed,
            webhooks: Dispatcher::spawn(cfg.webhook.clone()),
            webhook_payload: cfg.webhook.payload,
            date_header: cfg.date_header,
            deleted_status: StatusCode::from_u16(cfg.deleted_status).unwrap_or(StatusCode::GONE),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the simulator down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the farm up to now and hands out webhooks that became due.
    fn advance(&self, st: &mut State) {
        st.sim.advance_to(self.clock.now_millis());
        let due = st.sim.take_webhooks_due();
        for id in due {
            let Some(job) = st.sim.job(id) else { continue };
            let Some(hook) = job.webhook.as_deref() else {
                continue;
            };
            let payload = if hook.custom {
                serde_json::to_vec(&hook.data).unwrap_or_default()
            } else {
                let body = match self.webhook_payload {
                    WebhookPayload::Full => write_job(&st.sim, job, st.sim.now()),
                    WebhookPayload::Documented => documented_payload(&st.sim, job),
                };
                match &hook.data {
                    Some(data) => {
                        let mut v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        v["data"] = data.clone();
                        serde_json::to_vec(&v).unwrap_or(body)
                    }
                    None => body,
                }
            };
            self.webhooks.send(Outgoing {
                job_id: id.to_string(),
                webhook: hook.clone(),
                payload,
            });
        }
    }

    /// Moves the farm to the clock's now (the ticker calls this).
    pub fn tick(&self) {
        let mut st = self.lock();
        self.advance(&mut st);
    }

    /// Runs `f` on the farm, brought up to now first. For tests and scripts.
    pub fn with_farm<R>(&self, f: impl FnOnce(&mut Simulation) -> R) -> R {
        let mut st = self.lock();
        self.advance(&mut st);
        let r = f(&mut st.sim);
        self.advance(&mut st);
        r
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.lock().faults.set(rules);
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.lock().faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.set(Vec::new());
    }

    pub fn webhook_log(&self) -> Vec<Delivery> {
        self.webhooks.log()
    }

    /// Requests answered (or failed) so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Body bytes of the API answers served so far.
    pub fn response_bytes(&self) -> u64 {
        self.lock().response_bytes
    }

    fn authorized(&self, header: Option<&HeaderValue>) -> bool {
        let Some(token) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return false;
        };
        self.tokens.iter().any(|t| t == token)
    }

    /// Answers one request. Faults come first (they stand for the network
    /// and the gateway in front of the API), then auth, then the endpoint.
    pub async fn respond(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        auth: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let route = route(method, path);
        let endpoint = match &route {
            Route::List | Route::ServerListing { .. } => Endpoint::ListJobs,
            Route::ServerHealth => return answer(StatusCode::OK, b"ok".to_vec()),
            Route::Templates => Endpoint::ListTemplates,
            Route::Get(_) => Endpoint::GetJob,
            Route::Create => Endpoint::CreateJob,
            Route::Status => return self.status(),
            Route::NotFound => return error(StatusCode::NOT_FOUND, "Not found"),
            Route::MethodNotAllowed => {
                return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
            }
        };
        let request = Target {
            endpoint,
            id: match &route {
                Route::Get(id) => Some(id.as_str()),
                _ => None,
            },
            from: match &route {
                Route::List => ListQuery::parse(query).ok().map(|q| q.from),
                _ => None,
            },
        };
        let fault = {
            let mut st = self.lock();
            st.requests += 1;
            let now = self.clock.now_millis();
            st.faults.decide(&request, now)
        };
        match fault {
            None => self.serve(route, query, auth, body),
            Some(fault) => self.faulted(fault, route, query, auth, body).await,
        }
    }

    /// Answers a request as `fault` has it: in place of the API, or (slow)
    /// as the API would, late.
    async fn faulted(
        &self,
        fault: Fault,
        route: Route,
        query: &str,
        auth: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        match fault {
            Fault::Slow { delay } => {
                tokio::time::sleep(delay).await;
                self.serve(route, query, auth, body)
            }
            Fault::Hang => {
                tokio::time::sleep(self.hang_for).await;
                Reply::Reset
            }
            Fault::ConnectionReset => Reply::Reset,
            Fault::Unauthorized => empty(StatusCode::UNAUTHORIZED),
            Fault::Status { code } => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                error(status, status.canonical_reason().unwrap_or("Server error"))
            }
            Fault::RateLimited { retry_after } => self.rate_limited(retry_after),
            Fault::Answer { body } => answer(
                StatusCode::OK,
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
            Fault::MalformedJson => answer(
                StatusCode::OK,
                br#"[{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","status":"queued",}"#.to_vec(),
            ),
            Fault::Truncated => self.truncated(route, query, auth, body),
        }
    }

    /// A 429 with its `Retry-After`.
    fn rate_limited(&self, retry_after: RetryAfter) -> Reply {
        let value = match retry_after {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::HttpDate(s) => {
                // httpdate formats years up to 9999 only.
                let at = (self.clock.now_millis().max(0) as u64 / 1000)
                    .saturating_add(s)
                    .min(253_402_300_799);
                httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(at))
            }
            RetryAfter::Raw(v) => v,
        };
        let mut reply = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        if let (Reply::Answer(r), Ok(v)) = (&mut reply, HeaderValue::from_str(&value)) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
        reply
    }

    /// The usual answer, its body cut in half (its `Content-Length` whole).
    fn truncated(
        &self,
        route: Route,
        query: &str,
        auth: Option<&HeaderValue>,
        body: &[u8],
    ) -> Reply {
        let whole = match self.serve(route, query, auth, body) {
            Reply::Answer(r) => r,
            Reply::Reset => return Reply::Reset,
        };
        let (parts, b) = whole.into_parts();
        let SimBody::Full(Some(bytes)) = b else {
            return Reply::Reset;
        };
        let mut r = Response::from_parts(
            parts,
            SimBody::Cut(
                Some(bytes.slice(..bytes.len() / 2)),
                Box::pin(tokio::time::sleep(Duration::from_millis(50))),
            ),
        );
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Reply::Answer(r)
    }

    fn serve(&self, route: Route, query: &str, auth: Option<&HeaderValue>, body: &[u8]) -> Reply {
        if let Route::ServerListing { whole } = route {
            return self.server_listing(auth, whole);
        }
        if !self.authorized(auth) {
            return empty(StatusCode::UNAUTHORIZED);
        }
        match route {
            Route::List => self.list(query),
            Route::Templates => self.templates(),
            Route::Get(id) => self.get(&id),
            Route::Create => self.create(body),
            _ => error(StatusCode::NOT_FOUND, "Not found"),
        }
    }

    /// A self-hosted server's listing: its secret (any of the tokens) in
    /// `nexrender-secret`, else 403 with the server's own text.
    fn server_listing(&self, secret: Option<&HeaderValue>, whole: bool) -> Reply {
        let given = secret.and_then(|h| h.to_str().ok());
        if !given.is_some_and(|g| self.tokens.iter().any(|t| t == g)) {
            let text = "Wrong or no authentication secret provided. Please check the \"nexrender-secret\" header.";
            let mut reply = answer(StatusCode::FORBIDDEN, text.as_bytes().to_vec());
            if let Reply::Answer(r) = &mut reply {
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            return reply;
        }
        let mut st = self.lock();
        self.advance(&mut st);
        let now = st.sim.now();
        answer(StatusCode::OK, write_server_listing(&st.sim, now, whole))
    }

    fn list(&self, query: &str) -> Reply {
        let q = match ListQuery::parse(query) {
            Ok(q) => q,
            Err(e) => {
                let body = json!({
                    "error": e.message,
                    "details": [{ "field": e.field, "message": e.message }],
                });
                return answer(StatusCode::BAD_REQUEST, body.to_string().into_bytes());
            }
        };
        let mut st = self.lock();
        self.advance(&mut st);
        let seed = self.seed ^ st.requests;
        let positions = select(&st.sim, &q, self.bounds, seed);
        let now = st.sim.now();
        answer(
            StatusCode::OK,
            write_page(&st.sim, &positions, q.minimal, now),
        )
    }

    /// `GET /templates`: the catalogue, each as the v2 Template shows it.
    fn templates(&self) -> Reply {
        let st = self.lock();
        let created = crate::timefmt::format_millis(st.sim.now() - 30 * 86_400_000);
        let list: Vec<serde_json::Value> = st
            .sim
            .templates()
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "type": "aep",
                    "displayName": t.display_name,
                    "status": "uploaded",
                    "createdAt": created,
                    "updatedAt": created,
                    "compositions": ["main"],
                    "layers": ["headline", "footage"],
                    "error": null,
                })
            })
            .collect();
        answer(
            StatusCode::OK,
            serde_json::to_vec(&list).unwrap_or_default(),
        )
    }

    fn get(&self, id: &str) -> Reply {
        let mut st = self.lock();
        self.advance(&mut st);
        match st.sim.job_by_api_id(id) {
            Some(job) => answer(StatusCode::OK, write_job(&st.sim, job, st.sim.now())),
            None if st.sim.was_deleted(id) => {
                error(self.deleted_status, &format!("Job {id} was deleted"))
            }
            None => error(StatusCode::NOT_FOUND, &format!("Job {id} not found")),
        }
    }

    fn create(&self, body: &[u8]) -> Reply {
        let invalid = |field: &str, message: &str| {
            let body = json!({
                "error": "Validation failed",
                "details": [{ "field": field, "message": message }],
            });
            answer(StatusCode::BAD_REQUEST, body.to_string().into_bytes())
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "Request body must be a JSON object",
            );
        };
        let Some(template_id) = v["template"]["id"].as_str() else {
            return invalid("template.id", "is required");
        };
        if template_id.len() != 26
            || !template_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return invalid("template.id", "must match ^[A-Z0-9]{26}$");
        }
        let assets = match &v["assets"] {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(a) => a.clone(),
            _ => return invalid("assets", "must be an array"),
        };
        let children = assets.iter().filter(|a| a["type"] == "job").count() as u32;
        let webhook = match &v["webhook"] {
            serde_json::Value::Null => None,
            w => match serde_json::from_value::<Webhook>(w.clone()) {
                Ok(w) if ["GET", "POST", "PUT", "DELETE"].contains(&w.method.as_str()) => Some(w),
                Ok(_) => return invalid("webhook.method", "must be one of GET, POST, PUT, DELETE"),
                Err(_) => return invalid("webhook", "must be an object with a string url"),
            },
        };
        let tags = match &v["tags"] {
            serde_json::Value::Array(ts) => ts
                .iter()
                .filter_map(|t| t.as_str())
                .fold(0, |m, t| m | tag_bit(t)),
            _ => 0,
        };
        let mut st = self.lock();
        self.advance(&mut st);
        let Some(template) = st.sim.template_index(template_id) else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Template {template_id} not found"),
            );
        };
        let (id, kids) = st.sim.create_job(NewJob {
            template: Some(template),
            children,
            tags,
            total_assets: assets.len().min(u16::MAX as usize) as u16,
            webhook,
        });
        let out = |id: Ulid| format!("https://outputs.sim.nexrender.invalid/{id}/result.mp4");
        let status = st
            .sim
            .job(id)
            .map(|j| j.status.to_string())
            .unwrap_or_default();
        let mut resp = json!({ "id": id.to_string(), "status": status, "outputUrl": out(id) });
        if !kids.is_empty() {
            resp["children"] = kids
                .iter()
                .map(|k| json!({ "id": k.to_string(), "status": "queued", "outputUrl": out(*k) }))
                .collect();
        }
        answer(StatusCode::CREATED, resp.to_string().into_bytes())
    }

    fn status(&self) -> Reply {
        let mut st = self.lock();
        self.advance(&mut st);
        let body = json!({
            "now": crate::timefmt::format_millis(st.sim.now()),
            "jobs": st.sim.counts(),
            "total": st.sim.len(),
            "busy_workers": st.sim.busy_workers(),
            "workers": st.sim.config().workers,
            "templates": st.sim.templates(),
            "faults": st.faults.rules(),
            "requests": st.requests,
            "response_bytes": st.response_bytes,
        });
        answer(StatusCode::OK, body.to_string().into_bytes())
    }
}

/// Whether an `Accept-Encoding` header takes gzip (`gzip`, `x-gzip` or `*`,
/// without `q=0`).
pub fn accepts_gzip(header: Option<&HeaderValue>) -> bool {
    let Some(text) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    text.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        !refused
            && ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| coding.eq_ignore_ascii_case(c))
    })
}

/// Compresses a whole answer with gzip (zlib's default level, that of
/// the usual Node.js `compression` middleware), unless a fault has set its
/// length or cut it short.
fn gzip_answer(r: &mut Response<SimBody>) {
    r.headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if r.headers().contains_key(CONTENT_LENGTH) {
        return;
    }
    let SimBody::Full(Some(body)) = r.body() else {
        return;
    };
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    let compressed = std::io::Write::write_all(&mut gz, body).and_then(|()| gz.finish());
    if let Ok(compressed) = compressed {
        *r.body_mut() = SimBody::Full(Some(Bytes::from(compressed)));
        r.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
}

/// Bodies of `POST /jobs` larger than this are refused.
const MAX_REQUEST_BODY: usize = 1 << 20;

async fn handle(
    sim: Arc<Simulator>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, io::Error> {
    let (parts, body) = req.into_parts();
    let gzip = accepts_gzip(parts.headers.get(ACCEPT_ENCODING));
    let bytes = match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return match error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large") {
                Reply::Answer(r) => Ok(r),
                Reply::Reset => Err(io::ErrorKind::ConnectionReset.into()),
            }
        }
    };
    let mut reply = sim
        .respond(
            &parts.method,
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            if parts.uri.path().starts_with("/api/v1/") {
                parts.headers.get("nexrender-secret")
            } else {
                parts.headers.get(AUTHORIZATION)
            },
            &bytes,
        )
        .await;
    if let (Reply::Answer(r), true) = (&mut reply, gzip) {
        gzip_answer(r);
    }
    if let Reply::Answer(r) = &reply {
        if !parts.uri.path().ends_with("/_sim/status") {
            let len = match r.body() {
                SimBody::Full(b) | SimBody::Cut(b, _) => b.as_ref().map_or(0, |b| b.len()),
            };
            sim.lock().response_bytes += len as u64;
        }
    }
    match reply {
        Reply::Answer(mut r) => {
            // The API's own clock, not the machine's (hyper's default,
            // turned off where the connection is served).
            let now = sim.clock.now_millis().max(0) as u64;
            let date = std::time::UNIX_EPOCH + Duration::from_millis(now);
            if let (true, Ok(v)) = (
                sim.date_header,
                HeaderValue::from_str(&httpdate::fmt_http_date(date)),
            ) {
                r.headers_mut().insert(hyper::header::DATE, v);
            }
            Ok(r)
        }
        Reply::Reset => Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by fault injection",
        )),
    }
}

/// A simulator serving HTTP in the background. Dropping it stops it.
pub struct RunningSimulator {
    pub addr: SocketAddr,
    pub sim: Arc<Simulator>,
    shutdown: watch::Sender<bool>,
}

impl RunningSimulator {
    /// `http://addr`, where the API is served at the root.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://addr/api/v2`, the same API under the production prefix.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v2", self.addr)
    }

    /// The same farm as a self-hosted server's base URL (`/api/v1/...`).
    pub fn server_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a simulator on `listener` with its ticker.
pub fn start(
    cfg: &SimulatorConfig,
    clock: SharedClock,
    listener: TcpListener,
) -> io::Result<RunningSimulator> {
    let addr = listener.local_addr()?;
    let sim = Simulator::new(cfg, clock);
    let (tx, rx) = watch::channel(false);
    tokio::spawn(accept_loop(listener, sim.clone(), rx.clone()));
    tokio::spawn(tick_loop(sim.clone(), cfg.tick, rx));
    Ok(RunningSimulator {
        addr,
        sim,
        shutdown: tx,
    })
}

async fn tick_loop(sim: Arc<Simulator>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => sim.tick(),
            _ = stop.changed() => return,
        }
    }
}

async fn accept_loop(listener: TcpListener, sim: Arc<Simulator>, mut stop: watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = conn else {
            // Out of file descriptors and the like: back off briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let sim = sim.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(sim.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}
