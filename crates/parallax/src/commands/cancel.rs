//! `parallax cancel`: workers stop claiming the job, let its calls in flight finish and be
//! recorded, and settle its remaining executions as `cancelled`.

use crate::cli::{CancelArgs, Global};
use crate::exit::{Code, Outcome};

pub async fn run(global: &Global, args: &CancelArgs) -> Outcome {
    let store = super::open_store(global).await?;
    // What no worker holds is settled now; a call in flight is settled when it ends.
    let (newly, settled) = parallax_runner::cancel(&store, &args.job_id).await?;
    if !global.quiet {
        let running = store.status(&args.job_id).await?.total.counts.running;
        eprintln!(
            "job {}: {}; {} executions cancelled now{}",
            args.job_id,
            if newly { "cancelled" } else { "already cancelled" },
            settled.executions,
            if running > 0 {
                format!(", {running} calls in flight will be recorded and settled")
            } else {
                String::new()
            }
        );
    }
    Ok(Code::Success)
}
