//! `parallax report`: the findings of a job — completeness, refusal rates with intervals,
//! significant differences, divergent questions, expectations and audits.
//!
//! `--format json` writes the [`parallax_analysis::report::Report`] (schema
//! `parallax.report/1`); `--format html` one self-contained page.

use anyhow::anyhow;
use parallax_analysis::report::{self as analysis, Report};
use parallax_app::{html, report};

use crate::cli::{Global, ReportArgs, ReportFormat};
use crate::exit::{Code, Failure, Outcome};
use crate::output;
use crate::output::pct;

pub async fn run(global: &Global, args: &ReportArgs) -> Outcome {
    if let Some(m) = args.min_agreement
        && !(0.0..=1.0).contains(&m)
    {
        return Err(Failure::input(anyhow!("`--min-agreement` is a fraction between 0 and 1, got {m}")));
    }
    let Some(store) = super::open_store_to_read(global).await? else {
        return Err(Failure::input(anyhow!("no store at `{}`\n\nhint: pass `--db` or set PARALLAX_DB", global.db)));
    };
    let report = report::build(&store, &args.job_id, &report::prices(&global.config), args.min_confidence).await?;
    let text = match args.format {
        ReportFormat::Table => output::terminal_safe(&terminal(&report, args.top)),
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

/// The ten-second summary.
fn terminal(r: &Report, top: usize) -> String {
    let mut out = format!("{}\n\n", r.summary());
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
    out.push_str(
        "\nRefusal rates (any refusal = full, partial or blocked by the provider; empty answers are counted in N, not as refusals; Wilson 95% intervals)\n",
    );
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
                pct(cell.blocked.rate),
                pct(cell.empty.rate),
                format!(
                    "{} [{} – {}]",
                    pct(cell.any_refusal.rate),
                    pct(cell.any_refusal.low),
                    pct(cell.any_refusal.high)
                ),
                match cell.uncertain {
                    0 => "0".to_owned(),
                    k => format!("{k} → {} – {}", pct(cell.any_refusal_bounds.low), pct(cell.any_refusal_bounds.high)),
                },
                r.probe_verdict(&cell.model_id, &cell.region).map_or("—".to_owned(), |p| p.verdict.clone()),
            ]
        })
        .collect();
    let mut headers = vec![
        "MODEL",
        "REGION",
        "N",
        "REFUSAL",
        "PARTIAL",
        "BLOCKED",
        "EMPTY",
        "ANY REFUSAL [95% CI]",
        "UNCERTAIN → RATE IF WRONG",
        "PROBE",
    ];
    let rows: Vec<Vec<String>> = if r.probe_verdicts.is_empty() {
        headers.pop();
        rows.into_iter()
            .map(|mut row| {
                row.pop();
                row
            })
            .collect()
    } else {
        rows
    };
    out.push_str(&output::table(&headers, &rows));
    for p in r.probe_verdicts.iter().filter(|p| p.verdict == "different") {
        out.push_str(&format!(
            "  probe: {} in {} served something different ({}): {}\n",
            p.model_id,
            p.region,
            p.probe_job_id,
            p.evidence.join("; ")
        ));
    }

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
    for c in r.comparisons.iter().filter(|c| !c.depends_on.is_empty()) {
        let shown: Vec<&str> = c.depends_on.iter().take(10).map(String::as_str).collect();
        out.push_str(&format!(
            "  {} vs {} ({}): significant as labelled, but depends on {} uncertain answers ({}{}): not counted as a finding\n",
            c.a,
            c.b,
            c.within,
            c.depends_on.len(),
            shown.join(", "),
            if c.depends_on.len() > shown.len() { ", …" } else { "" }
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
    if p.rendered_differently > 0 {
        out.push_str(&format!(
            "    ({} of the identical groups are encoded differently by endpoint kind — chat messages, a local model's template — and compared as messages and sampling)\n",
            p.rendered_differently
        ));
    }
    let who = &a.attribution;
    out.push_str(&format!(
        "  model attribution: {} verified, {} MISMATCHED, {} unverified (the server named no model)\n  possibly billed attempts: {}\n",
        who.verified, who.mismatched, who.unverified, a.possibly_billed
    ));
    for f in &a.fingerprints {
        let prints: Vec<String> = f.fingerprints.iter().map(|p| format!("{} ×{}", p.fingerprint, p.answers)).collect();
        out.push_str(&format!(
            "  system_fingerprint {} {}: {}{}\n",
            f.model_id,
            f.region,
            prints.join(", "),
            if f.changed { " — CHANGED within the job" } else { "" }
        ));
    }
    if !a.template_leftovers.is_empty() {
        out.push_str(&format!("  template leftovers in answers: {}\n", a.template_leftovers.len()));
        for l in a.template_leftovers.iter().take(top) {
            out.push_str(&format!(
                "    {} {} {} sample {}: {}\n",
                l.question_id,
                l.model_id,
                l.region,
                l.sample,
                output::truncate(&l.marker, 60)
            ));
        }
    }
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
