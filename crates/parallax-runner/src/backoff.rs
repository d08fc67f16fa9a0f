//! Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
//! Jitter"): the wait is uniform in `[0, min(cap, base · 2^attempt))`, which spreads
//! retries of many clients instead of synchronising them.

use std::time::Duration;

const BASE: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(30);
/// The longest `Retry-After` we honour as given.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

pub(crate) fn full_jitter(attempt: u32) -> Duration {
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    let fraction: f64 = rand::random();
    ceiling.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_the_exponential_ceiling_and_the_cap() {
        for attempt in 0..40 {
            let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
            for _ in 0..50 {
                let d = full_jitter(attempt);
                assert!(d <= ceiling && d <= CAP, "attempt {attempt}: {d:?}");
            }
        }
    }
}
