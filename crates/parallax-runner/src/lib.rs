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
use parallax_store::{ClaimRequest, LabelRecord, ResultRecord, ShareAsk, Store, StoreError};
use tokio::sync::{mpsc, watch};

use crate::calls::{Calls, JobLimits, Via};
use crate::flight::InFlight;
pub use crate::hooks::{CrashPoint, TestHooks};
use crate::limits::{Gate, TokenBucket};
use crate::schedule::Schedule;
use crate::writer::Tally;

/// How one endpoint is reached and limited.
#[derive(Clone)]
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
    pub scope: Scope,
    /// Names this process in leases and attempt rows (and, for a worker, its registry row).
    pub worker: String,
    /// Keyed by the plan's endpoint name (`<region>/<endpoint>`). A worker claims only
    /// items of these endpoints, so only its regions'.
    pub endpoints: HashMap<String, EndpointRuntime>,
    /// Crash points for tests; the default does nothing.
    pub hooks: TestHooks,
    /// Labels each answer as it arrives, so that the label is committed with its result;
    /// `None` leaves answers unlabelled (a pass over the job labels them later).
    pub labeller: Option<Arc<dyn Labeller>>,
}

/// Labels an answer in its call's task (the calls run side by side; the writer every
/// outcome waits for does not). The application gives the built-in classifier.
pub trait Labeller: Send + Sync {
    /// The label of `answer`, the reply to `question`; `None` for none.
    fn label(&self, execution_id: i64, question: &str, answer: &ResultRecord) -> Option<LabelRecord>;
}

/// What a run works on.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One job under the given policy (`parallax run`), until nothing of it is left to do.
    Job { job_id: String, policy: RunPolicy },
    /// Every job with work on the run's endpoints (`parallax worker`), each under the policy
    /// it was submitted with (`default_policy` for a job recorded without one), fair between
    /// jobs. Until stopped; with `exit_when_idle`, until no job has work on its endpoints —
    /// counting items under other workers' leases until they finish or expire.
    Worker { default_policy: RunPolicy, exit_when_idle: bool },
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
        job_id: String,
        key: ItemKey,
        settled: Settled,
    },
    /// Nothing of this run is in flight and nothing is claimable now: the next item
    /// becomes claimable in `wait` (a backoff ends, or a lease held elsewhere expires).
    Waiting {
        wait: Duration,
        /// Who holds the live leases waited for (`host:pid`), if anyone.
        held_by: Vec<String>,
    },
    /// A stopped process of this host (its pid is gone) held leases on a job: they were
    /// ended at once instead of at their expiry, and its items are claimed again (their
    /// open attempts closed as lost, possibly billed).
    Reclaimed {
        job_id: String,
        worker: String,
        executions: u64,
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
    /// The call never left (the run stopped first): back to pending, no call made.
    Released,
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

/// Runs until the scope's work is done (nothing claimable, nothing in flight), or until stopped.
pub async fn run(
    store: Store,
    config: RunConfig,
    reporter: Arc<dyn Reporter>,
    mut stop: watch::Receiver<Stop>,
) -> Result<RunSummary, RunError> {
    // Claims run ahead of the calls (see `JobSlot::ahead`); under `park` nothing is claimed
    // ahead. The endpoints' caps allow for it unless every job parks. A worker does so too:
    // it keeps its calls within its share of each limit it shares with other workers (a
    // job's concurrency, an endpoint's), recorded in the store, so the leases it claims
    // ahead take nobody's slot.
    let (jobs, worker_mode, exit_when_idle, claim_ahead, default_policy) = match &config.scope {
        Scope::Job { job_id, policy } => {
            let slot = JobSlot::new(job_id.clone(), policy.clone(), false, false);
            (vec![slot], false, true, policy.on_possibly_billed != OnPossiblyBilled::Park, policy.clone())
        }
        Scope::Worker { default_policy, exit_when_idle } => {
            (Vec::new(), true, *exit_when_idle, true, default_policy.clone())
        }
    };
    let lease = lease_of(&default_policy);
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
    let registry = worker_mode.then(|| config.worker.clone());
    let heart = tokio::spawn(heartbeat::heartbeat(store.clone(), in_flight.clone(), lease, registry));
    let schedule = Schedule::new(config.endpoints, claim_ahead, worker_mode);
    let mut scheduler = Scheduler {
        endpoint_names: schedule.endpoint_names(),
        schedule,
        calls: Calls::new(done_tx, in_flight.clone(), uncommitted.clone(), config.hooks.clone(), config.labeller),
        wakeups: worker_mode.then(|| store.wakeups()),
        store: store.clone(),
        worker: config.worker,
        hooks: config.hooks,
        reporter: reporter.clone(),
        in_flight,
        uncommitted,
        writer,
        writer_result: None,
        max_uncommitted: default_policy.concurrency.max(256) * 2,
        jobs,
        job_rotate: 0,
        worker_mode,
        exit_when_idle,
        default_policy,
        refreshed: std::time::Instant::now(),
        shares_renewed: None,
        shared_scopes: Vec::new(),
        idle_round: true,
        summary: RunSummary::default(),
    };
    let result = scheduler.claim_until_done(&mut stop).await;

    // Drain (or abort) what is in flight, then let the writer commit everything.
    let Scheduler { calls, writer, writer_result, mut summary, jobs, schedule, .. } = scheduler;
    // Nothing more is sent: a call still waiting for a pass gives its item back at once
    // (a worker's gates may be shut by shares that are no longer renewed).
    jobs.iter().for_each(|j| j.limits.gate.close());
    schedule.close_gates();
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
    let Tally { succeeded, failed, parked, retried, stale, released } = tally;
    // Claims whose call never left are no calls (`attempts` counts upstream calls).
    summary.attempts = summary.attempts.saturating_sub(released);
    summary.succeeded += succeeded;
    summary.failed += failed;
    summary.parked += parked;
    summary.retried += retried;
    summary.stale += stale;
    Ok(summary)
}

fn lease_of(policy: &RunPolicy) -> Duration {
    Duration::from_secs_f64(policy.lease_s())
}

/// One job the scheduler claims for, with its own limits.
struct JobSlot {
    id: String,
    policy: RunPolicy,
    limits: JobLimits,
    lease: Duration,
    /// Claims run ahead of the calls: up to the job's concurrency (a worker's share of it)
    /// more items are claimed (their attempts recorded) while the calls before them are in
    /// flight, so a freed slot is refilled at once and claims come in large batches. The
    /// gate keeps the calls themselves within the limit. Under `park`, where a crash's
    /// recorded-but-unsent attempts would park items, nothing is claimed ahead.
    ahead: bool,
    /// A worker's: it shares the job's concurrency with other workers, and its gate is
    /// sized to its share (one job's run has all of it).
    shared: bool,
    /// Whether its last claim got items: a worker that found none wants no share (unless
    /// it holds items), so that one holding items it cannot send yet is not kept waiting
    /// by shares nobody uses.
    found_work: bool,
    /// The spec's `delay_ms` between calls.
    pacing: Option<TokenBucket>,
    /// Calls of this job started and not returned.
    running: usize,
    /// Items claimed, for `limit` (a single job's run only).
    claimed_ids: HashSet<i64>,
    cancelled: bool,
}

impl JobSlot {
    /// `shared`: a worker's, which calls only within the share of the job's concurrency
    /// the store gives it (none until [`JobSlot::set_share`]).
    fn new(id: String, mut policy: RunPolicy, cancelled: bool, shared: bool) -> JobSlot {
        // A stored policy was checked when it was submitted; a zero would stall the job.
        policy.concurrency = policy.concurrency.max(1);
        JobSlot {
            limits: JobLimits {
                job_id: id.as_str().into(),
                lease: lease_of(&policy),
                gate: Gate::new(if shared { 0 } else { policy.concurrency }),
                policy: Arc::new(policy.clone()),
            },
            lease: lease_of(&policy),
            ahead: policy.on_possibly_billed != OnPossiblyBilled::Park,
            shared,
            found_work: true,
            pacing: (policy.delay_ms > 0).then(|| TokenBucket::with_capacity(1000.0 / policy.delay_ms as f64, 1.0)),
            running: 0,
            claimed_ids: HashSet::new(),
            id,
            policy,
            cancelled,
        }
    }

    /// How many more items this job may claim now.
    fn free(&mut self) -> usize {
        let limit_left = self.policy.limit.map_or(usize::MAX, |l| (l as usize).saturating_sub(self.claimed_ids.len()));
        let paced = self.pacing.as_mut().map_or(usize::MAX, TokenBucket::available);
        let calls = self.limits.gate.size();
        // Ahead by as many again. A worker without a share claims one item all the same, to
        // find out whether it has work here (and then ask for a share) — under `park` too,
        // which otherwise claims nothing ahead: that one item is all a crash could park.
        let ahead = if self.ahead { calls.max(1) } else { usize::from(calls == 0) };
        (calls + ahead).saturating_sub(self.running).min(limit_left).min(paced)
    }

    /// A worker's share of the job's concurrency is now `granted`.
    fn set_share(&mut self, granted: usize) {
        if self.shared {
            self.limits.gate.resize(granted);
        }
    }

    fn limit_reached(&self) -> bool {
        self.policy.limit.is_some_and(|l| self.claimed_ids.len() as u64 >= l)
    }
}

/// The scheduler task's state: what to claim, the calls it started, and the writer's
/// progress it waits on.
struct Scheduler {
    schedule: Schedule,
    endpoint_names: Vec<String>,
    calls: Calls,
    /// A worker's wake-ups (LISTEN on PostgreSQL); `None` for one job's run.
    wakeups: Option<parallax_store::Wakeups>,
    store: Store,
    worker: String,
    hooks: TestHooks,
    reporter: Arc<dyn Reporter>,
    in_flight: Arc<InFlight>,
    uncommitted: Arc<AtomicUsize>,
    /// The scheduler stops claiming while this many outcomes wait for the writer.
    max_uncommitted: usize,
    writer: tokio::task::JoinHandle<Result<Tally, RunError>>,
    /// Set when the writer ended early (it only does on a store error).
    writer_result: Option<Result<Result<Tally, RunError>, tokio::task::JoinError>>,
    jobs: Vec<JobSlot>,
    /// Which job claims first this round, rotating so a large job cannot starve a small one.
    job_rotate: usize,
    worker_mode: bool,
    exit_when_idle: bool,
    default_policy: RunPolicy,
    /// When a worker last asked the store for its jobs, and whether its last round claimed nothing.
    refreshed: std::time::Instant,
    /// When a worker last renewed its shares of the limits it shares with other workers
    /// (`None`: before the first, or a job came since), and their scopes then.
    shares_renewed: Option<std::time::Instant>,
    shared_scopes: Vec<String>,
    idle_round: bool,
    summary: RunSummary,
}

/// How often a busy worker looks for new jobs.
const REFRESH: Duration = Duration::from_secs(1);

/// How often a worker renews its shares of shared limits (and so learns of workers that
/// came or went). A share lasts unrenewed as long as the longest lease of the worker's
/// jobs and the timeout of a call: no call it let out outlives it (see `renew_shares`),
/// and a worker that died gives its share back by then.
const SHARES_EVERY: Duration = Duration::from_millis(250);

impl Scheduler {
    /// Claims and starts calls until the work is done, the run's limit is reached, the
    /// run is stopped, or the writer failed.
    async fn claim_until_done(&mut self, stop: &mut watch::Receiver<Stop>) -> Result<(), RunError> {
        let mut outage = Duration::from_millis(100);
        loop {
            match self.step(stop).await {
                Ok(Step::Continue) => outage = Duration::from_millis(100),
                Ok(Step::Done) => return Ok(()),
                // The database is unreachable (a restart, a lost connection): claim nothing,
                // let the calls in flight finish (the writer keeps their outcomes), try again.
                Err(RunError::Store(e)) if e.is_unavailable() => {
                    tracing::warn!(error = %e, retry_in = ?outage, "store unavailable; claiming paused");
                    tokio::select! {
                        _ = tokio::time::sleep(outage.mul_f64(0.5 + rand::random::<f64>() / 2.0)) => {}
                        _ = stop.changed() => {}
                    }
                    outage = (outage * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One turn of the scheduler: claim what may be claimed, or wait for something to change.
    async fn step(&mut self, stop: &mut watch::Receiver<Stop>) -> Result<Step, RunError> {
        while let Ok((lane, job)) = self.calls.freed.try_recv() {
            self.freed(lane, job);
        }
        self.calls.reap();
        if *stop.borrow() != Stop::Running || self.writer.is_finished() {
            // A finished writer ended early on a store error; it is joined by the caller.
            return Ok(Step::Done);
        }
        // A worker looks for jobs when it has none or nothing in flight, and at least every
        // second while busy (a new job's notice only wakes an idle worker).
        let idle = self.idle_round && self.calls.running == 0;
        if self.worker_mode && (self.jobs.is_empty() || idle || self.refreshed.elapsed() >= REFRESH) {
            self.refresh_jobs().await?;
            self.refreshed = std::time::Instant::now();
        }
        if self.worker_mode && self.shares_renewed.is_none_or(|at| at.elapsed() >= SHARES_EVERY) {
            self.renew_shares().await?;
        }
        let claimed = self.claim_round().await?;
        self.idle_round = matches!(claimed, Claimed::None);
        if !self.idle_round {
            return Ok(Step::Continue);
        }
        if self.calls.running == 0 && !self.worker_mode && self.jobs.iter().all(JobSlot::limit_reached) {
            return Ok(Step::Done);
        }
        let Some(sleep) = self.next_wait().await? else { return Ok(Step::Done) };
        let backlog_full = self.uncommitted.load(Ordering::SeqCst) >= self.max_uncommitted;
        let sleep = if backlog_full { sleep.min(Duration::from_millis(1)) } else { sleep };
        self.schedule.waited();
        let woken = async {
            match &self.wakeups {
                Some(w) => w.wait(sleep).await,
                None => tokio::time::sleep(sleep).await,
            }
        };
        tokio::select! {
            Some((lane, job)) = self.calls.freed.recv() => self.freed(lane, job),
            _ = self.in_flight.committed.notified() => {}
            result = &mut self.writer, if self.writer_result.is_none() => {
                self.writer_result = Some(result);
                return Ok(Step::Done);
            }
            _ = woken => {}
            _ = stop.changed() => {}
        }
        Ok(Step::Continue)
    }

    fn freed(&mut self, lane: usize, job: usize) {
        self.calls.running -= 1;
        self.schedule.freed(lane);
        if let Some(slot) = self.jobs.get_mut(job) {
            slot.running -= 1;
        }
    }

    /// A worker's jobs: those with work on its endpoints, under the policy each was
    /// submitted with. Cancelled ones have their remaining items settled, not claimed.
    async fn refresh_jobs(&mut self) -> Result<(), RunError> {
        let active = self.store.active_jobs(self.endpoint_names.clone()).await?;
        for job in &active {
            if job.cancelled {
                let settled = self.store.settle_cancelled(&job.id, self.endpoint_names.clone()).await?;
                self.summary.lost_found += settled.lost_attempts;
            }
            match self.jobs.iter_mut().find(|j| j.id == job.id) {
                Some(slot) => slot.cancelled = job.cancelled,
                None => {
                    let policy = job
                        .run_policy
                        .as_ref()
                        .and_then(|p| serde_json::from_value::<RunPolicy>(p.clone()).ok())
                        .unwrap_or_else(|| self.default_policy.clone());
                    // `limit` caps one run of one job, never a worker's share of it.
                    let policy = RunPolicy { limit: None, ..policy };
                    self.jobs.push(JobSlot::new(job.id.clone(), policy, job.cancelled, true));
                    self.shares_renewed = None;
                }
            }
        }
        // A finished job's slot goes once its calls are back; indices of the others move,
        // so calls in flight keep their job's index only while no slot before it goes.
        if self.jobs.iter().all(|j| j.running == 0) {
            self.jobs.retain(|j| active.iter().any(|a| a.id == j.id));
        }
        Ok(())
    }

    /// A worker's shares of the limits it shares with other workers: each job's concurrency
    /// and each of its endpoints' that has one. What the store grants bounds the calls it
    /// makes (the gates) and, with claims ahead of them, what it claims.
    async fn renew_shares(&mut self) -> Result<(), RunError> {
        let mut asks = Vec::new();
        for slot in &self.jobs {
            let cap = slot.policy.concurrency as u64;
            // All of it while it has work or holds items (claimed ahead, or calling); none
            // once it found none (it claims one item to find out again, see `free`).
            let busy = slot.running > 0 || (!slot.cancelled && slot.found_work);
            let want = if busy { cap } else { 0 };
            // Passes that exist (out or free): the calls it may have in flight until its
            // gate has shrunk to a smaller share.
            let holding = slot.limits.gate.outstanding() as u64;
            asks.push(ShareAsk { scope: format!("job/{}", slot.id), cap, want, holding });
        }
        let lanes = self.schedule.shared();
        for &(lane, cap, want, holding) in &lanes {
            let scope = format!("endpoint/{}", self.schedule.lane(lane).name);
            asks.push(ShareAsk { scope, cap: cap as u64, want: want as u64, holding: holding as u64 });
        }
        // A job this worker no longer runs: its share goes back at once.
        let scopes: Vec<String> = asks.iter().map(|a| a.scope.clone()).collect();
        for gone in self.shared_scopes.iter().filter(|s| !scopes.contains(s)) {
            asks.push(ShareAsk { scope: gone.clone(), cap: 0, want: 0, holding: 0 });
        }
        let asked = std::time::Instant::now();
        self.shares_renewed = Some(asked);
        if asks.is_empty() {
            return Ok(());
        }
        // A share outlives every call it lets out: one sent just before its lease looked too
        // near its end (a third of it left) may run for its whole timeout after that.
        let outlives =
            |p: &RunPolicy, lease: Duration| lease + Duration::try_from_secs_f64(p.timeout_s).unwrap_or(lease);
        let lease = self.jobs.iter().map(|j| outlives(&j.policy, j.lease)).max();
        let lease = lease.unwrap_or_else(|| outlives(&self.default_policy, lease_of(&self.default_policy)));
        let granted = self.store.share_limits(&self.worker, lease, asks).await?;
        let n = self.jobs.len();
        for (slot, g) in self.jobs.iter_mut().zip(&granted[..n]) {
            slot.set_share(*g as usize);
        }
        for (&(lane, ..), g) in lanes.iter().zip(&granted[n..]) {
            self.schedule.set_share(lane, *g as usize);
        }
        self.shared_scopes = scopes;
        // A worker whose shares go unconfirmed for a while is presumed dead by the others
        // (the store voids the shares of a worker not seen for `LIVE_WORKER_MS`): its calls
        // start only while its shares are fresh, whether the store fails or hangs. Calls
        // already made go on.
        self.in_flight.send_until(asked + Duration::from_millis(parallax_store::LIVE_WORKER_MS as u64 / 2));
        Ok(())
    }

    /// One round: each job in turn (starting with the next one each round) claims what its
    /// free slots and the endpoints allow.
    async fn claim_round(&mut self) -> Result<Claimed, RunError> {
        let backlog_full = self.uncommitted.load(Ordering::SeqCst) >= self.max_uncommitted;
        let busy = self.schedule.resident_busy();
        let (mut claimed_any, mut claimed_resident) = (false, false);
        let n = self.jobs.len();
        for k in 0..n {
            let j = (self.job_rotate + k) % n;
            if backlog_full || self.jobs[j].cancelled {
                continue;
            }
            let free = self.jobs[j].free();
            let wants = self.schedule.wants(free, self.jobs[j].ahead);
            if wants.per_endpoint.is_empty() {
                continue;
            }
            let slot = &self.jobs[j];
            // Concurrency is kept in this process: a worker's calls within its shares of the
            // limits it shares with other workers (see `renew_shares`), one job's run within
            // the limits themselves. Rates and pacing shared with other workers are buckets
            // in the store, from which each claim takes.
            let (endpoint_rates, job_rate) = if self.worker_mode {
                let wanted = || wants.per_endpoint.iter().map(|(e, _)| e);
                let rates = wanted().filter_map(|e| self.schedule.rate_of(e).map(|r| (e.clone(), r))).collect();
                let pacing = (slot.policy.delay_ms > 0).then(|| 1000.0 / slot.policy.delay_ms as f64);
                (rates, pacing)
            } else {
                (Vec::new(), None)
            };
            let started = std::time::Instant::now();
            let max_total = wants.max_total;
            let asked = if self.worker_mode { wants.per_endpoint.clone() } else { Vec::new() };
            let batch = self
                .store
                .claim(ClaimRequest {
                    job_id: slot.id.clone(),
                    worker: self.worker.clone(),
                    wants: wants.per_endpoint,
                    max_total: wants.max_total,
                    lease: slot.lease,
                    max_attempts: slot.policy.max_attempts,
                    park_possibly_billed: slot.policy.on_possibly_billed == OnPossiblyBilled::Park,
                    endpoint_caps: Vec::new(),
                    job_cap: None,
                    returned: Vec::new(),
                    endpoint_rates,
                    job_rate,
                })
                .await?;
            // `RUST_LOG=parallax_runner::claim=debug`: one line per claim (bench/workers.py
            // reads its latency from them).
            tracing::debug!(target: "parallax_runner::claim", elapsed_us = started.elapsed().as_micros() as u64, claimed = batch.claims.len(), max_total, "claim");
            self.hooks.reached(CrashPoint::AfterClaim, batch.claims.len() as u64);
            self.summary.lost_found += batch.lost_attempts;
            self.summary.parked += batch.parked;
            self.summary.failed += batch.failed;
            claimed_resident |= self.schedule.for_resident(&batch.claims);
            claimed_any |= !batch.claims.is_empty();
            if self.worker_mode {
                // What it found decides what it wants of the limits it shares; work found
                // again after none asks for a share at once.
                let found = !batch.claims.is_empty();
                if found && !self.jobs[j].found_work {
                    self.shares_renewed = None;
                }
                self.jobs[j].found_work = found;
                for (endpoint, n) in &asked {
                    if let Some(lane) = self.schedule.lane_of(endpoint) {
                        let got = batch.claims.iter().filter(|c| &c.endpoint == endpoint).count();
                        if self.schedule.found(lane, *n, got) {
                            self.shares_renewed = None;
                        }
                    }
                }
            }
            for claim in batch.claims {
                let Some(lane) = self.schedule.lane_of(&claim.endpoint) else {
                    return Err(RunError::MissingEndpoint(claim.endpoint.clone()));
                };
                self.schedule.claimed(lane);
                let slot = &mut self.jobs[j];
                if let Some(b) = slot.pacing.as_mut() {
                    b.take();
                }
                slot.claimed_ids.insert(claim.execution_id);
                slot.running += 1;
                self.summary.attempts += 1;
                let l = self.schedule.lane(lane);
                let via = Via { lane, provider: l.provider.clone(), gate: l.permits.clone() };
                let limits = slot.limits.clone();
                self.calls.start(claim, via, j, &limits, started);
            }
        }
        self.job_rotate = self.job_rotate.wrapping_add(1);
        let again = self.schedule.after_round(claimed_resident, busy, claimed_any);
        Ok(if claimed_any {
            Claimed::Some
        } else if again {
            Claimed::TryAgain
        } else {
            Claimed::None
        })
    }

    /// How long to wait when nothing was claimed: until a slot frees, a rate token comes,
    /// a backoff ends, a lease expires (or, for a worker, a notice arrives). `None`:
    /// nothing is left to wait for.
    async fn next_wait(&mut self) -> Result<Option<Duration>, RunError> {
        let mut earliest: Option<i64> = None;
        for slot in &self.jobs {
            if slot.cancelled {
                continue;
            }
            if let Some(t) = self.store.next_wakeup(&slot.id).await? {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        tracing::trace!(jobs = self.jobs.len(), running = self.calls.running, ?earliest, "nothing claimed");
        let Some(t) = earliest else {
            if self.calls.running > 0 {
                return Ok(Some(Duration::from_secs(60)));
            }
            if !self.worker_mode {
                return Ok(None);
            }
            // A worker with nothing to do: done if asked to exit when idle and no job has
            // work on its endpoints (items under other workers' leases count as work).
            if self.exit_when_idle && self.store.active_jobs(self.endpoint_names.clone()).await?.is_empty() {
                tracing::debug!("no job has work on this worker's endpoints: done");
                return Ok(None);
            }
            // Otherwise wait for a notice; the poll is the fallback for a missed one.
            let listens = self.wakeups.as_ref().is_some_and(parallax_store::Wakeups::listens);
            return Ok(Some(if listens { Duration::from_secs(5) } else { Duration::from_millis(500) }));
        };
        let mut wait = Duration::from_millis((t - self.store.now_ms()).clamp(0, 60_000) as u64);
        if wait.is_zero() {
            // Due work held back by a job's pacing or concurrency, or an endpoint's limits
            // (a worker's may be held by other workers: look again soon, not at once).
            let paced = self.jobs.iter().filter_map(|j| j.pacing.as_ref()).map(TokenBucket::time_to_next);
            let refill = self.schedule.refill_wait().into_iter().chain(paced).filter(|d| !d.is_zero()).min();
            let shared = if self.worker_mode { Duration::from_millis(20) } else { Duration::from_millis(5) };
            return Ok(Some(refill.unwrap_or(shared)));
        }
        if wait > Duration::from_secs(1) {
            // Leases of a process of this host that is gone end now, not at their expiry.
            let mut held_by = Vec::new();
            let mut reclaimed = false;
            for slot in self.jobs.iter().filter(|s| !s.cancelled) {
                for holder in self.store.lease_holders(&slot.id).await? {
                    if holder.worker != self.worker && gone_from_this_host(&holder.worker) {
                        let n = self.store.expire_leases(&slot.id, &holder.worker).await?;
                        if n > 0 {
                            reclaimed = true;
                            self.reporter.event(Event::Reclaimed {
                                job_id: slot.id.clone(),
                                worker: holder.worker.clone(),
                                executions: n,
                            });
                        }
                    } else if holder.worker != self.worker {
                        held_by.push(holder.worker);
                    }
                }
            }
            if reclaimed {
                return Ok(Some(Duration::ZERO));
            }
            if self.calls.running == 0 && self.uncommitted.load(Ordering::SeqCst) == 0 && wait > Duration::from_secs(1)
            {
                held_by.sort();
                held_by.dedup();
                self.reporter.event(Event::Waiting { wait, held_by });
            }
        }
        if self.worker_mode {
            // What a worker waits for may be another worker's lease, which ends when its call
            // does (no notice says so): look again within a second rather than at its expiry.
            wait = wait.min(Duration::from_secs(1));
        }
        Ok(Some(wait))
    }
}

/// Whether a worker id (`host:pid`, see `parallax_app::worker_id`) names a process of this
/// host that no longer exists. Anything else — another host, a live pid, an id of another
/// form, a system without `/proc` — is not known to be gone.
fn gone_from_this_host(worker: &str) -> bool {
    let Some((host, pid)) = worker.rsplit_once(':') else { return false };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    if pid == std::process::id() || host != host_name() || !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    !std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// This machine's name, as worker ids (`host:pid`) carry it.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether the scheduler goes on.
enum Step {
    Continue,
    Done,
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

/// Cancels a job: claims skip it from now on; what no call holds is settled `cancelled` at
/// once (with the open attempts of dead workers' expired leases closed as lost); a call in
/// flight finishes, is recorded, and then settles its execution `cancelled` instead of
/// sending it back to pending. Returns whether the job was newly cancelled, and what was
/// settled now.
pub async fn cancel(store: &Store, job_id: &str) -> Result<(bool, parallax_store::Cancelled), RunError> {
    let newly = store.cancel_job(job_id).await?;
    let endpoints = store.job_endpoints(job_id).await?;
    Ok((newly, store.settle_cancelled(job_id, endpoints).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(concurrency: usize, on_possibly_billed: OnPossiblyBilled) -> RunPolicy {
        RunPolicy { concurrency, on_possibly_billed, ..RunPolicy::default() }
    }

    #[tokio::test]
    async fn claims_run_ahead_of_the_calls_within_the_share_of_the_limit() {
        // `run`: twice the concurrency, so a freed slot is refilled at once.
        let mut run = JobSlot::new("j".into(), policy(4, OnPossiblyBilled::Retry), false, false);
        assert_eq!(run.free(), 8);
        run.running = 5;
        assert_eq!(run.free(), 3);
        // Under `park`, an item claimed and never sent would be parked after a crash.
        assert_eq!(JobSlot::new("j".into(), policy(4, OnPossiblyBilled::Park), false, false).free(), 4);
        // A worker shares the job's concurrency with other workers: before the store gives
        // it a share it calls nothing, and claims one item to find out whether it has work
        // here; then its share and as much again ahead.
        let mut worker = JobSlot::new("j".into(), policy(4, OnPossiblyBilled::Retry), false, true);
        assert_eq!(worker.free(), 1);
        assert_eq!(worker.limits.gate.outstanding(), 0, "and it calls nothing");
        worker.set_share(2);
        assert_eq!((worker.free(), worker.limits.gate.outstanding()), (4, 2));
        worker.running = 3;
        worker.set_share(1);
        assert_eq!((worker.free(), worker.limits.gate.outstanding()), (0, 1));
        // Under `park`, only that one item to find out; with a share, never ahead of it.
        let mut parks = JobSlot::new("j".into(), policy(4, OnPossiblyBilled::Park), false, true);
        assert_eq!(parks.free(), 1);
        parks.set_share(2);
        assert_eq!(parks.free(), 2);
    }
}
