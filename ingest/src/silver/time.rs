//! Timestamp normalisation (contract §2): every accepted form becomes UTC microseconds.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

use super::json::Scalar;

/// Epoch numbers at or above this are milliseconds, below it seconds (contract §2).
const EPOCH_MILLIS_THRESHOLD: f64 = 1e11;

/// Parses a timestamp value. `Ok(None)` means absent (JSON null); `Err(())` means present but
/// in no accepted form.
pub(crate) fn parse_timestamp(value: &Scalar<'_>, source_tz: Tz) -> Result<Option<i64>, ()> {
    match value {
        Scalar::Null => Ok(None),
        Scalar::Int(i) => epoch_to_micros(*i as f64).map(Some),
        Scalar::Float(f) => epoch_to_micros(*f).map(Some),
        Scalar::Str(s) => parse_iso(s.trim(), source_tz).map(Some),
        Scalar::Bool(_) | Scalar::Composite(_) => Err(()),
    }
}

fn epoch_to_micros(n: f64) -> Result<i64, ()> {
    let micros = if n.abs() >= EPOCH_MILLIS_THRESHOLD {
        n * 1e3
    } else {
        n * 1e6
    };
    // Keep within what Arrow/Parquet timestamps and chrono can represent (year 1..=9999).
    if micros.is_finite() && (-62_135_596_800e6..253_402_300_800e6).contains(&micros) {
        Ok(micros.round() as i64)
    } else {
        Err(())
    }
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM|±HHMM]`, strictly.
fn parse_iso(s: &str, source_tz: Tz) -> Result<i64, ()> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(());
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(());
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, ()> {
        let mut v = 0u32;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return Err(());
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Ok(v)
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?).ok_or(())?;
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &b[19..];
    let mut micros = 0u32;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(());
        }
        for i in 0..6 {
            micros = micros * 10
                + frac
                    .get(i)
                    .filter(|_| i < digits)
                    .map_or(0, |c| u32::from(c - b'0'));
        }
        rest = &frac[digits..];
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros).ok_or(())?;
    let local = NaiveDateTime::new(date, time);
    let offset_seconds: Option<i64> = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            let d = |c: u8| i64::from(c - b'0');
            let secs =
                (d(digits[0]) * 10 + d(digits[1])) * 3600 + (d(digits[2]) * 10 + d(digits[3])) * 60;
            if secs >= 24 * 3600 {
                return Err(());
            }
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return Err(()),
    };
    let utc_micros = match offset_seconds {
        Some(offset) => local.and_utc().timestamp_micros() - offset * 1_000_000,
        None if source_tz == Tz::UTC => local.and_utc().timestamp_micros(),
        // Ambiguous local times (DST fall-back) take the earlier instant; skipped ones are invalid.
        None => source_tz
            .from_local_datetime(&local)
            .earliest()
            .ok_or(())?
            .timestamp_micros(),
    };
    Ok(utc_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn ts(s: &str) -> Result<Option<i64>, ()> {
        parse_timestamp(&Scalar::Str(Cow::Borrowed(s)), Tz::UTC)
    }

    const BASE: i64 = 1_795_511_702_123_456; // 2026-11-24T09:15:02.123456Z

    #[test]
    fn accepted_forms_agree() {
        assert_eq!(ts("2026-11-24T09:15:02.123456"), Ok(Some(BASE)));
        assert_eq!(ts("2026-11-24 09:15:02.123456"), Ok(Some(BASE)));
        assert_eq!(ts("2026-11-24T09:15:02.123456Z"), Ok(Some(BASE)));
        assert_eq!(ts("2026-11-24T11:15:02.123456+02:00"), Ok(Some(BASE)));
        assert_eq!(ts("2026-11-24T03:15:02.123456-0600"), Ok(Some(BASE)));
        assert_eq!(ts("2026-11-24T09:15:02.1234569"), Ok(Some(BASE)));
        let secs = BASE / 1_000_000;
        assert_eq!(
            parse_timestamp(&Scalar::Int(secs), Tz::UTC),
            Ok(Some(secs * 1_000_000))
        );
        assert_eq!(
            parse_timestamp(&Scalar::Int(secs * 1000), Tz::UTC),
            Ok(Some(secs * 1_000_000))
        );
        assert_eq!(
            parse_timestamp(&Scalar::Float(secs as f64 + 0.5), Tz::UTC),
            Ok(Some(secs * 1_000_000 + 500_000))
        );
        assert_eq!(parse_timestamp(&Scalar::Null, Tz::UTC), Ok(None));
    }

    #[test]
    fn source_time_zone_applies_only_without_offset() {
        let chicago: Tz = "America/Chicago".parse().unwrap();
        let local = Scalar::Str(Cow::Borrowed("2026-11-24T03:15:02.123456"));
        assert_eq!(parse_timestamp(&local, chicago), Ok(Some(BASE)));
        let zulu = Scalar::Str(Cow::Borrowed("2026-11-24T09:15:02.123456Z"));
        assert_eq!(parse_timestamp(&zulu, chicago), Ok(Some(BASE)));
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "not a date",
            "2026-13-45T99:00:00",
            "2026-02-30T10:00:00",
            "24/11/2026 09:15",
            "2026-11-24",
            "2026-11-24T09:15:02.",
            "2026-11-24T09:15:02+25:00",
            "2026-11-24T09:15:02 UTC",
            "",
        ] {
            assert_eq!(ts(bad), Err(()), "{bad}");
        }
        assert_eq!(parse_timestamp(&Scalar::Bool(true), Tz::UTC), Err(()));
        assert_eq!(parse_timestamp(&Scalar::Float(1e300), Tz::UTC), Err(()));
    }
}
