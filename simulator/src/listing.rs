//! Choosing and writing the jobs of one `GET /jobs` page: plain functions of
//! the store and the query.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::model::{tag_bit, Poison, SimJob, Simulation};
use super::query::{ListQuery, Sort};
use super::DateBounds;
use crate::clock::UnixMillis;
use crate::timefmt::format_millis;

/// Positions in the store of the jobs on the requested page, in page order.
/// `shuffle_seed` drives `sort=random`.
pub fn select(
    sim: &Simulation,
    q: &ListQuery,
    bounds: DateBounds,
    shuffle_seed: u64,
) -> Vec<usize> {
    let shift = match bounds {
        DateBounds::Inclusive => 0,
        DateBounds::Exclusive => 1,
    };
    let (lo, hi) = sim.created_range(q.from_date.map(|f| f + shift), q.to_date.map(|t| t - shift));
    let jobs = sim.jobs();
    let tag_mask: Option<u8> = q
        .tags
        .as_ref()
        .map(|ts| ts.iter().fold(0u8, |m, t| m | tag_bit(t)));
    let filtered = q.states.is_some() || q.exclude_states.is_some() || tag_mask.is_some();
    let keep = |j: &SimJob| {
        q.states.as_ref().is_none_or(|s| s.contains(&j.status))
            && q.exclude_states
                .as_ref()
                .is_none_or(|s| !s.contains(&j.status))
            && tag_mask.is_none_or(|m| j.has_tag(m))
    };
    match q.sort {
        Sort::OldestFirst | Sort::Priority if !filtered => {
            let start = (lo + q.from).min(hi);
            (start..(start + q.limit).min(hi)).collect()
        }
        Sort::NewestFirst if !filtered => {
            let end = hi.saturating_sub(q.from).max(lo);
            (end.saturating_sub(q.limit).max(lo)..end).rev().collect()
        }
        Sort::OldestFirst | Sort::Priority => (lo..hi)
            .filter(|&i| keep(&jobs[i]))
            .skip(q.from)
            .take(q.limit)
            .collect(),
        Sort::NewestFirst => (lo..hi)
            .rev()
            .filter(|&i| keep(&jobs[i]))
            .skip(q.from)
            .take(q.limit)
            .collect(),
        Sort::Random => {
            let mut all: Vec<usize> = (lo..hi).filter(|&i| keep(&jobs[i])).collect();
            all.shuffle(&mut ChaCha8Rng::seed_from_u64(shuffle_seed));
            all.into_iter().skip(q.from).take(q.limit).collect()
        }
    }
}

/// One job as the API writes it.
pub struct JobJson<'a> {
    pub sim: &'a Simulation,
    pub job: &'a SimJob,
    pub now: UnixMillis,
    pub minimal: bool,
}

struct Stats<'a>(&'a SimJob, Option<Poison>);

/// Stand-ins written where a poisoned job's JSON goes beyond what serde
/// writes, replaced in the bytes afterwards by [`unmark`].
const ERROR_MARK: &str = "\u{10FFFF}";
const NUMBER_MARK: &str = "\u{10FFFE}";

impl Serialize for Stats<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let j = self.0;
        let error = match self.1 {
            Some(Poison::LoneSurrogate | Poison::InvalidUtf8) => {
                Some(format!("Render crashed {ERROR_MARK}"))
            }
            _ => j.error.as_deref().map(str::to_owned),
        };
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("createdAt", &format_millis(j.created_at))?;
        m.serialize_entry("updatedAt", &format_millis(j.updated_at))?;
        m.serialize_entry("startedAt", &j.started_at.map(format_millis))?;
        m.serialize_entry("finishedAt", &j.finished_at().map(format_millis))?;
        m.serialize_entry("errorAt", &j.error_at().map(format_millis))?;
        m.serialize_entry("totalAssets", &j.total_assets)?;
        if self.1 == Some(Poison::HugeNumber) {
            m.serialize_entry("renderDuration", NUMBER_MARK)?;
        } else {
            m.serialize_entry("renderDuration", &j.render_duration_seconds())?;
        }
        m.serialize_entry("error", &error)?;
        m.end()
    }
}

impl Serialize for JobJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let j = self.job;
        let mut m = s.serialize_map(Some(if self.minimal { 5 } else { 6 }))?;
        m.serialize_entry("id", &j.api_id())?;
        m.serialize_entry(
            "templateId",
            &j.template.and_then(|t| self.sim.template_id(t)),
        )?;
        m.serialize_entry("status", j.status.as_str())?;
        m.serialize_entry("progress", &j.progress(self.now))?;
        if !self.minimal {
            m.serialize_entry("stats", &Stats(j, self.sim.poisoned(j.id)))?;
        }
        m.serialize_entry(
            "outputUrl",
            &format!(
                "https://outputs.sim.nexrender.invalid/{}/result.mp4",
                j.api_id()
            ),
        )?;
        m.end()
    }
}

/// The body of a `GET /jobs` answer: a bare JSON array.
pub fn write_page(
    sim: &Simulation,
    positions: &[usize],
    minimal: bool,
    now: UnixMillis,
) -> Vec<u8> {
    let per_job = if minimal { 200 } else { 520 };
    let mut out = Vec::with_capacity(positions.len() * per_job + 2);
    out.push(b'[');
    for (n, &i) in positions.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let job = JobJson {
            sim,
            job: &sim.jobs()[i],
            now,
            minimal,
        };
        // Writing to a Vec cannot fail.
        match sim.poisoned(job.job.id).filter(|_| !minimal) {
            Some(poison) => {
                let body = serde_json::to_vec(&job).unwrap_or_default();
                out.extend(unmark(body, poison));
            }
            None => {
                let _ = serde_json::to_writer(&mut out, &job);
            }
        }
    }
    out.push(b']');
    out
}

/// The body of a `GET /jobs/{id}` answer.
pub fn write_job(sim: &Simulation, job: &SimJob, now: UnixMillis) -> Vec<u8> {
    let body = serde_json::to_vec(&JobJson {
        sim,
        job,
        now,
        minimal: false,
    })
    .unwrap_or_default();
    match sim.poisoned(job.id) {
        Some(poison) => unmark(body, poison),
        None => body,
    }
}

/// A poisoned job's JSON with its stand-ins replaced: the error mark by
/// `\ud83d` (half a surrogate pair) or by a byte that is not UTF-8, the
/// number mark by `1e400`.
fn unmark(body: Vec<u8>, poison: Poison) -> Vec<u8> {
    let text = String::from_utf8(body).unwrap_or_default();
    let text = text.replace(&format!("\"{NUMBER_MARK}\""), "1e400");
    match poison {
        Poison::InvalidUtf8 => {
            let mut out = Vec::with_capacity(text.len());
            for (n, part) in text.split(ERROR_MARK).enumerate() {
                if n > 0 {
                    out.push(0xFF);
                }
                out.extend_from_slice(part.as_bytes());
            }
            out
        }
        _ => text.replace(ERROR_MARK, "\\ud83d").into_bytes(),
    }
}

/// The farm as a self-hosted Nexrender server (`@nexrender/server`, API v1)
/// would list it: `GET /api/v1/jobs/status` (its light projection of every
/// job, no paging) or, `whole`, `GET /api/v1/jobs` (whole jobs, with their
/// template's source). Written from the server's own code as the project's
/// API notes describe it (`getRenderingStatus`), not from the exporter: the
/// Cloud's statuses become the server's states (`pending`, a parent
/// waiting, as `picked`; a cancellation as `error`), tags a comma-separated
/// string, times ISO strings.
pub fn write_server_listing(sim: &Simulation, now: UnixMillis, whole: bool) -> Vec<u8> {
    use crate::model::TAGS;
    use crate::status::JobStatus;
    let time = |t: Option<UnixMillis>| t.map(format_millis);
    let jobs: Vec<serde_json::Value> = sim
        .jobs()
        .iter()
        .map(|j| {
            let state = match &j.status {
                JobStatus::Pending => "picked",
                JobStatus::ManuallyCancelled => "error",
                other => other.as_str(),
            };
            let tags: Vec<&str> = TAGS
                .iter()
                .enumerate()
                .filter(|(i, _)| j.has_tag(1 << i))
                .map(|(_, t)| *t)
                .collect();
            let mut job = serde_json::json!({
                "uid": j.api_id(),
                "state": state,
                "type": "default",
                "tags": (!tags.is_empty()).then(|| tags.join(",")),
                "renderProgress": j.progress(now),
                "error": j.error.as_deref(),
                "createdAt": format_millis(j.created_at),
                "updatedAt": format_millis(j.updated_at),
                "startedAt": time(j.started_at),
                "finishedAt": time(j.finished_at()),
                "errorAt": time(j.error_at()),
                "jobCreator": "127.0.0.1",
                "jobExecutor": j.started_at.map(|_| "127.0.0.1"),
                "timings": {},
            });
            if whole {
                let name = j
                    .template
                    .and_then(|t| sim.templates().get(usize::from(t)))
                    .map(|t| t.display_name.clone());
                job["template"] = serde_json::json!({
                    "src": name.map(|n| format!("file:///srv/templates/{}.aep", n.replace(' ', "-"))).unwrap_or_default(),
                    "composition": "main",
                });
            }
            job
        })
        .collect();
    serde_json::to_vec(&jobs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::model::{LifecycleConfig, ScriptedJob};
    use super::*;
    use crate::status::JobStatus;
    use std::collections::HashSet;
    use std::time::Duration;

    const T0: UnixMillis = 1_767_225_600_000;

    fn farm() -> Simulation {
        let mut sim = Simulation::new(LifecycleConfig::lively(), 9, T0);
        sim.prefill(5_000, Duration::from_secs(86_400));
        sim.advance_to(T0 + 3_600_000);
        sim
    }

    fn page(sim: &Simulation, raw: &str) -> Vec<usize> {
        select(
            sim,
            &ListQuery::parse(raw).unwrap(),
            DateBounds::Inclusive,
            1,
        )
    }

    #[test]
    fn paging_a_window_returns_every_job_exactly_once() {
        let sim = farm();
        let mut seen = Vec::new();
        let mut from = 0;
        loop {
            let p = page(&sim, &format!("limit=333&from={from}"));
            seen.extend(p.iter().map(|&i| sim.jobs()[i].id));
            if p.len() < 333 {
                break;
            }
            from += 333;
        }
        assert_eq!(seen.len(), sim.len());
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), sim.len());
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "oldest first");
    }

    #[test]
    fn newest_first_is_the_reverse_and_dates_bound_the_window() {
        let sim = farm();
        let (lo, hi) = (T0 - 3 * 3_600_000, T0 - 2 * 3_600_000);
        let from = crate::timefmt::format_millis(lo);
        let to = crate::timefmt::format_millis(hi);
        let asc = page(&sim, &format!("limit=1000&from_date={from}&to_date={to}"));
        let mut desc = page(
            &sim,
            &format!("limit=1000&from_date={from}&to_date={to}&sort=newest_first"),
        );
        desc.reverse();
        assert!(!asc.is_empty());
        assert_eq!(asc, desc);
        for &i in &asc {
            let c = sim.jobs()[i].created_at;
            assert!((lo..=hi).contains(&c));
        }
    }

    #[test]
    fn state_filters_and_tags_keep_only_matching_jobs() {
        let sim = farm();
        let p = page(&sim, "limit=1000&states=error,manually_cancelled");
        assert!(!p.is_empty());
        assert!(p.iter().all(|&i| matches!(
            sim.jobs()[i].status,
            JobStatus::Error | JobStatus::ManuallyCancelled
        )));
        let p = page(&sim, "limit=1000&exclude_states=finished");
        assert!(p
            .iter()
            .all(|&i| sim.jobs()[i].status != JobStatus::Finished));
        let p = page(&sim, "limit=1000&tags=broadcast");
        assert!(p
            .iter()
            .all(|&i| sim.jobs()[i].has_tag(tag_bit("broadcast"))));
        assert!(page(&sim, "tags=nobody-uses-this").is_empty());
    }

    #[test]
    fn random_sort_is_a_permutation_of_the_window() {
        let sim = farm();
        let all: HashSet<usize> = (0..sim.len()).collect();
        let mut got = HashSet::new();
        let mut from = 0;
        while from < sim.len() {
            got.extend(page(&sim, &format!("limit=1000&from={from}&sort=random")));
            from += 1000;
        }
        assert_eq!(got, all);
    }

    #[test]
    fn minimal_strips_stats_and_nothing_else() {
        let mut sim = Simulation::new(LifecycleConfig::default(), 1, T0);
        let id = sim.insert_scripted(ScriptedJob {
            created_at: T0 - 100_000,
            status: JobStatus::Finished,
            started_at: Some(T0 - 90_000),
            ended_at: Some(T0 - 67_696),
            ..ScriptedJob::queued(T0 - 100_000)
        });
        let full: serde_json::Value =
            serde_json::from_slice(&write_page(&sim, &[0], false, T0)).unwrap();
        let min: serde_json::Value =
            serde_json::from_slice(&write_page(&sim, &[0], true, T0)).unwrap();
        let mut stripped = full[0].as_object().unwrap().clone();
        let stats = stripped.remove("stats").unwrap();
        assert_eq!(&stripped, min[0].as_object().unwrap());
        assert_eq!(min[0]["id"], id.to_string());
        assert_eq!(stats["renderDuration"], 22.304);
        assert_eq!(stats["startedAt"], "2025-12-31T23:58:30.000Z");
        assert_eq!(stats["errorAt"], serde_json::Value::Null);
    }
}
