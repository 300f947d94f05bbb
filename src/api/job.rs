//! Jobs as the API sends them, parsed leniently: the spec marks no field
//! required and any may be null or of the wrong type. A job whose `id` or
//! `status` is unusable is skipped (and counted by reason); a bad timestamp
//! or duration becomes "unknown" rather than failing the page.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use ulid::Ulid;

use crate::clock::UnixMillis;
use crate::status::JobStatus;
use crate::timefmt::parse_millis;

/// A job id: a ULID as documented, or whatever string the API sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobId {
    Ulid(Ulid),
    Other(Box<str>),
}

impl JobId {
    pub fn parse(s: &str) -> JobId {
        // Only the canonical form maps to a ULID, so the id we send back in
        // `/jobs/{id}` is exactly the one we received.
        match canonical_ulid(s.as_bytes()) {
            Some(u) => JobId::Ulid(Ulid(u)),
            None => JobId::Other(s.into()),
        }
    }

    /// Creation time encoded in a ULID id.
    pub(crate) fn created_hint(&self) -> Option<UnixMillis> {
        match self {
            JobId::Ulid(u) => i64::try_from(u.timestamp_ms()).ok(),
            JobId::Other(_) => None,
        }
    }
}

/// Crockford's base32 as a ULID is written: the value of each of its 32
/// upper-case characters, and `INVALID` for any other byte (lower case too).
const CANONICAL: [u8; 256] = {
    let alphabet = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const INVALID: u8 = 0x80;

/// The ULID that `s` spells in its canonical form (26 upper-case
/// characters of Crockford's base32, the first at most 7), if it does.
/// The same as `Ulid::from_string(s)` where that ULID then spells `s`
/// again (a test compares them), in one pass and without the encoding back:
/// a window scan does this for every job. The 128 bits are read as three
/// runs that fit a `u64`: 2 characters (3 + 5 bits), then 12 and 12 (60
/// bits each).
fn canonical_ulid(s: &[u8]) -> Option<u128> {
    let s: &[u8; ulid::ULID_LEN] = s.try_into().ok()?;
    if s[0] > b'7' {
        return None;
    }
    let mut seen = 0u8;
    let mut run = |chars: &[u8]| {
        chars.iter().fold(0u64, |acc, &c| {
            let v = CANONICAL[usize::from(c)];
            seen |= v;
            (acc << 5) | u64::from(v)
        })
    };
    let (top, mid, low) = (run(&s[..2]), run(&s[2..14]), run(&s[14..]));
    (seen & INVALID == 0)
        .then(|| (u128::from(top) << 120) | (u128::from(mid) << 60) | u128::from(low))
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobId::Ulid(u) => write!(f, "{u}"),
            JobId::Other(s) => f.write_str(s),
        }
    }
}

/// One job, with what the exporter uses of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiJob {
    pub id: JobId,
    pub status: JobStatus,
    pub created_at: Option<UnixMillis>,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    pub error_at: Option<UnixMillis>,
    /// `stats.renderDuration`, seconds. Negative and infinite ones
    /// are kept so the tracker can count them as impossible values.
    pub render_duration: Option<f64>,
    /// `templateId`: the template the job renders, if any.
    pub template_id: Option<Box<str>>,
    /// `stats.error`: why the job failed, in the API's words; only in full
    /// job bodies (look-ups, full pages, webhook deliveries).
    pub error: Option<Box<str>>,
}

/// Why a job in a page was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    NotAnObject,
    MissingId,
    MissingStatus,
    DuplicateId,
}

impl SkipReason {
    pub(crate) const ALL: [SkipReason; 4] = [
        SkipReason::NotAnObject,
        SkipReason::MissingId,
        SkipReason::MissingStatus,
        SkipReason::DuplicateId,
    ];

    /// Low-cardinality label for `nexrender_exporter_jobs_skipped_total`.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::MissingId => "missing_id",
            SkipReason::MissingStatus => "missing_status",
            SkipReason::DuplicateId => "duplicate_id",
        }
    }
}

/// A job as a minimal listing (`GET /jobs?minimal=true`) shows it to the
/// window scan: its id and status, all the scan keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct MinimalJob {
    pub id: JobId,
    pub status: JobStatus,
}

impl From<ApiJob> for MinimalJob {
    fn from(job: ApiJob) -> Self {
        MinimalJob {
            id: job.id,
            status: job.status,
        }
    }
}

/// A decoded `GET /jobs` page: of whole jobs, or ([`parse_minimal_page`])
/// of what the window scan keeps of each.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<J = ApiJob> {
    pub jobs: Vec<J>,
    /// Elements of the array, usable or not: the page is "full" when this
    /// equals the limit, whatever was skipped.
    pub raw_len: usize,
    pub skipped: Vec<SkipReason>,
    /// When the server answered, by its own clock (its `Date` header), if
    /// it said; set by the client.
    pub server_time: Option<UnixMillis>,
}

impl<J> Default for Page<J> {
    fn default() -> Self {
        Page {
            jobs: Vec::new(),
            raw_len: 0,
            skipped: Vec::new(),
            server_time: None,
        }
    }
}

impl Page {
    /// The page as a minimal listing would have shown it.
    pub fn minimal(self) -> Page<MinimalJob> {
        Page {
            jobs: self.jobs.into_iter().map(MinimalJob::from).collect(),
            raw_len: self.raw_len,
            skipped: self.skipped,
            server_time: self.server_time,
        }
    }
}

/// Body that is not the JSON we expect at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(message: String) -> Self {
        DecodeError(message)
    }
}

/// Decodes a `GET /jobs` body: a JSON array of jobs.
pub fn parse_page(body: &[u8]) -> Result<Page, DecodeError> {
    decode_page(body)
}

/// Decodes a `GET /jobs?minimal=true` body as the window scan uses it: the
/// id and status of each job, everything else skipped unread, so a page of
/// a thousand jobs allocates nothing but the list. Which entries are
/// skipped, and why, is the same as for [`parse_page`].
pub fn parse_minimal_page(body: &[u8]) -> Result<Page<MinimalJob>, DecodeError> {
    decode_page(body)
}

fn decode_page<J: Listed>(body: &[u8]) -> Result<Page<J>, DecodeError> {
    // A body that is UTF-8 throughout (any the API sends) is checked once,
    // in one fast pass, and read as text: serde_json then takes each
    // string as it is, where reading bytes it checks every string again,
    // keys included (a fifth of a minimal page's reading). Any other body
    // is read as bytes, with the very same outcome: the strings read must
    // be UTF-8, those skipped need not.
    match std::str::from_utf8(body) {
        Ok(text) => decode_seq(serde_json::Deserializer::from_str(text), body.len()),
        Err(_) => decode_seq(serde_json::Deserializer::from_slice(body), body.len()),
    }
}

/// [`parse_page`] and [`parse_minimal_page`] reading any body as bytes,
/// without the shortcut for a body that is UTF-8: for the tests and the
/// `parse_page` fuzz target, which check that the shortcut changes no
/// outcome (jobs, skipped entries, error text).
#[doc(hidden)]
pub mod as_bytes {
    use super::{decode_seq, ApiJob, DecodeError, MinimalJob, Page};

    pub fn parse_page(body: &[u8]) -> Result<Page<ApiJob>, DecodeError> {
        decode_seq(serde_json::Deserializer::from_slice(body), body.len())
    }

    pub fn parse_minimal_page(body: &[u8]) -> Result<Page<MinimalJob>, DecodeError> {
        decode_seq(serde_json::Deserializer::from_slice(body), body.len())
    }
}

fn decode_seq<'de, R: serde_json::de::Read<'de>, J: Listed>(
    mut de: serde_json::Deserializer<R>,
    len: usize,
) -> Result<Page<J>, DecodeError> {
    let page = de
        .deserialize_seq(PageVisitor {
            // A job takes at least ~100 bytes of JSON as the API writes it
            // (the id alone is 35); reserving for that avoids growing the
            // vector page after page. 1000 is the API's largest page.
            capacity: (len / 100).min(1000),
            listed: std::marker::PhantomData,
        })
        .map_err(|e| DecodeError(format!("job list: {e}")))?;
    de.end()
        .map_err(|e| DecodeError(format!("job list: {e}")))?;
    Ok(page)
}

/// A job of the self-hosted server, as `GET /api/v1/jobs/status` (a light
/// projection) or `GET /api/v1/jobs` (whole jobs) shows it: `uid` and
/// `state` where the Cloud says `id` and `status`, its times beside them,
/// no render duration (it is `finishedAt − startedAt` of a finished job).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerJob {
    /// The job, in the Cloud's terms; its `template_id` is its
    /// `template.src` without query, fragment or credentials (whole jobs
    /// only: the projection has no template).
    pub job: ApiJob,
    /// When the server last changed the job (any `PUT`, a worker's
    /// progress included).
    pub updated_at: Option<UnixMillis>,
    /// `tags`, comma-separated as the server keeps them.
    pub tags: Option<Box<str>>,
}

/// Decodes a self-hosted server's job list (a bare JSON array), as leniently
/// as [`parse_page`]: an entry without a usable `uid` or `state` is skipped
/// and counted, a bad time is unknown. The list is one body for every job
/// (no page to fall back on, no job to look up alone), and any client writes
/// its jobs' keys and values: where half a UTF-16 surrogate pair anywhere
/// (a key, a field the exporter skips) fails the reading, it is read again
/// with each such half as U+FFFD.
pub fn parse_server_jobs(body: &[u8]) -> Result<Page<ServerJob>, DecodeError> {
    match decode_page(body) {
        Err(first) => match without_lone_surrogates(body) {
            Some(mended) => decode_page(&mended).map_err(|_| first),
            None => Err(first),
        },
        ok => ok,
    }
}

/// `body` with every `\u` escape of half a surrogate pair (one not paired
/// with its other half) written `\ufffd` instead; `None` if it has none.
/// Escapes are only read inside JSON strings, so a backslash and the
/// character after it are taken together (`\\ud800` is text, not an
/// escape).
pub(crate) fn without_lone_surrogates(body: &[u8]) -> Option<Vec<u8>> {
    let unit = |at: usize| -> Option<u16> {
        let hex = body.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            if let Some(out) = out.as_mut() {
                out.push(body[i]);
            }
            i += 1;
            continue;
        }
        let width = match unit(i) {
            // A whole pair: a high half, then a low one.
            Some(0xD800..=0xDBFF)
                if unit(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                12
            }
            Some(0xD800..=0xDFFF) => {
                let out = out.get_or_insert_with(|| body[..i].to_vec());
                out.extend_from_slice(b"\\ufffd");
                i += 6;
                continue;
            }
            Some(_) => 6,
            None => 2.min(body.len() - i),
        };
        if let Some(out) = out.as_mut() {
            out.extend_from_slice(&body[i..i + width]);
        }
        i += width;
    }
    out
}

impl Listed for ServerJob {
    type Raw<'de> = RawServerJob<'de>;
    fn from_raw(raw: RawServerJob<'_>) -> Result<Self, SkipReason> {
        let (id, status) = usable(raw.not_object, raw.uid, raw.state)?;
        // A uid is whatever the client that created the job sent: one that
        // spells a ULID says nothing of when the job was made, so no time
        // is read from it (the Cloud mints its ULIDs itself).
        let id = match id {
            JobId::Ulid(u) => JobId::Other(u.to_string().into()),
            other => other,
        };
        let st = raw.stats;
        let render_duration = match (status == JobStatus::Finished, st.started_at, st.finished_at) {
            (true, Some(start), Some(end)) => Some(end.saturating_sub(start) as f64 / 1000.0),
            _ => None,
        };
        Ok(ServerJob {
            job: ApiJob {
                id,
                status,
                created_at: st.created_at,
                started_at: st.started_at,
                finished_at: st.finished_at,
                error_at: st.error_at,
                render_duration,
                template_id: raw
                    .template_src
                    .as_deref()
                    .and_then(super::server::template_of)
                    .map(Into::into),
                error: st.error.filter(|e| !e.is_empty()).map(|e| e.into()),
            },
            updated_at: raw.updated_at,
            tags: raw.tags.filter(|t| !t.is_empty()).map(|t| t.into()),
        })
    }
}

/// A self-hosted server's job as read.
#[derive(Default)]
struct RawServerJob<'de> {
    not_object: bool,
    uid: Option<Cow<'de, str>>,
    state: Option<Cow<'de, str>>,
    stats: Stats<'de>,
    updated_at: Option<UnixMillis>,
    tags: Option<Cow<'de, str>>,
    template_src: Option<Cow<'de, str>>,
}

impl<'de> Fields<'de> for RawServerJob<'de> {
    fn not_object() -> Self {
        RawServerJob {
            not_object: true,
            ..RawServerJob::default()
        }
    }

    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, _: bool) -> Result<(), A::Error> {
        match key {
            // Read from their raw text, unlike the Cloud's id and status: any
            // client may set them (a `uid` on create, any `state` on update),
            // and half a surrogate pair there must cost that job's exactness,
            // not every poll of the account.
            "uid" => self.uid = map.next_value::<Text>()?.0,
            "state" => self.state = map.next_value::<Text>()?.0,
            "updatedAt" => {
                self.updated_at = map.next_value::<Text>()?.0.and_then(|t| parse_millis(&t))
            }
            "tags" => self.tags = map.next_value::<Text>()?.0,
            "template" => self.template_src = map.next_value::<TemplateSrc>()?.0,
            // A worker may report its error as a list of lines; the server's
            // projection joins them so, and so does this reading of whole jobs.
            "error" => self.stats.error = map.next_value::<ErrorText>()?.0,
            // The server has no render duration: a `renderDuration` a job
            // carries is the client's word, not the server's.
            "renderDuration" => {
                map.next_value::<IgnoredAny>()?;
            }
            field if Stats::FIELDS.contains(&field) => self.stats.read(field, map)?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A self-hosted job's `error`: a string, or a list of strings joined by a
/// blank line (as the server's `/jobs/status` joins them); else none.
struct ErrorText<'de>(Option<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for ErrorText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?.get();
        if !raw.starts_with('[') {
            return Ok(ErrorText(json_string(raw)));
        }
        let parts: Vec<&RawValue> = serde_json::from_str(raw).map_err(de::Error::custom)?;
        let lines: Vec<Cow<str>> = parts.iter().filter_map(|p| json_string(p.get())).collect();
        Ok(ErrorText(
            (!lines.is_empty()).then(|| Cow::Owned(lines.join("\n\n"))),
        ))
    }
}

/// `template.src` of a whole job: read from the raw text like [`LenientStats`];
/// any other value, or no `src`, is none.
struct TemplateSrc<'de>(Option<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for TemplateSrc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?.get();
        if !raw.starts_with('{') {
            return Ok(TemplateSrc(None));
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the job's template")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut src = None;
                while let Some(key) = map.next_key::<KeyStr>()? {
                    match key.0.as_ref() {
                        "src" => src = map.next_value::<Text>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(src)
            }
        }
        let src = serde_json::Deserializer::from_str(raw)
            .deserialize_map(V)
            .map_err(de::Error::custom)?;
        Ok(TemplateSrc(src))
    }
}

/// Decodes a `GET /jobs/{id}` body. An object without a usable id or status
/// is an error here: we asked for one job and did not get it.
pub fn parse_job(body: &[u8]) -> Result<ApiJob, DecodeError> {
    parse_one(body, RawJobVisitor::new(false))
}

/// Decodes a webhook delivery: the job as `GET /jobs/{id}` shows it, or the
/// older flat shape some versions of the docs give (`state` for `status`,
/// `createdAt`, `finishedAt`, `renderDuration`... beside the id rather than
/// under `stats`; where both are present, `status` and `stats` win).
pub fn parse_delivery(body: &[u8]) -> Result<ApiJob, DecodeError> {
    parse_one(body, RawJobVisitor::new(true))
}

fn parse_one(body: &[u8], visitor: RawJobVisitor<RawJob>) -> Result<ApiJob, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw = de
        .deserialize_any(visitor)
        .map_err(|e| DecodeError(format!("job: {e}")))?;
    de.end().map_err(|e| DecodeError(format!("job: {e}")))?;
    raw.into_job()
        .map_err(|r| DecodeError(format!("job: {}", r.label().replace('_', " "))))
}

/// What a page is a list of: how one element of its array is read, and
/// what is kept of it.
trait Listed: Sized {
    /// The element as read, its strings borrowed from the body.
    type Raw<'de>: Fields<'de>;
    fn from_raw(raw: Self::Raw<'_>) -> Result<Self, SkipReason>;
}

impl Listed for ApiJob {
    type Raw<'de> = RawJob<'de>;
    fn from_raw(raw: RawJob<'_>) -> Result<Self, SkipReason> {
        raw.into_job()
    }
}

impl Listed for MinimalJob {
    type Raw<'de> = RawMinimal<'de>;
    fn from_raw(raw: RawMinimal<'_>) -> Result<Self, SkipReason> {
        let (id, status) = usable(raw.not_object, raw.id, raw.status)?;
        Ok(MinimalJob { id, status })
    }
}

/// An element read field by field; anything but an object is a skipped
/// entry, not an error.
trait Fields<'de>: Default {
    fn not_object() -> Self;
    /// Reads the value of `key`, or skips it.
    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        flat: bool,
    ) -> Result<(), A::Error>;
}

/// The id and status of an element, or why it is skipped.
fn usable(
    not_object: bool,
    id: Option<Cow<'_, str>>,
    status: Option<Cow<'_, str>>,
) -> Result<(JobId, JobStatus), SkipReason> {
    if not_object {
        return Err(SkipReason::NotAnObject);
    }
    let id = id.filter(|s| !s.is_empty()).ok_or(SkipReason::MissingId)?;
    let status = status
        .filter(|s| !s.is_empty())
        .ok_or(SkipReason::MissingStatus)?;
    Ok((JobId::parse(&id), JobStatus::parse(&status)))
}

/// A job of a minimal listing as read: only what the scan keeps, so that
/// it is small to move (a page holds a thousand).
#[derive(Default)]
struct RawMinimal<'de> {
    not_object: bool,
    id: Option<Cow<'de, str>>,
    status: Option<Cow<'de, str>>,
}

impl<'de> Fields<'de> for RawMinimal<'de> {
    fn not_object() -> Self {
        RawMinimal {
            not_object: true,
            ..RawMinimal::default()
        }
    }

    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A, _: bool) -> Result<(), A::Error> {
        match key {
            "id" => self.id = map.next_value::<Plain>()?.0,
            "status" => self.status = map.next_value::<Plain>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A job as read, its strings borrowed from the body where it has no escapes.
#[derive(Default)]
struct RawJob<'de> {
    not_object: bool,
    id: Option<Cow<'de, str>>,
    status: Option<Cow<'de, str>>,
    created_at: Option<UnixMillis>,
    started_at: Option<UnixMillis>,
    finished_at: Option<UnixMillis>,
    error_at: Option<UnixMillis>,
    render_duration: Option<f64>,
    template_id: Option<Cow<'de, str>>,
    error: Option<Cow<'de, str>>,
    /// The flat delivery shape: its `state`, and its times beside the id.
    state: Option<Cow<'de, str>>,
    flat: Option<Box<Stats<'de>>>,
}

impl RawJob<'_> {
    fn into_job(mut self) -> Result<ApiJob, SkipReason> {
        if let Some(flat) = self.flat.take() {
            let Stats {
                created_at,
                started_at,
                finished_at,
                error_at,
                render_duration,
                error,
            } = *flat;
            self.error = self.error.or(error);
            self.status = self.status.or(self.state.take());
            self.created_at = self.created_at.or(created_at);
            self.started_at = self.started_at.or(started_at);
            self.finished_at = self.finished_at.or(finished_at);
            self.error_at = self.error_at.or(error_at);
            self.render_duration = self.render_duration.or(render_duration);
        }
        let (id, status) = usable(self.not_object, self.id, self.status)?;
        Ok(ApiJob {
            id,
            status,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error_at: self.error_at,
            // Infinite (`1e400`) is kept: an impossible value the tracker
            // counts as such; NaN cannot come from JSON.
            render_duration: self.render_duration,
            template_id: self.template_id.filter(|t| !t.is_empty()).map(|t| t.into()),
            error: self.error.filter(|e| !e.is_empty()).map(|e| e.into()),
        })
    }
}

impl<'de> Fields<'de> for RawJob<'de> {
    fn not_object() -> Self {
        RawJob {
            not_object: true,
            ..RawJob::default()
        }
    }

    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        flat: bool,
    ) -> Result<(), A::Error> {
        match key {
            "id" => self.id = map.next_value::<Plain>()?.0,
            "status" => self.status = map.next_value::<Plain>()?.0,
            "templateId" => self.template_id = map.next_value::<Text>()?.0,
            "stats" => {
                let s = map.next_value::<LenientStats<'de>>()?.0;
                self.created_at = s.created_at;
                self.started_at = s.started_at;
                self.finished_at = s.finished_at;
                self.error_at = s.error_at;
                self.render_duration = s.render_duration;
                self.error = s.error;
            }
            "state" if flat => self.state = map.next_value::<Text>()?.0,
            field if flat && Stats::FIELDS.contains(&field) => {
                self.flat
                    .get_or_insert_with(Box::default)
                    .read(field, map)?;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct PageVisitor<J> {
    capacity: usize,
    listed: std::marker::PhantomData<J>,
}

impl<'de, J: Listed> Visitor<'de> for PageVisitor<J> {
    type Value = Page<J>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of jobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Page<J>, A::Error> {
        let mut page = Page {
            jobs: Vec::with_capacity(seq.size_hint().unwrap_or(self.capacity)),
            ..Page::default()
        };
        while let Some(raw) = seq.next_element_seed(RawJobVisitor::<J::Raw<'de>>::new(false))? {
            page.raw_len += 1;
            match J::from_raw(raw) {
                Ok(j) => page.jobs.push(j),
                Err(r) => page.skipped.push(r),
            }
        }
        Ok(page)
    }
}

/// Reads one element into `R`: accepts anything, only an object yields
/// fields.
struct RawJobVisitor<R> {
    /// Also read the flat shape of a webhook delivery.
    flat: bool,
    raw: std::marker::PhantomData<R>,
}

impl<R> RawJobVisitor<R> {
    fn new(flat: bool) -> Self {
        RawJobVisitor {
            flat,
            raw: std::marker::PhantomData,
        }
    }
}

impl<'de, R: Fields<'de>> DeserializeSeed<'de> for RawJobVisitor<R> {
    type Value = R;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<R, D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! not_object {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<R, E> {
            Ok(R::not_object())
        })*
    };
}

impl<'de, R: Fields<'de>> Visitor<'de> for RawJobVisitor<R> {
    type Value = R;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a job object")
    }

    not_object!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(self) -> Result<R, E> {
        Ok(R::not_object())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<R, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(R::not_object())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<R, A::Error> {
        let mut job = R::default();
        while let Some(key) = map.next_key::<KeyStr>()? {
            job.read(key.0.as_ref(), &mut map, self.flat)?;
        }
        Ok(job)
    }
}

/// A map key, borrowed when the JSON has no escapes in it.
struct KeyStr<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<KeyStr<'de>, E> {
                Ok(KeyStr(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyStr<'de>, E> {
                Ok(KeyStr(v.to_owned().into()))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Default)]
struct Stats<'de> {
    created_at: Option<UnixMillis>,
    started_at: Option<UnixMillis>,
    finished_at: Option<UnixMillis>,
    error_at: Option<UnixMillis>,
    render_duration: Option<f64>,
    error: Option<Cow<'de, str>>,
}

/// A string field, read from its raw JSON text: what serde_json refuses to
/// decode costs that field's exactness, never the page. JavaScript strings
/// are UTF-16 and may hold a lone surrogate (`"\ud83d"`, valid JSON text
/// that serde_json rejects): it reads as U+FFFD. Any value that is not a
/// string is `None`. Text without escapes is borrowed, not copied.
struct Text<'de>(Option<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(Text(json_string(raw.get())))
    }
}

macro_rules! not_plain {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<Plain<'de>, E> {
            Ok(Plain(None))
        })*
    };
}

/// `id` and `status`, which every listing reads for every job: taken as
/// serde_json gives them, borrowed where the JSON has no escapes (the
/// window scan's hot path, a third faster than going by the raw text).
/// Any value that is not a string is `None`. Half a surrogate pair here
/// fails the page, as in every reading of it (ids are ULIDs and statuses
/// words: the API does not write them so).
struct Plain<'de>(Option<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for Plain<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Plain<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Plain<'de>, E> {
                Ok(Plain(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Plain<'de>, E> {
                Ok(Plain(Some(Cow::Owned(v.to_owned()))))
            }
            not_plain!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64);
            fn visit_unit<E: de::Error>(self) -> Result<Plain<'de>, E> {
                Ok(Plain(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Plain<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Plain(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Plain<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Plain(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number field, read from its raw JSON text: `1e400`, which serde_json
/// refuses as out of range, is infinity here (and so an impossible value
/// for the tracker to count), not an error that fails the page. Any value
/// that is not a number is `None`.
struct Number(Option<f64>);

impl<'de> de::Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?.get();
        let number = raw.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        Ok(Number(number.then(|| raw.parse::<f64>().ok()).flatten()))
    }
}

/// The text of a JSON string literal (`raw`, quotes included, already
/// checked as JSON by the parser), with escapes decoded; lone surrogates
/// become U+FFFD. `None` for any other value.
fn json_string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    // UTF-16 units of a run of `\u` escapes, decoded together so that a
    // surrogate pair makes one character and a lone half makes U+FFFD.
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        out.extend(
            char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
        );
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut units, &mut out);
            out.push(c);
            continue;
        }
        let escaped = match chars.next()? {
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                units.push(u16::from_str_radix(&hex, 16).ok()?);
                continue;
            }
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            _ => return None,
        };
        flush(&mut units, &mut out);
        out.push(escaped);
    }
    flush(&mut units, &mut out);
    Some(Cow::Owned(out))
}

impl<'de> Stats<'de> {
    const FIELDS: [&'static str; 6] = [
        "createdAt",
        "startedAt",
        "finishedAt",
        "errorAt",
        "renderDuration",
        "error",
    ];

    /// Reads the value of `field` (any other is skipped).
    fn read<A: MapAccess<'de>>(&mut self, field: &str, map: &mut A) -> Result<(), A::Error> {
        let ts = |v: Text| v.0.and_then(|t| parse_millis(&t));
        match field {
            "createdAt" => self.created_at = ts(map.next_value()?),
            "startedAt" => self.started_at = ts(map.next_value()?),
            "finishedAt" => self.finished_at = ts(map.next_value()?),
            "errorAt" => self.error_at = ts(map.next_value()?),
            "renderDuration" => self.render_duration = map.next_value::<Number>()?.0,
            "error" => self.error = map.next_value::<Text>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// `stats`: an object read field by field; any other value is no stats.
/// Read from its raw text, so that a string or number in it that serde_json
/// refuses cannot fail the job (see [`Text`]).
struct LenientStats<'de>(Stats<'de>);

impl<'de> de::Deserialize<'de> for LenientStats<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?.get();
        let mut stats = Stats::default();
        if raw.starts_with('{') {
            struct V<'a, 'de>(&'a mut Stats<'de>);
            impl<'de> Visitor<'de> for V<'_, 'de> {
                type Value = ();
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("the job's stats")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                    while let Some(key) = map.next_key::<KeyStr>()? {
                        self.0.read(key.0.as_ref(), &mut map)?;
                    }
                    Ok(())
                }
            }
            serde_json::Deserializer::from_str(raw)
                .deserialize_map(V(&mut stats))
                .map_err(de::Error::custom)?;
        }
        Ok(LenientStats(stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_job_yields_every_field() {
        let body = br#"[{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","templateId":null,"status":"finished","progress":100,
            "stats":{"createdAt":"2025-08-14T08:00:00.000Z","updatedAt":"2025-08-14T08:01:10.304Z",
            "startedAt":"2025-08-14T08:00:48.000Z","finishedAt":"2025-08-14T08:01:10.304Z","errorAt":null,
            "totalAssets":3,"renderDuration":22.304,"error":null},"outputUrl":"https://x/y.mp4"}]"#;
        let p = parse_page(body).unwrap();
        assert_eq!(p.raw_len, 1);
        let j = &p.jobs[0];
        assert_eq!(j.id.to_string(), "01JTRDF7HCR8QAHYW8GPCP4S9Y");
        assert_eq!(j.status, JobStatus::Finished);
        assert_eq!(j.created_at, parse_millis("2025-08-14T08:00:00Z"));
        assert_eq!(j.finished_at.unwrap() - j.started_at.unwrap(), 22_304);
        assert_eq!(j.render_duration, Some(22.304));
        assert_eq!(j.error_at, None);
    }

    #[test]
    fn a_minimal_job_has_no_timestamps() {
        let p = parse_page(br#"[{"id":"abc","status":"queued","progress":0}]"#).unwrap();
        assert_eq!(p.jobs[0].id, JobId::Other("abc".into()));
        assert_eq!(p.jobs[0].created_at, None);
    }

    #[test]
    fn a_lone_surrogate_or_a_number_out_of_range_costs_that_field_not_the_page() {
        // JavaScript strings are UTF-16: an API written in it can send half
        // a surrogate pair, valid JSON text that serde_json refuses.
        let body = br#"[
            {"id":"a","status":"error","stats":{"error":"Render crashed \ud83d","createdAt":"2026-01-01T00:00:00Z"}},
            {"id":"b","status":"finished","stats":{"renderDuration":1e400},"templateId":"t\udc00"},
            {"id":"c","status":"finished","stats":"\ud83d"},
            {"id":"d","status":"error","stats":{"error":"ok \ud83d\ude00 \"q\" \\ \/ \u00e9\n"}}
        ]"#;
        for parsed in [parse_page(body), as_bytes::parse_page(body)] {
            let p = parsed.unwrap();
            assert_eq!(p.jobs.len(), 4);
            assert_eq!(p.jobs[0].error.as_deref(), Some("Render crashed \u{fffd}"));
            assert_eq!(p.jobs[0].created_at, parse_millis("2026-01-01T00:00:00Z"));
            assert_eq!(p.jobs[1].render_duration, Some(f64::INFINITY));
            assert_eq!(p.jobs[1].template_id.as_deref(), Some("t\u{fffd}"));
            assert_eq!(p.jobs[2].created_at, None);
            assert_eq!(
                p.jobs[3].error.as_deref(),
                Some("ok \u{1f600} \"q\" \\ / \u{e9}\n")
            );
        }
        let job =
            parse_job(br#"{"id":"a","status":"error","stats":{"error":"\udc00\ud800"}}"#).unwrap();
        assert_eq!(job.error.as_deref(), Some("\u{fffd}\u{fffd}"));
        let minimal =
            parse_minimal_page(br#"[{"id":"a","status":"error","stats":{"error":"\ud83d"}}]"#);
        assert_eq!(minimal.unwrap().jobs.len(), 1);
    }

    #[test]
    fn nulls_and_wrong_types_anywhere_lose_only_that_field() {
        let body = br#"[
            {"id":"a","status":"finished","stats":{"createdAt":12,"startedAt":"not a date","renderDuration":"22"}},
            {"id":"b","status":"error","stats":null},
            {"id":"c","status":"finished","stats":["x"],"extra":{"deep":[1,{"a":null}]}},
            {"id":"d","status":"finished","stats":{"renderDuration":-5}},
            {"id":"e","status":"finished","stats":{"renderDuration":1e308,"createdAt":null}}
        ]"#;
        let p = parse_page(body).unwrap();
        assert_eq!(p.jobs.len(), 5);
        assert!(p
            .jobs
            .iter()
            .all(|j| j.created_at.is_none() && j.started_at.is_none()));
        assert_eq!(
            p.jobs[3].render_duration,
            Some(-5.0),
            "negative durations reach the tracker, which counts them as invalid"
        );
        assert_eq!(p.jobs[4].render_duration, Some(1e308));
    }

    #[test]
    fn jobs_without_a_usable_id_or_status_are_skipped_by_reason() {
        let body = br#"[{"status":"queued"},{"id":7,"status":"queued"},{"id":"x","status":null},{"id":"y"},
            "junk", 3, null, [], {"id":"ok","status":"queued"}]"#;
        let p = parse_page(body).unwrap();
        assert_eq!(p.raw_len, 9);
        assert_eq!(p.jobs.len(), 1);
        use SkipReason::*;
        assert_eq!(
            p.skipped,
            [
                MissingId,
                MissingId,
                MissingStatus,
                MissingStatus,
                NotAnObject,
                NotAnObject,
                NotAnObject,
                NotAnObject
            ]
        );
    }

    #[test]
    fn what_is_not_a_job_list_is_a_decode_error() {
        for body in [
            &b"{\"error\":\"nope\"}"[..],
            b"",
            b"[{\"id\":\"a\",",
            b"<html>",
            b"[]x",
            b"null",
        ] {
            assert!(
                parse_page(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_page(b"[]").unwrap(), Page::default());
    }

    #[test]
    fn a_single_job_needs_an_id_and_a_status() {
        assert!(parse_job(br#"{"id":"a","status":"queued"}"#).is_ok());
        assert!(parse_job(br#"{"id":"a"}"#).is_err());
        assert!(parse_job(br#"[]"#).is_err());
    }

    #[test]
    fn escaped_strings_are_read_like_plain_ones() {
        let p =
            parse_page(br#"[{"id":"01JTRDF7HCR8QAHYW8GPCP4S9\u0059","status":"fin\u0069shed"}]"#)
                .unwrap();
        assert_eq!(p.jobs[0].id.to_string(), "01JTRDF7HCR8QAHYW8GPCP4S9Y");
        assert!(matches!(p.jobs[0].id, JobId::Ulid(_)));
        assert_eq!(p.jobs[0].status, JobStatus::Finished);
    }

    #[test]
    fn an_id_is_a_ulid_exactly_when_the_crate_reads_it_and_spells_it_back() {
        // The ulid crate's reading, and its spelling of what it read: the
        // definition `canonical_ulid` must match.
        let by_the_crate = |s: &str| {
            let mut out = [0u8; ulid::ULID_LEN];
            Ulid::from_string(s)
                .ok()
                .filter(|u| u.array_to_str(&mut out) == s)
                .map(|u| u.0)
        };
        let mut checked = 0;
        let mut ulids = 0;
        let mut check = |id: &str| {
            let expected = by_the_crate(id);
            assert_eq!(canonical_ulid(id.as_bytes()), expected, "{id:?}");
            checked += 1;
            ulids += usize::from(expected.is_some());
        };
        for id in [
            "",
            "00000000000000000000000000",
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01JTRDF7HCR8QAHYW8GPCP4S9",
            "01JTRDF7HCR8QAHYW8GPCP4S9YY",
            // Not ASCII: 26 bytes with a two-byte letter in them.
            "01JTRDF7HCR8QAHYW8GPCP4SÉ",
            "É1JTRDF7HCR8QAHYW8GPCP4S9",
        ] {
            check(id);
        }
        // 200 ULIDs, each with every character changed in turn to every
        // ASCII byte (other letters I, L, O, U, lower case, punctuation,
        // control characters, the first character past 7): 665,600
        // strings beside the ULIDs themselves.
        let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for _ in 0..200 {
            x = x
                .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
                .wrapping_add(1);
            let id = Ulid(x).to_string();
            check(&id);
            for at in 0..ulid::ULID_LEN {
                for c in 0..=127u8 {
                    let mut changed = id.clone().into_bytes();
                    changed[at] = c;
                    check(std::str::from_utf8(&changed).expect("ASCII"));
                }
            }
        }
        assert_eq!(checked, 8 + 200 * (1 + 26 * 128));
        // Per ULID: 32 spellings at 25 places, 8 at the first.
        assert_eq!(ulids, 200 * (1 + 25 * 32 + 8) + 2, "{ulids} of {checked}");
    }

    #[test]
    fn a_minimal_page_is_read_for_ids_and_statuses_alone() {
        let body = br#"[{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","templateId":"t","status":"finished","progress":100,
            "outputUrl":"https://x/y.mp4"},{"status":"queued"},7,{"id":"b","status":"render:dorender","stats":{"createdAt":1}}]"#;
        let whole = parse_page(body).unwrap();
        let minimal = parse_minimal_page(body).unwrap();
        assert_eq!(minimal.raw_len, 4);
        assert_eq!(minimal.skipped, whole.skipped);
        let cut: Vec<MinimalJob> = whole.jobs.into_iter().map(MinimalJob::from).collect();
        assert_eq!(minimal.jobs, cut);
        // A field the scan does not read is not read at all: bytes that are
        // not UTF-8 there fail the whole reading, not the scan's.
        let body = b"[{\"id\":\"a\",\"status\":\"queued\",\"templateId\":\"\xff\"}]";
        assert!(parse_page(body).is_err());
        assert_eq!(parse_minimal_page(body).unwrap().jobs.len(), 1);
        // A lone surrogate escape and a number too large, which serde_json
        // refuses, cost the whole reading nothing: that field is read as
        // well as it can be (see a_lone_surrogate_or_...).
        let bodies: [&[u8]; 2] = [
            br#"[{"id":"a","status":"queued","templateId":"\ud800"}]"#,
            br#"[{"id":"a","status":"queued","stats":{"renderDuration":1e400}}]"#,
        ];
        for body in bodies {
            assert_eq!(parse_page(body).unwrap().jobs.len(), 1);
            assert_eq!(parse_minimal_page(body).unwrap().jobs.len(), 1);
        }
    }

    #[test]
    fn a_body_read_as_text_gives_what_it_gives_read_as_bytes() {
        let bodies: [&[u8]; 12] = [
            br#"[{"id":"a","status":"queued","templateId":"t\u00e9","stats":{"error":"x\ny"}}]"#,
            br#"[{"id":"\ud800","status":"queued"}]"#,
            br#"[{"id":"a","status":"queued","templateId":"\ud800"}]"#,
            br#"[{"id":"a","status":"queued","outputUrl":"\ud800\udc00"}]"#,
            b"[{\"id\":\"a\x01\",\"status\":\"queued\"}]",
            b"[{\"id\":\"a\",\"status\":\"queued\",\"outputUrl\":\"\t\"}]",
            br#"[{"id":"a","status":"queued","x":"\q"}]"#,
            br#"[{"i\u0064":"a","status":"queued"},{"id":"b","status":"queued","stats":{"renderDuration":1e400}}]"#,
            br#"[{"id":"a","status":"queued","x":[[[[{"y":null}]]]]}] x"#,
            "[{\"id\":\"é\",\"status\":\"render:dorender\"}]".as_bytes(),
            br#"[{"id":"a","status":"queued"},"#,
            b"[{\"id\":\"a\",\"status\":\"q\xffueued\"}]",
        ];
        for body in bodies {
            let shown = String::from_utf8_lossy(body);
            assert_eq!(parse_page(body), as_bytes::parse_page(body), "{shown}");
            assert_eq!(
                parse_minimal_page(body),
                as_bytes::parse_minimal_page(body),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_lowercase_ulid_keeps_its_spelling() {
        let id = JobId::parse("01jtrdf7hcr8qahyw8gpcp4s9y");
        assert_eq!(id.to_string(), "01jtrdf7hcr8qahyw8gpcp4s9y");
        assert_eq!(
            JobId::parse("01JTRDF7HCR8QAHYW8GPCP4S9Y").created_hint(),
            Some(1_746_723_642_924)
        );
    }

    #[test]
    fn a_delivery_of_the_full_job_reads_like_a_look_up() {
        let body = br#"{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","status":"finished","outputUrl":"https://x/job.mp4",
            "stats":{"createdAt":"2025-08-14T08:00:00Z","startedAt":"2025-08-14T08:00:30Z",
            "finishedAt":"2025-08-14T08:01:10.304Z","renderDuration":22.304},"data":{"order":7}}"#;
        let job = parse_delivery(body).unwrap();
        assert_eq!(job, parse_job(body).unwrap());
        assert_eq!(job.status.as_str(), "finished");
        assert_eq!(job.render_duration, Some(22.304));
        assert!(job.started_at.is_some() && job.created_at.is_some());
    }

    #[test]
    fn a_delivery_in_the_older_flat_shape_is_read_too() {
        let body = br#"{"id":"01JTRDF7HCR8QAHYW8GPCP4S9Y","state":"finished","outputUrl":"u",
            "finishedAt":"2025-08-14T08:01:10.304Z","renderDuration":22.304}"#;
        let job = parse_delivery(body).unwrap();
        assert_eq!(job.status.as_str(), "finished");
        assert_eq!(job.render_duration, Some(22.304));
        assert_eq!(job.finished_at, parse_millis("2025-08-14T08:01:10.304Z"));
        // A look-up answer is not read that way: the spec has no such fields.
        assert!(parse_job(body).is_err());
    }

    #[test]
    fn where_a_delivery_has_both_shapes_status_and_stats_win() {
        let body = br#"{"state":"error","renderDuration":1,"id":"A","status":"finished",
            "stats":{"renderDuration":2}}"#;
        let job = parse_delivery(body).unwrap();
        assert_eq!(job.status.as_str(), "finished");
        assert_eq!(job.render_duration, Some(2.0));
    }

    #[test]
    fn a_delivery_that_is_not_a_job_is_refused_with_what_is_missing() {
        let cases: [(&[u8], &str); 5] = [
            (b"{\"order\":7}", "missing id"),
            (b"{\"id\":\"A\"}", "missing status"),
            (b"[1,2]", "not an object"),
            (b"{\"id\":", "job:"),
            (b"\"finished\"", "not an object"),
        ];
        for (body, why) in cases {
            let e = parse_delivery(body).unwrap_err().to_string();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }
}
