//! Putting a plan in the store for `run` and `submit` alike: the job, its executions, the
//! policy any worker runs it under, and the re-arming asked for.

use std::sync::Arc;

use parallax_core::{Plan, RunPolicy};
use parallax_store::{JobRecord, Store};

use crate::AppError;

/// What enqueueing is asked to do besides recording the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enqueue {
    /// Start a new generation of the job instead of continuing the recorded one.
    pub fresh: bool,
    pub retry_failed: bool,
    pub retry_parked: bool,
}

/// The job recorded, and how many executions were re-armed (`None`: none was asked for).
pub struct Enqueued {
    pub job: JobRecord,
    pub rearmed: Option<u64>,
}

/// Records the plan (idempotently), the run policy workers sharing the store run the job
/// under (without `limit`, which caps one run, not the job), and re-arms failed or parked
/// executions if asked.
pub async fn enqueue(store: &Store, plan: Plan, policy: &RunPolicy, how: Enqueue) -> Result<Enqueued, AppError> {
    let job = store.enqueue(Arc::new(plan), how.fresh).await?;
    let stored = RunPolicy { limit: None, ..policy.clone() };
    store.set_run_policy(&job.id, serde_json::to_value(stored).map_err(AppError::internal)?).await?;
    let rearmed = if how.retry_failed || how.retry_parked {
        Some(store.rearm(&job.id, how.retry_failed, how.retry_parked).await?)
    } else {
        None
    };
    Ok(Enqueued { job, rearmed })
}
