//! Writing: outcomes are committed in batches (group commit), and only then reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parallax_core::ItemKey;
use parallax_store::{Applied, Outcome, Store};
use tokio::sync::mpsc;

use crate::call::Done;
use crate::flight::InFlight;
use crate::{CrashPoint, Event, Reporter, RunError, Settled, TestHooks};

/// Outcomes committed by one run, by what they settled as.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub succeeded: u64,
    pub failed: u64,
    pub parked: u64,
    pub retried: u64,
    pub stale: u64,
    /// Claims given back unsent when the run stopped.
    pub released: u64,
}

/// What reporting an outcome needs once it is committed: execution id, attempt id, job,
/// key, how it settled.
type Report = (i64, i64, Arc<str>, ItemKey, Settled);

/// The most outcomes in one transaction.
const MAX_BATCH: usize = 1024;

/// Commits what arrives on `rx` in batches of whatever has arrived (up to [`MAX_BATCH`]),
/// until every sender is gone. Ends early only on a store error, which stops the run.
pub(crate) async fn writer(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Done>,
    reporter: Arc<dyn Reporter>,
    in_flight: Arc<InFlight>,
    uncommitted: Arc<AtomicUsize>,
    hooks: TestHooks,
) -> Result<Tally, RunError> {
    let mut tally = Tally::default();
    let mut batch: Vec<Done> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        // The outcomes (with their answers) move to the store; only what reporting needs stays.
        let (outcomes, reports): (Vec<Outcome>, Vec<Report>) = batch
            .drain(..)
            .map(|d| ((d.outcome.execution_id, d.outcome.attempt_id), d))
            .map(|((id, attempt), d)| (d.outcome, (id, attempt, d.job_id, d.key, d.settled)))
            .unzip();
        let (asked, size) = (std::time::Instant::now(), outcomes.len());
        let applied = finish_through_outages(&store, outcomes).await?;
        // `RUST_LOG=parallax_runner::write=debug`: one line per committed batch (bench/workers.py).
        tracing::debug!(target: "parallax_runner::write", elapsed_us = asked.elapsed().as_micros() as u64, outcomes = size, "finish");
        hooks.reached(CrashPoint::AfterFinish, applied.len() as u64);
        let mut held = in_flight.lock();
        for ((execution_id, attempt_id, job_id, key, settled), applied) in reports.into_iter().zip(applied) {
            // Only this attempt's entry: the item may have been claimed again since (its lease
            // ran out while it waited), and that claim is still in flight.
            if held.get(&execution_id).is_some_and(|h| h.attempt_id == attempt_id) {
                held.remove(&execution_id);
            }
            let settled = if applied == Applied::Stale { Settled::Stale } else { settled };
            match settled {
                Settled::Succeeded => tally.succeeded += 1,
                Settled::Failed => tally.failed += 1,
                Settled::Parked => tally.parked += 1,
                Settled::Retrying => tally.retried += 1,
                Settled::Released => tally.released += 1,
                Settled::Stale => tally.stale += 1,
            }
            uncommitted.fetch_sub(1, Ordering::SeqCst);
            reporter.event(Event::Settled { job_id: job_id.to_string(), key, settled });
        }
        drop(held);
        in_flight.committed.notify_one();
    }
    Ok(tally)
}

/// Commits a batch, trying again while the store is unreachable (a database restart, a
/// lost connection): the outcomes wait in memory, and claiming stops meanwhile, since the
/// scheduler claims nothing while too many outcomes wait. Every write is fenced, so trying
/// again is safe: a batch whose commit did land finds its leases settled and writes
/// nothing twice (its outcomes then count as stale in this run's tally; the ledger holds
/// each once). Any other store error stops the run.
async fn finish_through_outages(store: &Store, outcomes: Vec<Outcome>) -> Result<Vec<Applied>, RunError> {
    let mut wait = Duration::from_millis(100);
    loop {
        match store.finish(outcomes.clone()).await {
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?wait, outcomes = outcomes.len(), "store unavailable; outcomes kept in memory");
                tokio::time::sleep(wait.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            result => return Ok(result?),
        }
    }
}
