//! Webhook delivery: a POST of the job when it reaches a terminal status,
//! retried with exponential backoff on a non-2xx answer or a failed
//! connection, as Nexrender does.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::model::Webhook;
use super::WebhookConfig;

/// One delivery attempt, for tests and the status page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub job_id: String,
    pub url: String,
    /// 1 for the first try; 0 for a delivery lost on purpose (`lose_one_in`).
    pub attempt: u32,
    /// The HTTP status, or `timeout` / `connect` / `error`.
    pub outcome: String,
    pub delivered: bool,
}

pub struct Outgoing {
    pub job_id: String,
    pub webhook: Webhook,
    pub payload: Vec<u8>,
}

const LOG_CAP: usize = 10_000;

#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Outgoing>,
    log: Arc<Mutex<Vec<Delivery>>>,
}

impl Dispatcher {
    /// Starts the delivery task on the current tokio runtime.
    pub fn spawn(cfg: WebhookConfig) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .unwrap_or_default();
        let task_log = log.clone();
        tokio::spawn(async move {
            let mut due = 0u64;
            while let Some(out) = rx.recv().await {
                due += 1;
                if cfg.lose_one_in > 0 && due % u64::from(cfg.lose_one_in) == 0 {
                    record(&task_log, &out, 0, "lost", false);
                    continue;
                }
                tokio::spawn(deliver(client.clone(), cfg.clone(), out, task_log.clone()));
            }
        });
        Self { tx, log }
    }

    pub fn send(&self, out: Outgoing) {
        let _ = self.tx.send(out);
    }

    pub fn log(&self) -> Vec<Delivery> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

async fn deliver(
    client: reqwest::Client,
    cfg: WebhookConfig,
    out: Outgoing,
    log: Arc<Mutex<Vec<Delivery>>>,
) {
    let method =
        reqwest::Method::from_bytes(out.webhook.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    if !cfg.delay.is_zero() {
        tokio::time::sleep(cfg.delay).await;
    }
    let mut copies = cfg.copies.max(1);
    let mut attempt = 0;
    while attempt <= cfg.retries {
        if attempt > 0 {
            tokio::time::sleep(cfg.backoff * 2u32.saturating_pow(attempt - 1)).await;
        }
        let mut req = client
            .request(method.clone(), &out.webhook.url)
            .header("content-type", "application/json")
            .body(out.payload.clone());
        for (k, v) in &out.webhook.headers {
            req = req.header(k, v);
        }
        let (outcome, delivered) = match req.send().await {
            Ok(r) => (r.status().as_u16().to_string(), r.status().is_success()),
            Err(e) if e.is_timeout() => ("timeout".to_owned(), false),
            Err(e) if e.is_connect() => ("connect".to_owned(), false),
            Err(_) => ("error".to_owned(), false),
        };
        record(&log, &out, attempt + 1, &outcome, delivered);
        if delivered {
            copies -= 1;
            if copies == 0 {
                return;
            }
            // The same delivery again, from the first try: a duplicate.
            attempt = 0;
            continue;
        }
        attempt += 1;
    }
}

fn record(
    log: &Mutex<Vec<Delivery>>,
    out: &Outgoing,
    attempt: u32,
    outcome: &str,
    delivered: bool,
) {
    if let Ok(mut l) = log.lock() {
        if l.len() >= LOG_CAP {
            l.remove(0);
        }
        l.push(Delivery {
            job_id: out.job_id.clone(),
            url: out.webhook.url.clone(),
            attempt,
            outcome: outcome.to_owned(),
            delivered,
        });
    }
}
