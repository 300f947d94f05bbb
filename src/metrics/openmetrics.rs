//! The OpenMetrics text exposition (1.0.0) of the gathered families, with
//! exemplars: what `/metrics` answers a scraper that asks for
//! `application/openmetrics-text` (Prometheus does, and stores exemplars
//! with `--enable-feature=exemplar-storage`). The classic text format
//! stays the prometheus crate's own, byte for byte.
//!
//! Differences from the classic text that matter: a counter's family is
//! named without `_total` (its sample keeps it), values are written `+Inf`,
//! `-Inf`, `NaN`, the exposition ends with `# EOF`, and a histogram bucket
//! may carry an exemplar: `# {job_id="..."} value timestamp`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

/// The content type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// OpenMetrics allows at most this many UTF-8 characters in an exemplar's
/// label names and values together; a longer job id gets no exemplar.
const EXEMPLAR_LABEL_CHARS: usize = 128;

/// One observation to show beside its bucket: the job it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub job_id: Box<str>,
    pub value: f64,
    /// When it was observed (Unix milliseconds, the exporter's clock).
    pub at_ms: i64,
}

/// Where exemplars come from: the exemplar of bucket `bucket` (an index
/// into the histogram's buckets; their count is `+Inf`'s) of the series of
/// `family` with `labels`, if any.
pub trait ExemplarSource {
    fn exemplar(&self, family: &str, labels: &[LabelPair], bucket: usize) -> Option<Exemplar>;
}

fn number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn labels(out: &mut String, pairs: &[LabelPair], extra: Option<(&str, &str)>) {
    if pairs.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let all = pairs.iter().map(|p| (p.name(), p.value())).chain(extra);
    for (i, (name, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escaped(out, value);
        out.push('"');
    }
    out.push('}');
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    m: &Metric,
    extra: Option<(&str, &str)>,
    v: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    labels(out, m.get_label(), extra);
    out.push(' ');
    number(out, v);
}

fn exemplar(out: &mut String, e: &Exemplar) {
    if e.job_id.chars().count() + "job_id".len() > EXEMPLAR_LABEL_CHARS {
        return;
    }
    out.push_str(" # {job_id=\"");
    escaped(out, &e.job_id);
    out.push_str("\"} ");
    number(out, e.value);
    // Seconds, to the millisecond (f64 holds today's 13 digits exactly).
    let _ = write!(out, " {:.3}", e.at_ms as f64 / 1000.0);
}

fn histogram(out: &mut String, name: &str, m: &Metric, source: &dyn ExemplarSource) {
    let h = m.get_histogram();
    let buckets = h.get_bucket();
    let mut bound = String::new();
    let mut inf_seen = false;
    for (i, b) in buckets.iter().enumerate() {
        bound.clear();
        number(&mut bound, b.upper_bound());
        inf_seen |= b.upper_bound() == f64::INFINITY;
        sample(
            out,
            name,
            "_bucket",
            m,
            Some(("le", &bound)),
            b.cumulative_count() as f64,
        );
        if let Some(e) = source.exemplar(name, m.get_label(), i) {
            exemplar(out, &e);
        }
        out.push('\n');
    }
    if !inf_seen {
        sample(
            out,
            name,
            "_bucket",
            m,
            Some(("le", "+Inf")),
            h.get_sample_count() as f64,
        );
        if let Some(e) = source.exemplar(name, m.get_label(), buckets.len()) {
            exemplar(out, &e);
        }
        out.push('\n');
    }
    sample(out, name, "_sum", m, None, h.get_sample_sum());
    out.push('\n');
    sample(out, name, "_count", m, None, h.get_sample_count() as f64);
    out.push('\n');
}

/// The OpenMetrics text of `families`, exemplars from `source`.
pub fn encode(families: &[MetricFamily], source: &dyn ExemplarSource) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for mf in families {
        let name = mf.name();
        let kind = mf.get_field_type();
        // A counter's family drops `_total`; one without it (none here)
        // would be renamed by that, so it goes out untyped.
        let (family, kind_name) = match kind {
            MetricType::COUNTER => match name.strip_suffix("_total") {
                Some(family) => (family, "counter"),
                None => (name, "unknown"),
            },
            MetricType::GAUGE => (name, "gauge"),
            MetricType::HISTOGRAM => (name, "histogram"),
            MetricType::SUMMARY => (name, "summary"),
            MetricType::UNTYPED => (name, "unknown"),
        };
        if !mf.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(family);
            out.push(' ');
            escaped(&mut out, mf.help());
            out.push('\n');
        }
        let _ = writeln!(out, "# TYPE {family} {kind_name}");
        for m in mf.get_metric() {
            match kind {
                MetricType::COUNTER => {
                    sample(&mut out, name, "", m, None, m.get_counter().get_value())
                }
                MetricType::GAUGE => sample(&mut out, name, "", m, None, m.get_gauge().get_value()),
                // The prometheus crate makes no untyped metrics (its own
                // text encoder refuses them).
                MetricType::UNTYPED => continue,
                MetricType::HISTOGRAM => {
                    histogram(&mut out, name, m, source);
                    continue;
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    let mut q = String::new();
                    for quantile in s.get_quantile() {
                        q.clear();
                        number(&mut q, quantile.quantile());
                        sample(
                            &mut out,
                            name,
                            "",
                            m,
                            Some(("quantile", &q)),
                            quantile.value(),
                        );
                        out.push('\n');
                    }
                    sample(&mut out, name, "_sum", m, None, s.sample_sum());
                    out.push('\n');
                    sample(&mut out, name, "_count", m, None, s.sample_count() as f64);
                }
            }
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{CounterVec, Gauge, HistogramOpts, HistogramVec, Opts, Registry};

    struct One;
    impl ExemplarSource for One {
        fn exemplar(&self, family: &str, labels: &[LabelPair], bucket: usize) -> Option<Exemplar> {
            (family == "render_seconds" && labels[0].value() == "a" && bucket == 1).then(|| {
                Exemplar {
                    job_id: "01JOB".into(),
                    value: 4.5,
                    at_ms: 1_767_225_600_123,
                }
            })
        }
    }

    fn registry() -> Registry {
        let r = Registry::new();
        let c = CounterVec::new(
            Opts::new("jobs_total", "Jobs \"done\".\nTwo lines."),
            &["account"],
        )
        .unwrap();
        c.with_label_values(&["a\"b"]).inc_by(3.0);
        let g = Gauge::new("up", "Up.").unwrap();
        g.set(f64::INFINITY);
        let h = HistogramVec::new(
            HistogramOpts::new("render_seconds", "Render.").buckets(vec![1.0, 5.0]),
            &["account"],
        )
        .unwrap();
        h.with_label_values(&["a"]).observe(4.5);
        h.with_label_values(&["a"]).observe(0.5);
        for m in [
            Box::new(c) as Box<dyn prometheus::core::Collector>,
            Box::new(g),
            Box::new(h),
        ] {
            r.register(m).unwrap();
        }
        r
    }

    #[test]
    fn the_exposition_is_openmetrics_with_the_exemplar_on_its_bucket() {
        let text = encode(&registry().gather(), &One);
        let want = "\
# HELP jobs Jobs \\\"done\\\".\\nTwo lines.
# TYPE jobs counter
jobs_total{account=\"a\\\"b\"} 3
# HELP render_seconds Render.
# TYPE render_seconds histogram
render_seconds_bucket{account=\"a\",le=\"1\"} 1
render_seconds_bucket{account=\"a\",le=\"5\"} 2 # {job_id=\"01JOB\"} 4.5 1767225600.123
render_seconds_bucket{account=\"a\",le=\"+Inf\"} 2
render_seconds_sum{account=\"a\"} 5
render_seconds_count{account=\"a\"} 2
# HELP up Up.
# TYPE up gauge
up +Inf
# EOF
";
        assert_eq!(text, want);
    }

    /// A value exactly on a bound is that bucket's (as the histogram counts
    /// it), one past the last bound is `+Inf`'s, the latest in a bucket
    /// replaces the one before, and a removed account's exemplars go.
    #[test]
    fn the_store_keeps_the_latest_job_of_each_bucket() {
        let store = ExemplarStore::new(&[("h", &[1.0, 5.0])]);
        let labels = |account: &str| {
            let mut l = LabelPair::default();
            l.set_name("account".into());
            l.set_value(account.into());
            vec![l]
        };
        store.observe("h", "a", 5.0, "on-the-bound", 1);
        store.observe("h", "a", 0.5, "first", 2);
        store.observe("h", "a", 0.7, "second", 3);
        store.observe("h", "a", 99.0, "past-the-last", 4);
        store.observe("other", "a", 1.0, "not-kept", 5);
        let id = |bucket| {
            store
                .exemplar("h", &labels("a"), bucket)
                .map(|e| e.job_id.to_string())
        };
        assert_eq!(id(0).as_deref(), Some("second"));
        assert_eq!(id(1).as_deref(), Some("on-the-bound"));
        assert_eq!(id(2).as_deref(), Some("past-the-last"));
        assert_eq!(id(3), None);
        assert_eq!(store.exemplar("other", &labels("a"), 0), None);
        assert_eq!(store.exemplar("h", &labels("b"), 0), None);
        store.remove_account("a");
        assert_eq!(id(0), None);
    }

    #[test]
    fn an_id_too_long_for_an_exemplar_is_left_out() {
        let mut out = String::new();
        exemplar(
            &mut out,
            &Exemplar {
                job_id: "x".repeat(200).into(),
                value: 1.0,
                at_ms: 0,
            },
        );
        assert!(out.is_empty());
    }
}

/// Exemplars by (family, account), one slot per bucket (`+Inf` last).
type Latest = HashMap<(&'static str, String), Vec<Option<Exemplar>>>;

/// The latest observation of each bucket of the per-account job histograms,
/// by job: the exemplars of the OpenMetrics exposition. Bounded by the
/// accounts times the buckets; an account's go with its series.
#[derive(Debug, Default)]
pub(crate) struct ExemplarStore {
    /// Bucket bounds by family (without `+Inf`).
    bounds: HashMap<&'static str, Vec<f64>>,
    latest: Mutex<Latest>,
}

impl ExemplarStore {
    /// Keeps exemplars for `families` (name, bucket bounds).
    pub(crate) fn new(families: &[(&'static str, &[f64])]) -> Self {
        Self {
            bounds: families
                .iter()
                .map(|(name, b)| (*name, b.to_vec()))
                .collect(),
            latest: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `value` of job `job_id` observed at `at_ms` in `family` of `account`:
    /// the exemplar of the bucket it falls in, from now on.
    pub(crate) fn observe(
        &self,
        family: &'static str,
        account: &str,
        value: f64,
        job_id: &str,
        at_ms: i64,
    ) {
        let Some(bounds) = self.bounds.get(family) else {
            return;
        };
        let bucket = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        let mut latest = self.lock();
        let slots = latest
            .entry((family, account.to_owned()))
            .or_insert_with(|| vec![None; bounds.len() + 1]);
        slots[bucket] = Some(Exemplar {
            job_id: job_id.into(),
            value,
            at_ms,
        });
    }

    /// The account's exemplars go (its series went).
    pub(crate) fn remove_account(&self, account: &str) {
        self.lock().retain(|(_, a), _| a != account);
    }
}

impl ExemplarSource for ExemplarStore {
    fn exemplar(&self, family: &str, labels: &[LabelPair], bucket: usize) -> Option<Exemplar> {
        let account = labels.iter().find(|l| l.name() == "account")?.value();
        let (&name, _) = self.bounds.get_key_value(family)?;
        self.lock()
            .get(&(name, account.to_owned()))?
            .get(bucket)?
            .clone()
    }
}
