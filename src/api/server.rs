//! The self-hosted Nexrender server (`@nexrender/server`, API v1) as a
//! source of jobs. It has no paging and no filters: `GET
//! /api/v1/jobs/status` lists every job at once. So a poll reads it once,
//! at the poll's first page (the listing of jobs not ended), and every
//! page and look-up of that poll is answered from that one listing, cut
//! as the Cloud API cuts its pages. The poll, the tracker and everything
//! after them do not know which API they read.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::client::{ListFilter, ListPageQuery};
use super::job::{ApiJob, JobId, MinimalJob, Page, ServerJob, SkipReason};
use super::template::TemplateName;
use crate::clock::UnixMillis;
use crate::status::JobStatus;

/// How a self-hosted account is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// A job not ended whose `updatedAt` has not moved for this long is
    /// stale: a worker died holding it (the server never times it out).
    pub stale_after: Duration,
    /// Read whole jobs (`GET /api/v1/jobs`) rather than the projection
    /// (`/jobs/status`): only whole jobs say their template.
    pub whole_jobs: bool,
}

/// The light projection of every job.
pub(crate) const PROJECTION: &str = "/api/v1/jobs/status";
/// Every job, whole.
pub(crate) const WHOLE_JOBS: &str = "/api/v1/jobs";

/// One reading of the server's job list, as the poll's pages see it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Oldest first by `createdAt` (a job without one first), the account's
    /// tags applied, one job per `uid` (the last the server lists, the one
    /// its `GET /api/v1/jobs/{uid}` answers with).
    jobs: Vec<ApiJob>,
    by_id: HashMap<JobId, usize>,
    /// Entries that were not jobs, by reason: told with the first page.
    skipped: Vec<SkipReason>,
    /// The server's `Date` on the listing.
    server_time: Option<UnixMillis>,
    /// Jobs not ended and not updated for `stale_after`, by status.
    pub stale: BTreeMap<JobStatus, u64>,
}

impl Snapshot {
    /// The listing `page` read at `now` (the server's `Date`, else the
    /// exporter's clock), with only the jobs tagged with any of `tags`
    /// (none: every job).
    pub fn new(
        page: Page<ServerJob>,
        tags: &[String],
        stale_after: Duration,
        now: UnixMillis,
    ) -> Self {
        let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        let mut skipped = page.skipped;
        let mut by_id: HashMap<JobId, usize> = HashMap::with_capacity(page.jobs.len());
        let mut kept: Vec<ServerJob> = Vec::with_capacity(page.jobs.len());
        for job in page.jobs {
            match by_id.get(&job.job.id) {
                Some(&i) => {
                    skipped.push(SkipReason::DuplicateId);
                    kept[i] = job;
                }
                None => {
                    by_id.insert(job.job.id.clone(), kept.len());
                    kept.push(job);
                }
            }
        }
        // The tags of the copy the server answers for (the last), as its
        // `GET /api/v1/jobs/{uid}` would.
        kept.retain(|job| tagged(job.tags.as_deref(), tags));
        let mut stale = BTreeMap::new();
        for job in &kept {
            let still = job
                .updated_at
                .is_some_and(|at| now.saturating_sub(at) >= stale_ms);
            if still && !job.job.status.is_terminal() {
                *stale.entry(job.job.status.clone()).or_insert(0) += 1;
            }
        }
        let mut jobs: Vec<ApiJob> = kept.into_iter().map(|j| j.job).collect();
        jobs.sort_by_key(|j| j.created_at.unwrap_or(i64::MIN));
        by_id.clear();
        by_id.extend(jobs.iter().enumerate().map(|(i, j)| (j.id.clone(), i)));
        Snapshot {
            jobs,
            by_id,
            skipped,
            server_time: page.server_time,
            stale,
        }
    }

    /// Jobs held.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// A page of the listing, as the Cloud API would cut it; the first page
    /// of the listing of jobs not ended tells the entries skipped.
    pub fn page(&self, q: &ListPageQuery) -> Page {
        self.paged(q, ApiJob::clone)
    }

    /// The page of a minimal listing: [`Self::page`] with only what the
    /// window scan keeps of each job, copied without the rest.
    pub fn minimal_page(&self, q: &ListPageQuery) -> Page<MinimalJob> {
        self.paged(q, |j| MinimalJob {
            id: j.id.clone(),
            status: j.status.clone(),
        })
    }

    /// The page `q`, each job copied by `copy`.
    fn paged<J>(&self, q: &ListPageQuery, copy: impl Fn(&ApiJob) -> J) -> Page<J> {
        let jobs: Vec<J> = select(&self.jobs, q, false).map(copy).collect();
        Page {
            raw_len: jobs.len(),
            jobs,
            skipped: if starts_a_poll(q) {
                self.skipped.clone()
            } else {
                Vec::new()
            },
            server_time: self.server_time,
        }
    }

    /// `GET /jobs/{id}`: the job as listed; `None`, it is gone.
    pub fn job(&self, id: &JobId) -> Option<ApiJob> {
        self.by_id.get(id).map(|&i| self.jobs[i].clone())
    }

    /// Display names of the templates its jobs render: the file name of
    /// each template's source.
    pub fn template_names(&self) -> Vec<TemplateName> {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        for id in self.jobs.iter().filter_map(|j| j.template_id.as_deref()) {
            seen.entry(id).or_insert_with(|| file_name(id).to_owned());
        }
        seen.into_iter()
            .map(|(id, name)| TemplateName {
                id: id.to_owned(),
                name: Some(name),
            })
            .collect()
    }
}

/// Is `q` a poll's first page (the first of the listing of jobs not
/// ended, which every poll reads first)?
pub(crate) fn starts_a_poll(q: &ListPageQuery) -> bool {
    q.from == 0 && q.filter == ListFilter::Live
}

/// Has a job with these `tags` (comma-separated) any of `wanted`?
fn tagged(tags: Option<&str>, wanted: &[String]) -> bool {
    wanted.is_empty()
        || tags.is_some_and(|t| t.split(',').any(|t| wanted.iter().any(|w| w == t.trim())))
}

/// A page as the Cloud API cuts it, oldest first: jobs created within the
/// dates (by `createdAt`, else the id's time; one with neither is in every
/// window), or the jobs not ended whatever their age (every job when
/// `unfiltered`: an API that ignores `exclude_states`); then offset and
/// limit.
pub fn cut_page(jobs: &[ApiJob], q: &ListPageQuery, unfiltered: bool) -> Vec<ApiJob> {
    select(jobs, q, unfiltered).cloned().collect()
}

/// The jobs of [`cut_page`], borrowed.
fn select<'a>(
    jobs: &'a [ApiJob],
    q: &ListPageQuery,
    unfiltered: bool,
) -> impl Iterator<Item = &'a ApiJob> {
    let filter = q.filter;
    jobs.iter()
        .filter(move |j| match filter {
            ListFilter::Live => unfiltered || !j.status.is_terminal(),
            ListFilter::Created { from_date, to_date } => j
                .created_at
                .or_else(|| j.id.created_hint())
                .is_none_or(|at| (from_date..=to_date).contains(&at)),
        })
        .skip(q.from)
        .take(q.limit as usize)
}

/// The longest template id kept: a source is a path or URL, not a story.
const MAX_TEMPLATE_BYTES: usize = 200;

/// A job's template, from its `template.src`: the source without query,
/// fragment or credentials (a signed URL's signature changes with every
/// job and must not become a label; a password must not show), cut to
/// [`MAX_TEMPLATE_BYTES`]. `None` for an empty source.
pub fn template_of(src: &str) -> Option<String> {
    let src = src.trim();
    let bare = match reqwest::Url::parse(src) {
        Ok(mut url) if url.has_host() || url.scheme() == "file" => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        _ => without_credentials(src.split(['?', '#']).next().unwrap_or_default()),
    };
    if bare.is_empty() {
        return None;
    }
    let mut end = bare.len().min(MAX_TEMPLATE_BYTES);
    while !bare.is_char_boundary(end) {
        end -= 1;
    }
    Some(bare[..end].to_owned())
}

/// `text` without the `user:password@` of what looks like a URL's
/// authority (the text after `://`, up to the next `/`).
fn without_credentials(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}{}", &text[..scheme_end], &rest[at + 1..]),
        None => text.to_owned(),
    }
}

/// The last segment of a template's path: its display name.
fn file_name(id: &str) -> &str {
    let name = id
        .trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(id);
    if name.is_empty() {
        id
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::job::parse_server_jobs;
    use crate::timefmt::parse_millis;

    const NOW: &str = "2026-12-05T12:00:00.000Z";

    fn listing(body: &str) -> Page<ServerJob> {
        parse_server_jobs(body.as_bytes()).expect("a job list")
    }

    #[test]
    fn the_projection_reads_as_jobs_with_a_render_duration_from_start_to_finish() {
        let page = listing(
            r#"[{"uid":"V1StGXR8_Z5jdHi6B-myT","state":"finished","type":"default","tags":"promo,tv",
                "renderProgress":100,"error":null,"createdAt":"2026-12-05T11:00:00.000Z",
                "updatedAt":"2026-12-05T11:05:00.000Z","startedAt":"2026-12-05T11:01:00.000Z",
                "finishedAt":"2026-12-05T11:04:30.500Z","errorAt":null,"jobCreator":"::1",
                "jobExecutor":"10.0.0.7","timings":{"setup":12}},
               {"uid":"a2","state":"render:download","createdAt":"2026-12-05T10:00:00.000Z",
                "updatedAt":"2026-12-05T10:10:00.000Z","startedAt":"2026-12-05T10:09:00.000Z"},
               {"uid":"a3","state":"error","error":"Error: no font \ud83d","errorAt":"2026-12-05T10:30:00Z"},
               {"state":"queued"}, 7]"#,
        );
        assert_eq!(page.raw_len, 5);
        assert_eq!(
            page.skipped,
            [SkipReason::MissingId, SkipReason::NotAnObject]
        );
        let done = &page.jobs[0];
        assert_eq!(done.job.id.to_string(), "V1StGXR8_Z5jdHi6B-myT");
        assert_eq!(done.job.status, JobStatus::Finished);
        assert_eq!(done.job.render_duration, Some(210.5));
        assert_eq!(done.tags.as_deref(), Some("promo,tv"));
        assert_eq!(done.job.template_id, None, "the projection has no template");
        assert_eq!(page.jobs[1].job.status.as_str(), "render:download");
        assert_eq!(page.jobs[1].job.render_duration, None);
        assert_eq!(
            page.jobs[2].job.error.as_deref(),
            Some("Error: no font \u{fffd}")
        );
    }

    #[test]
    fn a_stuck_worker_shows_as_stale_jobs_by_status_and_tags_filter_jobs() {
        let page = listing(
            r#"[{"uid":"q","state":"queued","tags":"tv","createdAt":"2026-12-05T09:00:00Z","updatedAt":"2026-12-05T09:00:00Z"},
               {"uid":"p","state":"picked","tags":"tv, web","createdAt":"2026-12-05T08:00:00Z","updatedAt":"2026-12-05T10:00:00Z"},
               {"uid":"r","state":"render:dorender","tags":"tv","createdAt":"2026-12-05T11:00:00Z","updatedAt":"2026-12-05T11:59:00Z"},
               {"uid":"f","state":"finished","tags":"tv","createdAt":"2026-12-05T07:00:00Z","updatedAt":"2026-12-05T07:00:00Z"},
               {"uid":"w","state":"started","tags":"web","createdAt":"2026-12-05T06:00:00Z","updatedAt":"2026-12-05T06:00:00Z"},
               {"uid":"n","state":"started","createdAt":"2026-12-05T06:00:00Z"}]"#,
        );
        let now = parse_millis(NOW).unwrap();
        let all = Snapshot::new(page.clone(), &[], Duration::from_secs(3600), now);
        assert_eq!(all.len(), 6);
        let stale: Vec<(&str, u64)> = all.stale.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        // Queued since 09:00, picked since 10:00, started since 06:00; the
        // render updated a minute ago is not; a job without updatedAt is
        // not judged; an ended one never is.
        assert_eq!(stale, [("queued", 1), ("picked", 1), ("started", 1)]);
        let tv = Snapshot::new(page, &["tv".into()], Duration::from_secs(3600), now);
        let ids: Vec<String> = tv.jobs.iter().map(|j| j.id.to_string()).collect();
        assert_eq!(ids, ["f", "p", "q", "r"], "oldest first, tagged tv");
        let live = tv.page(&ListPageQuery {
            from: 1,
            limit: 10,
            filter: ListFilter::Live,
        });
        let ids: Vec<String> = live.jobs.iter().map(|j| j.id.to_string()).collect();
        assert_eq!(ids, ["q", "r"]);
        assert!(tv.job(&JobId::parse("w")).is_none(), "not the account's");
    }

    #[test]
    fn a_client_made_uid_is_only_text_and_half_a_surrogate_costs_one_field() {
        let page = listing(
            r#"[{"uid":"01ARZ3NDEKTSV4RRFFQ69G5FAV","state":"queued"},
               {"uid":"job-\ud83d","state":"render:\udc00x"},
               {"uid":"ok","state":"queued"}]"#,
        );
        assert_eq!(page.jobs.len(), 3, "{page:?}");
        // A ULID-shaped uid carries no creation time.
        assert_eq!(
            page.jobs[0].job.id,
            JobId::Other("01ARZ3NDEKTSV4RRFFQ69G5FAV".into())
        );
        assert_eq!(page.jobs[0].job.id.created_hint(), None);
        assert_eq!(page.jobs[1].job.id.to_string(), "job-\u{fffd}");
        assert_eq!(page.jobs[1].job.status.as_str(), "render:\u{fffd}x");
    }

    #[test]
    fn half_a_surrogate_pair_in_a_key_or_a_skipped_field_costs_no_job() {
        // Whole jobs carry what their clients wrote: a key, an asset's
        // name. serde_json refuses half a pair anywhere, which would fail
        // every job of the listing.
        let body = r#"[{"uid":"a","state":"queued","assets":[{"layerName":"x\ud800"}],"\udc00":1},
                       {"uid":"b","state":"finished","note":"a pair \ud83d\ude00 and text \\ud800"}]"#;
        let page = listing(body);
        assert_eq!(page.jobs.len(), 2);
        let mended = crate::api::job::without_lone_surrogates(body.as_bytes()).unwrap();
        let mended = String::from_utf8(mended).unwrap();
        assert!(
            mended.contains(r#""x\ufffd""#) && mended.contains(r#""\ufffd":1"#),
            "{mended}"
        );
        assert!(
            mended.contains(r#"\ud83d\ude00"#),
            "a whole pair stays: {mended}"
        );
        assert!(
            mended.contains(r#"\\ud800"#),
            "text, not an escape: {mended}"
        );
        assert!(crate::api::job::without_lone_surrogates(br#"[{"uid":"\ud83d\ude00"}]"#).is_none());
    }

    #[test]
    fn a_uid_listed_twice_is_the_last_one_and_counted_skipped() {
        let page = listing(
            r#"[{"uid":"x","state":"queued","tags":"tv","createdAt":"2026-12-05T09:00:00Z"},
               {"uid":"x","state":"finished","createdAt":"2026-12-05T09:00:00Z"}]"#,
        );
        let tv = Snapshot::new(page.clone(), &["tv".into()], Duration::from_secs(60), 0);
        assert!(
            tv.is_empty(),
            "the copy the server answers for is not tagged tv"
        );
        let s = Snapshot::new(page, &[], Duration::from_secs(60), 0);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.job(&JobId::parse("x")).unwrap().status,
            JobStatus::Finished
        );
        let first = s.page(&ListPageQuery {
            from: 0,
            limit: 10,
            filter: ListFilter::Live,
        });
        assert_eq!(first.skipped, [SkipReason::DuplicateId]);
        assert!(first.jobs.is_empty());
    }

    #[test]
    fn a_template_is_its_source_without_secrets_and_named_by_its_file() {
        let page = listing(
            r#"[{"uid":"a","state":"queued","createdAt":"2026-12-05T09:00:00Z",
                 "template":{"src":"https://user:pw@cdn.example.com/aep/promo.aep?X-Amz-Signature=abc#x","composition":"main"}},
                {"uid":"b","state":"queued","template":{"src":"file:///projects/Lower%20Third.aep"}},
                {"uid":"c","state":"queued","template":{"src":""}},
                {"uid":"d","state":"queued","template":"promo"}]"#,
        );
        let ids: Vec<Option<&str>> = page
            .jobs
            .iter()
            .map(|j| j.job.template_id.as_deref())
            .collect();
        assert_eq!(
            ids,
            [
                Some("https://cdn.example.com/aep/promo.aep"),
                Some("file:///projects/Lower%20Third.aep"),
                None,
                None
            ]
        );
        let s = Snapshot::new(page, &[], Duration::from_secs(60), 0);
        let names: Vec<(String, String)> = s
            .template_names()
            .into_iter()
            .map(|t| (t.id, t.name.unwrap_or_default()))
            .collect();
        assert_eq!(names[0].1, "Lower%20Third.aep");
        assert_eq!(names[1].1, "promo.aep");
        assert_eq!(
            template_of("/srv/t/x.aep?v=2").as_deref(),
            Some("/srv/t/x.aep")
        );
        assert_eq!(template_of(&"é".repeat(300)).map(|t| t.len()), Some(200));
        // Not a URL the parser takes (a port out of range): still no
        // credentials.
        assert_eq!(
            template_of("https://u:pw@host:99999/x.aep?sig=1").as_deref(),
            Some("https://host:99999/x.aep")
        );
    }
}
