//! A token bucket for per-endpoint rates and the spec's `delay_ms` pacing.
//! Owned by the scheduler task alone, so it needs no lock.

use std::time::{Duration, Instant};

pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket allowing bursts of up to one second's worth (at least one call).
    pub fn new(rate_per_s: f64) -> Self {
        Self::with_capacity(rate_per_s, rate_per_s.max(1.0))
    }

    pub fn with_capacity(rate_per_s: f64, capacity: f64) -> Self {
        TokenBucket { rate: rate_per_s, capacity, tokens: capacity.min(1.0), at: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.capacity);
        self.at = now;
    }

    /// Whole calls allowed now.
    pub fn available(&mut self) -> usize {
        self.refill();
        self.tokens.floor().max(0.0) as usize
    }

    pub fn take(&mut self) {
        self.refill();
        self.tokens -= 1.0;
    }

    /// How long until one more call is allowed.
    pub fn time_to_next(&self) -> Duration {
        let missing = 1.0 - self.tokens;
        if missing <= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(missing / self.rate) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_rate_and_no_more() {
        let mut b = TokenBucket::new(1000.0);
        let start = Instant::now();
        let mut taken = 0;
        while start.elapsed() < Duration::from_millis(100) {
            if b.available() > 0 {
                b.take();
                taken += 1;
            }
        }
        // 100 ms at 1000/s, plus the first token: about 101, never a burst of many more.
        assert!((60..=110).contains(&taken), "took {taken}");
    }
}
