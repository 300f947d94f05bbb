//! Any bytes as a `GET /jobs` body: an error or a page, never a panic, and
//! every job kept has an id and a status. The window scan's reading of a
//! minimal page (`parse_minimal_page`, which skips every other field
//! unread) fails only where the whole reading fails too, and where both
//! read the page they agree: the same jobs (ids and statuses), the same
//! skipped entries. (The whole reading may fail where the scan's does not:
//! on bytes that are not UTF-8 in a field the scan does not read.) Both
//! readings give exactly what they give when the body is read as bytes
//! (`as_bytes`), without the shortcut for a body that is UTF-8 throughout:
//! the same jobs, skipped entries and error text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nexrender_exporter::api::job::as_bytes;
use nexrender_exporter::api::{parse_minimal_page, parse_page, MinimalJob};

fuzz_target!(|data: &[u8]| {
    let whole = parse_page(data);
    let minimal = parse_minimal_page(data);
    assert_eq!(whole, as_bytes::parse_page(data));
    assert_eq!(minimal, as_bytes::parse_minimal_page(data));
    assert!(minimal.is_ok() || whole.is_err(), "{whole:?} / {minimal:?}");
    if let (Ok(page), Ok(minimal)) = (whole, minimal) {
        assert!(page.jobs.len() + page.skipped.len() == page.raw_len);
        for j in &page.jobs {
            assert!(!j.id.to_string().is_empty());
            // Never NaN; infinite (1e400) and negative ones are kept for the
            // tracker to count as impossible values.
            assert!(j.render_duration.is_none_or(|d| !d.is_nan()));
        }
        assert_eq!(minimal.raw_len, page.raw_len);
        assert_eq!(minimal.skipped, page.skipped);
        let cut: Vec<MinimalJob> = page.jobs.into_iter().map(MinimalJob::from).collect();
        assert_eq!(minimal.jobs, cut);
    }
});
