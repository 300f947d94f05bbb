//! What the benchmarks share: the serde floor every decoding figure is
//! measured against.

use serde::Deserialize;

/// The floor: the fields the exporter reads, deserialised by serde's
/// derive from the same bytes, nothing checked.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct FloorJob {
    id: Option<String>,
    status: Option<String>,
    stats: Option<FloorStats>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FloorStats {
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    error_at: Option<String>,
    render_duration: Option<f64>,
}

/// Decodes one page body the floor's way.
pub fn floor(body: &[u8]) -> usize {
    serde_json::from_slice::<Vec<FloorJob>>(body)
        .map(|v| v.len())
        .unwrap_or(0)
}
