//! Any bytes as a `GET /jobs` body: an error or a page, never a panic, and
//! every job kept has an id and a status.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = nexrender_exporter::api::parse_page(data) {
        assert!(page.jobs.len() + page.skipped.len() == page.raw_len);
        for j in &page.jobs {
            assert!(!j.id.to_string().is_empty());
            assert!(j.render_duration.is_none_or(f64::is_finite));
        }
    }
});
