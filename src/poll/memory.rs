//! The in-memory APIs (feature `testkit`), one place for every test,
//! fuzz target and benchmark, so they cannot drift apart:
//!
//! - [`MemoryApi`] answers from a list of jobs, as the real API cuts its
//!   pages: the poll's unit tests and the `polls` fuzz target.
//! - [`Recorded`] answers with response bodies recorded beforehand, decoded
//!   by the client's own parsers at each ask: the benchmarks, where
//!   decoding is part of what they measure.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;

use super::JobSource;
use crate::api::{
    parse_minimal_page, parse_page, ApiError, ApiJob, JobId, ListFilter, ListPageQuery, MinimalJob,
    Page,
};
use crate::clock::UnixMillis;

/// The value of a future over one of these APIs: their answers are in
/// memory, so it is ready at once (no runtime needed).
pub fn ready<F: Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    match std::pin::pin!(f).poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("answers from memory are ready at once"),
    }
}

/// The jobs, in the API's order (oldest first), and how it misbehaves.
#[derive(Debug, Default)]
pub struct MemoryApi {
    pub jobs: Vec<ApiJob>,
    /// Its `Date` header, if it sends one.
    pub date: Option<UnixMillis>,
    /// The listing of jobs not ended ignores `exclude_states`.
    pub unfiltered: bool,
    /// Every `GET /jobs/{id}` answers 500.
    pub look_ups_fail: bool,
    /// `GET /jobs/{id}` of these answers 500.
    pub failing: HashSet<JobId>,
    /// `GET /jobs/{id}` of these never answers (a timeout).
    pub timing_out: HashSet<JobId>,
    /// Jobs no parser can read: a full page holding one fails to decode,
    /// and so does its look-up; its minimal entry does not.
    pub poisoned: HashSet<JobId>,
    /// The filter of every page asked for, in order.
    pub listed: Mutex<Vec<ListFilter>>,
    /// Every job looked up, in order.
    pub looked_up: Mutex<Vec<JobId>>,
}

fn undecodable(endpoint: &'static str) -> ApiError {
    ApiError::Decode {
        endpoint,
        detail: "job list: invalid unicode code point".into(),
    }
}

impl MemoryApi {
    pub fn new(jobs: Vec<ApiJob>) -> Self {
        MemoryApi {
            jobs,
            ..MemoryApi::default()
        }
    }

    /// A page as the API cuts it ([`crate::api::server::cut_page`], the
    /// cut a self-hosted server's listing gets too).
    fn page(&self, q: &ListPageQuery) -> Page {
        if let Ok(mut listed) = self.listed.lock() {
            listed.push(q.filter);
        }
        let jobs = crate::api::server::cut_page(&self.jobs, q, self.unfiltered);
        Page {
            raw_len: jobs.len(),
            jobs,
            skipped: vec![],
            server_time: self.date,
        }
    }
}

impl JobSource for MemoryApi {
    fn list_jobs(&self, q: &ListPageQuery) -> impl Future<Output = Result<Page, ApiError>> + Send {
        let page = self.page(q);
        std::future::ready(if page.jobs.iter().any(|j| self.poisoned.contains(&j.id)) {
            Err(undecodable("list_jobs"))
        } else {
            Ok(page)
        })
    }

    fn list_minimal(
        &self,
        q: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<MinimalJob>, ApiError>> + Send {
        std::future::ready(Ok(self.page(q).minimal()))
    }

    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
        if let Ok(mut looked_up) = self.looked_up.lock() {
            looked_up.push(id.clone());
        }
        let answer = if self.timing_out.contains(id) {
            Err(ApiError::Timeout {
                endpoint: "get_job",
                timeout: std::time::Duration::from_secs(10),
            })
        } else if self.look_ups_fail || self.failing.contains(id) {
            Err(ApiError::Status {
                endpoint: "get_job",
                code: 500,
                message: "boom".into(),
            })
        } else if self.poisoned.contains(id) {
            Err(undecodable("get_job"))
        } else {
            Ok(self.jobs.iter().find(|j| j.id == *id).cloned())
        };
        std::future::ready(answer)
    }
}

/// A page asked for: minimal or full, its offset and its filter.
type PageKey = (bool, usize, ListFilter);

/// Answers recorded beforehand: page bodies as the API sent them, and
/// look-ups already decoded. The same poll asked again gets the same
/// answers, and decodes every page again as the client does.
#[derive(Debug, Default)]
pub struct Recorded {
    pages: HashMap<PageKey, Vec<u8>>,
    jobs: HashMap<JobId, Option<ApiJob>>,
    /// Its `Date` header on every page, if it sends one.
    pub date: Option<UnixMillis>,
}

impl Recorded {
    /// The answer to `q` (full jobs, or the minimal listing).
    pub fn add_page(&mut self, q: &ListPageQuery, minimal: bool, body: Vec<u8>) {
        self.pages.insert((minimal, q.from, q.filter), body);
    }

    /// The answer to `GET /jobs/{id}` (`None`: 404).
    pub fn add_job(&mut self, id: JobId, job: Option<ApiJob>) {
        self.jobs.insert(id, job);
    }

    /// Every page recorded: minimal or not, its filter, its body.
    pub fn pages(&self) -> impl Iterator<Item = (bool, ListFilter, &[u8])> {
        self.pages
            .iter()
            .map(|((minimal, _, filter), body)| (*minimal, *filter, body.as_slice()))
    }

    /// How many look-ups were recorded.
    pub fn lookups(&self) -> usize {
        self.jobs.len()
    }

    /// The recorded body of `q`; a page never recorded is an empty one.
    fn body(&self, q: &ListPageQuery, minimal: bool) -> &[u8] {
        self.pages
            .get(&(minimal, q.from, q.filter))
            .map_or(b"[]".as_slice(), Vec::as_slice)
    }

    /// Decodes a page as the API client does.
    fn decode<J>(
        &self,
        body: &[u8],
        parse: fn(&[u8]) -> Result<Page<J>, crate::api::job::DecodeError>,
    ) -> Result<Page<J>, ApiError> {
        parse(body)
            .map(|page| Page {
                server_time: self.date,
                ..page
            })
            .map_err(|e| ApiError::Decode {
                endpoint: "list_jobs",
                detail: e.to_string(),
            })
    }
}

impl JobSource for Recorded {
    fn list_jobs(&self, q: &ListPageQuery) -> impl Future<Output = Result<Page, ApiError>> + Send {
        std::future::ready(self.decode(self.body(q, false), parse_page))
    }

    fn list_minimal(
        &self,
        q: &ListPageQuery,
    ) -> impl Future<Output = Result<Page<MinimalJob>, ApiError>> + Send {
        std::future::ready(self.decode(self.body(q, true), parse_minimal_page))
    }

    fn get_job(&self, id: &JobId) -> impl Future<Output = Result<Option<ApiJob>, ApiError>> + Send {
        std::future::ready(Ok(self.jobs.get(id).cloned().flatten()))
    }
}
