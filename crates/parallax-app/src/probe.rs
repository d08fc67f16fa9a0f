//! `parallax probe`: the probe set asked of one model in every region, as a job of its own
//! in the store — planned, claimed, recorded and resumed like any job, so each probe call
//! is made exactly once and kept with what came back — then compared region by region
//! ([`parallax_analysis::probe::verdicts`]).

use std::path::Path;
use std::sync::Arc;

use parallax_analysis::classify::Label;
use parallax_analysis::probe::{self, PROBE_SET, PROBES, ProbeAnswer, RegionVerdict, SAMPLES};
use parallax_core::{Catalog, JobSpec, RunPolicy};
use parallax_runner::{RunConfig, Scope, Silent, Stop};
use parallax_store::{ResultFilter, Store};
use serde::Serialize;
use tokio::sync::watch;

use crate::{AppError, Enqueue, label, load, providers};

/// The verdicts of one model's probe, in the shape `probe --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub model: String,
    pub probe_set: &'static str,
    /// The job the probe calls were recorded in.
    pub job_id: String,
    pub regions: Vec<RegionVerdict>,
}

/// The regions of the catalog that serve `model`, in the catalog's order.
pub fn regions_serving(catalog: &Catalog, model: &str) -> Vec<String> {
    catalog.regions.keys().filter(|r| catalog.resolve(model, r).is_some()).cloned().collect()
}

/// The probe job's spec: every probe, [`SAMPLES`] times, to `model` in `regions`, chat mode
/// without a system prompt, at temperature 0. A new probe set has new texts: a new job.
pub fn spec_text(model: &str, regions: &[String]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut text = format!("name: probe-{}\nquestions:\n", slug(model));
    for p in &PROBES {
        text.push_str(&format!("  - {{id: {}, text: {}}}\n", q(p.id), q(p.text)));
    }
    let regions: Vec<String> = regions.iter().map(|r| q(r)).collect();
    text.push_str(&format!(
        "models: [{}]\nregions: [{}]\nprompt: {{mode: chat}}\nsampling: {{temperature: 0, max_tokens: 400}}\nsamples: {SAMPLES}\n",
        q(model),
        regions.join(", ")
    ));
    text
}

/// A job name from a model id: letters, digits and dashes.
fn slug(model: &str) -> String {
    let s: String =
        model.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s.trim_matches('-').to_owned()
}

/// Asks the probe set of `model` in `regions` (every region serving it when empty),
/// recording the calls in `store` (a probe already complete there is read, not asked
/// again; `fresh` asks again as a new generation), and compares the regions.
pub async fn run(
    store: &Store,
    catalog: &Catalog,
    catalog_path: &Path,
    model: &str,
    regions: &[String],
    fresh: bool,
    stop: watch::Receiver<Stop>,
) -> Result<ProbeReport, AppError> {
    let regions = if regions.is_empty() { regions_serving(catalog, model) } else { regions.to_vec() };
    let served_in = match regions.as_slice() {
        [] => Some("no region".to_owned()),
        [one] => Some(format!("region `{one}` only")),
        _ => None,
    };
    if let Some(served_in) = served_in {
        return Err(AppError::input(format!(
            "model `{model}` is served in {served_in} of `{}`; a probe compares two regions or more",
            catalog_path.display()
        )));
    }
    let text = spec_text(model, &regions);
    let mut no_files = |p: &Path| -> std::io::Result<String> {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} (a probe reads no files)", p.display())))
    };
    let spec = JobSpec::parse(&text, Path::new("probe"), &mut no_files)
        .map_err(|d| AppError::input(format!("the probe job is invalid: {}", d.to_string().trim_end())))?;
    let (plan, units) = load::plan_of(&spec, catalog, catalog_path)?;
    let policy = RunPolicy { concurrency: 8, ..RunPolicy::default() };
    let endpoints = providers::endpoint_runtimes(&spec, catalog, catalog_path, &units, policy.concurrency)?;
    let enqueued = crate::enqueue(store, plan, &policy, Enqueue { fresh, ..Enqueue::default() }).await?;
    let job = enqueued.job.id;
    let counts = store.status(&job).await?.total.counts;
    if counts.pending + counts.running > 0 {
        let config = RunConfig {
            scope: Scope::Job { job_id: job.clone(), policy },
            worker: crate::worker_id(),
            endpoints,
            hooks: Default::default(),
            labeller: label::Builtin::labeller(),
        };
        parallax_runner::run(store.clone(), config, Arc::new(Silent), stop).await?;
    }
    label::label_job(store, &job, false).await?;
    let rows = store.results(&job, ResultFilter { raw: true, ..Default::default() }).await?;
    let answers: Vec<ProbeAnswer> = rows
        .into_iter()
        .filter(|r| probe::probe(&r.question_id).is_some())
        .map(|r| {
            let server = r
                .raw
                .as_ref()
                .and_then(|raw| raw.response_headers.as_ref())
                .and_then(|h| h.get("server"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            ProbeAnswer {
                region: r.region,
                probe: r.question_id,
                sample: r.sample as u32,
                text: if r.status == "succeeded" { r.response_text } else { None },
                label: r.label.as_deref().and_then(|l| l.parse::<Label>().ok()),
                system_fingerprint: r.raw.and_then(|raw| raw.system_fingerprint),
                server,
            }
        })
        .collect();
    Ok(ProbeReport {
        model: model.to_owned(),
        probe_set: PROBE_SET,
        job_id: job,
        regions: probe::verdicts(&answers, &regions),
    })
}
