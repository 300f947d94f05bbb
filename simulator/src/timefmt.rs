//! Timestamps the way the API writes them: RFC 3339 in UTC with exactly
//! three fractional digits and a `Z`, e.g. `2025-08-14T08:01:10.304Z`
//! (the spec's `date-time` format; the vendor's examples and live answers
//! carry milliseconds). Parsing takes any RFC 3339 date-time, as the spec
//! allows for `from_date` and `to_date`.

use time::format_description::well_known::Rfc3339;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::clock::UnixMillis;

const API_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `ms` as the API writes it. Out of `time`'s range (beyond year ±9999),
/// which no job ever is, it writes the epoch rather than failing a page.
pub fn format_millis(ms: UnixMillis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(API_FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// An RFC 3339 date-time as milliseconds (sub-millisecond digits dropped);
/// `None` for anything else.
pub fn parse_millis(s: &str) -> Option<UnixMillis> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_in_utc_with_milliseconds_and_a_z() {
        assert_eq!(format_millis(1_755_158_470_304), "2025-08-14T08:01:10.304Z");
        assert_eq!(format_millis(1_755_158_470_000), "2025-08-14T08:01:10.000Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn any_rfc_3339_offset_and_precision_is_read() {
        let t = 1_755_158_470_304;
        assert_eq!(parse_millis("2025-08-14T08:01:10.304Z"), Some(t));
        assert_eq!(parse_millis("2025-08-14T10:01:10.304+02:00"), Some(t));
        assert_eq!(parse_millis("2025-08-14T08:01:10.304999Z"), Some(t));
        assert_eq!(parse_millis("2025-08-14T08:01:10Z"), Some(t - 304));
    }

    #[test]
    fn what_is_not_an_rfc_3339_date_time_is_refused() {
        for bad in [
            "",
            "now",
            "2025-08-14",
            "2025-02-30T00:00:00Z",
            "1755158470",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }
}
