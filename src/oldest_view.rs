//! The oldest jobs of each account as people and scripts read them: a
//! table per account on the landing page, and the JSON of
//! `/api/v1/oldest-jobs`. Plain functions of the board and the time.

use serde::Serialize;

use crate::board::{AccountState, ListedJob};
use crate::clock::UnixMillis;
use crate::config::OldestJobsConfig;
use crate::timefmt::format_millis;

/// The path of the JSON answer.
pub const PATH: &str = "/api/v1/oldest-jobs";

#[derive(Serialize)]
struct Answer<'a> {
    /// When this answer was made (RFC 3339, UTC).
    generated_at: String,
    accounts: Vec<AccountJobs<'a>>,
}

#[derive(Serialize)]
struct AccountJobs<'a> {
    account: &'a str,
    /// The poll the list is from; `null` before the first good one.
    last_success: Option<String>,
    jobs: Vec<JobJson<'a>>,
}

#[derive(Serialize)]
struct JobJson<'a> {
    status: &'a str,
    id: &'a str,
    template: Option<&'a str>,
    template_id: Option<&'a str>,
    /// Whether its look-up was read: until then `template` is not known.
    looked_up: bool,
    created: String,
    started: Option<String>,
    /// Seconds since it was created, at `generated_at`.
    age_seconds: f64,
    /// Seconds since it started, for a job in progress.
    running_seconds: Option<f64>,
    url: Option<String>,
}

fn seconds_since(at: UnixMillis, now: UnixMillis) -> f64 {
    now.saturating_sub(at).max(0) as f64 / 1000.0
}

/// The JSON of `/api/v1/oldest-jobs` at `now`.
pub fn json(accounts: &[AccountState], links: &OldestJobsConfig, now: UnixMillis) -> String {
    let answer = Answer {
        generated_at: format_millis(now),
        accounts: accounts
            .iter()
            .map(|a| AccountJobs {
                account: &a.name,
                last_success: a.last_success.map(format_millis),
                jobs: a
                    .oldest
                    .iter()
                    .map(|j| JobJson {
                        status: &j.status,
                        id: &j.id,
                        template: j.template.as_deref(),
                        template_id: j.template_id.as_deref(),
                        looked_up: j.looked_up,
                        created: format_millis(j.created),
                        started: j.started.map(format_millis),
                        age_seconds: seconds_since(j.created, now),
                        running_seconds: j.started.map(|s| seconds_since(s, now)),
                        url: links.link(&a.name, &j.id),
                    })
                    .collect(),
            })
            .collect(),
    };
    // Strings, numbers and options only: serialising cannot fail.
    serde_json::to_string_pretty(&answer).unwrap_or_default() + "\n"
}

/// "3d 4h", "2h 05m", "4m 09s", "12s": an age at a glance.
fn human(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `s` as HTML text or a quoted attribute value (the landing page's too).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn row(account: &str, j: &ListedJob, links: &OldestJobsConfig, now: UnixMillis) -> String {
    let id = escape(&j.id);
    let job = match links.link(account, &j.id) {
        Some(url) => format!("<a href=\"{}\">{id}</a>", escape(&url)),
        None => id,
    };
    let template = match (&j.template, j.looked_up) {
        (Some(t), _) => escape(t),
        (None, true) => "none".to_owned(),
        (None, false) => "(not looked up yet)".to_owned(),
    };
    let (started, running) = match j.started {
        Some(at) => (format_millis(at), human(seconds_since(at, now))),
        None => (String::new(), String::new()),
    };
    format!(
        "<tr><td>{}</td><td><code>{job}</code></td><td>{template}</td><td>{}</td><td>{}</td><td>{started}</td><td>{running}</td></tr>\n",
        escape(&j.status),
        format_millis(j.created),
        human(seconds_since(j.created, now)),
    )
}

/// The landing page's section: per account, its oldest jobs by status.
pub fn html(accounts: &[AccountState], links: &OldestJobsConfig, now: UnixMillis) -> String {
    if links.per_status == 0 {
        return String::new();
    }
    let mut out = format!(
        "<h2>Oldest jobs</h2>\n<p>The {} oldest of each status not ended, per account, at its last good poll (also as JSON: <a href=\"{PATH}\">{PATH}</a>).</p>\n",
        links.per_status
    );
    for a in accounts {
        out.push_str(&format!("<h3>{}</h3>\n", escape(&a.name)));
        if a.oldest.is_empty() {
            out.push_str("<p>None waiting or rendering.</p>\n");
            continue;
        }
        out.push_str("<table border=\"1\" cellpadding=\"4\">\n<tr><th>status</th><th>job</th><th>template</th><th>created (UTC)</th><th>age</th><th>started (UTC)</th><th>running for</th></tr>\n");
        for j in &a.oldest {
            out.push_str(&row(&a.name, j, links, now));
        }
        out.push_str("</table>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_767_225_600_000;

    fn account() -> AccountState {
        AccountState {
            name: "main".into(),
            last_success: Some(NOW - 5_000),
            oldest: vec![
                ListedJob {
                    status: "queued".into(),
                    id: "01JQUEUED".into(),
                    template: Some("Promo <30s>".into()),
                    template_id: Some("tpl-1".into()),
                    created: NOW - 2_700_000,
                    started: None,
                    looked_up: true,
                },
                ListedJob {
                    status: "render:dorender".into(),
                    id: "odd/id".into(),
                    template: None,
                    template_id: None,
                    created: NOW - 90_000_000,
                    started: Some(NOW - 10_000_000),
                    looked_up: false,
                },
            ],
            ..AccountState::default()
        }
    }

    fn links(url: Option<&str>) -> OldestJobsConfig {
        OldestJobsConfig {
            per_status: 5,
            job_url: url.map(Into::into),
        }
    }

    #[test]
    fn the_json_has_each_job_with_its_age_and_link() {
        let text = json(
            &[account()],
            &links(Some("https://app.example.com/{account}/jobs/{id}")),
            NOW,
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let jobs = &v["accounts"][0]["jobs"];
        assert_eq!(jobs[0]["id"], "01JQUEUED");
        assert_eq!(jobs[0]["age_seconds"], 2700.0);
        assert_eq!(jobs[0]["running_seconds"], serde_json::Value::Null);
        assert_eq!(
            jobs[0]["url"],
            "https://app.example.com/main/jobs/01JQUEUED"
        );
        assert_eq!(jobs[1]["running_seconds"], 10000.0);
        assert_eq!(
            jobs[1]["url"], "https://app.example.com/main/jobs/odd%2Fid",
            "the id is encoded"
        );
        assert_eq!(jobs[1]["looked_up"], false);
        assert_eq!(v["accounts"][0]["last_success"], format_millis(NOW - 5_000));
    }

    #[test]
    fn the_page_links_ids_only_when_a_url_is_set_and_escapes_what_the_api_wrote() {
        let page = html(&[account()], &links(Some("https://x/{id}")), NOW);
        assert!(
            page.contains("<a href=\"https://x/01JQUEUED\">01JQUEUED</a>"),
            "{page}"
        );
        assert!(page.contains("Promo &lt;30s&gt;"));
        assert!(page.contains("45m 00s"), "{page}");
        assert!(page.contains("1d 1h"), "{page}");
        assert!(page.contains("(not looked up yet)"));
        let plain = html(&[account()], &links(None), NOW);
        assert!(!plain.contains("<a href=\"https://"));
        assert!(html(
            &[account()],
            &OldestJobsConfig {
                per_status: 0,
                job_url: None
            },
            NOW
        )
        .is_empty());
    }
}
