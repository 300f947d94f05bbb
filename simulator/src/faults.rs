//! Fault injection: which request gets which failure, on what schedule.
//! Deciding is a plain function of the request's endpoint and the time; the
//! server carries the decision out.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Every endpoint.
    #[default]
    Any,
    /// `GET /jobs`
    ListJobs,
    /// `GET /jobs/{id}`
    GetJob,
    /// `POST /jobs`
    CreateJob,
    /// `GET /templates`
    ListTemplates,
}

impl Endpoint {
    fn covers(self, e: Endpoint) -> bool {
        self == Endpoint::Any || self == e
    }
}

/// `Retry-After` as a number of seconds, as an HTTP date that far ahead, or
/// as a raw header value (a far date, a negative number, garbage), to see
/// how clients cope with what no well-behaved API sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    Seconds(u64),
    HttpDate(u64),
    Raw(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// 429 with a `Retry-After` header.
    RateLimited { retry_after: RetryAfter },
    /// Any status code (500, 502, 503...) with a JSON error body.
    Status { code: u16 },
    /// A normal answer, late.
    Slow {
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// No answer at all: the connection stays open and silent, then closes.
    Hang,
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose body stops halfway (the connection closes early).
    Truncated,
    /// The connection is closed without an answer.
    ConnectionReset,
    /// 401 with no body, as for a revoked token.
    Unauthorized,
    /// A 200 with this JSON body, whatever was asked: jobs without ids,
    /// impossible timestamps, the same page for every offset.
    Answer { body: serde_json::Value },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    #[default]
    Always,
    /// From `after` the simulator's start for `lasting` (forever if absent).
    Window {
        #[serde(with = "humantime_serde")]
        after: Duration,
        #[serde(default, with = "humantime_serde")]
        lasting: Option<Duration>,
    },
    /// The next `count` matching requests, then never again.
    Next { count: u32 },
    /// Every `n`th matching request (the nth, the 2nth, ...).
    EveryNth { n: u32 },
    /// Each matching request with probability `p` (seeded, so repeatable).
    Probability { p: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Only `GET /jobs/{id}` of this job: one job whose look-up fails while
    /// every other answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Only `GET /jobs` pages from this offset (`from`) on: a listing whose
    /// first page is fine and whose later pages are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_at_least: Option<usize>,
    pub fault: Fault,
    #[serde(default)]
    pub when: Schedule,
}

/// What a fault rule can tell about a request: the request it may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub endpoint: Endpoint,
    /// The job of `GET /jobs/{id}`.
    pub id: Option<&'a str>,
    /// The `from` of `GET /jobs`, when its query parsed.
    pub from: Option<usize>,
}

impl From<Endpoint> for Target<'_> {
    fn from(endpoint: Endpoint) -> Self {
        Target {
            endpoint,
            id: None,
            from: None,
        }
    }
}

impl FaultRule {
    pub fn new(endpoint: Endpoint, fault: Fault, when: Schedule) -> Self {
        Self {
            endpoint,
            id: None,
            from_at_least: None,
            fault,
            when,
        }
    }

    /// This rule, for `GET /jobs/{id}` of job `id` only.
    pub fn for_job(self, id: impl Into<String>) -> Self {
        Self {
            endpoint: Endpoint::GetJob,
            id: Some(id.into()),
            ..self
        }
    }

    /// This rule, for `GET /jobs` pages from offset `from` on only.
    pub fn from_offset(self, from: usize) -> Self {
        Self {
            endpoint: Endpoint::ListJobs,
            from_at_least: Some(from),
            ..self
        }
    }

    fn covers(&self, request: &Target) -> bool {
        self.endpoint.covers(request.endpoint)
            && self
                .id
                .as_deref()
                .is_none_or(|id| request.endpoint == Endpoint::GetJob && request.id == Some(id))
            && self.from_at_least.is_none_or(|least| {
                request.endpoint == Endpoint::ListJobs && request.from.is_some_and(|f| f >= least)
            })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_some() && !self.endpoint.covers(Endpoint::GetJob) {
            return Err("id: only get_job requests have a job id".into());
        }
        if self.from_at_least.is_some() && !self.endpoint.covers(Endpoint::ListJobs) {
            return Err("from_at_least: only list_jobs requests have an offset".into());
        }
        match (&self.fault, &self.when) {
            (Fault::Status { code }, _) if !(100..=599).contains(code) => Err(format!(
                "fault.code: expected an HTTP status 100..599, got {code}"
            )),
            (_, Schedule::EveryNth { n: 0 }) => Err("when.n: must be at least 1".into()),
            (_, Schedule::Probability { p }) if !(0.0..=1.0).contains(p) => Err(format!(
                "when.p: expected a probability between 0 and 1, got {p}"
            )),
            _ => Ok(()),
        }
    }
}

struct Armed {
    rule: FaultRule,
    matched: u64,
}

/// The installed rules and their counters.
pub struct FaultPlan {
    epoch: UnixMillis,
    rules: Vec<Armed>,
    rng: ChaCha8Rng,
}

impl FaultPlan {
    /// `epoch` is the time window schedules count from.
    pub fn new(epoch: UnixMillis, seed: u64) -> Self {
        Self {
            epoch,
            rules: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xFA17),
        }
    }

    pub fn epoch(&self) -> UnixMillis {
        self.epoch
    }

    pub fn set(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules
            .into_iter()
            .map(|rule| Armed { rule, matched: 0 })
            .collect();
    }

    pub fn push(&mut self, rule: FaultRule) {
        self.rules.push(Armed { rule, matched: 0 });
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|a| a.rule.clone()).collect()
    }

    /// The fault for `request` at `now`, if any. The first active rule
    /// wins; every rule that covers the request counts it.
    pub fn decide(&mut self, request: &Target, now: UnixMillis) -> Option<Fault> {
        let since = now - self.epoch;
        let mut chosen = None;
        for a in &mut self.rules {
            if !a.rule.covers(request) {
                continue;
            }
            a.matched += 1;
            let active = match &a.rule.when {
                Schedule::Always => true,
                Schedule::Window { after, lasting } => {
                    // Saturating: a window of a thousand years is "forever",
                    // not an overflow.
                    let ms = |d: &Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                    let start = ms(after);
                    since >= start && lasting.is_none_or(|l| since < start.saturating_add(ms(&l)))
                }
                Schedule::Next { count } => a.matched <= u64::from(*count),
                Schedule::EveryNth { n } => a.matched % u64::from(*n) == 0,
                Schedule::Probability { p } => self.rng.gen_bool(*p),
            };
            if active && chosen.is_none() {
                chosen = Some(a.rule.fault.clone());
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(endpoint: Endpoint, when: Schedule) -> FaultRule {
        FaultRule::new(endpoint, Fault::Status { code: 503 }, when)
    }

    #[test]
    fn next_count_fails_that_many_requests_then_stops() {
        let mut p = FaultPlan::new(0, 1);
        p.push(rule(Endpoint::ListJobs, Schedule::Next { count: 2 }));
        let got: Vec<bool> = (0..4)
            .map(|_| p.decide(&Endpoint::ListJobs.into(), 0).is_some())
            .collect();
        assert_eq!(got, [true, true, false, false]);
        assert!(
            p.decide(&Endpoint::GetJob.into(), 0).is_none(),
            "other endpoints untouched"
        );
    }

    #[test]
    fn a_window_is_counted_from_the_epoch() {
        let mut p = FaultPlan::new(1_000_000, 1);
        p.push(rule(
            Endpoint::Any,
            Schedule::Window {
                after: Duration::from_secs(60),
                lasting: Some(Duration::from_secs(30)),
            },
        ));
        assert!(p.decide(&Endpoint::GetJob.into(), 1_059_999).is_none());
        assert!(p.decide(&Endpoint::GetJob.into(), 1_060_000).is_some());
        assert!(p.decide(&Endpoint::ListJobs.into(), 1_089_999).is_some());
        assert!(p.decide(&Endpoint::ListJobs.into(), 1_090_000).is_none());
    }

    #[test]
    fn every_nth_and_probability_are_repeatable() {
        let mut p = FaultPlan::new(0, 1);
        p.push(rule(Endpoint::Any, Schedule::EveryNth { n: 3 }));
        let got: Vec<bool> = (0..6)
            .map(|_| p.decide(&Endpoint::GetJob.into(), 0).is_some())
            .collect();
        assert_eq!(got, [false, false, true, false, false, true]);

        let run = || {
            let mut p = FaultPlan::new(0, 7);
            p.push(rule(Endpoint::Any, Schedule::Probability { p: 0.3 }));
            (0..1000)
                .filter(|_| p.decide(&Endpoint::GetJob.into(), 0).is_some())
                .count()
        };
        let n = run();
        assert_eq!(n, run());
        assert!((220..380).contains(&n), "{n}");
    }

    #[test]
    fn rules_parse_from_yaml_as_documented() {
        let rules: Vec<FaultRule> = serde_yaml_like(
            r#"[
              {"endpoint": "list_jobs", "fault": {"kind": "rate_limited", "retry_after": {"seconds": 5}}, "when": {"type": "next", "count": 1}},
              {"fault": {"kind": "slow", "delay": "2s"}, "when": {"type": "window", "after": "1m", "lasting": "30s"}},
              {"fault": {"kind": "unauthorized"}, "when": {"type": "window", "after": "10m"}}
            ]"#,
        );
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[1].fault,
            Fault::Slow {
                delay: Duration::from_secs(2)
            }
        );
        assert!(rules.iter().all(|r| r.validate().is_ok()));
        assert!(rule(Endpoint::Any, Schedule::EveryNth { n: 0 })
            .validate()
            .is_err());
    }

    #[test]
    fn a_rule_can_target_one_job_or_the_pages_after_the_first() {
        let mut p = FaultPlan::new(0, 1);
        let one = Fault::Status { code: 500 };
        p.push(FaultRule::new(Endpoint::Any, one.clone(), Schedule::Always).for_job("J1"));
        p.push(
            FaultRule::new(Endpoint::Any, Fault::Hang, Schedule::Next { count: 1 }).from_offset(40),
        );
        let get = |id| Target {
            endpoint: Endpoint::GetJob,
            id: Some(id),
            from: None,
        };
        let list = |from| Target {
            endpoint: Endpoint::ListJobs,
            id: None,
            from,
        };
        assert_eq!(p.decide(&get("J1"), 0), Some(one.clone()));
        assert_eq!(p.decide(&get("J2"), 0), None, "another job answers");
        assert_eq!(p.decide(&list(Some(0)), 0), None, "the first page answers");
        assert_eq!(p.decide(&list(None), 0), None, "no offset, no match");
        assert_eq!(
            p.decide(&list(Some(40)), 0),
            Some(Fault::Hang),
            "only matching requests count towards `next`"
        );
        assert_eq!(p.decide(&list(Some(90)), 0), None);

        let parsed: Vec<FaultRule> = serde_yaml_like(
            r#"[{"endpoint": "get_job", "id": "J1", "fault": {"kind": "status", "code": 500}},
                {"from_at_least": 1, "fault": {"kind": "answer", "body": []}}]"#,
        );
        assert_eq!(parsed[0].id.as_deref(), Some("J1"));
        assert_eq!(parsed[1].from_at_least, Some(1));
        assert!(parsed.iter().all(|r| r.validate().is_ok()));
        let mut wrong = parsed[0].clone();
        wrong.endpoint = Endpoint::ListJobs;
        assert!(wrong.validate().is_err(), "a listing has no job id");
    }

    fn serde_yaml_like(s: &str) -> Vec<FaultRule> {
        serde_json::from_str(s).unwrap()
    }
}
