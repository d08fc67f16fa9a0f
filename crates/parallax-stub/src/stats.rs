//! What the stub has seen: request counts per idempotency key, body digests,
//! concurrency. This is the ground truth tests use to prove that a client sent
//! each logical request the expected number of times, with identical bytes.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

/// Number of independently locked shards. Each lock is held only for a map
/// lookup, never across an `.await`, so a few dozen shards keep contention
/// negligible even at thousands of concurrent requests.
const SHARDS: usize = 32;

/// Per-listener request statistics, shared between the server task and the
/// test that owns the [`StubHandle`](crate::StubHandle).
///
/// Counters are atomics; per-key data lives in sharded maps behind short-held
/// `std` mutexes. Only requests to the completion endpoints
/// (`/v1/chat/completions`, `/v1/completions`) are counted.
#[derive(Debug)]
pub struct Stats {
    total: AtomicU64,
    without_key: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    models: RwLock<BTreeSet<String>>,
}

#[derive(Debug, Default)]
struct Shard {
    /// Requests that carried an `Idempotency-Key` header.
    keyed: HashMap<String, KeyRecord>,
    /// Attempt counters for requests without the header, keyed by body
    /// digest: a retry of the same bytes is the same logical request.
    unkeyed: HashMap<[u8; 32], u64>,
}

#[derive(Debug)]
struct KeyRecord {
    requests: u64,
    bodies: Vec<[u8; 32]>,
}

/// A point-in-time copy of [`Stats`], as served by `GET /stub/stats`.
///
/// Maps are ordered so that the JSON is stable and diffable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Completion requests received (with or without an idempotency key).
    pub total_requests: u64,
    /// Completion requests that carried no `Idempotency-Key` header.
    pub requests_without_key: u64,
    /// Completion requests being handled right now.
    pub in_flight: u64,
    /// Highest number of concurrent completion requests seen.
    pub max_in_flight: u64,
    /// `Idempotency-Key` value -> number of requests received with it.
    pub requests_by_key: BTreeMap<String, u64>,
    /// `Idempotency-Key` value -> hex SHA-256 of each raw request body, in arrival order.
    pub bodies_sha256_by_key: BTreeMap<String, Vec<String>>,
    /// Model names requested so far, sorted.
    pub models_seen: Vec<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Creates empty statistics.
    pub fn new() -> Self {
        Stats {
            total: AtomicU64::new(0),
            without_key: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            models: RwLock::new(BTreeSet::new()),
        }
    }

    /// Completion requests received since start (or the last [`reset`](Self::reset)).
    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Completion requests that carried no `Idempotency-Key` header.
    pub fn requests_without_key(&self) -> u64 {
        self.without_key.load(Ordering::Relaxed)
    }

    /// `Idempotency-Key` header value -> number of requests received with it.
    pub fn requests_by_key(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            out.extend(shard.keyed.iter().map(|(k, r)| (k.clone(), r.requests)));
        }
        out
    }

    /// `Idempotency-Key` header value -> hex SHA-256 of the exact raw request
    /// body bytes of each request with that key, in arrival order. Equal
    /// digests prove that retries re-sent byte-identical requests.
    pub fn bodies_sha256_by_key(&self) -> HashMap<String, Vec<String>> {
        let mut out = HashMap::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            out.extend(shard.keyed.iter().map(|(k, r)| (k.clone(), r.bodies.iter().map(hex::encode).collect())));
        }
        out
    }

    /// Highest number of completion requests handled concurrently.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Completion requests being handled right now (including hung ones).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Model names requested so far, sorted.
    pub fn models_seen(&self) -> Vec<String> {
        self.models.read().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    /// Forgets everything recorded so far, including the per-key attempt
    /// counters that drive fault injection: after a reset, the next request
    /// for a key counts as its first attempt again. `max_in_flight` restarts
    /// from the number of requests currently in flight.
    pub fn reset(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.keyed.clear();
            shard.unkeyed.clear();
        }
        self.models.write().unwrap_or_else(PoisonError::into_inner).clear();
        self.total.store(0, Ordering::Relaxed);
        self.without_key.store(0, Ordering::Relaxed);
        self.max_in_flight.store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Copies all statistics into a serializable value.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            total_requests: self.total_requests(),
            requests_without_key: self.requests_without_key(),
            in_flight: self.in_flight(),
            max_in_flight: self.max_in_flight(),
            requests_by_key: self.requests_by_key().into_iter().collect(),
            bodies_sha256_by_key: self.bodies_sha256_by_key().into_iter().collect(),
            models_seen: self.models_seen(),
        }
    }

    /// Records one received request and returns its 1-based attempt number
    /// for its key (the header value, or the body digest when there is none).
    pub(crate) fn record(&self, key: Option<&str>, body_sha256: [u8; 32]) -> u64 {
        self.total.fetch_add(1, Ordering::Relaxed);
        match key {
            Some(key) => {
                let mut shard = lock(self.shard_for(key.as_bytes()));
                // Look up by `&str` first so the common retry path does not allocate.
                if let Some(record) = shard.keyed.get_mut(key) {
                    record.requests += 1;
                    record.bodies.push(body_sha256);
                    return record.requests;
                }
                shard.keyed.insert(key.to_owned(), KeyRecord { requests: 1, bodies: vec![body_sha256] });
                1
            }
            None => {
                self.without_key.fetch_add(1, Ordering::Relaxed);
                let mut shard = lock(self.shard_for(&body_sha256));
                let count = shard.unkeyed.entry(body_sha256).or_insert(0);
                *count += 1;
                *count
            }
        }
    }

    /// Remembers a requested model name for `GET /v1/models`.
    pub(crate) fn note_model(&self, model: &str) {
        let known = self.models.read().unwrap_or_else(PoisonError::into_inner).contains(model);
        if !known {
            self.models.write().unwrap_or_else(PoisonError::into_inner).insert(model.to_owned());
        }
    }

    /// Marks a request as in flight until the returned guard is dropped
    /// (which also happens when the connection is aborted mid-request).
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(self)
    }

    fn shard_for(&self, key: &[u8]) -> &Mutex<Shard> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[index]
    }
}

/// Guard returned by [`Stats::enter`].
pub(crate) struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks a shard, ignoring poisoning: the maps stay consistent even if a
/// holder panicked, because every critical section is a single map update.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_attempts_per_key_and_body() {
        let stats = Stats::new();
        assert_eq!(stats.record(Some("a"), [1; 32]), 1);
        assert_eq!(stats.record(Some("a"), [2; 32]), 2);
        assert_eq!(stats.record(Some("b"), [1; 32]), 1);
        assert_eq!(stats.record(None, [1; 32]), 1);
        assert_eq!(stats.record(None, [1; 32]), 2);
        assert_eq!(stats.record(None, [3; 32]), 1);
        assert_eq!(stats.total_requests(), 6);
        assert_eq!(stats.requests_without_key(), 3);
        let by_key = stats.requests_by_key();
        assert_eq!(by_key.len(), 2);
        assert_eq!(by_key["a"], 2);
        assert_eq!(stats.bodies_sha256_by_key()["a"], vec![hex::encode([1u8; 32]), hex::encode([2u8; 32])]);
        stats.reset();
        assert_eq!(stats.total_requests(), 0);
        assert!(stats.requests_by_key().is_empty());
        assert_eq!(stats.record(Some("a"), [1; 32]), 1);
    }

    #[test]
    fn tracks_max_in_flight() {
        let stats = Stats::new();
        {
            let _a = stats.enter();
            let _b = stats.enter();
            assert_eq!(stats.in_flight(), 2);
        }
        let _c = stats.enter();
        assert_eq!(stats.in_flight(), 1);
        assert_eq!(stats.max_in_flight(), 2);
    }
}
