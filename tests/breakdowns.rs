//! Per-template, per-reason and per-tag numbers held against the simulated
//! farm's own truth, on one hand-moved clock: the real poller, client and
//! metrics against the simulator's HTTP API.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use nexrender_exporter::config::PollConfig;
use nexrender_exporter::config::{ErrorReason, MetricsConfig, TemplatesConfig};
use nexrender_simulator::model::tag_bit;
use nexrender_simulator::{Endpoint, Fault, FaultRule, LifecycleConfig, Schedule, SimulatorConfig};
use support::clock::{Rig, T0};
use support::{completed, ended_between, terminal_ids, up, value, TERMINAL};
use ulid::Ulid;

const MIN: i64 = 60_000;

/// Every sample of `metric` in exposition text, with its labels.
fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, v) = rest.rsplit_once("} ")?;
            let labels = labels
                .split("\",")
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some((labels, v.parse().ok()?))
        })
        .collect()
}

/// `(template_id, status) -> completions` of one account, zeros left out.
fn by_template(text: &str, account: &str) -> BTreeMap<(String, String), f64> {
    samples(text, "nexrender_template_jobs_completed_total")
        .into_iter()
        .filter(|(l, v)| l["account"] == account && *v > 0.0)
        .map(|(l, v)| ((l["template_id"].clone(), l["status"].clone()), v))
        .collect()
}

fn settings() -> PollConfig {
    PollConfig {
        interval: Duration::from_secs(30),
        window: Duration::from_secs(3600),
        timeout: Duration::from_secs(60),
        ..PollConfig::default()
    }
}

fn reasons() -> Vec<ErrorReason> {
    vec![
        ErrorReason {
            reason: "missing_font".into(),
            pattern: "(?i)missing font".into(),
        },
        ErrorReason {
            reason: "ae_crash".into(),
            pattern: "(?i)after effects crashed".into(),
        },
    ]
}

/// The demo's farm (named templates that differ), from `seed`.
fn farm(seed: u64) -> SimulatorConfig {
    SimulatorConfig {
        lifecycle: LifecycleConfig::lively(),
        seed,
        ..SimulatorConfig::default()
    }
}

fn breakdowns(max_per_account: usize, expire_after: Duration) -> MetricsConfig {
    MetricsConfig {
        templates: TemplatesConfig {
            enabled: true,
            max_per_account,
            expire_after,
            names_refresh: Duration::from_secs(3600),
        },
        error_reasons: reasons(),
        ..MetricsConfig::default()
    }
}

/// What the farm did to the jobs that ended since `before`: per (template
/// id or `none`, status), the completions; per template id, the sum of
/// render durations; per reason, the failures.
struct Truth {
    completions: BTreeMap<(String, String), f64>,
    render_sum: HashMap<String, f64>,
    reasons: BTreeMap<String, f64>,
}

fn truth(rig: &Rig, before: &BTreeMap<String, HashSet<Ulid>>, tag_mask: Option<u8>) -> Truth {
    let ended = ended_between(before, &terminal_ids(&rig.sim));
    rig.sim.sim.with_farm(|f| {
        let mut t = Truth {
            completions: BTreeMap::new(),
            render_sum: HashMap::new(),
            reasons: BTreeMap::new(),
        };
        for (status, ids) in &ended {
            for id in ids {
                let job = f.job(*id).unwrap();
                if tag_mask.is_some_and(|m| !job.has_tag(m)) {
                    continue;
                }
                let template = job
                    .template
                    .and_then(|i| f.template_id(i))
                    .unwrap_or("none")
                    .to_owned();
                *t.completions
                    .entry((template.clone(), status.to_string()))
                    .or_default() += 1.0;
                if let Some(d) = job.render_duration_seconds() {
                    *t.render_sum.entry(template).or_default() += d;
                }
                if *status == "error" {
                    let text = job.error.as_deref().unwrap_or("");
                    let reason = if text.to_lowercase().contains("missing font") {
                        "missing_font"
                    } else if text.to_lowercase().contains("after effects crashed") {
                        "ae_crash"
                    } else {
                        "other"
                    };
                    *t.reasons.entry(reason.into()).or_default() += 1.0;
                }
            }
        }
        t
    })
}

/// The demo's farm from `seed`, polled every 30 s by account `main` with
/// every breakdown on, `max_per_account` templates with series kept a day.
async fn rig(seed: u64, max_per_account: usize) -> Rig {
    Rig::start_with(
        farm(seed),
        settings(),
        breakdowns(max_per_account, Duration::from_secs(86_400)),
    )
    .await
}

/// Polls once at each of `steps` half-minutes after T0.
async fn poll_each_half_minute(r: &mut Rig, steps: std::ops::RangeInclusive<i64>) {
    for step in steps {
        r.clock.set(T0 + step * MIN / 2);
        r.poller.poll().await;
    }
}

#[tokio::test]
async fn per_template_completions_render_times_and_failure_reasons_equal_the_farms_truth() {
    let mut r = rig(7, 20).await;
    r.poller.poll().await;
    let before = terminal_ids(&r.sim);
    poll_each_half_minute(&mut r, 1..=40).await;
    let m = r.metrics();
    assert_eq!(up(&m), Some(1.0));
    let t = truth(&r, &before, None);
    assert_eq!(by_template(&m, "main"), t.completions);
    assert!(
        t.completions.len() > 15,
        "every template and status at work: {:?}",
        t.completions
    );
    // The per-template series add up to the account's.
    for status in TERMINAL {
        let sum: f64 = by_template(&m, "main")
            .iter()
            .filter(|((_, s), _)| s == status)
            .map(|(_, v)| v)
            .sum();
        assert_eq!(Some(sum), completed(&m, "main", status), "{status}");
    }
    // Each template is named by its display name, and renders as long as
    // the farm says.
    let names: HashMap<String, String> = r.sim.sim.with_farm(|f| {
        f.templates()
            .iter()
            .map(|t| (t.id.clone(), t.display_name.clone()))
            .collect()
    });
    let sums = samples(&m, "nexrender_template_render_duration_seconds_sum");
    assert!(!sums.is_empty());
    for (labels, sum) in sums {
        let id = &labels["template_id"];
        let want_name = names.get(id).map_or("none", String::as_str);
        assert_eq!(labels["template"], want_name);
        let want = t.render_sum.get(id).copied().unwrap_or(0.0);
        assert!(
            (sum - want).abs() < 1e-6 * want.max(1.0),
            "{id}: {sum} vs {want}"
        );
    }
    let reasons: BTreeMap<String, f64> = samples(&m, "nexrender_job_errors_total")
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(l, v)| (l["reason"].clone(), v))
        .collect();
    assert_eq!(reasons, t.reasons);
    assert!(
        t.reasons.get("missing_font").copied().unwrap_or(0.0) > 5.0,
        "{:?}",
        t.reasons
    );
    // News intro, the failing template, fails far more often than the rest.
    let news = names.iter().find(|(_, n)| *n == "News intro").unwrap().0;
    let ratio = |id: &str| {
        let of = |s: &str| {
            t.completions
                .get(&(id.into(), s.into()))
                .copied()
                .unwrap_or(0.0)
        };
        of("error") / (of("error") + of("finished"))
    };
    let logo = names.iter().find(|(_, n)| *n == "Logo sting").unwrap().0;
    assert!(
        ratio(news) > 3.0 * ratio(logo),
        "{} vs {}",
        ratio(news),
        ratio(logo)
    );
}

#[tokio::test]
async fn accounts_with_tags_count_exactly_their_tagged_jobs() {
    let mut r = Rig::start_with(farm(8), settings(), MetricsConfig::default()).await;
    let mut broadcast = r.poller("broadcast", &["broadcast"], settings());
    let mut social_or_preview = r.poller("social-or-preview", &["social", "preview"], settings());
    r.poller.poll().await;
    broadcast.poll().await;
    social_or_preview.poll().await;
    let before = terminal_ids(&r.sim);
    let requests_before = r.sim.sim.requests();
    for step in 1..=30 {
        r.clock.set(T0 + step * MIN / 2);
        r.poller.poll().await;
        broadcast.poll().await;
        social_or_preview.poll().await;
    }
    let m = r.metrics();
    for (account, mask) in [
        ("main", None),
        ("broadcast", Some(tag_bit("broadcast"))),
        (
            "social-or-preview",
            Some(tag_bit("social") | tag_bit("preview")),
        ),
    ] {
        let want: BTreeMap<String, f64> = truth(&r, &before, mask).completions.into_iter().fold(
            BTreeMap::new(),
            |mut by, ((_, status), n)| {
                *by.entry(status).or_default() += n;
                by
            },
        );
        for status in TERMINAL {
            let got = completed(&m, account, status).unwrap_or(-1.0);
            assert_eq!(
                got,
                want.get(status).copied().unwrap_or(0.0),
                "{account} {status}"
            );
        }
        assert_eq!(
            value(&m, &format!("nexrender_up{{account=\"{account}\"}}")),
            Some(1.0)
        );
    }
    // Each entry polls on its own: three accounts, three times the calls
    // of one (each poll lists its window and its live jobs, at least).
    let per_poll = (r.sim.sim.requests() - requests_before) as f64 / 90.0;
    assert!(per_poll >= 2.0, "{per_poll} requests per poll");
    let listed = samples(&m, "nexrender_exporter_api_requests_total");
    for account in ["main", "broadcast", "social-or-preview"] {
        let lists: f64 = listed
            .iter()
            .filter(|(l, _)| l["account"] == account && l["endpoint"] == "list_jobs")
            .map(|(_, v)| v)
            .sum();
        assert!(lists >= 62.0, "{account}: {lists} listings in 31 polls");
    }
}

#[tokio::test]
async fn the_budget_holds_under_ten_thousand_templates_without_flapping_and_quiet_ones_go_away() {
    let mut cfg = farm(9);
    cfg.lifecycle.templates = 10_000;
    cfg.lifecycle.templates_differ = false;
    cfg.lifecycle.arrivals_per_minute = 200.0;
    cfg.lifecycle.workers = 200;
    let expire = Duration::from_secs(600);
    let interval = 60_000;
    let settings = PollConfig {
        interval: Duration::from_millis(interval as u64),
        ..settings()
    };
    let mut r = Rig::start_with(cfg, settings, breakdowns(5, expire)).await;
    r.poller.poll().await;
    let before = terminal_ids(&r.sim);
    let own = |m: &str| -> BTreeSet<String> {
        samples(m, "nexrender_template_queue_wait_seconds_count")
            .into_iter()
            .map(|(l, _)| l["template_id"].clone())
            .filter(|id| id != "other" && id != "none")
            .collect()
    };
    let mut was: BTreeSet<String> = BTreeSet::new();
    let mut ever: BTreeSet<String> = BTreeSet::new();
    let mut removed = 0;
    for step in 1..=40 {
        let now = T0 + step * interval;
        r.clock.set(now);
        r.poller.poll().await;
        let m = r.metrics();
        assert_eq!(up(&m), Some(1.0));
        let ids = own(&m);
        assert!(ids.len() <= 5, "step {step}: {ids:?}");
        let template_ids: BTreeSet<String> = samples(&m, "nexrender_template_jobs_completed_total")
            .into_iter()
            .map(|(l, _)| l["template_id"].clone())
            .collect();
        assert!(
            template_ids.len() <= 7,
            "five, other and none: {template_ids:?}"
        );
        assert_eq!(
            value(
                &m,
                "nexrender_exporter_templates_with_own_series{account=\"main\"}"
            ),
            Some(ids.len() as f64)
        );
        // A template leaves only after expire_after with nothing of it
        // seen: no job of it started or ended since (give or take a poll).
        for gone in was.difference(&ids) {
            removed += 1;
            let last = r.sim.sim.with_farm(|f| {
                f.jobs()
                    .iter()
                    .filter(|j| j.template.and_then(|i| f.template_id(i)) == Some(gone.as_str()))
                    .flat_map(|j| [j.started_at, j.ended_at])
                    .flatten()
                    .max()
            });
            let horizon = now - expire.as_millis() as i64 + interval;
            assert!(
                last.is_none_or(|at| at < horizon),
                "step {step}: {gone} left its series with a job at {last:?}, after {horizon}"
            );
        }
        if step <= 10 {
            // Before any template can have expired, the template series
            // add up to the account's numbers.
            let sum: f64 = samples(&m, "nexrender_template_jobs_completed_total")
                .into_iter()
                .map(|(_, v)| v)
                .sum();
            let total: f64 = TERMINAL
                .iter()
                .filter_map(|s| completed(&m, "main", s))
                .sum();
            assert_eq!(sum, total, "step {step}");
        }
        ever.extend(ids.iter().cloned());
        was = ids;
    }
    let ended: usize = ended_between(&before, &terminal_ids(&r.sim))
        .values()
        .map(HashSet::len)
        .sum();
    assert!(
        ended > 4000,
        "{ended} completions over thousands of templates"
    );
    assert!(
        removed > 0 && ever.len() > 5,
        "quiet templates gave their place: {ever:?}"
    );
    // Names come from GET /templates even for a list of 10,000.
    let m = r.metrics();
    assert!(value(
        &m,
        "nexrender_exporter_template_name_refreshes_total{account=\"main\",result=\"success\"}"
    )
    .is_some_and(|n| n >= 1.0));
    for (labels, _) in samples(&m, "nexrender_template_queue_wait_seconds_count") {
        if labels["template_id"] != "other" && labels["template_id"] != "none" {
            assert!(labels["template"].starts_with("Template "), "{labels:?}");
        }
    }
}

#[tokio::test]
async fn a_failing_template_list_fails_no_poll_and_a_rename_moves_the_series_to_the_new_name() {
    let mut r = rig(10, 20).await;
    r.sim.sim.add_fault(FaultRule::new(
        Endpoint::ListTemplates,
        Fault::Status { code: 500 },
        Schedule::Always,
    ));
    r.poller.poll().await;
    let before = terminal_ids(&r.sim);
    poll_each_half_minute(&mut r, 1..=10).await;
    let m = r.metrics();
    assert_eq!(up(&m), Some(1.0));
    assert_eq!(
        value(
            &m,
            "nexrender_exporter_poll_errors_total{account=\"main\",reason=\"server_error\"}"
        ),
        Some(0.0)
    );
    assert!(value(
        &m,
        "nexrender_exporter_template_name_refreshes_total{account=\"main\",result=\"failure\"}"
    )
    .is_some_and(|n| n >= 1.0));
    assert_eq!(
        by_template(&m, "main"),
        truth(&r, &before, None).completions
    );
    // Named by their ids meanwhile.
    for (labels, _) in samples(&m, "nexrender_template_jobs_completed_total") {
        assert_eq!(labels["template"], labels["template_id"]);
    }
    // The list answers again, with a template renamed: within the retry
    // time the series move to the names, the old ones are gone.
    r.sim.sim.clear_faults();
    let (promo, _) = r.sim.sim.with_farm(|f| {
        f.rename_template(0, "Promo 30s v2");
        (f.template_id(0).unwrap().to_owned(), ())
    });
    poll_each_half_minute(&mut r, 11..=14).await;
    let m = r.metrics();
    let promo_series: Vec<String> = samples(&m, "nexrender_template_jobs_completed_total")
        .into_iter()
        .filter(|(l, _)| l["template_id"] == promo)
        .map(|(l, _)| l["template"].clone())
        .collect();
    assert!(!promo_series.is_empty());
    assert!(
        promo_series.iter().all(|n| n == "Promo 30s v2"),
        "{promo_series:?}"
    );
    assert!(
        !m.contains(&format!("template=\"{promo}\"")),
        "the id-named series are gone"
    );
}

#[tokio::test]
async fn promtool_finds_nothing_to_fix_in_the_exposition_with_every_breakdown_on() {
    let Some(promtool) =
        support::services::tool_bin("promtool", "PROMTOOL_BIN", "REQUIRE_PROMETHEUS")
    else {
        return;
    };
    let mut r = rig(11, 3).await;
    r.poller.poll().await;
    poll_each_half_minute(&mut r, 1..=6).await;
    let m = r.metrics();
    assert!(m.contains("template=\"other\"") && m.contains("nexrender_job_errors_total"));
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
