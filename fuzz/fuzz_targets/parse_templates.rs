//! Any bytes as a `GET /templates` body: an error or a list of names,
//! never a panic; every name kept has a non-empty id.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = nexrender_exporter::api::parse_templates(data) {
        assert!(names.iter().all(|t| !t.id.is_empty()));
    }
});
