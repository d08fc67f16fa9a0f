//! The calls in flight, shared by the scheduler (which adds them), the writer (which
//! removes them once committed), the heartbeat (which renews their leases) and an abort
//! (which records what was abandoned).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use parallax_core::ItemKey;
use tokio::sync::Notify;

/// What the heartbeat and an abort need of a claim in flight (not its request body).
#[derive(Clone)]
pub(crate) struct Held {
    pub attempt_id: i64,
    pub lease_token: String,
    /// How long its job's leases last: heartbeats renew it for that long.
    pub lease: std::time::Duration,
    pub job_id: Arc<str>,
    pub key: ItemKey,
    /// Set when the call is about to leave; until then an abort releases the item unsent.
    pub sent: Arc<AtomicBool>,
    /// When its lease may run out, by this process's clock: the lease's length from when
    /// the claim (or the last heartbeat that renewed it) was asked for. An item claimed
    /// ahead is never sent once its lease is near its end: another worker may hold it.
    pub until: std::time::Instant,
}

#[derive(Default)]
pub(crate) struct InFlight {
    /// Execution id → its lease.
    held: Mutex<HashMap<i64, Held>>,
    /// A worker's: no call starts after this, until its shares are confirmed again (the
    /// others void the shares of a worker not seen for a while). `None`: no such bound.
    send_until: Mutex<Option<std::time::Instant>>,
    /// Signalled after each committed batch: the store's state moved on.
    pub committed: Notify,
}

impl InFlight {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the item of this attempt may still be sent: it is still this attempt's (not
    /// claimed again since), its lease lasts at least `margin` more, and the worker's shares
    /// were confirmed recently enough.
    pub fn sendable(&self, execution_id: i64, attempt_id: i64, margin: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let shares_hold = self.send_until.lock().unwrap_or_else(|p| p.into_inner()).is_none_or(|until| now < until);
        let held = self.lock();
        shares_hold && held.get(&execution_id).is_some_and(|h| h.attempt_id == attempt_id && now + margin < h.until)
    }

    /// A worker's shares were confirmed: calls may start until `until`.
    pub fn send_until(&self, until: std::time::Instant) {
        *self.send_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    /// The leases asked to be renewed at `asked` were, but for `stale`.
    pub fn renewed(&self, ids: &[i64], stale: &[i64], asked: std::time::Instant) {
        let mut held = self.lock();
        for id in ids.iter().filter(|id| !stale.contains(id)) {
            if let Some(h) = held.get_mut(id) {
                h.until = h.until.max(asked + h.lease);
            }
        }
    }

    /// The shortest lease held, if any (the heartbeat renews a third of it early).
    pub fn shortest_lease(&self) -> Option<std::time::Duration> {
        self.lock().values().map(|h| h.lease).min()
    }

    /// `(execution id, lease token)` of every call in flight, by the length of its lease
    /// (a worker's jobs may each have their own).
    pub fn leases(&self) -> std::collections::BTreeMap<std::time::Duration, Vec<(i64, String)>> {
        let mut by_lease: std::collections::BTreeMap<_, Vec<_>> = Default::default();
        for (id, h) in self.lock().iter() {
            by_lease.entry(h.lease).or_default().push((*id, h.lease_token.clone()));
        }
        by_lease
    }
}
