//! `parallax worker --region R`: run the submitted jobs' executions of these regions, fair
//! between jobs, each under the policy it was submitted with, until SIGTERM or Ctrl-C
//! (drain, then exit 130) — or, with `--exit-when-idle`, until the regions have nothing left.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use parallax_app::{label, load, providers};
use parallax_core::RunPolicy;
use parallax_runner::{Event, Reporter, RunConfig, Scope, Settled};

use crate::cli::{Global, WorkerArgs};
use crate::exit::{Code, Outcome};
use crate::signals;

pub async fn run(global: &Global, args: &WorkerArgs) -> Outcome {
    let regions: Vec<String> = args.regions.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let catalog = load::catalog(&global.config)?;
    let mut default_policy = RunPolicy::default();
    if let Some(c) = args.concurrency {
        default_policy.concurrency = c;
    }
    // Providers before the store: a missing API key of its regions is bad input.
    let endpoints = providers::region_runtimes(&regions, &catalog, &global.config, default_policy.concurrency)?;
    let store = super::open_store(global).await?;
    let hooks = super::run::test_hooks(&store)?;
    let id = parallax_app::register_worker(&store, &regions).await?;
    if !global.quiet {
        eprintln!(
            "worker {id}: regions {} ({} endpoints) on the {} store{}",
            regions.join(", "),
            endpoints.len(),
            store.backend(),
            if args.exit_when_idle { "; exits when they have nothing left" } else { "; Ctrl-C or SIGTERM stops it" }
        );
    }
    let (stop_rx, signals) = signals::stop_on_signals(global.quiet);
    let reporter = Arc::new(Log { quiet: global.quiet, jobs: std::sync::Mutex::new(BTreeSet::new()) });
    let started = Instant::now();
    let config = RunConfig {
        scope: Scope::Worker { default_policy, exit_when_idle: args.exit_when_idle },
        worker: id.clone(),
        endpoints,
        hooks,
        labeller: label::Builtin::labeller(),
    };
    let result = parallax_runner::run(store.clone(), config, reporter.clone(), stop_rx).await;
    signals.abort();
    store.worker_stopped(&id).await?;
    let summary = result?;
    // Each answer was committed with its label; this labels what runs before left unlabelled.
    let jobs: Vec<String> = reporter.jobs.lock().map(|j| j.iter().cloned().collect()).unwrap_or_default();
    for job in &jobs {
        label::label_job(&store, job, false).await?;
    }
    if !global.quiet {
        eprintln!(
            "worker {id}: {} calls in {:.1}s: {} succeeded, {} failed, {} parked, {} retried{}{}",
            summary.attempts,
            started.elapsed().as_secs_f64(),
            summary.succeeded,
            summary.failed,
            summary.parked,
            summary.retried,
            if summary.stale > 0 { format!(", {} late answers refused", summary.stale) } else { String::new() },
            if summary.lost_found > 0 {
                format!("; {} attempts of stopped workers found and closed as lost", summary.lost_found)
            } else {
                String::new()
            },
        );
    }
    if summary.interrupted {
        return Ok(Code::Interrupted);
    }
    Ok(if summary.failed + summary.parked > 0 { Code::SomeFailed } else { Code::Success })
}

/// A worker's log: quiet by default; it remembers which jobs it answered, to label them.
struct Log {
    quiet: bool,
    jobs: std::sync::Mutex<BTreeSet<String>>,
}

impl Reporter for Log {
    fn event(&self, event: Event) {
        match event {
            Event::Settled { key: _, job_id, settled } => {
                if settled == Settled::Succeeded
                    && let Ok(mut jobs) = self.jobs.lock()
                {
                    jobs.insert(job_id);
                }
            }
            Event::Draining { in_flight } if !self.quiet => {
                eprintln!("stopping: {in_flight} calls in flight (Ctrl-C again to abort them)");
            }
            _ => {}
        }
    }
}
