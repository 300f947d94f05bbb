//! `GET /jobs` query parameters, validated the way the spec describes.

use crate::clock::UnixMillis;
use crate::status::JobStatus;
use crate::timefmt::parse_millis;

pub const MAX_LIMIT: usize = 1000;
/// The spec leaves the default page size undocumented; the vendor CLI sends
/// 50, so the simulator uses that.
pub const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    OldestFirst,
    NewestFirst,
    Random,
    /// Jobs carry no priority in v2, so this falls back to creation order.
    Priority,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    pub minimal: bool,
    pub from: usize,
    pub limit: usize,
    pub from_date: Option<UnixMillis>,
    pub to_date: Option<UnixMillis>,
    pub states: Option<Vec<JobStatus>>,
    pub exclude_states: Option<Vec<JobStatus>>,
    pub sort: Sort,
    pub tags: Option<Vec<String>>,
}

/// A 400 answer: the message, and the parameter it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub field: &'static str,
    pub message: String,
}

impl QueryError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

fn parse_states(field: &'static str, v: &str) -> Result<Vec<JobStatus>, QueryError> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(QueryError::new(
            field,
            format!("{field} must be a comma-separated list of statuses, got '{v}'"),
        ));
    }
    Ok(parts.into_iter().map(JobStatus::parse).collect())
}

fn valid_tags(v: &str) -> bool {
    !v.is_empty()
        && v.split(',').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl ListQuery {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Result<ListQuery, QueryError> {
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            ..ListQuery::default()
        };
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            q.take(&k, &v)?;
        }
        Ok(q)
    }

    /// Takes one parameter, `k=v`.
    fn take(&mut self, k: &str, v: &str) -> Result<(), QueryError> {
        match k {
            "minimal" => self.minimal = parse_minimal(v)?,
            "from" => self.from = parse_from(v)?,
            "limit" => self.limit = parse_limit(v)?,
            "from_date" => self.from_date = Some(parse_date("from_date", v)?),
            "to_date" => self.to_date = Some(parse_date("to_date", v)?),
            "states" => self.states = Some(parse_states("states", v)?),
            "exclude_states" => self.exclude_states = Some(parse_states("exclude_states", v)?),
            "sort" => self.sort = parse_sort(v)?,
            "tags" => self.tags = Some(parse_tags(v)?),
            // Unknown parameters are ignored, as an OpenAPI validator does.
            _ => {}
        }
        Ok(())
    }
}

fn parse_minimal(v: &str) -> Result<bool, QueryError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueryError::new(
            "minimal",
            format!("minimal must be 'true' or 'false', got '{v}'"),
        )),
    }
}

fn parse_from(v: &str) -> Result<usize, QueryError> {
    v.parse::<usize>()
        .map_err(|_| QueryError::new("from", format!("from must be an integer >= 0, got '{v}'")))
}

fn parse_limit(v: &str) -> Result<usize, QueryError> {
    v.parse::<usize>()
        .ok()
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or_else(|| {
            QueryError::new(
                "limit",
                format!("limit must be an integer between 1 and {MAX_LIMIT}, got '{v}'"),
            )
        })
}

/// `from_date` or `to_date`.
fn parse_date(field: &'static str, v: &str) -> Result<UnixMillis, QueryError> {
    parse_millis(v).ok_or_else(|| {
        QueryError::new(
            field,
            format!("{field} must be an ISO 8601 date-time like 2025-08-14T08:01:10Z, got '{v}'"),
        )
    })
}

fn parse_sort(v: &str) -> Result<Sort, QueryError> {
    match v {
        "oldest_first" => Ok(Sort::OldestFirst),
        "newest_first" => Ok(Sort::NewestFirst),
        "random" => Ok(Sort::Random),
        "priority" => Ok(Sort::Priority),
        _ => Err(QueryError::new(
            "sort",
            format!("sort must be one of oldest_first, newest_first, random, priority; got '{v}'"),
        )),
    }
}

fn parse_tags(v: &str) -> Result<Vec<String>, QueryError> {
    if !valid_tags(v) {
        return Err(QueryError::new(
            "tags",
            format!("tags must match ^[a-zA-Z0-9-_]+(,[a-zA-Z0-9-_]+)*$, got '{v}'"),
        ));
    }
    Ok(v.split(',').map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_query_lists_the_first_page_oldest_first() {
        let q = ListQuery::parse("").unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(q.from, 0);
        assert_eq!(q.sort, Sort::OldestFirst);
        assert!(!q.minimal);
    }

    #[test]
    fn every_parameter_is_understood() {
        let q = ListQuery::parse(
            "minimal=true&from=2000&limit=1000&from_date=2025-08-14T00:00:00Z&to_date=2025-08-15T00%3A00%3A00.500Z\
             &states=queued,render:dorender&exclude_states=error&sort=newest_first&tags=social,a-b_c",
        )
        .unwrap();
        assert!(q.minimal);
        assert_eq!((q.from, q.limit), (2000, 1000));
        assert_eq!(q.from_date, parse_millis("2025-08-14T00:00:00Z"));
        assert_eq!(q.to_date, parse_millis("2025-08-15T00:00:00.500Z"));
        assert_eq!(
            q.states,
            Some(vec![JobStatus::Queued, JobStatus::Rendering])
        );
        assert_eq!(q.exclude_states, Some(vec![JobStatus::Error]));
        assert_eq!(q.sort, Sort::NewestFirst);
        assert_eq!(q.tags, Some(vec!["social".into(), "a-b_c".into()]));
    }

    #[test]
    fn what_the_spec_rejects_is_rejected_naming_the_parameter() {
        for (raw, field) in [
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("limit=ten", "limit"),
            ("from=-1", "from"),
            ("from_date=yesterday", "from_date"),
            ("to_date=2025-13-40T00:00:00Z", "to_date"),
            ("sort=fastest", "sort"),
            ("minimal=yes", "minimal"),
            ("tags=a%20b", "tags"),
            ("tags=a,,b", "tags"),
            ("states=queued,,error", "states"),
        ] {
            let e = ListQuery::parse(raw).unwrap_err();
            assert_eq!(e.field, field, "{raw}");
            assert!(e.message.contains(field), "{raw}: {}", e.message);
        }
    }
}
