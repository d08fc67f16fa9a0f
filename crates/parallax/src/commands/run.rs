//! `parallax run`: execute what is not done yet, exactly once each.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use parallax_app::{Enqueued, label, load, providers};
use parallax_runner::{CrashPoint, RunConfig, Scope, TestHooks};

use crate::cli::{Global, RunArgs};
use crate::exit::{Code, Failure, Outcome};
use crate::{progress, signals};

pub async fn run(global: &Global, args: &RunArgs) -> Outcome {
    let (spec, catalog, plan, local_units) = load::plan(&args.spec, &global.config)?;
    super::warn_ignored_extras(global, &spec, &local_units);
    let mut policy = spec.run.clone();
    if let Some(c) = args.enqueue.concurrency {
        policy.concurrency = c;
    }
    if let Some(l) = args.limit {
        policy.limit = Some(l);
    }

    // Providers before the store: a missing API key is bad input and must write nothing.
    let endpoints = providers::endpoint_runtimes(&spec, &catalog, &global.config, &local_units, policy.concurrency)?;

    let store = super::open_store(global).await?;
    let hooks = test_hooks(&store)?;
    // The policy is recorded too, so that workers sharing the store can help with the job.
    let Enqueued { job, rearmed } = parallax_app::enqueue(&store, plan, &policy, args.enqueue.how()).await?;
    say_rearmed(global, rearmed);
    let before = store.status(&job.id).await?;
    let c = &before.total.counts;
    if c.pending == 0 && c.running == 0 {
        if !global.quiet {
            eprintln!(
                "job {}: complete, nothing to do ({} succeeded, {} failed, {} parked)",
                job.id, c.succeeded, c.failed, c.parked
            );
            if c.failed + c.parked > 0 {
                eprintln!("hint: `parallax run {} --retry-failed` re-arms failed executions", args.spec.display());
            }
        }
        return Ok(if c.failed + c.parked > 0 { Code::SomeFailed } else { Code::Success });
    }
    if !global.quiet {
        let verb = if job.inserted > 0 { "starting" } else { "continuing" };
        eprintln!(
            "{verb} job {}: {} executions planned, {} done, {} to run",
            job.id,
            job.planned,
            c.succeeded + c.failed + c.parked,
            c.pending + c.running
        );
    }

    if !args.no_preflight {
        preflight(global, &catalog, &before).await?;
    }
    if policy.probe {
        probe_models(global, &store, &catalog, &spec, &job.id).await?;
    }

    let visible = !global.quiet && !global.no_progress && std::io::stderr().is_terminal();
    let bar = Arc::new(progress::Bar::new(
        job.planned as u64,
        (c.succeeded + c.failed + c.parked) as u64,
        visible,
        global.quiet,
    ));
    let (stop_rx, signals) = signals::stop_on_signals(global.quiet);

    let started = Instant::now();
    let scope = Scope::Job { job_id: job.id.clone(), policy };
    let config =
        RunConfig { scope, worker: parallax_app::worker_id(), endpoints, hooks, labeller: label::Builtin::labeller() };
    let result = parallax_runner::run(store.clone(), config, bar.clone(), stop_rx).await;
    bar.finish();
    signals.abort();
    let summary = result?;
    // Each answer of this run was committed with its label; this labels answers of runs
    // before it that were not (answered by an older version, or a labeller that failed).
    label::label_job(&store, &job.id, false).await?;

    let after = store.status(&job.id).await?;
    let t = &after.total;
    if !global.quiet {
        eprintln!(
            "job {}: {} succeeded, {} failed, {} parked, {} pending of {} — this run: {} calls in {:.1}s ({} retried{}){}{}",
            job.id,
            t.counts.succeeded,
            t.counts.failed,
            t.counts.parked,
            t.counts.pending + t.counts.running,
            job.planned,
            summary.attempts,
            started.elapsed().as_secs_f64(),
            summary.retried,
            if summary.stale > 0 { format!(", {} late answers refused", summary.stale) } else { String::new() },
            if t.possibly_billed > 0 {
                format!("; {} possibly billed attempts", t.possibly_billed)
            } else {
                String::new()
            },
            if t.model_mismatches > 0 { format!("; {} MODEL MISMATCHES", t.model_mismatches) } else { String::new() },
        );
        if t.counts.failed + t.counts.parked > 0 {
            eprintln!(
                "hint: `parallax results {} --format jsonl` shows the errors; `parallax run {} --retry-failed` tries again",
                job.id,
                args.spec.display()
            );
        }
    }
    if summary.interrupted {
        return Ok(Code::Interrupted);
    }
    Ok(if t.counts.failed + t.counts.parked > 0 { Code::SomeFailed } else { Code::Success })
}

/// Checks each endpoint that has work in this job before any call: an endpoint that cannot
/// be reached or refuses the key stops the run (exit 2, one line each); other findings are
/// warnings. Sends no completion.
async fn preflight(
    global: &Global,
    catalog: &parallax_core::Catalog,
    status: &parallax_store::JobStatus,
) -> Result<(), Failure> {
    use parallax_app::preflight::{self, Verdict};
    let pairs: Vec<(String, String)> = status
        .cells
        .iter()
        .filter(|(_, c)| c.counts.pending + c.counts.running > 0)
        .map(|((model, region), _)| (model.clone(), region.clone()))
        .collect();
    let checks = preflight::check(catalog, &global.config, &pairs).await?;
    let line = |c: &preflight::EndpointCheck| {
        format!("endpoint `{}` of region `{}` ({}) {}", c.endpoint, c.region, c.base_url, c.detail)
    };
    if !global.quiet {
        for c in checks.iter().filter(|c| c.verdict == Verdict::Warning) {
            eprintln!("warning: {}", line(c));
        }
    }
    let fatal: Vec<String> = checks.iter().filter(|c| c.verdict == Verdict::Fatal).map(line).collect();
    if fatal.is_empty() {
        return Ok(());
    }
    Err(Failure::input(anyhow!(
        "{}\n\nhint: nothing was sent; fix the endpoint (or its key), or pass `--no-preflight` to start anyway",
        fatal.join("\n")
    )))
}

/// Says how many executions were re-armed, if re-arming was asked for.
pub fn say_rearmed(global: &Global, rearmed: Option<u64>) {
    if let Some(n) = rearmed
        && !global.quiet
    {
        eprintln!("re-armed {n} execution{} with a fresh attempt budget", if n == 1 { "" } else { "s" });
    }
}

/// Test hooks for the crash table and store failures, from the environment:
/// `PARALLAX_TEST_CRASH=after-claim|after-send|after-finish[:N]` aborts the process when
/// the N-th execution reaches that point; `PARALLAX_TEST_STORE_READ_ONLY_AFTER=N` makes the
/// store read-only after N result batches; `PARALLAX_TEST_PANIC_CALL=N` panics in the N-th
/// call task once its answer has arrived.
pub fn test_hooks(store: &parallax_store::Store) -> Result<TestHooks, Failure> {
    if let Ok(n) = std::env::var("PARALLAX_TEST_STORE_READ_ONLY_AFTER") {
        let n = n.parse().map_err(|_| Failure::input(anyhow!("PARALLAX_TEST_STORE_READ_ONLY_AFTER: not a number")))?;
        store.read_only_after(n);
    }
    let hooks = match std::env::var("PARALLAX_TEST_CRASH") {
        Err(_) => TestHooks::default(),
        Ok(spec) => {
            let (point, nth) = spec.split_once(':').unwrap_or((&spec, "1"));
            match (CrashPoint::parse(point), nth.parse()) {
                (Some(point), Ok(nth)) => TestHooks::crash_at(point, nth),
                _ => {
                    return Err(Failure::input(anyhow!(
                        "PARALLAX_TEST_CRASH: expected after-claim|after-send|after-finish[:N], got `{spec}`"
                    )));
                }
            }
        }
    };
    match std::env::var("PARALLAX_TEST_PANIC_CALL") {
        Err(_) => Ok(hooks),
        Ok(n) => match n.parse() {
            Ok(n) => Ok(hooks.panic_in_call_at(n)),
            Err(_) => Err(Failure::input(anyhow!("PARALLAX_TEST_PANIC_CALL: not a number"))),
        },
    }
}

/// `run.probe`: each model of the job probed in the job's regions that serve it (a probe
/// job of its own, asked once), the verdicts recorded for the job's report.
async fn probe_models(
    global: &Global,
    store: &parallax_store::Store,
    catalog: &parallax_core::Catalog,
    spec: &parallax_core::JobSpec,
    job_id: &str,
) -> Result<(), Failure> {
    use parallax_analysis::probe::Verdict;
    for model in &spec.models {
        let regions: Vec<String> =
            spec.regions.iter().filter(|r| catalog.resolve(model, r).is_some()).cloned().collect();
        if regions.len() < 2 {
            continue;
        }
        let (stop_rx, signals) = signals::stop_on_signals(global.quiet);
        let report = parallax_app::probe::run(store, catalog, &global.config, model, &regions, false, stop_rx).await;
        signals.abort();
        let report = report?;
        let value = serde_json::to_value(&report).map_err(|e| Failure::Internal(e.into()))?;
        store.put_probe(job_id, model, &report.job_id, value).await?;
        if !global.quiet {
            let odd: Vec<String> = report
                .regions
                .iter()
                .filter(|r| r.verdict != Verdict::Same)
                .map(|r| format!("{} {}", r.region, r.verdict.as_str()))
                .collect();
            eprintln!(
                "probe of {model} ({}): {}",
                report.job_id,
                if odd.is_empty() { "every region the same".to_owned() } else { odd.join(", ") }
            );
        }
    }
    Ok(())
}
