//! The execution ledger: how parallax keeps "exactly once" (see `LEDGER.md`).
//!
//! The [`Store`] owns every table: jobs, the executions of their plans (one row per
//! key, never deleted or re-inserted), the attempts made for them (one row per upstream
//! try, written and committed *before* the call), and results (at most one per
//! execution, by primary key). A claim is a lease with a fresh token; every later write
//! is fenced by that token, and a write whose token the row no longer holds is refused.
//!
//! The store knows nothing of HTTP or providers. It does not decide *whether* to retry —
//! the runner does — it only makes each decision durable, in batches (group commit).
//!
//! [`Store`] is one contract with two back ends, chosen by the location it is opened with:
//!
//! - **SQLite** (a path or a `sqlite:` URL): one process's ledger in one file, one writer
//!   connection, `BEGIN IMMEDIATE` transactions, time from the local clock.
//! - **PostgreSQL** (`postgres://` or `postgresql://`): a ledger shared by many workers on
//!   many hosts; rows are claimed with `FOR UPDATE SKIP LOCKED`, and every lease and time
//!   stamp comes from the database's clock, so hosts whose clocks disagree still agree on
//!   when a lease ran out.
//!
//! Both give the same answers to the same calls: `tests/ledger.rs` runs every test on each.
//! Errors name neither driver: a [`StoreError`] says where (the location, its password
//! redacted) and carries the driver's error as its source.

mod clock;
mod model;
mod pg_tls;
mod postgres;
pub mod raw;
mod sqlite;
mod wakeups;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, SystemClock};
pub use model::*;
use parallax_core::Plan;
pub use wakeups::Wakeups;

/// A boxed driver error: the source of a [`StoreError`], whatever the back end.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from the store. Every one of them stops a run: nothing is lost silently.
/// `store` is where the store is, as [`redact`] shows it: never with a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The back end refused or failed an operation (a constraint, a read-only database, a
    /// full disk, a broken file...).
    #[error("Store error on `{store}`")]
    Backend {
        store: String,
        #[source]
        source: BoxError,
    },
    /// The database could not be reached, or the connection was lost mid-call. The call's
    /// effect is unknown: it committed entirely or not at all.
    #[error("The store `{store}` is unavailable")]
    Unavailable {
        store: String,
        #[source]
        source: BoxError,
    },
    #[error("No job `{0}` in the store")]
    NoSuchJob(String),
    #[error("The store's record of job `{job}` is inconsistent: {detail}")]
    Inconsistent { job: String, detail: String },
    #[error("Migration {version} (`{name}`) was changed after it was applied to this store")]
    MigrationChanged { version: i64, name: String },
    #[error("The store was written by a newer parallax (schema {found}, this build knows {known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("Store task failed: {0}")]
    Task(String),
    /// The store's location cannot be used as written.
    #[error("{0}")]
    Location(String),
}

impl StoreError {
    /// The database could not be reached: the same call may succeed once it is back.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// `location` as it may be shown: a PostgreSQL URL's password (in the user part, or a
/// `password=` parameter) becomes `***`. Other locations (SQLite paths) are returned as
/// they are. The user part ends where the driver ends it, at the first `@`; when more `@`
/// follow before the query (an unescaped `@` in a password), everything up to the last of
/// them is hidden too: showing too little is safe, showing a piece of a password is not.
pub fn redact(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else { return location.to_owned() };
    if !matches!(scheme, "postgres" | "postgresql") {
        return location.to_owned();
    }
    let (userinfo, rest) = match rest.find('@') {
        Some(first) => {
            let query = rest[first..].find('?').map_or(rest.len(), |q| first + q);
            let last = rest[..query].rfind('@').unwrap_or(first);
            let userinfo = match rest[..last].split_once(':') {
                Some((user, _)) => format!("{user}:***@"),
                None => format!("{}@", &rest[..last]),
            };
            (userinfo, &rest[last + 1..])
        }
        None => (String::new(), rest),
    };
    let shown = format!("{scheme}://{userinfo}{rest}");
    match shown.split_once('?') {
        Some((before, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if percent_decoded(key).eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{before}?{}", params.join("&"))
        }
        None => shown,
    }
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The store: cheap to clone (every clone shares the connection or pool).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::SqliteStore>),
    Postgres(postgres::PgStore),
}

/// Runs `$call` on the back end: SQLite's blocking call on the blocking pool, with
/// `$owned` moved in; PostgreSQL's directly.
macro_rules! dispatch {
    ($self:ident, |$s:ident| $sqlite:expr, $pg:expr) => {
        match &$self.backend {
            Backend::Sqlite(s) => {
                let $s = s.clone();
                blocking(move || $sqlite).await
            }
            Backend::Postgres($s) => $pg.await,
        }
    };
}

impl Store {
    /// Opens (creating or migrating if needed) the store named by `location`: a file path,
    /// a `sqlite:` URL, or a `postgres://` / `postgresql://` URL (whose schema is the
    /// connection's `search_path`, e.g. `?options=-c%20search_path%3Dledger`). Time comes
    /// from the store's host: the local clock for SQLite, the database's for PostgreSQL.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        Self::open_clocked(location, None).await
    }

    /// The SQLite file a location names (a path, or a `sqlite:` URL); `None` for a
    /// PostgreSQL URL.
    pub fn sqlite_path(location: &str) -> Option<PathBuf> {
        if is_postgres(location) {
            return None;
        }
        match location.strip_prefix("sqlite://").or(location.strip_prefix("sqlite:")) {
            // A URL's query (`?mode=ro`) is not part of the file's name.
            Some(url) => Some(PathBuf::from(url.split_once('?').map_or(url, |(path, _)| path))),
            None => Some(PathBuf::from(location)),
        }
    }

    /// Whether a `sqlite:` URL asks for a read-only store (`?mode=ro`); an unknown query
    /// parameter or mode is an error, not ignored.
    fn sqlite_read_only(location: &str) -> Result<bool, StoreError> {
        let Some(url) = location.strip_prefix("sqlite:") else { return Ok(false) };
        let Some((_, query)) = url.split_once('?') else { return Ok(false) };
        let mut read_only = false;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("mode", "ro")) => read_only = true,
                Some(("mode", "rw" | "rwc")) => read_only = false,
                _ => {
                    return Err(StoreError::Location(format!(
                        "`{location}`: unknown parameter `{param}` (a sqlite: URL takes `mode=ro`, `mode=rw` or `mode=rwc`)"
                    )));
                }
            }
        }
        Ok(read_only)
    }

    /// Opens an existing store for reading only, as `status`, `results` and `report` do:
    /// nothing is created or migrated (a store of an older schema is refused, with the
    /// fix). On PostgreSQL every session of it is read only.
    pub async fn open_read_only(location: &str) -> Result<Store, StoreError> {
        match Store::sqlite_path(location) {
            Some(path) => {
                Store::sqlite_read_only(location)?; // refuses what it does not know
                let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                Ok(Store {
                    backend: Backend::Sqlite(Arc::new(
                        blocking(move || sqlite::SqliteStore::open(path, clock, true)).await?,
                    )),
                })
            }
            None => Ok(Store {
                backend: Backend::Postgres(postgres::PgStore::open(location, redact(location), None, true).await?),
            }),
        }
    }

    /// Like [`Store::open`], with an injected clock (tests make leases expire with it). On
    /// PostgreSQL the clock's reading is sent with every statement in place of the
    /// database's own.
    pub async fn open_with_clock(location: &str, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Self::open_clocked(location, Some(clock)).await
    }

    async fn open_clocked(location: &str, clock: Option<Arc<dyn Clock>>) -> Result<Store, StoreError> {
        let backend = match Store::sqlite_path(location) {
            Some(path) => {
                let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
                let read_only = Store::sqlite_read_only(location)?;
                Backend::Sqlite(Arc::new(blocking(move || sqlite::SqliteStore::open(path, clock, read_only)).await?))
            }
            None => Backend::Postgres(postgres::PgStore::open(location, redact(location), clock, false).await?),
        };
        Ok(Store { backend })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Records a job and every execution of its plan, idempotently, and returns the job.
    /// Without `fresh`, the latest generation of the plan's job is continued (created if
    /// new); with it, a new generation starts (`<base>-2`, `-3`, …).
    pub async fn enqueue(&self, plan: Arc<Plan>, fresh: bool) -> Result<JobRecord, StoreError> {
        dispatch!(self, |s| s.enqueue(&plan, fresh), s.enqueue(&plan, fresh))
    }

    /// The job a plan would continue, if the store has one.
    pub async fn current_job(&self, base_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let base = base_id.to_owned();
        dispatch!(self, |s| s.current_job(&base), s.current_job(&base))
    }

    /// Claims up to `n` claimable executions of each endpoint in `wants`, and records an
    /// open attempt for each, in one transaction. Claimable: pending and past its backoff,
    /// or running with an expired lease (whose open attempt is closed as `lost`).
    pub async fn claim(&self, request: ClaimRequest) -> Result<ClaimBatch, StoreError> {
        dispatch!(self, |s| s.claim(&request), s.claim(&request))
    }

    /// Extends the leases of `held`; returns the ids whose token is no longer current.
    pub async fn heartbeat(&self, held: Vec<(i64, String)>, lease: Duration) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, |s| s.heartbeat(&held, lease), s.heartbeat(&held, lease))
    }

    /// Records the outcomes of finished attempts in one transaction (group commit).
    /// Each execution write is fenced by its lease token; the returned list says, for each
    /// outcome in order, whether it was applied or refused as stale.
    pub async fn finish(&self, outcomes: Vec<Outcome>) -> Result<Vec<Applied>, StoreError> {
        dispatch!(self, |s| s.finish(&outcomes), s.finish(&outcomes))
    }

    /// Re-arms failed (and, with `parked`, parked) executions in place with a fresh attempt budget.
    pub async fn rearm(&self, job_id: &str, failed: bool, parked: bool) -> Result<u64, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.rearm(&job, failed, parked), s.rearm(&job, failed, parked))
    }

    pub async fn job(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.job(&job), s.job(&job))
    }

    /// The canonical JSON that names the job: questions, models, regions, prompt, sampling, samples.
    pub async fn job_identity(&self, job_id: &str) -> Result<serde_json::Value, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.job_identity(&job), s.job_identity(&job))
    }

    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>, StoreError> {
        dispatch!(self, |s| s.jobs(limit), s.jobs(limit))
    }

    pub async fn status(&self, job_id: &str) -> Result<JobStatus, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.status(&job), s.status(&job))
    }

    pub async fn results(&self, job_id: &str, filter: ResultFilter) -> Result<Vec<ResultRow>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.results(&job, &filter), s.results(&job, &filter))
    }

    /// A keyset page of a job's rows: the executions after `after_id` in id order, at most
    /// `limit`. The next page starts after the last row's `execution_id`.
    pub async fn results_page(
        &self,
        job_id: &str,
        filter: ResultFilter,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(
            self,
            |s| s.results_page(&job, &filter, after_id, limit),
            s.results_page(&job, &filter, after_id, limit)
        )
    }

    /// The live view's feed: a job's rows whose latest event (an end reached, a label
    /// written) has a number in `(after, upto]`, in event order, at most `limit`. Pass an
    /// `upto` from [`Store::event_horizon`]: reading no further, a reader that resumes from
    /// the last number it saw misses nothing, on any server sharing the store.
    pub async fn events(
        &self,
        job_id: &str,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.events(&job, after, upto, limit), s.events(&job, after, upto, limit))
    }

    /// How far [`Store::events`] may be read: every event number up to it is final (no
    /// transaction still running can commit a smaller one). Call it again to move it on.
    pub async fn event_horizon(&self) -> Result<i64, StoreError> {
        dispatch!(self, |s| s.event_horizon(), s.event_horizon())
    }

    /// One execution by its id, with what came back; `None` if the store has no such id.
    pub async fn execution(&self, id: i64) -> Result<Option<ResultRow>, StoreError> {
        dispatch!(self, |s| s.execution(id), s.execution(id))
    }

    /// One execution's attempts, in order.
    pub async fn execution_attempts(&self, id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        dispatch!(self, |s| s.execution_attempts(id), s.execution_attempts(id))
    }

    /// Figures over every job, for a metrics scrape (each a count over the whole store).
    pub async fn metrics(&self) -> Result<Metrics, StoreError> {
        dispatch!(self, |s| s.metrics(), s.metrics())
    }

    pub async fn attempts(&self, job_id: &str, filter: ResultFilter) -> Result<Vec<AttemptRow>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.attempts(&job, &filter), s.attempts(&job, &filter))
    }

    /// Succeeded results that `classifier` has not labelled at `version` (all of them with
    /// `all`), in execution order after `after_id`, at most `limit`.
    pub async fn to_label(
        &self,
        job_id: &str,
        classifier: &str,
        version: &str,
        all: bool,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<ToLabel>, StoreError> {
        let (job, c, v) = (job_id.to_owned(), classifier.to_owned(), version.to_owned());
        dispatch!(
            self,
            |s| s.to_label(&job, (&c, &v), all, after_id, limit, false),
            s.to_label(&job, (&c, &v), all, after_id, limit, false)
        )
    }

    /// Like [`Store::to_label`], only the answers whose built-in label is uncertain: what a
    /// judge is asked with `--uncertain-only`.
    pub async fn to_label_uncertain(
        &self,
        job_id: &str,
        classifier: &str,
        version: &str,
        all: bool,
    ) -> Result<Vec<ToLabel>, StoreError> {
        let (job, c, v) = (job_id.to_owned(), classifier.to_owned(), version.to_owned());
        dispatch!(
            self,
            |s| s.to_label(&job, (&c, &v), all, 0, usize::MAX, true),
            s.to_label(&job, (&c, &v), all, 0, usize::MAX, true)
        )
    }

    /// Stores labels, replacing an earlier label of the same classifier for the same result.
    pub async fn put_labels(&self, labels: Vec<LabelRecord>) -> Result<u64, StoreError> {
        dispatch!(self, |s| s.put_labels(&labels), s.put_labels(&labels))
    }

    /// Every execution of a job with its question, result and labels, in plan order.
    pub async fn analysis_rows(&self, job_id: &str) -> Result<Vec<AnalysisRow>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.analysis_rows(&job), s.analysis_rows(&job))
    }

    pub async fn endpoint_attempts(&self, job_id: &str) -> Result<Vec<EndpointAttempts>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.endpoint_attempts(&job), s.endpoint_attempts(&job))
    }

    /// The earliest time (store clock, ms) at which something of the job may become
    /// claimable: a backoff ending or a lease expiring. `None`: nothing is waiting.
    /// `t - now_ms()` is the wait: on PostgreSQL this call also re-measures the offset
    /// between this host's clock and the database's that `now_ms` applies.
    pub async fn next_wakeup(&self, job_id: &str) -> Result<Option<i64>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.next_wakeup(&job), s.next_wakeup(&job))
    }

    /// Records `model_id`'s probe verdicts for a job (replacing earlier ones).
    pub async fn put_probe(
        &self,
        job_id: &str,
        model_id: &str,
        probe_job_id: &str,
        report: serde_json::Value,
    ) -> Result<(), StoreError> {
        let (job, model, probe, report) =
            (job_id.to_owned(), model_id.to_owned(), probe_job_id.to_owned(), report.to_string());
        dispatch!(self, |s| s.put_probe(&job, &model, &probe, &report), s.put_probe(&job, &model, &probe, &report))
    }

    /// The probe verdicts recorded for a job, by model.
    pub async fn probes(&self, job_id: &str) -> Result<Vec<ProbeRecord>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.probes(&job), s.probes(&job))
    }

    /// Who holds live leases on the job's running executions, by worker id.
    pub async fn lease_holders(&self, job_id: &str) -> Result<Vec<LeaseHolder>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.lease_holders(&job), s.lease_holders(&job))
    }

    /// Ends now the live leases `worker` holds on the job's executions, so they can be
    /// claimed again (their open attempts then close as lost, possibly billed). Only for a
    /// holder known to be gone: a process of this host that no longer exists. Returns how
    /// many leases it ended.
    pub async fn expire_leases(&self, job_id: &str, worker: &str) -> Result<u64, StoreError> {
        let (job, worker) = (job_id.to_owned(), worker.to_owned());
        dispatch!(self, |s| s.expire_leases(&job, &worker), s.expire_leases(&job, &worker))
    }

    /// Records the run policy (JSON) a job runs under, so that any worker can run it: the
    /// last `submit` or `run` of a job sets it.
    pub async fn set_run_policy(&self, job_id: &str, policy: serde_json::Value) -> Result<(), StoreError> {
        let (job, policy) = (job_id.to_owned(), policy.to_string());
        dispatch!(self, |s| s.set_run_policy(&job, &policy), s.set_run_policy(&job, &policy))
    }

    /// Jobs with executions pending or running on any of `endpoints`, oldest first,
    /// cancelled ones included (their remaining executions are to be settled).
    pub async fn active_jobs(&self, endpoints: Vec<String>) -> Result<Vec<ActiveJob>, StoreError> {
        dispatch!(self, |s| s.active_jobs(&endpoints), s.active_jobs(&endpoints))
    }

    /// Marks a job cancelled: claims skip it from now on, and an outcome that would send an
    /// execution of it back to pending settles it as `cancelled` instead. Returns false if
    /// it was cancelled already. Wakes idle workers (PostgreSQL), so they settle the rest.
    pub async fn cancel_job(&self, job_id: &str) -> Result<bool, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.cancel_job(&job), s.cancel_job(&job))
    }

    /// Settles a cancelled job's remaining executions on `endpoints` as `cancelled`: the
    /// pending ones, and running ones whose lease expired (their open attempt closed as
    /// lost, possibly billed). Calls in flight under a live lease are left to finish.
    pub async fn settle_cancelled(&self, job_id: &str, endpoints: Vec<String>) -> Result<Cancelled, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.settle_cancelled(&job, &endpoints), s.settle_cancelled(&job, &endpoints))
    }

    /// The endpoints a job's executions use.
    pub async fn job_endpoints(&self, job_id: &str) -> Result<Vec<String>, StoreError> {
        let job = job_id.to_owned();
        dispatch!(self, |s| s.job_endpoints(&job), s.job_endpoints(&job))
    }

    /// Registers a worker (or renews its row, if the id is known), stamped with the store's clock.
    pub async fn register_worker(&self, worker: WorkerRecord) -> Result<(), StoreError> {
        dispatch!(self, |s| s.register_worker(&worker), s.register_worker(&worker))
    }

    /// A worker's heartbeat: when it was last seen, and its calls in flight. False when its
    /// row is gone (it was removed: the worker must stop).
    pub async fn worker_seen(&self, id: &str, in_flight: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        dispatch!(self, |s| s.worker_seen(&id, in_flight), s.worker_seen(&id, in_flight))
    }

    /// A worker says it stopped.
    pub async fn worker_stopped(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        dispatch!(self, |s| s.worker_stopped(&id), s.worker_stopped(&id))
    }

    /// Renews this worker's shares of limits it shares with other workers (see
    /// [`ShareAsk`]) for `lease`, and returns what it may have in flight under each, in
    /// order. A worker that stops gives its shares back ([`Store::worker_stopped`]).
    pub async fn share_limits(
        &self,
        worker: &str,
        lease: Duration,
        asks: Vec<ShareAsk>,
    ) -> Result<Vec<u64>, StoreError> {
        let worker = worker.to_owned();
        dispatch!(self, |s| s.share_limits(&worker, lease, &asks), s.share_limits(&worker, lease, &asks))
    }

    /// Workers seen since `since_ms` (store clock), most recently seen first.
    pub async fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRow>, StoreError> {
        dispatch!(self, |s| s.workers(since_ms), s.workers(since_ms))
    }

    /// Wake-ups for an idle worker: `LISTEN` on PostgreSQL (a connection of its own), a
    /// poll on SQLite. Dropping it closes the connection.
    pub fn wakeups(&self) -> Wakeups {
        match &self.backend {
            Backend::Sqlite(_) => Wakeups::polling(),
            Backend::Postgres(s) => Wakeups::listening(s.config()),
        }
    }

    /// Test hook: after `finishes` result batches, the store's connection turns read-only,
    /// so every later write fails as a real store would.
    #[doc(hidden)]
    pub fn read_only_after(&self, finishes: u64) {
        match &self.backend {
            Backend::Sqlite(s) => s.read_only_after(finishes),
            Backend::Postgres(s) => s.read_only_after(finishes),
        }
    }

    /// The store's clock in ms since the Unix epoch, without a round trip, for display and
    /// for turning [`Store::next_wakeup`] into a wait. SQLite: the store's clock itself.
    /// PostgreSQL: this host's clock corrected by its offset to the database's, measured
    /// at open and at every `next_wakeup` (good to a round trip; leases never use it).
    pub fn now_ms(&self) -> i64 {
        match &self.backend {
            Backend::Sqlite(s) => s.now_ms(),
            Backend::Postgres(s) => s.now_ms(),
        }
    }

    /// The store's clock, read where it is kept: on PostgreSQL the database's `now`, asked
    /// for (one round trip); on SQLite, or with an injected clock, the same as `now_ms`.
    pub async fn db_now_ms(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(s.now_ms()),
            Backend::Postgres(s) => s.db_now_ms().await,
        }
    }

    /// Test hook: requests that waited for the database server since open (PostgreSQL;
    /// `None` for SQLite), for measuring what a batch costs.
    #[doc(hidden)]
    pub fn round_trips(&self) -> Option<u64> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(s) => Some(s.round_trips()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_and_nothing_else() {
        let cases = [
            ("postgres://u:s3cret@db:5432/x", "postgres://u:***@db:5432/x"),
            ("postgresql://u:s3cret@db", "postgresql://u:***@db"),
            ("postgres://u@db/x?sslmode=disable", "postgres://u@db/x?sslmode=disable"),
            ("postgres://u:p%40ss@h1,h2/x", "postgres://u:***@h1,h2/x"),
            ("postgres://u:p@ss@db/x", "postgres://u:***@db/x"),
            ("postgres://u:s3c/ret@db/x", "postgres://u:***@db/x"),
            ("postgres://u:s3c?ret@db/x", "postgres://u:***@db/x"),
            ("postgres://u:s3cret@db/x?application_name=me@home", "postgres://u:***@db/x?application_name=me@home"),
            ("postgres://db/x?application_name=me@home", "postgres://db/x?application_name=me@home"),
            (
                "postgres://db/x?application_name=me@home&password=s3cret",
                "postgres://db/x?application_name=me@home&password=***",
            ),
            ("postgres://db/x?user=u&password=s3cret&a=b", "postgres://db/x?user=u&password=***&a=b"),
            ("postgres://db?pass%77ord=s3cret", "postgres://db?pass%77ord=***"),
            ("postgres://u:s3cret@db?options=-c%20search_path%3Dt", "postgres://u:***@db?options=-c%20search_path%3Dt"),
            ("postgres://:s3cret@db", "postgres://:***@db"),
            ("ledger.db", "ledger.db"),
            ("sqlite:///tmp/a:b@c.db", "sqlite:///tmp/a:b@c.db"),
        ];
        for (given, shown) in cases {
            assert_eq!(redact(given), shown, "{given}");
            assert!(!redact(given).contains("s3cret"));
        }
    }
}
