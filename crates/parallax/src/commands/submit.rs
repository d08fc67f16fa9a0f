//! `parallax submit`: plan a job spec and enqueue it for workers. Only the job id goes to
//! stdout, so `JOB=$(parallax submit job.yaml)` works.

use std::sync::Arc;

use parallax_app::load;

use crate::cli::{Global, SubmitArgs};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &SubmitArgs) -> Outcome {
    // Planning hashes every local model the job names: this machine needs their files, and
    // each worker checks the hash again when it loads the model.
    let (spec, _catalog, plan, _local) = load::plan(&args.spec, &global.config)?;
    let mut policy = spec.run.clone();
    if let Some(c) = args.concurrency {
        policy.concurrency = c;
    }
    let store = super::open_store(global).await?;
    let job = store.enqueue(Arc::new(plan), args.fresh).await?;
    store.set_run_policy(&job.id, super::run::policy_json(&policy)?).await?;
    if args.retry_failed || args.retry_parked {
        let n = store.rearm(&job.id, args.retry_failed, args.retry_parked).await?;
        if !global.quiet {
            eprintln!("re-armed {n} execution{} with a fresh attempt budget", if n == 1 { "" } else { "s" });
        }
    }
    if !global.quiet {
        let c = store.status(&job.id).await?.total.counts;
        let verb = if job.inserted > 0 { "submitted" } else { "continuing" };
        eprintln!(
            "{verb} job {}: {} executions planned, {} to run; workers of its regions run them (`parallax worker --region R`)",
            job.id,
            job.planned,
            c.pending + c.running
        );
    }
    output::stdout(&format!("{}\n", job.id)).map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Success)
}
