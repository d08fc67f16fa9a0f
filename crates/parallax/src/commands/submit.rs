//! `parallax submit`: plan a job spec and enqueue it for workers. Only the job id goes to
//! stdout, so `JOB=$(parallax submit job.yaml)` works.

use parallax_app::{Enqueued, load};

use crate::cli::{Global, SubmitArgs};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &SubmitArgs) -> Outcome {
    // Planning hashes every local model the job names: this machine needs their files, and
    // each worker checks the hash again when it loads the model.
    let (spec, _catalog, plan, _local) = load::plan(&args.spec, &global.config)?;
    let mut policy = spec.run.clone();
    if let Some(c) = args.enqueue.concurrency {
        policy.concurrency = c;
    }
    let store = super::open_store(global).await?;
    let Enqueued { job, rearmed } = parallax_app::enqueue(&store, plan, &policy, args.enqueue.how()).await?;
    super::run::say_rearmed(global, rearmed);
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
