//! What the benchmarks share: the serde floors every decoding figure is
//! measured against.

use serde::Deserialize;

/// The floor: the fields the exporter reads, deserialised by serde's
/// derive from the same bytes, nothing checked, strings borrowed from the
/// body as the exporter's parser borrows them (no allocation per field).
/// A string with an escape cannot be borrowed and fails the page; the
/// simulator writes none, and the callers check that every job was read.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct FloorJob<'a> {
    #[serde(borrow)]
    id: Option<&'a str>,
    #[serde(borrow)]
    status: Option<&'a str>,
    #[serde(borrow)]
    stats: Option<FloorStats<'a>>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FloorStats<'a> {
    #[serde(borrow)]
    created_at: Option<&'a str>,
    #[serde(borrow)]
    started_at: Option<&'a str>,
    #[serde(borrow)]
    finished_at: Option<&'a str>,
    #[serde(borrow)]
    error_at: Option<&'a str>,
    render_duration: Option<f64>,
}

/// The earlier floor, kept as a second reference: the same fields into
/// owned `String`s, one allocation per string field present.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct OwningFloorJob {
    id: Option<String>,
    status: Option<String>,
    stats: Option<OwningFloorStats>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwningFloorStats {
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    error_at: Option<String>,
    render_duration: Option<f64>,
}

/// Decodes one page body the borrowing floor's way; the jobs read, or 0
/// when the page does not decode.
pub fn floor(body: &[u8]) -> usize {
    serde_json::from_slice::<Vec<FloorJob<'_>>>(body)
        .map(|v| v.len())
        .unwrap_or(0)
}

/// The borrowing floor with the exporter's own shortcut: the body checked
/// for UTF-8 once, in one pass, then read as text, so that serde_json does
/// not check each string again. The strongest reference here; the
/// issue's target is set against [`floor`].
#[allow(dead_code)]
pub fn text_floor(body: &[u8]) -> usize {
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<Vec<FloorJob<'_>>>(text).ok())
        .map_or(0, |v| v.len())
}

/// Decodes one page body the owning floor's way.
#[allow(dead_code)]
pub fn owning_floor(body: &[u8]) -> usize {
    serde_json::from_slice::<Vec<OwningFloorJob>>(body)
        .map(|v| v.len())
        .unwrap_or(0)
}
