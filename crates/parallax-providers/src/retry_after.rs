//! `Retry-After` as RFC 9110 §10.2.3 defines it: `delay-seconds` (a whole number) or an
//! `HTTP-date`. Whatever a server writes, reading it never panics: a number past
//! `Duration`'s range is `Duration::MAX`, a date in the past is no wait.

use std::time::{Duration, SystemTime};

/// The wait a `Retry-After` value asks for, seen at `now`; `None` when it is neither a
/// number nor a date (the header is then ignored).
///
/// Besides the RFC's forms, a non-negative decimal (`1.5`, `1e3`) is read as seconds, as
/// many servers write it; a negative number or NaN is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // delay-seconds: any number of digits; past u64 it saturates.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_nan() || seconds < 0.0 {
            return None;
        }
        return Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<Duration> {
        // Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        parse_retry_after(s, now)
    }

    #[test]
    fn delay_seconds() {
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        assert_eq!(at("99999999999999999999999999"), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(at("1.5"), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn values_past_durations_range_do_not_panic() {
        assert_eq!(at("1e300"), Some(Duration::MAX));
        assert_eq!(at("inf"), Some(Duration::MAX));
        assert_eq!(at("1.8446744073709552e19"), Some(Duration::MAX));
        assert_eq!(at("NaN"), None);
        assert_eq!(at("-1"), None);
        assert_eq!(at("-0.5"), None);
        assert_eq!(at(""), None);
        assert_eq!(at("soon"), None);
    }

    #[test]
    fn http_dates_in_the_three_formats() {
        assert_eq!(at("Sun, 06 Nov 1994 08:50:37 GMT"), Some(Duration::from_secs(60)));
        assert_eq!(at("Sunday, 06-Nov-94 08:50:37 GMT"), Some(Duration::from_secs(60)));
        assert_eq!(at("Sun Nov  6 08:50:37 1994"), Some(Duration::from_secs(60)));
        // A date already past asks for no wait.
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("Fri, 31 Dec 9999 23:59:59 GMT").map(|d| d > Duration::from_secs(86_400)), Some(true));
    }
}
