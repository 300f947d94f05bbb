//! RFC 3339 timestamps as the API writes them (`2025-08-14T08:01:10.304Z`).

use crate::clock::UnixMillis;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats `ms` as RFC 3339 UTC with exactly three fractional digits.
pub fn format_millis(ms: UnixMillis) -> String {
    let mut buf = String::with_capacity(24);
    write_millis(&mut buf, ms);
    buf
}

/// Appends the RFC 3339 form of `ms` to `out` without allocating.
pub(crate) fn write_millis(out: &mut String, ms: UnixMillis) {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000) as u32;
    let dt = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d) = (dt.year(), dt.month() as u8, dt.day());
    let (h, mi, s) = (dt.hour(), dt.minute(), dt.second());
    use std::fmt::Write;
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z"
    );
}

/// Parses an RFC 3339 date-time into milliseconds. `None` for anything else.
pub(crate) fn parse_millis(s: &str) -> Option<UnixMillis> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_api_with_millisecond_precision() {
        assert_eq!(format_millis(1_755_158_470_304), "2025-08-14T08:01:10.304Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats_and_other_offsets() {
        let t = 1_755_158_470_304;
        assert_eq!(parse_millis(&format_millis(t)), Some(t));
        assert_eq!(parse_millis("2025-08-14T10:01:10.304+02:00"), Some(t));
        assert_eq!(parse_millis("2025-08-14T08:01:10Z"), Some(t - 304));
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for bad in [
            "",
            "yesterday",
            "2025-08-14",
            "2025-13-01T00:00:00Z",
            "1755158470",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }
}
