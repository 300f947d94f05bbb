//! The webhook receiver: the API's terminal-state deliveries, one path per
//! account (`/webhooks/<account>`), on a listener of its own so it can face
//! the API without exposing `/metrics`.
//!
//! A delivery is checked here (the account's shared secret, its size, that
//! it is a job in a terminal status) and put in the account's bounded
//! queue; the account's poller takes it from there into the one tracker
//! that counts each completion once (see [`crate::tracker::JobTracker::deliver`]).
//! The answer goes out as soon as the delivery is queued. A full queue is
//! 503, so the API retries: an accepted delivery is never dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use crate::api::{parse_delivery, ApiJob};
use crate::config::WebhookConfig;
use crate::http::{text, Handler};
use crate::metrics::{AccountMetrics, Metrics};
use crate::secret::Secret;

/// Path prefix of the per-account endpoints.
pub const PATH_PREFIX: &str = "/webhooks/";
const UNAUTHORIZED: &str =
    "unauthorized: missing or wrong webhook secret header, or no such account\n";

/// Time a client has to send the whole body once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one account's deliveries go.
#[derive(Clone)]
pub struct Route {
    pub secret: Secret,
    /// Secrets before a rotation, still accepted.
    pub previous: Vec<Secret>,
    pub queue: mpsc::Sender<ApiJob>,
    /// The account's metrics, where its deliveries are counted.
    pub metrics: Arc<AccountMetrics>,
}

/// The receiver: routes by account, shared with the code that starts and
/// stops pollers (which keeps the routes current).
pub struct Receiver {
    routes: RwLock<HashMap<String, Route>>,
    /// Accounts of the configuration that another shard polls: their
    /// deliveries belong to that shard's receiver.
    other_shards: RwLock<HashSet<String>>,
    metrics: Arc<Metrics>,
    secret_header: HeaderName,
    max_body: usize,
}

impl Receiver {
    /// `cfg.secret_header` was checked when the configuration loaded.
    pub fn new(cfg: &WebhookConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let secret_header = HeaderName::from_bytes(cfg.secret_header.as_bytes())
            .unwrap_or(HeaderName::from_static("x-nexrender-webhook-secret"));
        metrics.webhook_listener_started();
        Arc::new(Self {
            routes: RwLock::new(HashMap::new()),
            other_shards: RwLock::new(HashSet::new()),
            metrics,
            secret_header,
            max_body: cfg.max_body_bytes,
        })
    }

    /// Takes deliveries for `account` from now, into `route.queue`.
    pub fn set_route(&self, account: &str, route: Route) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        route.metrics.takes_webhooks(true);
        routes.insert(account.to_owned(), route);
    }

    /// Takes no more deliveries for `account` (404 from now).
    pub fn remove_route(&self, account: &str) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(route) = routes.remove(account) {
            route.metrics.takes_webhooks(false);
        }
    }

    /// The accounts another shard polls (from the configuration, kept
    /// current on reload).
    pub fn set_other_shards(&self, accounts: &[String]) {
        let mut others = self.other_shards.write().unwrap_or_else(|p| p.into_inner());
        *others = accounts.iter().cloned().collect();
    }

    fn route(&self, account: &str) -> Option<Route> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.get(account).cloned()
    }

    /// Refuses a delivery for a known account: counted (unless the account
    /// stopped taking deliveries meanwhile: its series are gone, and stay
    /// gone), answered.
    fn refuse(
        &self,
        account: &str,
        result: &'static str,
        status: StatusCode,
        why: &str,
    ) -> Response<Full<Bytes>> {
        if let Some(route) = self.route(account) {
            route.metrics.webhook_refused(result);
        }
        tracing::debug!(account, result, why, "webhook delivery refused");
        text(status, format!("{why}\n"))
    }

    async fn receive(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let account = match self.account(&req) {
            Ok(account) => account,
            Err(answer) => return *answer,
        };
        let route = match self.authenticate(&req, &account) {
            Ok(route) => route,
            Err(answer) => return *answer,
        };
        let body = match self.read_body(&account, req).await {
            Ok(body) => body,
            Err(answer) => return *answer,
        };
        self.queue(&account, &route, &body)
    }

    /// The account a delivery is for, by its path; or the answer to a
    /// request that is not a delivery.
    fn account(&self, req: &Request<Incoming>) -> Result<String, Box<Response<Full<Bytes>>>> {
        if req.method() != Method::POST && req.method() != Method::PUT {
            self.metrics.webhook_unroutable("method_not_allowed");
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: POST or PUT\n",
            );
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("POST, PUT"));
            return Err(Box::new(r));
        }
        req.uri()
            .path()
            .strip_prefix(PATH_PREFIX)
            .map(|a| {
                percent_encoding::percent_decode_str(a)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .ok_or_else(|| {
                self.metrics.webhook_unroutable("not_found");
                Box::new(text(
                    StatusCode::NOT_FOUND,
                    "not found: deliveries go to /webhooks/<account>\n",
                ))
            })
    }

    /// The route of `account`, if it takes deliveries and the request
    /// holds its secret; or the answer to a request that does not.
    fn authenticate(
        &self,
        req: &Request<Incoming>,
        account: &str,
    ) -> Result<Route, Box<Response<Full<Bytes>>>> {
        let given = req
            .headers()
            .get(&self.secret_header)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let Some(route) = self.route(account) else {
            return Err(Box::new(self.unroutable(account)));
        };
        // SHA-256 of both, compared in constant time: neither the secret nor
        // its length shows in the timing. Neither value is ever logged.
        // Every secret is compared, the previous ones too, whichever matches.
        let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
        let given = digest(given);
        let same = |s: &Secret| given.as_ref().ct_eq(digest(s.expose().as_bytes()).as_ref());
        let current = same(&route.secret);
        let previous = route
            .previous
            .iter()
            .fold(subtle::Choice::from(0), |any, s| any | same(s));
        if bool::from(previous & !current) {
            route.metrics.webhook_previous_secret();
        }
        if !bool::from(current | previous) {
            return Err(Box::new(self.refuse(
                account,
                "unauthorized",
                StatusCode::UNAUTHORIZED,
                UNAUTHORIZED.trim_end(),
            )));
        }
        Ok(route)
    }

    /// Answers a delivery for an account that takes none here.
    fn unroutable(&self, account: &str) -> Response<Full<Bytes>> {
        let elsewhere = self
            .other_shards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(account);
        if elsewhere {
            // Not counted as a completion here, and not silently lost:
            // the API retries, and the counter says deliveries are
            // reaching the wrong replica.
            self.metrics.webhook_unroutable("other_shard");
            tracing::warn!(account = %account, "webhook delivery for an account another shard polls: send it to that shard's receiver");
        } else {
            self.metrics.webhook_unroutable("not_found");
        }
        // The same answer as a wrong secret: the receiver does not say
        // which account names take deliveries.
        text(StatusCode::UNAUTHORIZED, UNAUTHORIZED)
    }

    /// The whole body, at most `max_body` bytes, sent within
    /// [`BODY_TIMEOUT`]; or the answer to one that is not.
    async fn read_body(
        &self,
        account: &str,
        req: Request<Incoming>,
    ) -> Result<Bytes, Box<Response<Full<Bytes>>>> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(Box::new(self.too_large(account)));
        }
        let body = Limited::new(req.into_body(), self.max_body);
        let refused = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
            Ok(Ok(b)) => return Ok(b.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => self.too_large(account),
            Ok(Err(_)) => self.refuse(
                account,
                "bad_request",
                StatusCode::BAD_REQUEST,
                "bad request: the body could not be read",
            ),
            Err(_) => self.refuse(
                account,
                "bad_request",
                StatusCode::REQUEST_TIMEOUT,
                "request timeout: the body took too long",
            ),
        };
        Err(Box::new(refused))
    }

    /// Queues a delivery that is a job in a terminal status for the
    /// account's poller.
    fn queue(&self, account: &str, route: &Route, body: &[u8]) -> Response<Full<Bytes>> {
        let job = match parse_delivery(body) {
            Ok(job) => job,
            Err(e) => {
                return self.refuse(
                    account,
                    "bad_request",
                    StatusCode::BAD_REQUEST,
                    &format!("bad request: not a Nexrender job ({e}); set the job's webhook with custom: false"),
                )
            }
        };
        if !job.status.is_terminal() {
            // Nothing to retry: a 2xx so the API does not send it again.
            return self.refuse(
                account,
                "not_terminal",
                StatusCode::OK,
                "ignored: not a terminal status",
            );
        }
        match route.queue.try_send(job) {
            Ok(()) => text(StatusCode::ACCEPTED, "accepted\n"),
            Err(_) => {
                // Full, or the account's poller is being replaced: the API
                // retries, and polling catches what it gives up on.
                let mut r = self.refuse(
                    account,
                    "queue_full",
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy: the delivery queue is full; retry",
                );
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }

    fn too_large(&self, account: &str) -> Response<Full<Bytes>> {
        self.refuse(
            account,
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "payload too large: at most {} bytes (webhook.max_body_bytes)",
                self.max_body
            ),
        )
    }
}

impl Handler for Receiver {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.receive(req).await
    }
}
