//! The wall clock as weft writes it into event payloads: an RFC 3339 UTC
//! timestamp, byte for byte what `chrono::Utc::now().to_rfc3339()` gives
//! (`2026-12-03T13:15:04.123456789+00:00`; the fraction has 0, 3, 6 or 9
//! digits, the fewest that hold it), written without chrono's general
//! formatter. Every hook emit stamps one, so it is on the turn's hot path.
//!
//! This module knows only time; the payloads it stamps are the hooks'.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as [`rfc3339`] formats it.
pub(crate) fn now_rfc3339() -> String {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => rfc3339(d.as_secs() as i64, d.subsec_nanos()),
        // A clock before 1970: let chrono spell it.
        Err(_) => chrono::Utc::now().to_rfc3339(),
    }
}

/// `secs` (since the Unix epoch, ≥ 0) and `nanos` (< 1e9) as
/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]+00:00`.
pub(crate) fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    let mut out = String::with_capacity(36);
    if y > 9999 {
        // ISO 8601's expanded year, as chrono writes it.
        out.push('+');
    }
    push_digits(&mut out, y, 4);
    out.push('-');
    push_digits(&mut out, m, 2);
    out.push('-');
    push_digits(&mut out, d, 2);
    out.push('T');
    push_digits(&mut out, hh, 2);
    out.push(':');
    push_digits(&mut out, mm, 2);
    out.push(':');
    push_digits(&mut out, ss, 2);
    if nanos != 0 {
        out.push('.');
        if nanos.is_multiple_of(1_000_000) {
            push_digits(&mut out, i64::from(nanos / 1_000_000), 3);
        } else if nanos.is_multiple_of(1_000) {
            push_digits(&mut out, i64::from(nanos / 1_000), 6);
        } else {
            push_digits(&mut out, i64::from(nanos), 9);
        }
    }
    out.push_str("+00:00");
    out
}

/// Appends `n` (≥ 0) zero-padded to `width` digits.
fn push_digits(out: &mut String, n: i64, width: u32) {
    let mut div = 10i64.pow(width - 1);
    // Years past 9999 keep every digit.
    while n / div >= 10 {
        div *= 10;
    }
    while div > 0 {
        out.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn chrono_form(secs: i64, nanos: u32) -> String {
        Utc.timestamp_opt(secs, nanos).unwrap().to_rfc3339()
    }

    #[test]
    fn matches_chrono_on_edges_and_a_sweep() {
        let edges = [
            (0, 0),
            (951_782_400, 0),             // 2000-02-29
            (4_107_542_399, 999_999_999), // 2100-02-28T23:59:59
            (1_798_761_600, 1_000_000),
            (1_798_761_600, 1_000),
            (1_798_761_600, 1),
            (253_402_300_799, 500_000_000), // 9999-12-31T23:59:59.5
            (253_402_300_800, 0),           // year 10000
        ];
        for (s, n) in edges {
            assert_eq!(rfc3339(s, n), chrono_form(s, n), "{s} {n}");
        }
        // Every ~10 hours and a varying fraction over 1970..2300.
        let mut s = 0i64;
        let mut n = 7u32;
        while s < 10_413_792_000 {
            assert_eq!(rfc3339(s, n), chrono_form(s, n), "{s} {n}");
            s += 36_017;
            n = (n.wrapping_mul(1_103_515_245).wrapping_add(12_345)) % 1_000_000_000;
            if s % 3 == 0 {
                n -= n % 1_000;
            }
        }
    }

    #[test]
    fn now_is_chrono_parsable_and_close() {
        let ours = now_rfc3339();
        let parsed = chrono::DateTime::parse_from_rfc3339(&ours).unwrap();
        let delta = Utc::now().signed_duration_since(parsed);
        assert!(delta.num_seconds().abs() < 5, "{ours}");
    }
}
