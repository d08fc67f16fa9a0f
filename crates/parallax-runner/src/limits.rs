//! Limits: a token bucket for per-endpoint rates and the spec's `delay_ms` pacing (owned
//! by the scheduler task alone, so it needs no lock), and the gates that keep calls within
//! a concurrency (a job's, an endpoint's), resized when a worker's share of one moves.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

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

/// Keeps calls within a concurrency (a job's, an endpoint's; a worker's share of one): a
/// call holds a pass while it is made. A gate can shrink while its passes are out: the
/// free ones go at once, the rest as they come back, before any waiting call gets one.
#[derive(Clone)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    state: Arc<Mutex<Size>>,
}

struct Size {
    /// Permits the gate should hold.
    size: usize,
    /// Permits still out that go when they come back (the gate shrank below them).
    owed: usize,
}

/// A gate's permit, held while a call is made.
pub(crate) struct Pass {
    permit: Option<OwnedSemaphorePermit>,
    state: Arc<Mutex<Size>>,
}

/// A gate was closed: the run stops, and nothing waits for a pass any more.
pub(crate) struct Closed;

impl Gate {
    pub fn new(permits: usize) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(permits)),
            state: Arc::new(Mutex::new(Size { size: permits, owed: 0 })),
        }
    }

    fn state(&self) -> MutexGuard<'_, Size> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The permits it should hold: its limit (a worker's share of one).
    pub fn size(&self) -> usize {
        self.state().size
    }

    /// Permits that exist now, out or free: the most calls this gate lets be in flight
    /// until it has shrunk (a worker's share is never recorded below it).
    pub fn outstanding(&self) -> usize {
        let s = self.state();
        s.size + s.owed
    }

    /// To `to` permits. Growing first cancels what is still owed.
    pub fn resize(&self, to: usize) {
        let mut s = self.state();
        if to > s.size {
            let more = to - s.size;
            let cancelled = more.min(s.owed);
            s.owed -= cancelled;
            self.permits.add_permits(more - cancelled);
        } else if to < s.size {
            let less = s.size - to;
            s.owed += less - self.permits.forget_permits(less);
        }
        s.size = to;
    }

    /// Closes the gate: every wait for a pass ends with [`Closed`].
    pub fn close(&self) {
        self.permits.close();
    }

    async fn pass(&self) -> Result<Pass, Closed> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| Closed)?;
        Ok(Pass { permit: Some(permit), state: self.state.clone() })
    }

    fn try_pass(&self) -> Result<Option<Pass>, Closed> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(Pass { permit: Some(permit), state: self.state.clone() })),
            Err(TryAcquireError::NoPermits) => Ok(None),
            Err(TryAcquireError::Closed) => Err(Closed),
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(permit) = self.permit.take()
            && s.owed > 0
        {
            s.owed -= 1;
            permit.forget();
        }
    }
}

/// A pass of `job`'s gate and one of `endpoint`'s, never holding one while waiting for the
/// other: gates that shrink (a worker's shares) could otherwise leave two calls each holding
/// what the other waits for.
pub(crate) async fn passes(job: &Gate, endpoint: Option<&Gate>) -> Result<(Pass, Option<Pass>), Closed> {
    loop {
        let first = job.pass().await?;
        let Some(endpoint) = endpoint else { return Ok((first, None)) };
        if let Some(second) = endpoint.try_pass()? {
            return Ok((first, Some(second)));
        }
        drop(first);
        let second = endpoint.pass().await?;
        if let Some(first) = job.try_pass()? {
            return Ok((first, Some(second)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gate_shrinks_as_its_passes_come_back_and_growing_cancels_what_is_owed() {
        let gate = Gate::new(4);
        let out: Vec<Pass> = take_passes(&gate, 3).await;
        gate.resize(1); // the free permit goes now; two of the three out as they come back
        assert_eq!((gate.permits.available_permits(), gate.outstanding()), (0, 3));
        drop(out);
        assert_eq!((gate.permits.available_permits(), gate.outstanding()), (1, 1));
        // Shrink below the passes out, then grow before they come back: never more out than the size.
        let out = take_passes(&gate, 1).await;
        gate.resize(0);
        gate.resize(2);
        assert_eq!((gate.permits.available_permits(), gate.outstanding()), (1, 2));
        drop(out);
        assert_eq!(gate.permits.available_permits(), 2);
        gate.close();
        assert!(gate.pass().await.is_err(), "a closed gate gives no pass");
    }

    async fn take_passes(gate: &Gate, n: usize) -> Vec<Pass> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(gate.pass().await.ok().expect("a pass"));
        }
        out
    }

    #[tokio::test]
    async fn two_gates_are_passed_without_holding_one_while_waiting_for_the_other() {
        let (job, endpoint) = (Gate::new(1), Gate::new(1));
        // The endpoint's only pass is out; a call waiting for it holds no job pass meanwhile.
        let held = endpoint.pass().await.ok().expect("a pass");
        let waiting = tokio::spawn({
            let (job, endpoint) = (job.clone(), endpoint.clone());
            async move { passes(&job, Some(&endpoint)).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let other = job.try_pass().ok().flatten();
        assert!(other.is_some(), "the job's pass is free while the call waits for the endpoint's");
        drop(other);
        drop(held);
        assert!(waiting.await.unwrap());
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
