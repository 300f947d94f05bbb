//! Any bytes as a `GET /jobs/{id}` body: an error or a job, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nexrender_exporter::api::parse_job(data);
});
