//! The runner: the only code that moves an execution between states.
//!
//! One scheduler task claims work in batches (each claim commits its attempt rows
//! before any call leaves), one task per call sends it through a [`Provider`], and one
//! writer task commits outcomes in batches (group commit) before reporting them done.
//! A heartbeat task keeps the leases of calls in flight alive. Limits: the job's
//! concurrency, each endpoint's concurrency and rate, and the spec's `delay_ms`.

mod backoff;
mod hooks;
mod limits;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parallax_core::{ItemKey, OnPossiblyBilled, RunPolicy};
use parallax_providers::{Provider, SendError, SendRequest};
use parallax_store::{Applied, Claim, ClaimRequest, Next, Outcome, ResultRecord, Store, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use crate::hooks::{CrashPoint, TestHooks};
use crate::limits::TokenBucket;

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

/// A finished call, on its way to the writer.
struct Done {
    outcome: Outcome,
    key: ItemKey,
    settled: Settled,
}

/// What the heartbeat and an abort need of a claim in flight (not its request body).
#[derive(Clone)]
struct Held {
    attempt_id: i64,
    lease_token: String,
    key: ItemKey,
    /// Set when the call is about to leave; until then an abort releases the item unsent.
    sent: Arc<AtomicBool>,
}

struct Shared {
    /// Leases held by calls in flight: execution id → (token, claim), for heartbeats and aborts.
    in_flight: Mutex<HashMap<i64, Held>>,
    /// Signalled after each committed batch: the store's state moved on.
    committed: Notify,
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
    let timeout = Duration::from_secs_f64(policy.timeout_s);
    let mut endpoints: Vec<(String, EndpointRuntime)> = config.endpoints.into_iter().collect();
    endpoints.sort_by(|a, b| a.0.cmp(&b.0));
    let mut buckets: Vec<Option<TokenBucket>> =
        endpoints.iter().map(|(_, e)| e.rate_per_s.map(TokenBucket::new)).collect();
    let mut pacing = (policy.delay_ms > 0).then(|| TokenBucket::with_capacity(1000.0 / policy.delay_ms as f64, 1.0));
    let index: HashMap<String, usize> = endpoints.iter().enumerate().map(|(i, (name, _))| (name.clone(), i)).collect();
    let providers: Vec<Arc<dyn Provider>> = endpoints.iter().map(|(_, e)| e.provider.clone()).collect();
    // Claims run ahead of the calls: up to `concurrency` more items are claimed (their
    // attempts recorded) while the calls before them are in flight, so a freed slot is
    // refilled at once and claims come in large batches. Permits keep the calls
    // themselves within the job's and each endpoint's concurrency. Under `park`, where a
    // crash's recorded-but-unsent attempts would park items, nothing is claimed ahead.
    let claim_ahead = if policy.on_possibly_billed == OnPossiblyBilled::Park { 0 } else { policy.concurrency };
    let send_permits = Arc::new(Semaphore::new(policy.concurrency));
    let endpoint_permits: Vec<Option<Arc<Semaphore>>> =
        endpoints.iter().map(|(_, e)| e.concurrency.map(|c| Arc::new(Semaphore::new(c)))).collect();
    let stopping = Arc::new(AtomicBool::new(false));
    let mut in_flight_by_endpoint = vec![0usize; endpoints.len()];
    // Residencies in a fixed order; `active` is the one whose endpoints may claim now.
    let mut residencies: Vec<&str> = endpoints.iter().filter_map(|(_, e)| e.residency.as_deref()).collect();
    residencies.sort_unstable();
    residencies.dedup();
    let residency_of: Vec<Option<usize>> = endpoints
        .iter()
        .map(|(_, e)| e.residency.as_deref().map(|r| residencies.binary_search(&r).expect("listed")))
        .collect();
    let mut active = 0usize;
    let mut idle_turns = 0usize;

    let shared = Arc::new(Shared { in_flight: Mutex::new(HashMap::new()), committed: Notify::new() });
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    // A call's slot is freed when its HTTP call returns; its outcome is reported done only
    // after the writer commits it. `uncommitted` bounds the outcomes waiting for the writer.
    let (freed_tx, mut freed_rx) = mpsc::unbounded_channel::<usize>();
    let uncommitted = Arc::new(AtomicUsize::new(0));
    let max_uncommitted = policy.concurrency.max(256) * 2;
    let mut writer = tokio::spawn(writer(
        store.clone(),
        done_rx,
        reporter.clone(),
        shared.clone(),
        uncommitted.clone(),
        config.hooks.clone(),
    ));
    let mut writer_result = None;
    let heart = tokio::spawn(heartbeat(store.clone(), shared.clone(), lease));

    let mut summary = RunSummary::default();
    let mut claimed_ids: HashSet<i64> = HashSet::new();
    let mut calls = tokio::task::JoinSet::new();
    let mut rotate = 0usize;
    let mut in_flight = 0usize;
    let result: Result<(), RunError> = async {
        loop {
            while let Ok(i) = freed_rx.try_recv() {
                in_flight -= 1;
                in_flight_by_endpoint[i] -= 1;
            }
            while calls.try_join_next().is_some() {}
            if *stop.borrow() != Stop::Running {
                break;
            }
            if writer.is_finished() {
                break; // the writer only ends early on a store error; joined below
            }
            let backlog_full = uncommitted.load(Ordering::SeqCst) >= max_uncommitted;
            let limit_left = policy.limit.map_or(usize::MAX, |l| (l as usize).saturating_sub(claimed_ids.len()));
            let free = if backlog_full {
                0
            } else {
                (policy.concurrency + claim_ahead).saturating_sub(in_flight).min(limit_left)
            };
            let paced = pacing.as_mut().map_or(usize::MAX, |b| b.available());
            let mut wants = Vec::new();
            if free > 0 && paced > 0 {
                for k in 0..endpoints.len() {
                    let i = (rotate + k) % endpoints.len();
                    if residency_of[i].is_some_and(|r| r != active) {
                        continue;
                    }
                    let ahead = if claim_ahead > 0 { 2 } else { 1 };
                    let cap = endpoints[i]
                        .1
                        .concurrency
                        .map_or(usize::MAX, |c| (ahead * c).saturating_sub(in_flight_by_endpoint[i]));
                    let rate = buckets[i].as_mut().map_or(usize::MAX, |b| b.available());
                    let n = free.min(cap).min(rate).min(paced);
                    if n > 0 {
                        wants.push((endpoints[i].0.clone(), n));
                    }
                }
                rotate = rotate.wrapping_add(1);
            }
            let mut claimed = 0;
            if !wants.is_empty() {
                let batch = store
                    .claim(ClaimRequest {
                        job_id: config.job_id.clone(),
                        worker: config.worker.clone(),
                        wants,
                        max_total: free.min(paced),
                        lease,
                        max_attempts: policy.max_attempts,
                        park_possibly_billed: policy.on_possibly_billed == OnPossiblyBilled::Park,
                    })
                    .await?;
                config.hooks.reached(CrashPoint::AfterClaim, batch.claims.len() as u64);
                summary.lost_found += batch.lost_attempts;
                summary.parked += batch.parked;
                summary.failed += batch.failed;
                claimed = batch.claims.len();
                let active_claimed = batch
                    .claims
                    .iter()
                    .any(|c| index.get(&c.endpoint).is_some_and(|&i| residency_of[i] == Some(active)));
                if !residencies.is_empty() {
                    let active_busy =
                        (0..endpoints.len()).any(|i| residency_of[i] == Some(active) && in_flight_by_endpoint[i] > 0);
                    if active_claimed || active_busy {
                        idle_turns = 0;
                    } else if idle_turns < residencies.len() {
                        // Nothing left for the resident model now: move on to the next.
                        active = (active + 1) % residencies.len();
                        idle_turns += 1;
                        if claimed == 0 {
                            continue;
                        }
                    }
                }
                for claim in batch.claims {
                    let Some(&i) = index.get(&claim.endpoint) else {
                        return Err(RunError::MissingEndpoint(claim.endpoint.clone()));
                    };
                    if let Some(b) = buckets[i].as_mut() {
                        b.take();
                    }
                    if let Some(b) = pacing.as_mut() {
                        b.take();
                    }
                    claimed_ids.insert(claim.execution_id);
                    summary.attempts += 1;
                    in_flight += 1;
                    in_flight_by_endpoint[i] += 1;
                    let sent = Arc::new(AtomicBool::new(false));
                    shared.in_flight.lock().expect("in-flight map").insert(
                        claim.execution_id,
                        Held {
                            attempt_id: claim.attempt_id,
                            lease_token: claim.lease_token.clone(),
                            key: claim.key.clone(),
                            sent: sent.clone(),
                        },
                    );
                    let provider = providers[i].clone();
                    let done = done_tx.clone();
                    let policy = policy.clone();
                    let hooks = config.hooks.clone();
                    let freed = freed_tx.clone();
                    let uncommitted = uncommitted.clone();
                    let (send, local, stopping) = (send_permits.clone(), endpoint_permits[i].clone(), stopping.clone());
                    calls.spawn(async move {
                        let _send = send.acquire_owned().await;
                        let _local = match local {
                            Some(l) => Some(l.acquire_owned().await),
                            None => None,
                        };
                        let d = if stopping.load(Ordering::SeqCst) {
                            // Stopped before this call left: give the item back, unsent.
                            release(claim)
                        } else {
                            sent.store(true, Ordering::SeqCst);
                            call(provider.as_ref(), claim, timeout, &policy).await
                        };
                        hooks.reached(CrashPoint::AfterSend, 1);
                        uncommitted.fetch_add(1, Ordering::SeqCst);
                        let _ = done.send(d);
                        let _ = freed.send(i);
                    });
                }
            }
            if claimed > 0 {
                continue;
            }
            // Nothing claimed: wait for a slot, a rate token, a backoff to end, or a lease to expire.
            if in_flight == 0 && policy.limit.is_some_and(|l| claimed_ids.len() as u64 >= l) {
                break;
            }
            let mut sleep = Duration::from_secs(60);
            if free > 0 {
                match store.next_wakeup(&config.job_id).await? {
                    None if in_flight == 0 => break,
                    None => {}
                    Some(t) => {
                        let wait = Duration::from_millis((t - store.now_ms()).clamp(0, 60_000) as u64);
                        if wait.is_zero() {
                            // Due work held back by a rate or an endpoint limit.
                            let refill = buckets
                                .iter()
                                .flatten()
                                .chain(pacing.iter())
                                .map(TokenBucket::time_to_next)
                                .filter(|d| !d.is_zero())
                                .min();
                            sleep = refill.unwrap_or(Duration::from_millis(5));
                        } else {
                            sleep = wait;
                            if in_flight == 0
                                && uncommitted.load(Ordering::SeqCst) == 0
                                && wait > Duration::from_secs(1)
                            {
                                reporter.event(Event::Waiting { wait });
                            }
                        }
                    }
                }
            }
            if backlog_full {
                sleep = sleep.min(Duration::from_millis(1));
            }
            // After a wait, work may have come due for any model: look at each again.
            idle_turns = 0;
            tokio::select! {
                Some(i) = freed_rx.recv() => {
                    in_flight -= 1;
                    in_flight_by_endpoint[i] -= 1;
                }
                _ = shared.committed.notified() => {}
                result = &mut writer, if writer_result.is_none() => {
                    writer_result = Some(result);
                    break; // the writer only ends early on a store error
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(())
    }
    .await;

    // Drain (or abort) what is in flight, then let the writer commit everything.
    stopping.store(true, Ordering::SeqCst);
    if *stop.borrow() >= Stop::Drain {
        summary.interrupted = true;
        reporter.event(Event::Draining { in_flight: calls.len() });
    }
    loop {
        if calls.is_empty() {
            break;
        }
        tokio::select! {
            _ = calls.join_next() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() == Stop::Abort || result.is_err() {
            calls.abort_all();
            while calls.join_next().await.is_some() {}
            let abandoned: Vec<(i64, Held)> =
                shared.in_flight.lock().expect("in-flight map").iter().map(|(id, h)| (*id, h.clone())).collect();
            for (execution_id, held) in abandoned {
                let sent = held.sent.load(Ordering::SeqCst);
                let outcome = Outcome {
                    execution_id,
                    attempt_id: held.attempt_id,
                    lease_token: held.lease_token.clone(),
                    latency_ms: 0,
                    http_status: None,
                    possibly_billed: sent,
                    error: Some(if sent {
                        "aborted by the user while in flight (the request may have been sent)".into()
                    } else {
                        "not sent: the run was aborted before this call left".into()
                    }),
                    next: if sent { Next::Aborted } else { Next::Released },
                };
                let _ = done_tx.send(Done { outcome, key: held.key.clone(), settled: Settled::Retrying });
            }
            break;
        }
    }
    drop(done_tx);
    drop(freed_tx);
    heart.abort();
    let joined = match writer_result {
        Some(r) => r,
        None => writer.await,
    };
    let tally = joined.map_err(|e| RunError::Store(StoreError::Task(e.to_string())))??;
    result?;
    summary.succeeded += tally.succeeded;
    summary.failed += tally.failed;
    summary.parked += tally.parked;
    summary.retried += tally.retried;
    summary.stale += tally.stale;
    Ok(summary)
}

/// Makes one call and decides what it means.
async fn call(provider: &dyn Provider, claim: Claim, timeout: Duration, policy: &RunPolicy) -> Done {
    let started = Instant::now();
    let result = provider
        .send(SendRequest {
            kind: claim.kind,
            body: &claim.request_body,
            idempotency_key: &claim.idempotency_key,
            timeout,
        })
        .await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let (next, settled, http_status, possibly_billed, error) = match result {
        Ok(reply) => {
            let model_mismatch = reply
                .reported_model
                .as_deref()
                .is_some_and(|r| r != claim.requested_model && !claim.model_aliases.iter().any(|a| a == r));
            let record = ResultRecord {
                reported_model: reply.reported_model,
                model_mismatch,
                response_text: reply.text,
                finish_reason: reply.finish_reason,
                usage: reply.usage,
                provenance: reply.provenance,
            };
            (Next::Succeeded(Box::new(record)), Settled::Succeeded, reply.http_status, false, None)
        }
        Err(e) => {
            let (next, settled) = decide(&e, claim.attempt_in_budget, policy);
            let message = match next {
                Next::Failed if e.retryable() => format!("gave up after {} attempts: {e}", claim.attempt_in_budget),
                _ => e.to_string(),
            };
            (next, settled, e.http_status(), e.possibly_billed(), Some(message))
        }
    };
    Done {
        outcome: Outcome {
            execution_id: claim.execution_id,
            attempt_id: claim.attempt_id,
            lease_token: claim.lease_token,
            latency_ms,
            http_status,
            possibly_billed,
            error,
            next,
        },
        key: claim.key,
        settled,
    }
}

/// A claimed item whose call never left (the run stopped first) goes back to pending.
fn release(claim: Claim) -> Done {
    Done {
        outcome: Outcome {
            execution_id: claim.execution_id,
            attempt_id: claim.attempt_id,
            lease_token: claim.lease_token,
            latency_ms: 0,
            http_status: None,
            possibly_billed: false,
            error: Some("not sent: the run stopped before this call left".into()),
            next: Next::Released,
        },
        key: claim.key,
        settled: Settled::Retrying,
    }
}

/// Retry, park or fail: the policy of `LEDGER.md`.
fn decide(e: &SendError, attempt: u32, policy: &RunPolicy) -> (Next, Settled) {
    if !e.retryable() {
        return (Next::Failed, Settled::Failed);
    }
    if e.possibly_billed() && policy.on_possibly_billed == OnPossiblyBilled::Park {
        return (Next::Parked, Settled::Parked);
    }
    if attempt >= policy.max_attempts {
        return (Next::Failed, Settled::Failed);
    }
    let after = e.retry_after().map_or_else(|| backoff::full_jitter(attempt), |d| d.min(backoff::MAX_RETRY_AFTER));
    (Next::Retry { after }, Settled::Retrying)
}

#[derive(Default)]
struct Tally {
    succeeded: u64,
    failed: u64,
    parked: u64,
    retried: u64,
    stale: u64,
}

/// Commits outcomes in batches; only then are they reported done.
async fn writer(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Done>,
    reporter: Arc<dyn Reporter>,
    shared: Arc<Shared>,
    uncommitted: Arc<AtomicUsize>,
    hooks: TestHooks,
) -> Result<Tally, RunError> {
    const MAX_BATCH: usize = 1024;
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
        let (outcomes, reports): (Vec<Outcome>, Vec<(i64, ItemKey, Settled)>) = batch
            .drain(..)
            .map(|d| (d.outcome.execution_id, d))
            .map(|(id, d)| (d.outcome, (id, d.key, d.settled)))
            .unzip();
        let applied = store.finish(outcomes).await?;
        hooks.reached(CrashPoint::AfterFinish, applied.len() as u64);
        let mut map = shared.in_flight.lock().expect("in-flight map");
        for ((execution_id, key, settled), applied) in reports.into_iter().zip(applied) {
            map.remove(&execution_id);
            let settled = if applied == Applied::Stale { Settled::Stale } else { settled };
            match settled {
                Settled::Succeeded => tally.succeeded += 1,
                Settled::Failed => tally.failed += 1,
                Settled::Parked => tally.parked += 1,
                Settled::Retrying => tally.retried += 1,
                Settled::Stale => tally.stale += 1,
            }
            uncommitted.fetch_sub(1, Ordering::SeqCst);
            reporter.event(Event::Settled { key, settled });
        }
        drop(map);
        shared.committed.notify_one();
    }
    Ok(tally)
}

/// Keeps the leases of calls in flight alive; a lease found taken over is left to the
/// fenced write, which will refuse the late answer.
async fn heartbeat(store: Store, shared: Arc<Shared>, lease: Duration) {
    let every = (lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let held: Vec<(i64, String)> = shared
            .in_flight
            .lock()
            .expect("in-flight map")
            .iter()
            .map(|(id, held)| (*id, held.lease_token.clone()))
            .collect();
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
