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

mod clock;
mod model;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, SystemClock};
pub use model::*;
use parallax_core::Plan;

/// Errors from the store. Every one of them stops a run: nothing is lost silently.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite error on `{path}`")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("`{0}`: PostgreSQL stores are not supported by this build yet")]
    PostgresUnsupported(String),
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
}

/// The store: SQLite today; the type is the boundary a PostgreSQL backend will sit behind.
#[derive(Clone)]
pub struct Store {
    inner: Arc<sqlite::SqliteStore>,
}

impl Store {
    /// Opens (creating if needed) the store named by `location`: a file path, or a
    /// `sqlite:` URL. `postgres://` URLs are recognised and refused until supported.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        Self::open_with_clock(location, Arc::new(SystemClock)).await
    }

    /// The SQLite file a location names (a path, or a `sqlite:` URL); `None` for a
    /// PostgreSQL URL.
    pub fn sqlite_path(location: &str) -> Option<PathBuf> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return None;
        }
        Some(PathBuf::from(location.strip_prefix("sqlite://").or(location.strip_prefix("sqlite:")).unwrap_or(location)))
    }

    /// Like [`Store::open`], with an injected clock (tests make leases expire with it).
    pub async fn open_with_clock(location: &str, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let Some(path) = Store::sqlite_path(location) else {
            return Err(StoreError::PostgresUnsupported(location.to_owned()));
        };
        let store = blocking(move || sqlite::SqliteStore::open(path, clock)).await?;
        Ok(Store { inner: Arc::new(store) })
    }

    /// Records a job and every execution of its plan, idempotently, and returns the job.
    /// Without `fresh`, the latest generation of the plan's job is continued (created if
    /// new); with it, a new generation starts (`<base>-2`, `-3`, …).
    pub async fn enqueue(&self, plan: Arc<Plan>, fresh: bool) -> Result<JobRecord, StoreError> {
        let s = self.inner.clone();
        blocking(move || s.enqueue(&plan, fresh)).await
    }

    /// The job a plan would continue, if the store has one.
    pub async fn current_job(&self, base_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let (s, base) = (self.inner.clone(), base_id.to_owned());
        blocking(move || s.current_job(&base)).await
    }

    /// Claims up to `n` claimable executions of each endpoint in `wants`, and records an
    /// open attempt for each, in one transaction. Claimable: pending and past its backoff,
    /// or running with an expired lease (whose open attempt is closed as `lost`).
    pub async fn claim(&self, request: ClaimRequest) -> Result<ClaimBatch, StoreError> {
        let s = self.inner.clone();
        blocking(move || s.claim(&request)).await
    }

    /// Extends the leases of `held`; returns the ids whose token is no longer current.
    pub async fn heartbeat(&self, held: Vec<(i64, String)>, lease: Duration) -> Result<Vec<i64>, StoreError> {
        let s = self.inner.clone();
        blocking(move || s.heartbeat(&held, lease)).await
    }

    /// Records the outcomes of finished attempts in one transaction (group commit).
    /// Each execution write is fenced by its lease token; the returned list says, for each
    /// outcome in order, whether it was applied or refused as stale.
    pub async fn finish(&self, outcomes: Vec<Outcome>) -> Result<Vec<Applied>, StoreError> {
        let s = self.inner.clone();
        blocking(move || s.finish(&outcomes)).await
    }

    /// Re-arms failed (and, with `parked`, parked) executions in place with a fresh attempt budget.
    pub async fn rearm(&self, job_id: &str, failed: bool, parked: bool) -> Result<u64, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.rearm(&job, failed, parked)).await
    }

    pub async fn job(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.job(&job)).await
    }

    /// The canonical JSON that names the job: questions, models, regions, prompt, sampling, samples.
    pub async fn job_identity(&self, job_id: &str) -> Result<serde_json::Value, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.job_identity(&job)).await
    }

    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>, StoreError> {
        let s = self.inner.clone();
        blocking(move || s.jobs(limit)).await
    }

    pub async fn status(&self, job_id: &str) -> Result<JobStatus, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.status(&job)).await
    }

    pub async fn results(&self, job_id: &str, filter: ResultFilter) -> Result<Vec<ResultRow>, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.results(&job, &filter)).await
    }

    pub async fn attempts(&self, job_id: &str, filter: ResultFilter) -> Result<Vec<AttemptRow>, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.attempts(&job, &filter)).await
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
        let (s, job, c, v) = (self.inner.clone(), job_id.to_owned(), classifier.to_owned(), version.to_owned());
        blocking(move || s.to_label(&job, &c, &v, all, after_id, limit)).await
    }

    /// Stores labels, replacing an earlier label of the same classifier for the same result.
    pub async fn put_labels(&self, labels: Vec<LabelRecord>) -> Result<u64, StoreError> {
        let s = self.inner.clone();
        blocking(move || s.put_labels(&labels)).await
    }

    /// Every execution of a job with its question, result and labels, in plan order.
    pub async fn analysis_rows(&self, job_id: &str) -> Result<Vec<AnalysisRow>, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.analysis_rows(&job)).await
    }

    pub async fn endpoint_attempts(&self, job_id: &str) -> Result<Vec<EndpointAttempts>, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.endpoint_attempts(&job)).await
    }

    /// The earliest time (store clock, ms) at which something of the job may become
    /// claimable: a backoff ending or a lease expiring. `None`: nothing is waiting.
    pub async fn next_wakeup(&self, job_id: &str) -> Result<Option<i64>, StoreError> {
        let (s, job) = (self.inner.clone(), job_id.to_owned());
        blocking(move || s.next_wakeup(&job)).await
    }

    /// Test hook: after `finishes` result batches, the store's connection turns read-only,
    /// so every later write fails as a real store would.
    #[doc(hidden)]
    pub fn read_only_after(&self, finishes: u64) {
        self.inner.read_only_after(finishes);
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Task(e.to_string()))?
}
