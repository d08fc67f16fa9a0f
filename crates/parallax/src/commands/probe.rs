//! `parallax probe --model M`: did every region serve the same thing? The probe set, asked
//! in each region as a job of its own, and a verdict per region with its evidence.

use parallax_analysis::probe::Verdict;
use parallax_analysis::report::text::DiffOp;
use parallax_app::{load, probe};

use crate::cli::{Global, ProbeArgs, ProbeFormat};
use crate::exit::{Code, Failure, Outcome};
use crate::{output, signals};

pub async fn run(global: &Global, args: &ProbeArgs) -> Outcome {
    let catalog = load::catalog(&global.config)?;
    let store = super::open_store(global).await?;
    let (stop_rx, signals) = signals::stop_on_signals(global.quiet);
    if !global.quiet {
        eprintln!(
            "probing `{}` with {} ({} probes × {} samples per region)",
            args.model,
            parallax_analysis::probe::PROBE_SET,
            parallax_analysis::probe::PROBES.len(),
            parallax_analysis::probe::SAMPLES
        );
    }
    let report = probe::run(&store, &catalog, &global.config, &args.model, &args.regions, args.fresh, stop_rx).await;
    signals.abort();
    let report = report?;
    let text = match args.format {
        ProbeFormat::Json => serde_json::to_string_pretty(&report).map_err(|e| Failure::Internal(e.into()))? + "\n",
        ProbeFormat::Table => table(&report),
    };
    output::stdout(&text).map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Success)
}

fn table(r: &probe::ProbeReport) -> String {
    let mut out = format!("probe {} of `{}` (job {})\n\n", r.probe_set, r.model, r.job_id);
    let rows: Vec<Vec<String>> = r
        .regions
        .iter()
        .map(|v| {
            let decisive = v.evidence.iter().filter(|e| e.decisive).count();
            vec![
                v.region.clone(),
                match v.verdict {
                    Verdict::Same => "same deployment".into(),
                    Verdict::Different => "DIFFERENT configuration suspected".into(),
                    Verdict::Nondeterministic => "nondeterministic".into(),
                },
                format!("{decisive} decisive, {} shown", v.evidence.len() - decisive),
            ]
        })
        .collect();
    out.push_str(&output::table(&["REGION", "VERDICT", "EVIDENCE"], &rows));
    for v in r.regions.iter().filter(|v| !v.evidence.is_empty()) {
        out.push_str(&format!("\n{}:\n", v.region));
        for e in &v.evidence {
            let probe = if e.probe.is_empty() { String::new() } else { format!(" `{}`", e.probe) };
            let weight = if e.decisive { "" } else { " (shown, not decisive)" };
            out.push_str(&format!("  {}{probe}: {}{weight}\n", e.kind, output::terminal_safe(&e.detail)));
            if !e.diff.is_empty() {
                let diff: Vec<String> = e
                    .diff
                    .iter()
                    .map(|op| match op {
                        DiffOp::Same(t) => t.clone(),
                        DiffOp::Removed(t) => format!("[-{t}-]"),
                        DiffOp::Added(t) => format!("{{+{t}+}}"),
                    })
                    .collect();
                let line = diff.join(" ");
                let shown: String = line.chars().take(400).collect();
                out.push_str(&format!("    the others → this region: {}\n", output::terminal_safe(&shown)));
            }
        }
    }
    out
}
