//! Any bytes as a self-hosted server's job list (`GET /api/v1/jobs/status`
//! or `GET /api/v1/jobs`): an error or a page, never a panic; every job kept
//! has an id and a state; kept and skipped add up; a render duration is
//! never NaN; a template id is never empty, never over 200 bytes, never
//! holds a query or credentials the source had. The listing made of it
//! (tags filtered, ids made unique, stale jobs counted, at a time that may
//! be anywhere) answers every page and look-up without a panic, and the
//! pages of each listing together hold each of its jobs once.
#![no_main]
use std::collections::HashSet;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nexrender_exporter::api::{parse_server_jobs, ListFilter, ListPageQuery, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, body)) = data.split_first() else {
        return;
    };
    let Ok(page) = parse_server_jobs(body) else {
        return;
    };
    assert_eq!(page.jobs.len() + page.skipped.len(), page.raw_len);
    for j in &page.jobs {
        assert!(!j.job.id.to_string().is_empty());
        assert!(j.job.render_duration.is_none_or(|d| !d.is_nan()));
        if let Some(t) = &j.job.template_id {
            assert!(!t.is_empty() && t.len() <= 200, "{t}");
            assert!(!t.contains('?') && !t.contains('#'), "{t}");
            if let Some(rest) = t.split_once("://").map(|(_, rest)| rest) {
                let authority = rest.split('/').next().unwrap_or_default();
                assert!(!authority.contains('@'), "credentials kept: {t}");
            }
        }
    }
    let tags: Vec<String> = match knobs % 3 {
        0 => vec![],
        1 => vec!["tv".into()],
        _ => vec!["tv".into(), "web".into()],
    };
    let now = i64::from(knobs).wrapping_mul(86_400_000_000).wrapping_sub(1 << 40);
    let snapshot = Snapshot::new(page, &tags, Duration::from_secs(u64::from(knobs) * 60), now);
    for filter in [
        ListFilter::Live,
        ListFilter::Created { from_date: i64::MIN, to_date: i64::MAX },
    ] {
        let mut seen = HashSet::new();
        let mut from = 0;
        loop {
            let q = ListPageQuery { from, limit: 1 + u32::from(knobs % 7), filter };
            let p = snapshot.page(&q);
            for j in &p.jobs {
                assert!(seen.insert(j.id.clone()), "{} twice", j.id);
                assert_eq!(snapshot.job(&j.id).as_ref(), Some(j));
            }
            if p.jobs.len() < q.limit as usize {
                break;
            }
            from += p.jobs.len();
        }
        if filter != ListFilter::Live {
            assert_eq!(seen.len(), snapshot.len());
        }
    }
});
