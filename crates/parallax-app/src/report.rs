//! A job's report, built from the store without writing to it.

use std::collections::HashMap;
use std::path::Path;

use parallax_analysis::classify::{self, Label};
use parallax_analysis::report::{self as analysis, JobFacts, Observation, Report};
use parallax_core::catalog::Price;
use parallax_core::{Catalog, Expect, canonical_json, sha256_hex};
use parallax_store::{AnalysisRow, Store};

use crate::AppError;

/// The report of a job as the store holds it now. Reading only: an answer the built-in
/// classifier has not labelled yet (a run stopped before labelling, a worker's fresh
/// result) is classified here, in memory, with the same rules `label_job` stores. Where the
/// built-in label is uncertain and a judge graded the answer, the judge's label counts.
pub async fn build(
    store: &Store,
    job_id: &str,
    prices: &HashMap<(String, String), Price>,
    min_confidence: Option<f64>,
) -> Result<Report, AppError> {
    let job = store.job(job_id).await?;
    let identity = store.job_identity(job_id).await?;
    let override_regions = identity
        .pointer("/prompt/system_by_region")
        .and_then(|v| v.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let endpoint_attempts = store
        .endpoint_attempts(job_id)
        .await?
        .into_iter()
        .map(|e| (e.endpoint, e.attempts, e.possibly_billed))
        .collect();
    let rows = store.analysis_rows(job_id).await?;
    let observations: Vec<Observation> = rows.into_iter().map(|r| observation(r, prices, min_confidence)).collect();
    let facts = JobFacts { job_id: job.id, planned: job.planned as u64, override_regions, endpoint_attempts };
    let mut report = analysis::analyse(&facts, &observations);
    report.probe_verdicts = probe_verdicts(&store.probes(job_id).await?);
    Ok(report)
}

/// The recorded probe reports of a job, one cell per model × region.
fn probe_verdicts(records: &[parallax_store::ProbeRecord]) -> Vec<analysis::ProbeVerdictCell> {
    let mut out = Vec::new();
    for record in records {
        for region in record.report["regions"].as_array().into_iter().flatten() {
            let evidence = region["evidence"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["decisive"] == true)
                .map(|e| {
                    format!(
                        "{} `{}`: {}",
                        e["kind"].as_str().unwrap_or(""),
                        e["probe"].as_str().unwrap_or(""),
                        e["detail"].as_str().unwrap_or("")
                    )
                })
                .collect();
            out.push(analysis::ProbeVerdictCell {
                model_id: record.model_id.clone(),
                region: region["region"].as_str().unwrap_or("").to_owned(),
                verdict: region["verdict"].as_str().unwrap_or("").to_owned(),
                evidence,
                probe_job_id: record.probe_job_id.clone(),
            });
        }
    }
    out
}

/// Prices per (model, region) from the catalog at `path`, when one is at hand and reads;
/// a report does not need it.
pub fn prices(path: &Path) -> HashMap<(String, String), Price> {
    let Ok(text) = std::fs::read_to_string(path) else { return HashMap::new() };
    let Ok(catalog) = Catalog::parse(&text, path) else { return HashMap::new() };
    prices_of(&catalog)
}

/// Prices per (model, region) of a catalog.
pub fn prices_of(catalog: &Catalog) -> HashMap<(String, String), Price> {
    let mut out = HashMap::new();
    for (region, r) in &catalog.regions {
        for endpoint in &r.endpoints {
            for (model, entry) in &endpoint.models {
                if let Some(p) = entry.price_per_mtok {
                    out.insert((model.clone(), region.clone()), p);
                }
            }
        }
    }
    out
}

/// One execution as the analysis sees it. A built-in label below `min_confidence` counts as
/// uncertain, as one whose evidence conflicts does.
fn observation(r: AnalysisRow, prices: &HashMap<(String, String), Price>, min_confidence: Option<f64>) -> Observation {
    let doubtful = |confidence: Option<f64>| min_confidence.is_some_and(|m| confidence.is_some_and(|c| c < m));
    let usage = |k: &str| r.usage.as_ref().and_then(|u| u.get(k)).and_then(|v| v.as_u64());
    let mut wire: serde_json::Value = serde_json::from_str(&r.request_body).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = wire.as_object_mut() {
        obj.remove("model");
    }
    let logical = parallax_core::logical_prompt(&r.request_body);
    // The best source per answer: the built-in label, unless it is uncertain and a judge
    // graded the answer.
    let builtin: Option<(Label, bool)> = match r.label.as_deref() {
        Some(l) => l.parse().ok().map(|l| (l, r.uncertain.unwrap_or(false) || doubtful(r.confidence))),
        None if r.status == "succeeded" => {
            let v = classify::classify_served(&r.question_text, r.response_text.as_deref(), r.block_code.as_deref());
            Some((v.label, v.uncertain || doubtful(Some(v.confidence))))
        }
        None => None,
    };
    let judged: Option<Label> = r.judge_labels.first().and_then(|(_, l)| l.parse().ok());
    let (label, uncertain) = match (builtin, judged) {
        (Some((_, true)), Some(j)) => (Some(j), false),
        (Some((l, uncertain)), _) => (Some(l), uncertain),
        (None, _) => (None, false),
    };
    Observation {
        price: prices.get(&(r.model_id.clone(), r.region.clone())).copied(),
        prompt_tokens: usage("prompt_tokens"),
        completion_tokens: usage("completion_tokens"),
        prompt_fingerprint: sha256_hex(canonical_json(&logical).as_bytes()),
        wire_fingerprint: sha256_hex(canonical_json(&wire).as_bytes()),
        expect: match r.expect.as_deref() {
            Some("comply") => Some(Expect::Comply),
            Some("refuse") => Some(Expect::Refuse),
            _ => None,
        },
        label,
        uncertain,
        question_id: r.question_id,
        question_text: r.question_text,
        model_id: r.model_id,
        region: r.region,
        sample: r.sample as u32,
        status: r.status,
        response_text: r.response_text,
        model_mismatch: r.model_mismatch.unwrap_or(false),
        reported_model: r.reported_model,
        system_fingerprint: r.system_fingerprint,
        endpoint: r.endpoint,
        latency_ms: r.latency_ms,
    }
}
