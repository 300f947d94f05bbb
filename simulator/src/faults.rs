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
    pub fault: Fault,
    #[serde(default)]
    pub when: Schedule,
}

impl FaultRule {
    pub fn new(endpoint: Endpoint, fault: Fault, when: Schedule) -> Self {
        Self {
            endpoint,
            fault,
            when,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
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

    /// The fault for a request to `endpoint` at `now`, if any. The first
    /// active rule wins; every rule that covers the endpoint counts it.
    pub fn decide(&mut self, endpoint: Endpoint, now: UnixMillis) -> Option<Fault> {
        let since = now - self.epoch;
        let mut chosen = None;
        for a in &mut self.rules {
            if !a.rule.endpoint.covers(endpoint) {
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
            .map(|_| p.decide(Endpoint::ListJobs, 0).is_some())
            .collect();
        assert_eq!(got, [true, true, false, false]);
        assert!(
            p.decide(Endpoint::GetJob, 0).is_none(),
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
        assert!(p.decide(Endpoint::GetJob, 1_059_999).is_none());
        assert!(p.decide(Endpoint::GetJob, 1_060_000).is_some());
        assert!(p.decide(Endpoint::ListJobs, 1_089_999).is_some());
        assert!(p.decide(Endpoint::ListJobs, 1_090_000).is_none());
    }

    #[test]
    fn every_nth_and_probability_are_repeatable() {
        let mut p = FaultPlan::new(0, 1);
        p.push(rule(Endpoint::Any, Schedule::EveryNth { n: 3 }));
        let got: Vec<bool> = (0..6)
            .map(|_| p.decide(Endpoint::GetJob, 0).is_some())
            .collect();
        assert_eq!(got, [false, false, true, false, false, true]);

        let run = || {
            let mut p = FaultPlan::new(0, 7);
            p.push(rule(Endpoint::Any, Schedule::Probability { p: 0.3 }));
            (0..1000)
                .filter(|_| p.decide(Endpoint::GetJob, 0).is_some())
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

    fn serde_yaml_like(s: &str) -> Vec<FaultRule> {
        serde_json::from_str(s).unwrap()
    }
}
