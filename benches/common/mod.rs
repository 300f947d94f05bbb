//! What the benchmarks share: the serde floors every decoding figure is
//! measured against. Each reads the fields the exporter reads of that kind
//! of page (a minimal page: `id` and `status`; a full page: those, the
//! template and `stats`), with serde's derive, nothing checked, into a
//! list that reserves room up front as the exporter's does.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

/// A job of a minimal page, its strings borrowed from the body as the
/// exporter's parser borrows them (no allocation per field). A string with
/// an escape cannot be borrowed and fails the page; the simulator writes
/// none, and the callers check that every job was read.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct MinimalFloorJob<'a> {
    #[serde(borrow)]
    id: Option<&'a str>,
    #[serde(borrow)]
    status: Option<&'a str>,
}

/// The earlier floor: the same fields into owned `String`s.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct OwningMinimalFloorJob {
    id: Option<String>,
    status: Option<String>,
}

/// A job of a full page, borrowing.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FloorJob<'a> {
    #[serde(borrow)]
    id: Option<&'a str>,
    #[serde(borrow)]
    status: Option<&'a str>,
    #[serde(borrow)]
    template_id: Option<&'a str>,
    #[serde(borrow)]
    stats: Option<FloorStats<'a>>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize)]
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
    #[serde(borrow)]
    error: Option<&'a str>,
}

/// A job of a full page, owning.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwningFloorJob {
    id: Option<String>,
    status: Option<String>,
    template_id: Option<String>,
    stats: Option<OwningFloorStats>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwningFloorStats {
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    error_at: Option<String>,
    render_duration: Option<f64>,
    error: Option<String>,
}

/// A JSON array into a `Vec<T>` with room for `capacity` up front (serde's
/// own `Vec` starts empty: serde_json does not know an array's length).
struct Reserved<T>(usize, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Reserved<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut v = Vec::with_capacity(self.0);
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(v)
    }
}

/// The jobs of `body` read as `T`, from bytes or (`text`) from the body
/// checked for UTF-8 once; 0 when the page does not decode.
fn read<'a, T: Deserialize<'a>>(body: &'a [u8], text: bool) -> usize {
    // The exporter's reservation: a job takes at least ~100 bytes.
    let visitor = Reserved::<T>((body.len() / 100).min(1000), PhantomData);
    let jobs = if text {
        match std::str::from_utf8(body) {
            Ok(t) => serde_json::Deserializer::from_str(t).deserialize_seq(visitor),
            Err(_) => return 0,
        }
    } else {
        serde_json::Deserializer::from_slice(body).deserialize_seq(visitor)
    };
    jobs.map_or(0, |v| v.len())
}

/// The floor of a minimal page: borrowing, from bytes (issue #14's target
/// is set against it).
#[allow(dead_code)]
pub fn floor(body: &[u8]) -> usize {
    read::<MinimalFloorJob<'_>>(body, false)
}

/// The floor of a minimal page with the exporter's own shortcut: the body
/// checked for UTF-8 once, in one pass, then read as text, so that
/// serde_json does not check each string again. The strongest reference.
#[allow(dead_code)]
pub fn text_floor(body: &[u8]) -> usize {
    read::<MinimalFloorJob<'_>>(body, true)
}

/// The earlier floor of a minimal page: owned `String`s, from bytes.
#[allow(dead_code)]
pub fn owning_floor(body: &[u8]) -> usize {
    read::<OwningMinimalFloorJob>(body, false)
}

/// The three floors of a full page, in the same order.
#[allow(dead_code)]
pub fn full_floor(body: &[u8]) -> usize {
    read::<FloorJob<'_>>(body, false)
}

#[allow(dead_code)]
pub fn full_text_floor(body: &[u8]) -> usize {
    read::<FloorJob<'_>>(body, true)
}

#[allow(dead_code)]
pub fn full_owning_floor(body: &[u8]) -> usize {
    read::<OwningFloorJob>(body, false)
}
