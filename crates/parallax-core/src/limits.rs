//! The range of every number a job spec, a catalog or a command-line flag can carry, and
//! the sizes of the files they name. A value outside its range is refused when it is
//! decoded, with the file, line and field: nothing downstream ever sees a number it
//! cannot hold (a `Duration` past its range, a semaphore past its permits, a plan
//! allocation past memory). README's spec and catalog reference lists the same ranges.

use std::ops::RangeInclusive;

// ---- the job spec ----

/// `samples`: answers per (question, model, region).
pub const SAMPLES: RangeInclusive<u64> = 1..=10_000;
/// `run.concurrency`, an endpoint's `concurrency`, `--concurrency`.
pub const CONCURRENCY: RangeInclusive<u64> = 1..=10_000;
/// `run.delay_ms`: up to one day.
pub const DELAY_MS: RangeInclusive<u64> = 0..=86_400_000;
/// `run.max_attempts`.
pub const MAX_ATTEMPTS: RangeInclusive<u64> = 1..=100;
/// `run.timeout_s`: up to one day.
pub const TIMEOUT_S: RangeInclusive<f64> = 0.001..=86_400.0;
/// `run.lease_s`: up to one day.
pub const LEASE_S: RangeInclusive<f64> = 1.0..=86_400.0;
/// `run.limit`, `--limit`.
pub const LIMIT: RangeInclusive<u64> = 0..=MAX_EXECUTIONS;
/// `sampling.temperature`.
pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=10.0;
/// `sampling.top_p`.
pub const TOP_P: RangeInclusive<f64> = 0.0..=1.0;
/// `sampling.max_tokens`, `doctor --max-tokens`.
pub const MAX_TOKENS: RangeInclusive<u64> = 1..=1_000_000;
/// `sampling.stop`: how many stop strings.
pub const STOP_STRINGS: usize = 64;
/// Executions in one job: questions × models × regions × samples.
pub const MAX_EXECUTIONS: u64 = 100_000_000;
/// Questions in one job.
pub const MAX_QUESTIONS: usize = 1_000_000;
/// Bytes of one question's text.
pub const MAX_QUESTION_BYTES: usize = 1 << 20;

// ---- files ----

/// Bytes of a job spec or a catalog file.
pub const MAX_SPEC_FILE_BYTES: u64 = 16 << 20;
/// Bytes of one question file (`file:` in `questions`).
pub const MAX_QUESTION_FILE_BYTES: u64 = 128 << 20;

// ---- the catalog ----

/// An endpoint's `rate_per_s`.
pub const RATE_PER_S: RangeInclusive<f64> = 0.001..=100_000.0;
/// A `local-gguf` endpoint's `threads`.
pub const THREADS: RangeInclusive<u64> = 1..=1024;
/// A model's `price_per_mtok.input` and `.output`.
pub const PRICE_PER_MTOK: RangeInclusive<f64> = 0.0..=1_000_000.0;
/// An endpoint's `max_retry_after_s`: up to one day.
pub const MAX_RETRY_AFTER_S: RangeInclusive<u64> = 0..=86_400;
/// An endpoint's `max_response_bytes`: 1 KiB to 1 GiB.
pub const MAX_RESPONSE_BYTES: RangeInclusive<u64> = 1024..=(1 << 30);

// ---- flags ----

/// `report --top`.
pub const TOP: RangeInclusive<u64> = 0..=100_000;
/// `report --min-agreement`.
pub const FRACTION: RangeInclusive<f64> = 0.0..=1.0;

/// A whole number with thousands separators: `10000` → `10,000`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A range for messages: `1 to 10,000`.
pub fn describe(range: &RangeInclusive<u64>) -> String {
    format!("{} to {}", grouped(*range.start()), grouped(*range.end()))
}

/// A range of numbers for messages: `0.001 to 86,400`.
pub fn describe_f64(range: &RangeInclusive<f64>) -> String {
    let show = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 { grouped(x as u64) } else { x.to_string() }
    };
    format!("{} to {}", show(*range.start()), show(*range.end()))
}

/// Checks a flag's whole number against its range, for clap's `value_parser`.
pub fn parse_in(text: &str, range: &RangeInclusive<u64>) -> Result<u64, String> {
    let n: u64 = text.trim().parse().map_err(|_| format!("`{text}` is not a whole number ({})", describe(range)))?;
    if range.contains(&n) { Ok(n) } else { Err(format!("must be from {}, found {n}", describe(range))) }
}

/// Checks a flag's number against its range, for clap's `value_parser`.
pub fn parse_f64_in(text: &str, range: &RangeInclusive<f64>) -> Result<f64, String> {
    let x: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number ({})", describe_f64(range)))?;
    if range.contains(&x) { Ok(x) } else { Err(format!("must be from {}, found {x:?}", describe_f64(range))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(describe(&SAMPLES), "1 to 10,000");
        assert_eq!(describe_f64(&TIMEOUT_S), "0.001 to 86,400");
        assert_eq!(
            parse_in("2305843009213693952", &CONCURRENCY),
            Err("must be from 1 to 10,000, found 2305843009213693952".into())
        );
        assert_eq!(parse_in("8", &CONCURRENCY), Ok(8));
        assert!(parse_f64_in("NaN", &FRACTION).is_err());
        assert!(parse_f64_in("0.9", &FRACTION).is_ok());
    }
}
