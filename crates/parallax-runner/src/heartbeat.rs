//! Heartbeats: the leases of calls in flight are renewed while the calls last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_store::Store;

use crate::flight::InFlight;

/// How often the heartbeat looks whether a renewal is due.
const TICK: Duration = Duration::from_millis(200);

/// Renews the leases of calls in flight every third of the shortest lease among them (of
/// `lease`, the run's default, when none is held), each for its own job's lease. A lease
/// found taken over is left to the fenced write, which will refuse the late answer. A
/// worker (`registry`: its id) also says it is alive, with its calls in flight, at least
/// every 5 s.
pub(crate) async fn heartbeat(store: Store, in_flight: Arc<InFlight>, lease: Duration, registry: Option<String>) {
    let mut last = Instant::now();
    loop {
        // Looked at often, renewed when due: a lease shorter than any before (a worker's
        // new job) is renewed in time too.
        tokio::time::sleep(TICK).await;
        let shortest = in_flight.shortest_lease().unwrap_or(lease);
        let mut every = (shortest / 3).max(TICK);
        if registry.is_some() {
            every = every.min(Duration::from_secs(5));
        }
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let held = in_flight.leases();
        if let Some(id) = &registry
            && let Err(e) = store.worker_seen(id, held.values().map(Vec::len).sum::<usize>() as i64).await
        {
            tracing::error!(error = %e, "worker heartbeat failed");
        }
        for (lease, calls) in held {
            let (asked, ids): (Instant, Vec<i64>) = (Instant::now(), calls.iter().map(|c| c.0).collect());
            let answer = store.heartbeat(calls, lease).await;
            if let Ok(stale) = &answer {
                in_flight.renewed(&ids, stale, asked);
            }
            match answer {
                Ok(stale) if !stale.is_empty() => {
                    // A call committed while the heartbeat ran has no lease left to renew:
                    // only those still in flight now were taken over.
                    let held = in_flight.lock();
                    let taken = stale.iter().filter(|id| held.contains_key(id)).count();
                    drop(held);
                    if taken > 0 {
                        tracing::warn!(count = taken, "leases taken over while calls were in flight")
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "heartbeat failed"),
            }
        }
    }
}
