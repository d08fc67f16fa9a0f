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

    /// `(execution id, lease token)` of every call in flight.
    pub fn leases(&self) -> Vec<(i64, String)> {
        self.lock().iter().map(|(id, h)| (*id, h.lease_token.clone())).collect()
    }
}
