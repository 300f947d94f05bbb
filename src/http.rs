//! The exporter's HTTP server: `/metrics` (or the configured path), `/`,
//! `/healthz` and `/readyz`. It serves bytes and knows nothing of Nexrender.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::board::{AccountState, StatusBoard};
use crate::clock::SharedClock;
use crate::config::{OldestJobsConfig, WebConfig};
use crate::metrics::{openmetrics, Metrics};
use crate::oldest_view::{self, escape};
use crate::stall::StallGuard;
use crate::timefmt::format_millis;
use crate::version::{REVISION, VERSION};
use crate::webconfig::{BasicAuth, TlsReloader};

pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
    pub telemetry_path: String,
    /// Basic auth users, from `--web.config.file`.
    pub auth: Option<BasicAuth>,
    /// `/healthz` and `/readyz` answered without credentials
    /// (`probes_without_auth` in `--web.config.file`).
    pub open_probes: bool,
    /// The oldest jobs' settings: how many are listed, where ids link to.
    pub oldest_jobs: OldestJobsConfig,
    /// For the ages of the oldest jobs.
    pub clock: SharedClock,
}

/// How much the server gives one client (`web.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLimits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to send its request headers, and the longest a
    /// kept-alive connection waits for its next request.
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed
    /// (a client that never reads its answer).
    pub idle_timeout: Duration,
}

impl From<&WebConfig> for ServerLimits {
    fn from(web: &WebConfig) -> Self {
        ServerLimits {
            max_connections: web.max_connections,
            header_timeout: web.header_timeout,
            idle_timeout: web.idle_timeout,
        }
    }
}

/// Time a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line and headers larger than this get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn landing(state: &WebState) -> String {
    let mut rows = String::new();
    for a in state.board.snapshot() {
        let AccountState {
            name,
            last_attempt,
            last_success,
            last_error,
            attempts,
            restarts,
            restarting,
            ..
        } = a;
        let mut outcome = match (&restarting, &last_error, attempts) {
            (Some(why), _, _) => format!("poller died ({}); restarting", escape(why)),
            (None, _, 0) => "waiting for the first poll".to_owned(),
            (None, None, _) => "ok".to_owned(),
            (None, Some(e), _) => format!("failed: {}", escape(e)),
        };
        if restarts > 0 && restarting.is_none() {
            outcome.push_str(&format!(" (poller restarted {restarts} time(s))"));
        }
        let t = |x: Option<i64>| x.map(format_millis).unwrap_or_else(|| "never".into());
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&name),
            outcome,
            t(last_attempt),
            t(last_success)
        ));
    }
    let path = escape(&state.telemetry_path);
    let oldest = oldest_view::html(
        &state.board.snapshot(),
        &state.oldest_jobs,
        state.clock.now_millis(),
    );
    let (shard, elsewhere) = state.board.shard();
    let shard = if shard.is_sharded() {
        format!(
            "<p>Shard {} of {} (numbered from 0): polls the {} account(s) below; {elsewhere} other account(s) of the configuration are polled by the other shards.</p>\n",
            shard.index,
            shard.total,
            state.board.snapshot().len()
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Nexrender Exporter</title></head><body>\n\
         <h1>Nexrender Exporter</h1>\n<p>Version {VERSION} (revision {REVISION})</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/healthz\">Health</a></li><li><a href=\"/readyz\">Readiness</a></li></ul>\n\
         {shard}<h2>Accounts</h2>\n<table border=\"1\" cellpadding=\"4\">\n<tr><th>account</th><th>last poll</th><th>last attempt (UTC)</th><th>last success (UTC)</th></tr>\n{rows}</table>\n{oldest}</body></html>\n"
    )
}

/// The highest weight a list header (`Accept`, `Accept-Encoding`) gives
/// any of `kinds` (any case): its `q`, 1 when it says none; 0 when none is
/// named (or each is refused with `q=0`).
fn preference(header: Option<&HeaderValue>, kinds: &[&str]) -> f32 {
    let Some(text) = header.and_then(|h| h.to_str().ok()) else {
        return 0.0;
    };
    text.split(',')
        .filter_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let kind = parts.next().unwrap_or("");
            if !kinds.iter().any(|k| kind.eq_ignore_ascii_case(k)) {
                return None;
            }
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(Some(1.0), |q| q.parse::<f32>().ok())?;
            Some(q.clamp(0.0, 1.0))
        })
        .fold(0.0, f32::max)
}

/// Whether an `Accept-Encoding` header takes gzip (`gzip`, `x-gzip` or `*`,
/// without `q=0`).
fn accepts_gzip(header: Option<&HeaderValue>) -> bool {
    preference(header, &["gzip", "x-gzip", "*"]) > 0.0
}

/// Whether an `Accept` header asks for OpenMetrics at least as much as for
/// the classic text (Prometheus's does, unless its `scrape_protocols` put
/// the text first).
fn wants_openmetrics(header: Option<&HeaderValue>) -> bool {
    let openmetrics = preference(header, &["application/openmetrics-text"]);
    openmetrics > 0.0 && openmetrics >= preference(header, &["text/plain"])
}

/// The exposition: OpenMetrics (with exemplars) when the scraper asks for
/// it, else the classic text; gzipped when the scraper takes it.
fn exposition(state: &WebState, gzip: bool, openmetrics: bool) -> Response<Full<Bytes>> {
    let (content_type, body) = match (openmetrics, gzip) {
        (true, _) => (
            openmetrics::CONTENT_TYPE,
            state.metrics.scrape_openmetrics(gzip),
        ),
        (false, true) => (TEXT_FORMAT, state.metrics.scrape_gzip()),
        (false, false) => (TEXT_FORMAT, state.metrics.scrape()),
    };
    let mut r = reply(StatusCode::OK, content_type, body);
    if gzip {
        r.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r.headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept-Encoding, Accept"));
    r
}

/// Answers one request.
pub fn route(
    state: &WebState,
    method: &Method,
    path: &str,
    accept_encoding: Option<&HeaderValue>,
    accept: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == state.telemetry_path {
        let openmetrics = wants_openmetrics(accept);
        return exposition(state, accepts_gzip(accept_encoding), openmetrics);
    }
    match path {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", landing(state)),
        oldest_view::PATH => reply(
            StatusCode::OK,
            "application/json",
            oldest_view::json(
                &state.board.snapshot(),
                &state.oldest_jobs,
                state.clock.now_millis(),
            ),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            if state.board.ready() {
                reply(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                let mut why = String::from("not ready:\n");
                for a in state.board.snapshot() {
                    if let Some(died) = &a.restarting {
                        why.push_str(&format!("{}: poller died ({died}); restarting\n", a.name));
                    } else if a.attempts == 0 {
                        why.push_str(&format!("{}: waiting for the first poll\n", a.name));
                    }
                }
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    why,
                )
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

/// What a listener answers with: `/metrics` and friends, or the webhook
/// receiver.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Full<Bytes>>> + Send;
}

impl Handler for WebState {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Full<Bytes>>> + Send {
        handle(self, req)
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

/// Answers one request, after basic auth when it is configured.
async fn handle(state: Arc<WebState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let open = state.open_probes && matches!(req.uri().path(), "/healthz" | "/readyz");
    if let Some(auth) = state.auth.as_ref().filter(|_| !open) {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        if !auth.check(header).await {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "unauthorized\n",
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"nexrender-exporter\""),
            );
            return r;
        }
    }
    route(
        &state,
        req.method(),
        req.uri().path(),
        req.headers().get(ACCEPT_ENCODING),
        req.headers().get(ACCEPT),
    )
}

async fn serve_io<I, H: Handler>(
    io: I,
    state: Arc<H>,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(state.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Serves until `stop` turns true, then lets requests in flight finish
/// (for at most `grace`). With `tls`, every connection is TLS, with the
/// certificate as it is on disk now. At most `limits.max_connections` are
/// served at once; slow clients are cut after `limits.header_timeout`
/// (headers) or `limits.idle_timeout` (no byte moved, plain or TLS).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    state: Arc<H>,
    tls: Option<Arc<TlsReloader>>,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Below TLS, so a stalled handshake or a stalled encrypted answer
        // counts the same as a plain one.
        let stream = StallGuard::new(stream, limits.idle_timeout);
        let state = state.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_io(stream, state, limits.header_timeout, stop).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_io(s, state, limits.header_timeout, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(&HeaderValue::from_static(
            prometheus
        ))));
        assert!(!wants_openmetrics(Some(&HeaderValue::from_static(
            "text/plain;version=0.0.4"
        ))));
        assert!(!wants_openmetrics(Some(&HeaderValue::from_static(
            "application/openmetrics-text;q=0"
        ))));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some(&HeaderValue::from_static("*/*"))));
        // Text first (a scrape_protocols that prefers it): the classic text.
        let text_first =
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5";
        assert!(!wants_openmetrics(Some(&HeaderValue::from_static(
            text_first
        ))));
    }
}
