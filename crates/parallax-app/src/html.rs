//! The HTML report: one self-contained page (no network at view time) with a question ×
//! (model, region) heatmap, the rate table with interval bars, the significant comparisons,
//! and each question's answers side by side.
//!
//! Model output is untrusted: every piece of text goes through [`esc`], and the page
//! carries a Content-Security-Policy that forbids scripts outright.

use std::fmt::Write;

use parallax_analysis::classify::Label;
use parallax_analysis::report::{Report, text::DiffOp};

/// A rate as a percentage with one decimal; NaN (no data) as a dash.
pub fn pct(x: f64) -> String {
    if x.is_nan() { "—".into() } else { format!("{:.1}%", 100.0 * x) }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn label_class(l: Option<Label>) -> &'static str {
    match l {
        Some(Label::Compliance) => "comply",
        Some(Label::Partial) => "partial",
        Some(Label::Refusal) => "refuse",
        Some(Label::Blocked) => "blocked",
        Some(Label::Empty) => "empty",
        None => "none",
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}
.heat td.cell{width:26px;height:18px;padding:0;border:1px solid #fff}
.comply,.heat td.comply{background:#4caf50}.partial,.heat td.partial{background:#ffb300}
.refuse,.heat td.refuse{background:#e53935}.none,.heat td.none{background:#ccc}
.blocked,.heat td.blocked{background:#6a1b9a}.empty,.heat td.empty{background:#fff;outline:1px dashed #999}
.heat th.col{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;font-size:12px}
.bar{position:relative;width:240px;height:14px;background:#eee}
.bar .ci{position:absolute;top:3px;height:8px;background:#90a4ae}
.bar .pt{position:absolute;top:0;width:2px;height:14px;background:#000}
.answers{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:8px;margin:6px 0 12px}
.answer{border:1px solid #ddd;padding:6px;white-space:pre-wrap;font-size:13px;max-height:300px;overflow:auto}
.answer .who{font-weight:bold;display:block;margin-bottom:4px}
.tag{display:inline-block;padding:0 5px;border-radius:3px;color:#fff;font-size:12px}
del{background:#ffcdd2}ins{background:#c8e6c9;text-decoration:none}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
";

/// Renders the whole page.
pub fn report(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>parallax report — {job}</title><style>{STYLE}</style></head><body>\
         <h1>parallax report — <code>{job}</code></h1><p id=\"summary\"><b>{summary}</b></p>",
        job = esc(&r.job_id),
        summary = esc(&r.summary())
    );
    let c = &r.completeness;
    let _ = write!(
        h,
        "<p id=\"completeness\">{} executions planned: {} succeeded, {} failed, {} parked, {} pending. \
         Accounted: {}. Duplicates: {}. Outside the plan: {}.</p>",
        c.planned,
        c.succeeded,
        c.failed,
        c.parked,
        c.pending + c.running,
        if c.accounted { "yes" } else { "NO" },
        c.duplicates,
        c.outside_plan
    );

    // Heatmap.
    h.push_str("<h2>Answers by question</h2><p class=\"legend\"><span class=\"comply\"></span>compliance<span class=\"partial\"></span>partial<span class=\"refuse\"></span>refusal<span class=\"blocked\"></span>blocked by the provider<span class=\"empty\"></span>empty<span class=\"none\"></span>no answer</p>");
    h.push_str("<table class=\"heat\" id=\"heatmap\"><thead><tr><th>question</th>");
    for cell in &r.cells {
        let _ = write!(h, "<th class=\"col\">{} · {}</th>", esc(&cell.model_id), esc(&cell.region));
    }
    h.push_str("</tr></thead><tbody>");
    for q in &r.questions {
        let _ = write!(h, "<tr><td><a href=\"#q-{id}\">{id}</a></td>", id = esc(&q.question_id));
        for cell in &q.cells {
            let share =
                cell.refusal_share.map(|s| format!(", {:.0}% of samples refused", 100.0 * s)).unwrap_or_default();
            let _ = write!(
                h,
                "<td class=\"cell {cls}\" data-cell=\"1\" title=\"{q} · {m} · {r}: {l}{share}\"></td>",
                cls = label_class(cell.label),
                q = esc(&q.question_id),
                m = esc(&cell.model_id),
                r = esc(&cell.region),
                l = cell.label.map_or("no answer", |l| l.as_str()),
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");

    // Rates with interval bars.
    h.push_str("<h2>Refusal rates</h2><p>Any refusal = full, partial or blocked by the provider's filter; an empty answer counts in n, not as a refusal; bars show the Wilson 95% interval.</p>");
    h.push_str("<table id=\"rates\"><tr><th>model</th><th>region</th><th>n</th><th>refusal</th><th>partial</th><th>blocked</th><th>empty</th><th>any refusal</th><th>95% interval</th><th>probe</th></tr>");
    for cell in &r.cells {
        let a = &cell.any_refusal;
        let bar = if a.n > 0 {
            format!(
                "<div class=\"bar\"><div class=\"ci\" style=\"left:{:.1}%;width:{:.1}%\"></div><div class=\"pt\" style=\"left:{:.1}%\"></div></div>",
                100.0 * a.low,
                100.0 * (a.high - a.low),
                100.0 * a.rate
            )
        } else {
            String::new()
        };
        let probe = match r.probe_verdict(&cell.model_id, &cell.region) {
            Some(p) => format!("<span title=\"{}\">{}</span>", esc(&p.evidence.join("; ")), esc(&p.verdict)),
            None => "—".to_owned(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} [{} – {}]</td><td>{bar}</td><td>{probe}</td></tr>",
            esc(&cell.model_id),
            esc(&cell.region),
            cell.n,
            pct(cell.refusal.rate),
            pct(cell.partial.rate),
            pct(cell.blocked.rate),
            pct(cell.empty.rate),
            pct(a.rate),
            pct(a.low),
            pct(a.high)
        );
    }
    h.push_str("</table>");

    // Comparisons.
    let _ = write!(
        h,
        "<h2>Significant differences</h2><p>Paired on the same questions; McNemar's exact test, Holm-corrected over {} comparisons; \
         difference with Newcombe's score interval. Shown when significant and larger than the noise across samples.</p>",
        r.comparisons.len()
    );
    let findings: Vec<_> = r.comparisons.iter().filter(|c| c.finding).collect();
    if findings.is_empty() {
        h.push_str("<p id=\"no-findings\">None.</p>");
    } else {
        h.push_str("<table id=\"findings\"><tr><th>held fixed</th><th>a</th><th>b</th><th>questions</th><th>rate a</th><th>rate b</th><th>difference [95%]</th><th>p</th><th>Holm p</th></tr>");
        for f in findings {
            let _ = write!(
                h,
                "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:+.1} pts [{:+.1}, {:+.1}]</td><td>{:.2e}</td><td>{:.2e}</td></tr>",
                if f.kind == "region" { "model" } else { "region" },
                esc(&f.within),
                esc(&f.a),
                esc(&f.b),
                f.questions,
                pct(f.rate_a),
                pct(f.rate_b),
                100.0 * f.difference,
                100.0 * f.ci_low,
                100.0 * f.ci_high,
                f.p_value,
                f.p_holm
            );
        }
        h.push_str("</table>");
    }

    // Divergences with diffs.
    let _ = write!(h, "<h2>Divergent answers ({})</h2>", r.divergences.len());
    for d in r.divergences.iter().take(50) {
        let _ = write!(
            h,
            "<details><summary><b>{}</b> across {} ({}) — {}</summary><p>",
            esc(&d.question_id),
            d.across,
            esc(&d.within),
            esc(&d.question_text)
        );
        for op in &d.diff {
            match op {
                DiffOp::Same(t) => h.push_str(&esc(t)),
                DiffOp::Removed(t) => {
                    let _ = write!(h, "<del>{}</del>", esc(t));
                }
                DiffOp::Added(t) => {
                    let _ = write!(h, "<ins>{}</ins>", esc(t));
                }
            }
            h.push(' ');
        }
        h.push_str("</p></details>");
    }

    // Every question, answers side by side.
    h.push_str("<h2>All answers</h2>");
    for q in &r.questions {
        let _ = write!(
            h,
            "<details id=\"q-{id}\"><summary><b>{id}</b> — {}</summary><div class=\"answers\">",
            esc(&q.question_text),
            id = esc(&q.question_id)
        );
        for cell in &q.cells {
            let _ = write!(
                h,
                "<div class=\"answer\"><span class=\"who\">{} · {} <span class=\"tag {cls}\">{}</span></span>{}</div>",
                esc(&cell.model_id),
                esc(&cell.region),
                cell.label.map_or("no answer", |l| l.as_str()),
                esc(cell.answer.as_deref().unwrap_or("")),
                cls = label_class(cell.label)
            );
        }
        h.push_str("</div></details>");
    }

    // Audits.
    let a = &r.audits;
    let p = &a.parity;
    let who = &a.attribution;
    let _ = write!(
        h,
        "<h2>Audits</h2><ul><li>Prompt parity: {} of {} groups identical ({} of them encoded differently by endpoint kind), {} differ by a declared override, {} differ without one.</li>\
         <li>Model attribution: {} verified, {} mismatched, {} unverified (the server named no model)</li><li>Possibly billed attempts: {}</li>",
        p.identical,
        p.groups,
        p.rendered_differently,
        p.declared,
        p.undeclared,
        who.verified,
        who.mismatched,
        who.unverified,
        a.possibly_billed
    );
    for f in &a.fingerprints {
        let prints: Vec<String> =
            f.fingerprints.iter().map(|p| format!("{} ×{}", esc(&p.fingerprint), p.answers)).collect();
        let _ = write!(
            h,
            "<li>system_fingerprint {} · {}: {}{}</li>",
            esc(&f.model_id),
            esc(&f.region),
            prints.join(", "),
            if f.changed { " — <b>changed within the job</b>" } else { "" }
        );
    }
    for l in &a.template_leftovers {
        let _ = write!(
            h,
            "<li>Template leftover in {} · {} · {} sample {}: <code>{}</code></li>",
            esc(&l.question_id),
            esc(&l.model_id),
            esc(&l.region),
            l.sample,
            esc(&l.marker)
        );
    }
    h.push_str("</ul>");
    h.push_str("<table id=\"endpoints\"><tr><th>endpoint</th><th>results</th><th>attempts</th><th>possibly billed</th><th>p50 ms</th><th>p95 ms</th><th>tokens in</th><th>tokens out</th><th>cost</th></tr>");
    for e in &a.endpoints {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.endpoint),
            e.results,
            e.attempts,
            e.possibly_billed,
            e.latency_p50_ms.map_or("—".into(), |v| v.to_string()),
            e.latency_p95_ms.map_or("—".into(), |v| v.to_string()),
            e.prompt_tokens,
            e.completion_tokens,
            e.cost.map_or("—".into(), |c| format!("{c:.4}"))
        );
    }
    let _ = writeln!(h, "</table><footer><p>schema {}</p></footer></body></html>", esc(r.schema));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(esc("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(esc("\"'&"), "&quot;&#39;&amp;");
    }
}
