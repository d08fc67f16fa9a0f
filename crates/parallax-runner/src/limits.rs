//! Limits: a token bucket for per-endpoint rates and the spec's `delay_ms` pacing (owned
//! by the scheduler task alone, so it needs no lock), and the gates that keep calls within
//! a concurrency (a job's, an endpoint's), resized when a worker's share of one moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Keeps calls within a concurrency: a call holds a permit while it is made. It also
/// counts the calls holding one, which a worker reports with its share of a limit shared
/// with other workers (a share is never recorded below the calls still running in it).
#[derive(Clone)]
pub(crate) struct Gate {
    pub permits: Arc<Semaphore>,
    calling: Arc<AtomicUsize>,
}

impl Gate {
    pub fn new(permits: usize) -> Gate {
        Gate { permits: Arc::new(Semaphore::new(permits)), calling: Arc::default() }
    }

    /// Calls holding a permit now.
    pub fn calling(&self) -> usize {
        self.calling.load(Ordering::SeqCst)
    }

    /// Counts a call in until the guard is dropped (its call has returned).
    pub fn enter(&self) -> Calling {
        self.calling.fetch_add(1, Ordering::SeqCst);
        Calling(self.calling.clone())
    }

    /// From `from` permits to `to`. Fewer: the free permits go at once, the rest as the
    /// calls holding them end (before any call waiting for one starts: the semaphore is fair).
    pub fn resize(&self, from: usize, to: usize) {
        if to > from {
            self.permits.add_permits(to - from);
        } else if to < from {
            let owed = (from - to) - self.permits.forget_permits(from - to);
            if owed > 0 {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(owed.min(u32::MAX as usize) as u32).await {
                        p.forget();
                    }
                });
            }
        }
    }
}

/// A call counted in by [`Gate::enter`].
pub(crate) struct Calling(Arc<AtomicUsize>);

impl Drop for Calling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

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

    #[tokio::test]
    async fn a_gate_shrinks_as_its_calls_end_and_grows_at_once() {
        let gate = Gate::new(4);
        let held: Vec<_> = (0..3).map(|_| gate.permits.clone().try_acquire_owned().unwrap()).collect();
        let counted: Vec<_> = (0..3).map(|_| gate.enter()).collect();
        assert_eq!(gate.calling(), 3);
        gate.resize(4, 1); // one free permit goes now; two more as calls end
        assert_eq!(gate.permits.available_permits(), 0);
        drop(held);
        drop(counted);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!((gate.permits.available_permits(), gate.calling()), (1, 0));
        gate.resize(1, 3);
        assert_eq!(gate.permits.available_permits(), 3);
    }

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
