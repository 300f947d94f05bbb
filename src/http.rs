//! The exporter's HTTP server: `/metrics` (or the configured path), `/`,
//! `/healthz` and `/readyz`. It serves bytes and knows nothing of Nexrender.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{Metrics, REVISION, VERSION};
use crate::poller::{AccountState, StatusBoard};
use crate::timefmt::format_millis;

pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub board: Arc<StatusBoard>,
    pub telemetry_path: String,
}

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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
        } = a;
        let outcome = match (&last_error, attempts) {
            (_, 0) => "waiting for the first poll".to_owned(),
            (None, _) => "ok".to_owned(),
            (Some(e), _) => format!("failed: {}", escape(e)),
        };
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
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Nexrender Exporter</title></head><body>\n\
         <h1>Nexrender Exporter</h1>\n<p>Version {VERSION} (revision {REVISION})</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/healthz\">Health</a></li><li><a href=\"/readyz\">Readiness</a></li></ul>\n\
         <h2>Accounts</h2>\n<table border=\"1\" cellpadding=\"4\">\n<tr><th>account</th><th>last poll</th><th>last attempt (UTC)</th><th>last success (UTC)</th></tr>\n{rows}</table>\n</body></html>\n"
    )
}

/// Answers one request.
pub fn route(state: &WebState, method: &Method, path: &str) -> Response<Full<Bytes>> {
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
        return reply(StatusCode::OK, TEXT_FORMAT, state.metrics.encode());
    }
    match path {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", landing(state)),
        "/healthz" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            if state.board.ready() {
                reply(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                let waiting: Vec<String> = state
                    .board
                    .snapshot()
                    .into_iter()
                    .filter(|a| a.attempts == 0)
                    .map(|a| a.name)
                    .collect();
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!(
                        "not ready: waiting for the first poll of {}\n",
                        waiting.join(", ")
                    ),
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

/// Serves until `stop` turns true, then lets requests in flight finish
/// (for at most `grace`).
pub async fn serve(
    listener: TcpListener,
    state: Arc<WebState>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
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
        let state = state.clone();
        let mut stop = stop.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req.method(), req.uri().path())) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
}
