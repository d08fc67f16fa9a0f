//! The runner: the only code that moves an execution between states.
//!
//! One scheduler task claims work in batches (each claim commits its attempt rows
//! before any call leaves), one task per call sends it through a [`Provider`], and one
//! writer task commits outcomes in batches (group commit) before reporting them done.
//! A heartbeat task keeps the leases of calls in flight alive. Limits: the job's
//! concurrency, each endpoint's concurrency and rate, and the spec's `delay_ms`.
//!
//! Each part can be read alone: [`schedule`] decides how many items each endpoint may
//! claim (slots, rates, pacing, residency); [`calls`] starts one task per claimed item and
//! drains or aborts them on a stop; [`call`] makes one call and decides what it means
//! (retry, park, fail); [`writer`] commits outcomes; [`heartbeat`] renews leases. [`run`]
//! ties them together.

mod backoff;
mod call;
mod calls;
mod flight;
mod heartbeat;
mod hooks;
mod limits;
mod schedule;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parallax_core::{ItemKey, OnPossiblyBilled, RunPolicy};
use parallax_providers::Provider;
use parallax_store::{ClaimRequest, Store, StoreError};
use tokio::sync::{mpsc, watch};

use crate::calls::Calls;
use crate::flight::InFlight;
pub use crate::hooks::{CrashPoint, TestHooks};
use crate::schedule::Schedule;
use crate::writer::Tally;

/// How one endpoint is reached and limited.
pub struct EndpointRuntime {
    pub provider: Arc<dyn Provider>,
    pub concurrency: Option<usize>,
    pub rate_per_s: Option<f64>,
    /// For an in-process model: what must be resident to serve it (its file). Only one is
    /// resident at a time, so the runner works through one residency's endpoints before
    /// the next's, and each model is loaded once.
    pub residency: Option<String>,
}

pub struct RunConfig {
    pub job_id: String,
    /// Names this process in leases and attempt rows.
    pub worker: String,
    pub policy: RunPolicy,
    /// Keyed by the plan's endpoint name (`<region>/<endpoint>`).
    pub endpoints: HashMap<String, EndpointRuntime>,
    /// Crash points for tests; the default does nothing.
    pub hooks: TestHooks,
}

/// How far a shutdown has gone. The CLI raises it on Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Running,
    /// Claim nothing more; let calls in flight finish and be recorded.
    Drain,
    /// Abandon calls in flight; their attempts stay in the ledger as aborted.
    Abort,
}

/// What the runner tells its reporter (the CLI draws it; a server could stream it).
#[derive(Debug, Clone)]
pub enum Event {
    /// An execution reached a durable state.
    Settled {
        key: ItemKey,
        settled: Settled,
    },
    /// Nothing of this run is in flight and nothing is claimable now: the next item
    /// becomes claimable in `wait` (a backoff ends, or a lease held elsewhere expires).
    Waiting {
        wait: Duration,
    },
    Draining {
        in_flight: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Succeeded,
    Failed,
    Parked,
    /// Will be tried again after a backoff.
    Retrying,
    /// Our lease had been taken over; the answer was not written.
    Stale,
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: Event);
}

/// A reporter that ignores everything.
pub struct Silent;
impl Reporter for Silent {
    fn event(&self, _: Event) {}
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Upstream calls made (attempts opened) by this run.
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub parked: u64,
    pub retried: u64,
    pub stale: u64,
    /// Open attempts of earlier, dead workers found and closed as lost.
    pub lost_found: u64,
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("The store failed; the run stopped so nothing is lost silently")]
    Store(#[from] StoreError),
    #[error("No endpoint runtime for `{0}`")]
    MissingEndpoint(String),
}

/// Runs the job until nothing is claimable and nothing is in flight, or until stopped.
pub async fn run(
    store: Store,
    config: RunConfig,
    reporter: Arc<dyn Reporter>,
    mut stop: watch::Receiver<Stop>,
) -> Result<RunSummary, RunError> {
    let policy = config.policy.clone();
    let lease = Duration::from_secs_f64(policy.lease_s());
    // Claims run ahead of the calls: up to `concurrency` more items are claimed (their
    // attempts recorded) while the calls before them are in flight, so a freed slot is
    // refilled at once and claims come in large batches. Permits keep the calls
    // themselves within the job's and each endpoint's concurrency. Under `park`, where a
    // crash's recorded-but-unsent attempts would park items, nothing is claimed ahead.
    let claim_ahead = if policy.on_possibly_billed == OnPossiblyBilled::Park { 0 } else { policy.concurrency };
    let in_flight = Arc::new(InFlight::default());
    let uncommitted = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer::writer(
        store.clone(),
        done_rx,
        reporter.clone(),
        in_flight.clone(),
        uncommitted.clone(),
        config.hooks.clone(),
    ));
    let heart = tokio::spawn(heartbeat::heartbeat(store.clone(), in_flight.clone(), lease));
    let mut scheduler = Scheduler {
        schedule: Schedule::new(config.endpoints, policy.delay_ms, claim_ahead > 0),
        calls: Calls::new(policy.clone(), done_tx, in_flight.clone(), uncommitted.clone(), config.hooks.clone()),
        store: store.clone(),
        job_id: config.job_id,
        worker: config.worker,
        hooks: config.hooks,
        reporter: reporter.clone(),
        in_flight,
        uncommitted,
        writer,
        writer_result: None,
        claimed_ids: HashSet::new(),
        summary: RunSummary::default(),
        max_uncommitted: policy.concurrency.max(256) * 2,
        claim_ahead,
        lease,
        policy,
    };
    let result = scheduler.claim_until_done(&mut stop).await;

    // Drain (or abort) what is in flight, then let the writer commit everything.
    let Scheduler { calls, writer, writer_result, mut summary, .. } = scheduler;
    if *stop.borrow() >= Stop::Drain {
        summary.interrupted = true;
        reporter.event(Event::Draining { in_flight: calls.pending_tasks() });
    }
    calls.stop(&mut stop, result.is_err()).await;
    heart.abort();
    let joined = match writer_result {
        Some(r) => r,
        None => writer.await,
    };
    let tally = joined.map_err(|e| RunError::Store(StoreError::Task(e.to_string())))??;
    result?;
    let Tally { succeeded, failed, parked, retried, stale } = tally;
    summary.succeeded += succeeded;
    summary.failed += failed;
    summary.parked += parked;
    summary.retried += retried;
    summary.stale += stale;
    Ok(summary)
}

/// The scheduler task's state: what to claim, the calls it started, and the writer's
/// progress it waits on.
struct Scheduler {
    schedule: Schedule,
    calls: Calls,
    store: Store,
    job_id: String,
    worker: String,
    policy: RunPolicy,
    lease: Duration,
    claim_ahead: usize,
    hooks: TestHooks,
    reporter: Arc<dyn Reporter>,
    in_flight: Arc<InFlight>,
    uncommitted: Arc<AtomicUsize>,
    /// The scheduler stops claiming while this many outcomes wait for the writer.
    max_uncommitted: usize,
    writer: tokio::task::JoinHandle<Result<Tally, RunError>>,
    /// Set when the writer ended early (it only does on a store error).
    writer_result: Option<Result<Result<Tally, RunError>, tokio::task::JoinError>>,
    /// Items this run claimed, for `limit`.
    claimed_ids: HashSet<i64>,
    summary: RunSummary,
}

impl Scheduler {
    /// Claims and starts calls until nothing is claimable and nothing is in flight, the
    /// run's limit is reached, the run is stopped, or the writer failed.
    async fn claim_until_done(&mut self, stop: &mut watch::Receiver<Stop>) -> Result<(), RunError> {
        loop {
            while let Ok(lane) = self.calls.freed.try_recv() {
                self.freed(lane);
            }
            self.calls.reap();
            if *stop.borrow() != Stop::Running || self.writer.is_finished() {
                // A finished writer ended early on a store error; it is joined by the caller.
                return Ok(());
            }
            let backlog_full = self.uncommitted.load(Ordering::SeqCst) >= self.max_uncommitted;
            let limit_left =
                self.policy.limit.map_or(usize::MAX, |l| (l as usize).saturating_sub(self.claimed_ids.len()));
            let free = if backlog_full {
                0
            } else {
                (self.policy.concurrency + self.claim_ahead).saturating_sub(self.calls.running).min(limit_left)
            };
            match self.claim(free).await? {
                Claimed::Some => continue,
                Claimed::TryAgain => continue,
                Claimed::None => {}
            }
            if self.calls.running == 0 && self.policy.limit.is_some_and(|l| self.claimed_ids.len() as u64 >= l) {
                return Ok(());
            }
            let Some(sleep) = self.next_wait(free).await? else { return Ok(()) };
            let sleep = if backlog_full { sleep.min(Duration::from_millis(1)) } else { sleep };
            self.schedule.waited();
            tokio::select! {
                Some(lane) = self.calls.freed.recv() => self.freed(lane),
                _ = self.in_flight.committed.notified() => {}
                result = &mut self.writer, if self.writer_result.is_none() => {
                    self.writer_result = Some(result);
                    return Ok(());
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn freed(&mut self, lane: usize) {
        self.calls.running -= 1;
        self.schedule.freed(lane);
    }

    /// One claim batch for up to `free` items, and a call started for each.
    async fn claim(&mut self, free: usize) -> Result<Claimed, RunError> {
        let wants = self.schedule.wants(free);
        if wants.per_endpoint.is_empty() {
            return Ok(Claimed::None);
        }
        let batch = self
            .store
            .claim(ClaimRequest {
                job_id: self.job_id.clone(),
                worker: self.worker.clone(),
                wants: wants.per_endpoint,
                max_total: wants.max_total,
                lease: self.lease,
                max_attempts: self.policy.max_attempts,
                park_possibly_billed: self.policy.on_possibly_billed == OnPossiblyBilled::Park,
            })
            .await?;
        self.hooks.reached(CrashPoint::AfterClaim, batch.claims.len() as u64);
        self.summary.lost_found += batch.lost_attempts;
        self.summary.parked += batch.parked;
        self.summary.failed += batch.failed;
        let again = self.schedule.after_batch(&batch.claims);
        if batch.claims.is_empty() {
            return Ok(if again { Claimed::TryAgain } else { Claimed::None });
        }
        for claim in batch.claims {
            let Some(lane) = self.schedule.lane_of(&claim.endpoint) else {
                return Err(RunError::MissingEndpoint(claim.endpoint.clone()));
            };
            self.schedule.claimed(lane);
            self.claimed_ids.insert(claim.execution_id);
            self.summary.attempts += 1;
            let l = self.schedule.lane(lane);
            let (provider, permits) = (l.provider.clone(), l.permits.clone());
            self.calls.start(claim, lane, provider, permits);
        }
        Ok(Claimed::Some)
    }

    /// How long to wait when nothing was claimed: until a slot frees, a rate token comes,
    /// a backoff ends or a lease expires. `None`: nothing is left to wait for.
    async fn next_wait(&mut self, free: usize) -> Result<Option<Duration>, RunError> {
        if free == 0 {
            return Ok(Some(Duration::from_secs(60)));
        }
        let Some(t) = self.store.next_wakeup(&self.job_id).await? else {
            return Ok(if self.calls.running == 0 { None } else { Some(Duration::from_secs(60)) });
        };
        let wait = Duration::from_millis((t - self.store.now_ms()).clamp(0, 60_000) as u64);
        if wait.is_zero() {
            // Due work held back by a rate or an endpoint limit.
            return Ok(Some(self.schedule.refill_wait().unwrap_or(Duration::from_millis(5))));
        }
        if self.calls.running == 0 && self.uncommitted.load(Ordering::SeqCst) == 0 && wait > Duration::from_secs(1) {
            self.reporter.event(Event::Waiting { wait });
        }
        Ok(Some(wait))
    }
}

/// What one claim round did.
enum Claimed {
    /// Items were claimed and their calls started.
    Some,
    /// Nothing was claimed, but another residency's turn began: claim again at once.
    TryAgain,
    /// Nothing was claimed: wait.
    None,
}
