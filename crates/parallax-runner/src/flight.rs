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
}

#[derive(Default)]
pub(crate) struct InFlight {
    /// Execution id → its lease.
    held: Mutex<HashMap<i64, Held>>,
    /// Signalled after each committed batch: the store's state moved on.
    pub committed: Notify,
}

impl InFlight {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
