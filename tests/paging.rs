//! Window scans stay exact while the job list changes between page reads.

mod support;

use std::sync::Arc;
use std::time::Duration;

use nexrender_exporter::api::RequestObserver;
use nexrender_exporter::api::{ApiClient, ClientPolicy};
use nexrender_exporter::poll::scan_window;
use nexrender_exporter::secret::Secret;
use nexrender_exporter::tracker::JobTracker;
use nexrender_simulator::status::JobStatus;
use nexrender_simulator::testkit::{fake_server, ok};
use nexrender_simulator::{Endpoint, Fault, FaultRule, Schedule, ScriptedJob};
use support::*;

struct Ignore;
impl RequestObserver for Ignore {
    fn request_done(&self, _: nexrender_exporter::api::Endpoint, _: &str, _: Duration) {}
}

fn client(sim: &nexrender_simulator::RunningSimulator) -> ApiClient {
    ApiClient::new(
        &sim.api_url(),
        Secret::new(TOKEN),
        ClientPolicy::default(),
        Arc::new(Ignore),
    )
    .unwrap()
}

#[tokio::test]
async fn deletions_and_status_changes_between_page_reads_lose_no_job_and_repeat_none() {
    let sim = scripted_simulator().await;
    let t = now();
    let ids: Vec<_> = sim.sim.with_farm(|f| {
        (0..250)
            .map(|i| f.insert_scripted(ScriptedJob::queued(t - 600_000 + i * 100)))
            .collect()
    });
    // The third page read is held back while the list changes underneath.
    sim.sim.add_fault(FaultRule::new(
        Endpoint::ListJobs,
        Fault::Slow {
            delay: Duration::from_millis(600),
        },
        Schedule::EveryNth { n: 3 },
    ));
    let c = client(&sim);
    let asked = sim.sim.requests();
    let scan = tokio::spawn(async move {
        scan_window(&c, JobTracker::new().scan_builder(50, 0), t - 3_600_000, t).await
    });
    // The third page is asked for (and held back): two pages are read.
    while sim.sim.requests() < asked + 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.sim.with_farm(|f| {
        // Five jobs already read are deleted: later offsets shift left by 5.
        for id in &ids[10..15] {
            assert!(f.remove(*id));
        }
        // Jobs change status (no effect on order without a state filter)...
        for id in &ids[200..210] {
            f.script_status(*id, JobStatus::Finished, now()).unwrap();
        }
        // ...and new jobs arrive after the window's end.
        f.insert_scripted(ScriptedJob::queued(now() + 1000));
    });
    let scan = scan.await.unwrap().unwrap();
    let got: Vec<_> = scan.scan.iter().map(|e| e.id.to_string()).collect();
    // The deleted jobs were read before they went; without overlapping pages
    // the five jobs after offset 100 would have shifted out of reach.
    let want: Vec<_> = ids.iter().map(|u| u.to_string()).collect();
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    assert!(missing.is_empty(), "missed {missing:?}");
    assert!(
        got == want,
        "every job exactly once, oldest first ({} seen, {} expected)",
        got.len(),
        want.len()
    );
    assert!(
        scan.skipped.is_empty(),
        "the overlap's repeats are expected, not skipped jobs: {:?}",
        scan.skipped
    );
}

#[tokio::test]
async fn a_list_exactly_one_page_long_ends_with_an_empty_page() {
    let sim = scripted_simulator().await;
    let t = now();
    sim.sim.with_farm(|f| {
        for i in 0..100 {
            f.insert_scripted(ScriptedJob::queued(t - 600_000 + i));
        }
    });
    let c = client(&sim);
    let scan = scan_window(&c, JobTracker::new().scan_builder(100, 0), t - 3_600_000, t)
        .await
        .unwrap();
    assert_eq!((scan.scan.len(), scan.requests), (100, 2));
    let scan = scan_window(
        &c,
        JobTracker::new().scan_builder(1000, 0),
        t - 3_600_000,
        t,
    )
    .await
    .unwrap();
    assert_eq!((scan.scan.len(), scan.requests), (100, 1));
}

/// A client of a fake API whose `GET /jobs` answer is `page(from, limit)`.
async fn fake_api(page: impl Fn(usize, usize) -> String + Send + Sync + 'static) -> ApiClient {
    let addr = fake_server(move |req| {
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let from = q.get("from").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(50);
        std::future::ready(ok(page(from, limit)))
    })
    .await;
    ApiClient::new(
        &format!("http://{addr}"),
        Secret::new("x"),
        ClientPolicy::default(),
        Arc::new(Ignore),
    )
    .unwrap()
}

fn jobs_json(ids: impl Iterator<Item = usize>) -> String {
    format!(
        "[{}]",
        ids.map(|i| format!(r#"{{"id":"job-{i}","status":"queued"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    )
}

#[tokio::test]
async fn the_same_id_on_two_pages_is_kept_once_and_counted_as_skipped() {
    // 120 jobs; the API repeats job 5 at offset 70 (a job shown twice).
    let c = fake_api(|from, limit| {
        let ids: Vec<usize> = (0..121)
            .map(|i| {
                if i == 70 {
                    5
                } else if i > 70 {
                    i - 1
                } else {
                    i
                }
            })
            .collect();
        jobs_json(ids.into_iter().skip(from).take(limit))
    })
    .await;
    let scan = scan_window(&c, JobTracker::new().scan_builder(50, 0), 0, now())
        .await
        .unwrap();
    assert_eq!(scan.scan.len(), 120);
    assert_eq!(
        scan.skipped,
        vec![nexrender_exporter::api::SkipReason::DuplicateId]
    );
}

#[tokio::test]
async fn an_empty_page_in_the_middle_fails_the_scan_instead_of_hiding_the_rest() {
    // 150 jobs, but the page at offset 80 comes back empty, although it
    // should start with the 10 jobs the page before ended with. Taken as
    // the end, it would hide 60 jobs (and a first poll would make them a
    // baseline); it is an incomplete scan instead, and the poll fails.
    let c = fake_api(|from, limit| {
        if (80..100).contains(&from) {
            "[]".into()
        } else {
            jobs_json((from..150).take(limit))
        }
    })
    .await;
    let err = scan_window(&c, JobTracker::new().scan_builder(50, 0), 0, now())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "incomplete_scan", "{err}");
    // A list that really ends on a page boundary is read whole.
    let c = fake_api(|from, limit| jobs_json((from..100).take(limit))).await;
    let read = scan_window(&c, JobTracker::new().scan_builder(50, 0), 0, now())
        .await
        .unwrap();
    assert_eq!((read.scan.len(), read.requests), (100, 3));
}

#[tokio::test]
async fn an_api_that_ignores_the_offset_is_an_error_not_an_endless_loop() {
    // A proxy that answers every offset with the same full page.
    let c = fake_api(|_, _| jobs_json(0..50)).await;
    let err = scan_window(&c, JobTracker::new().scan_builder(50, 0), 0, now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not paging"), "{err}");
}
