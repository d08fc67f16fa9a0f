//! `parallax report`: the findings of a job — completeness, refusal rates with intervals,
//! significant differences, divergent questions, expectations and audits.
//!
//! `--format json` writes the [`parallax_core::analysis::Report`] (schema
//! `parallax.report/1`); `--format html` one self-contained page.

use std::collections::HashMap;

use anyhow::anyhow;
use parallax_core::analysis::{self, JobFacts, Observation, Report};
use parallax_core::catalog::Price;
use parallax_core::{Catalog, Expect, canonical_json, sha256_hex};
use parallax_store::{AnalysisRow, Store};

use crate::cli::{Global, ReportArgs, ReportFormat};
use crate::exit::{Code, Failure, Outcome};
use crate::output::pct;
use crate::{html, output};

pub async fn run(global: &Global, args: &ReportArgs) -> Outcome {
    if let Some(m) = args.min_agreement
        && !(0.0..=1.0).contains(&m)
    {
        return Err(Failure::input(anyhow!("`--min-agreement` is a fraction between 0 and 1, got {m}")));
    }
    let Some(store) = super::open_existing_store(global).await? else {
        return Err(Failure::input(anyhow!("no store at `{}`\n\nhint: pass `--db` or set PARALLAX_DB", global.db)));
    };
    let report = build(&store, &args.job_id, prices(global)).await?;
    let text = match args.format {
        ReportFormat::Table => terminal(&report, args.top),
        ReportFormat::Json => serde_json::to_string_pretty(&report).map_err(|e| Failure::Internal(e.into()))? + "\n",
        ReportFormat::Html => html::report(&report),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Failure::Internal(anyhow!("cannot write `{}`: {e}", path.display())))?,
        None => output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?,
    }
    if let Some(min) = args.min_agreement {
        let below: Vec<String> = report
            .expectations
            .iter()
            .filter(|c| c.agreement < min)
            .map(|c| format!("{} in {}: {:.1}%", c.model_id, c.region, 100.0 * c.agreement))
            .collect();
        if !below.is_empty() {
            eprintln!("expectation agreement below {:.1}%: {}", 100.0 * min, below.join("; "));
            return Ok(Code::SomeFailed);
        }
    }
    Ok(Code::Success)
}

/// Prices per (model, region) from the catalog, when one is at hand; a report does not need it.
fn prices(global: &Global) -> HashMap<(String, String), Price> {
    let Ok(text) = std::fs::read_to_string(&global.config) else { return HashMap::new() };
    let Ok(catalog) = Catalog::parse(&text, &global.config) else { return HashMap::new() };
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

pub async fn build(store: &Store, job_id: &str, prices: HashMap<(String, String), Price>) -> Result<Report, Failure> {
    // Answers not labelled yet are labelled now: the built-in classifier calls no model.
    super::classify::label_job(store, job_id, false).await?;
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
    let observations: Vec<Observation> = rows.into_iter().map(|r| observation(r, &prices)).collect();
    let facts = JobFacts { job_id: job.id, planned: job.planned as u64, override_regions, endpoint_attempts };
    Ok(analysis::analyse(&facts, &observations))
}

fn observation(r: AnalysisRow, prices: &HashMap<(String, String), Price>) -> Observation {
    let usage = |k: &str| r.usage.as_ref().and_then(|u| u.get(k)).and_then(|v| v.as_u64());
    let mut prompt: serde_json::Value = serde_json::from_str(&r.request_body).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = prompt.as_object_mut() {
        obj.remove("model");
    }
    Observation {
        price: prices.get(&(r.model_id.clone(), r.region.clone())).copied(),
        prompt_tokens: usage("prompt_tokens"),
        completion_tokens: usage("completion_tokens"),
        prompt_fingerprint: sha256_hex(canonical_json(&prompt).as_bytes()),
        expect: match r.expect.as_deref() {
            Some("comply") => Some(Expect::Comply),
            Some("refuse") => Some(Expect::Refuse),
            _ => None,
        },
        label: r.label.as_deref().and_then(|l| l.parse().ok()),
        question_id: r.question_id,
        question_text: r.question_text,
        model_id: r.model_id,
        region: r.region,
        sample: r.sample as u32,
        status: r.status,
        response_text: r.response_text,
        model_mismatch: r.model_mismatch.unwrap_or(false),
        endpoint: r.endpoint,
        latency_ms: r.latency_ms,
    }
}

/// The ten-second summary.
fn terminal(r: &Report, top: usize) -> String {
    let mut out = String::new();
    let c = &r.completeness;
    out.push_str(&format!(
        "job {} — {} planned: {} succeeded, {} failed, {} parked, {} pending{}\n",
        r.job_id,
        c.planned,
        c.succeeded,
        c.failed,
        c.parked,
        c.pending + c.running,
        if c.accounted && c.duplicates == 0 && c.outside_plan == 0 {
            " (complete accounting, no duplicates)".to_owned()
        } else {
            format!(" — ACCOUNTING PROBLEM: {} duplicates, {} outside the plan", c.duplicates, c.outside_plan)
        }
    ));
    out.push_str("\nRefusal rates (any refusal = full or partial; Wilson 95% intervals)\n");
    let rows: Vec<Vec<String>> = r
        .cells
        .iter()
        .map(|cell| {
            vec![
                cell.model_id.clone(),
                cell.region.clone(),
                cell.n.to_string(),
                pct(cell.refusal.rate),
                pct(cell.partial.rate),
                format!(
                    "{} [{} – {}]",
                    pct(cell.any_refusal.rate),
                    pct(cell.any_refusal.low),
                    pct(cell.any_refusal.high)
                ),
            ]
        })
        .collect();
    out.push_str(&output::table(&["MODEL", "REGION", "N", "REFUSAL", "PARTIAL", "ANY REFUSAL [95% CI]"], &rows));

    let findings: Vec<_> = r.comparisons.iter().filter(|c| c.finding).collect();
    out.push_str(&format!(
        "\nSignificant differences (paired on the same questions; McNemar exact, Holm-corrected over {} comparisons, α = {})\n",
        r.comparisons.len(),
        analysis::ALPHA
    ));
    if findings.is_empty() {
        out.push_str("  none\n");
    }
    for f in findings {
        let what = if f.kind == "region" {
            format!("{}: {} vs {}", f.within, f.a, f.b)
        } else {
            format!("in {}: {} vs {}", f.within, f.a, f.b)
        };
        out.push_str(&format!(
            "  {what}: {} vs {} refused ({:+.1} pts [{:+.1}, {:+.1}]), p = {:.2e}, Holm p = {:.2e}\n",
            pct(f.rate_a),
            pct(f.rate_b),
            100.0 * f.difference,
            100.0 * f.ci_low,
            100.0 * f.ci_high,
            f.p_value,
            f.p_holm
        ));
    }

    out.push_str(&format!(
        "\nDivergent questions ({} in all; top {})\n",
        r.divergences.len(),
        top.min(r.divergences.len())
    ));
    if r.divergences.is_empty() {
        out.push_str("  none: every model answered each question the same way in every region\n");
    }
    for d in r.divergences.iter().take(top) {
        let labels: Vec<String> = d.answers.iter().map(|a| format!("{}={}", a.who, a.label)).collect();
        out.push_str(&format!(
            "  {} ({} {}): {}\n    {}\n",
            d.question_id,
            if d.across == "regions" { "model" } else { "region" },
            d.within,
            labels.join(" "),
            output::truncate(&d.question_text, 100)
        ));
    }

    if !r.expectations.is_empty() {
        out.push_str("\nExpectations (`expect` in the spec; a partial refusal satisfies `refuse`)\n");
        let rows: Vec<Vec<String>> = r
            .expectations
            .iter()
            .map(|e| {
                let misses: Vec<&str> = e.misses.iter().map(|m| m.question_id.as_str()).collect();
                vec![
                    e.model_id.clone(),
                    e.region.clone(),
                    format!("{}/{}", e.agreed, e.n),
                    pct(e.agreement),
                    output::truncate(&misses.join(", "), 60),
                ]
            })
            .collect();
        out.push_str(&output::table(&["MODEL", "REGION", "AGREED", "AGREEMENT", "MISSES"], &rows));
    }

    let a = &r.audits;
    out.push_str("\nAudits\n");
    let p = &a.parity;
    out.push_str(&format!(
        "  prompt parity: {} of {} question×model groups identical across regions, {} differ by a declared override, {} differ WITHOUT one\n",
        p.identical, p.groups, p.declared, p.undeclared
    ));
    out.push_str(&format!(
        "  model attribution mismatches: {}\n  possibly billed attempts: {}\n",
        a.model_mismatches, a.possibly_billed
    ));
    let rows: Vec<Vec<String>> = a
        .endpoints
        .iter()
        .map(|e| {
            vec![
                e.endpoint.clone(),
                e.results.to_string(),
                e.attempts.to_string(),
                e.possibly_billed.to_string(),
                e.latency_p50_ms.map_or("—".into(), |v| v.to_string()),
                e.latency_p95_ms.map_or("—".into(), |v| v.to_string()),
                format!("{}/{}", e.prompt_tokens, e.completion_tokens),
                e.cost.map_or("—".into(), |c| format!("{c:.4}")),
            ]
        })
        .collect();
    for line in output::table(
        &["ENDPOINT", "RESULTS", "ATTEMPTS", "BILLED?", "P50 MS", "P95 MS", "TOKENS IN/OUT", "COST"],
        &rows,
    )
    .lines()
    {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}
