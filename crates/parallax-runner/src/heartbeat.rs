//! Heartbeats: the leases of calls in flight are renewed while the calls last.

use std::sync::Arc;
use std::time::Duration;

use parallax_store::Store;

use crate::flight::InFlight;

/// Renews the leases of calls in flight every third of a lease. A lease found taken over
/// is left to the fenced write, which will refuse the late answer.
pub(crate) async fn heartbeat(store: Store, in_flight: Arc<InFlight>, lease: Duration) {
    let every = (lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let held = in_flight.leases();
        if held.is_empty() {
            continue;
        }
        match store.heartbeat(held, lease).await {
            Ok(stale) if !stale.is_empty() => {
                tracing::warn!(count = stale.len(), "leases taken over while calls were in flight")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "heartbeat failed"),
        }
    }
}
