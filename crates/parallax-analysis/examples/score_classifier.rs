//! Scores the built-in refusal classifier, and the XSTest authors' string-match baseline,
//! against human labels: accuracy, accuracy where the verdict is not uncertain, coverage, and
//! how well its confidence is calibrated.
//!
//! ```text
//! cargo run -p parallax-analysis --example score_classifier -- FILE.csv... [--lomo]
//!     [--model M,...] [--except M,...] [--dump OUT.csv] [--rules LIST]
//! ```
//!
//! Each `FILE.csv` needs the columns `prompt`, `completion` and `final_label`
//! (`1_full_compliance`, `2_full_refusal`, `3_partial_refusal`); a `model` column, if present,
//! splits the figures by model, and `--model`/`--except` keep or drop models. Prints per model
//! binary accuracy (refusal or partial vs compliance) and three-class accuracy, binary accuracy
//! where the verdict is not uncertain and the share of such verdicts (coverage), beside the
//! baseline; a 3×3 confusion matrix; and a reliability table (among verdicts with confidence
//! ≥ c, the share right about refusing).
//!
//! Confidence is the shipped calibration's, counted on the four development models, unless
//! `--lomo` is given: then each model's confidence is counted on the other models of the input
//! (leave one model out). `--dump` writes one row per input row with the verdict, its
//! confidence and doubts, the baseline's label and the evidence, for reading the errors.
//! `--rules` turns on only the listed rules added since builtin@2 (`pivot-to-content`,
//! `plain-list`, `no-opinion-rights`, `deflection`, `referral`, `moral-verdict`,
//! comma-separated, or `none`); all are on by default.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;

use parallax_analysis::classify::baseline::xstest_string_match;
use parallax_analysis::classify::confidence::{Bucket, Calibration};
use parallax_analysis::classify::{AddedRule, Label, Verdict, assess};

fn gold(s: &str) -> Result<Label, String> {
    match s.trim() {
        "1_full_compliance" => Ok(Label::Compliance),
        "2_full_refusal" => Ok(Label::Refusal),
        "3_partial_refusal" => Ok(Label::Partial),
        other => Err(format!("unknown final_label `{other}`")),
    }
}

/// The rules of [`AddedRule`], by name.
fn added_rule(name: &str) -> Option<AddedRule> {
    match name {
        "pivot-to-content" => Some(AddedRule::PivotToContent),
        "plain-list" => Some(AddedRule::PlainList),
        "no-opinion-rights" => Some(AddedRule::NoOpinionRights),
        "deflection" => Some(AddedRule::Deflection),
        "referral" => Some(AddedRule::Referral),
        "moral-verdict" => Some(AddedRule::MoralVerdict),
        _ => None,
    }
}

fn idx(l: Label) -> usize {
    match l {
        Label::Compliance => 0,
        Label::Partial => 1,
        // The dev sets hold no empty completion, and nothing there is blocked.
        Label::Refusal | Label::Blocked | Label::Empty => 2,
    }
}

/// Counts for one scorer on one group: `m[gold][pred]`.
#[derive(Default, Clone)]
struct Tally {
    m: [[usize; 3]; 3],
}

impl Tally {
    fn add(&mut self, gold: Label, pred: Label) {
        self.m[idx(gold)][idx(pred)] += 1;
    }
    fn n(&self) -> usize {
        self.m.iter().flatten().sum()
    }
    fn three(&self) -> f64 {
        (0..3).map(|i| self.m[i][i]).sum::<usize>() as f64 / self.n() as f64
    }
    fn binary(&self) -> f64 {
        let mut ok = 0;
        for g in 0..3 {
            for p in 0..3 {
                if (g == 0) == (p == 0) {
                    ok += self.m[g][p];
                }
            }
        }
        ok as f64 / self.n() as f64
    }
}

fn print_matrix(title: &str, t: &Tally) {
    println!("\n{title} (rows: human, columns: predicted)");
    println!("{:>12} {:>11} {:>8} {:>8} {:>6}", "", "compliance", "partial", "refusal", "total");
    for l in Label::OF_TEXT {
        let r = t.m[idx(l)];
        println!("{:>12} {:>11} {:>8} {:>8} {:>6}", l.as_str(), r[0], r[1], r[2], r.iter().sum::<usize>());
    }
}

/// One scored row.
struct Scored {
    model: String,
    id: String,
    prompt: String,
    completion: String,
    gold: Label,
    verdict: Verdict,
    bucket: Bucket,
    baseline: Label,
}

impl Scored {
    fn right(&self) -> bool {
        self.gold.is_refusal() == self.verdict.label.is_refusal()
    }
}

/// Per group: (builtin, baseline, verdicts not uncertain, of them right).
#[derive(Default)]
struct Group {
    builtin: Tally,
    baseline: Tally,
    certain: usize,
    certain_right: usize,
}

fn list(s: &str) -> Vec<String> {
    s.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect()
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut files = Vec::new();
    let mut dump = None;
    let mut lomo = false;
    let (mut keep, mut except): (Option<Vec<String>>, Vec<String>) = (None, Vec::new());
    let mut enabled: Vec<AddedRule> = AddedRule::ALL.to_vec();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dump" => dump = Some(args.next().ok_or("--dump needs a path")?),
            "--lomo" => lomo = true,
            "--model" => keep = Some(list(&args.next().ok_or("--model needs a list")?)),
            "--except" => except = list(&args.next().ok_or("--except needs a list")?),
            "--rules" => {
                let names = args.next().ok_or("--rules needs a list")?;
                enabled = list(&names)
                    .iter()
                    .filter(|n| *n != "none")
                    .map(|n| added_rule(n).ok_or_else(|| format!("unknown rule `{n}`")))
                    .collect::<Result<_, _>>()?;
            }
            _ if a.starts_with("--") => return Err(format!("unknown option `{a}`").into()),
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        return Err("usage: score_classifier FILE.csv... [--lomo] [--model M,...] [--except M,...] \
                    [--dump OUT.csv] [--rules LIST]"
            .into());
    }

    let mut rows = Vec::new();
    for file in &files {
        let mut rdr = csv::Reader::from_path(file)?;
        let headers = rdr.headers()?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let need = |name: &str| col(name).ok_or_else(|| format!("{file}: no `{name}` column"));
        let (c_prompt, c_completion, c_label) = (need("prompt")?, need("completion")?, need("final_label")?);
        let (c_model, c_id) = (col("model"), col("id"));
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec?;
            let model = c_model.map_or("(no model column)", |c| &rec[c]).to_owned();
            // Leave out unwanted models before reading anything else of their rows.
            if keep.as_ref().is_some_and(|k| !k.contains(&model)) || except.contains(&model) {
                continue;
            }
            let g = gold(&rec[c_label]).map_err(|e| format!("{file}: row {}: {e}", i + 2))?;
            let (prompt, completion) = (rec[c_prompt].to_owned(), rec[c_completion].to_owned());
            let (verdict, bucket) = assess(&prompt, &completion, &enabled, &Calibration::BUILTIN);
            let baseline = xstest_string_match(&completion);
            let id = c_id.map_or(String::new(), |c| rec[c].to_owned());
            rows.push(Scored { model, id, prompt, completion, gold: g, verdict, bucket, baseline });
        }
    }
    if rows.is_empty() {
        return Err("no rows".into());
    }

    // Confidence per row: the shipped calibration, or counted on the other models.
    let confidence: Vec<f64> = if lomo {
        let fitted: BTreeMap<&str, Calibration> = rows
            .iter()
            .map(|r| r.model.as_str())
            .map(|m| {
                let others = rows.iter().filter(|r| r.model != m).map(|r| (r.bucket, r.right()));
                (m, Calibration::fit(others))
            })
            .collect();
        rows.iter().map(|r| fitted[r.model.as_str()].confidence(r.bucket)).collect()
    } else {
        rows.iter().map(|r| r.verdict.confidence).collect()
    };

    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut all = Group::default();
    for r in &rows {
        for g in [groups.entry(r.model.clone()).or_default(), &mut all] {
            g.builtin.add(r.gold, r.verdict.label);
            g.baseline.add(r.gold, r.baseline);
            if !r.verdict.uncertain {
                g.certain += 1;
                g.certain_right += usize::from(r.right());
            }
        }
    }

    if let Some(p) = &dump {
        let mut w = csv::Writer::from_path(p)?;
        w.write_record([
            "model",
            "id",
            "gold",
            "builtin",
            "confidence",
            "uncertain",
            "doubts",
            "baseline",
            "evidence",
            "prompt",
            "completion",
        ])?;
        for (r, c) in rows.iter().zip(&confidence) {
            let doubts: Vec<&str> = r.verdict.doubts.iter().map(|d| d.as_str()).collect();
            w.write_record([
                r.model.as_str(),
                &r.id,
                r.gold.as_str(),
                r.verdict.label.as_str(),
                &format!("{c:.3}"),
                &r.verdict.uncertain.to_string(),
                &doubts.join(" "),
                r.baseline.as_str(),
                r.verdict.evidence.as_deref().unwrap_or(""),
                &r.prompt,
                &r.completion,
            ])?;
        }
        w.flush()?;
    }

    println!("{}: builtin = parallax_analysis::classify; baseline = XSTest 21-opener string match", files.join(" "));
    println!(
        "confidence: {}",
        if lomo { "leave one model out (counted on the other models)" } else { "shipped calibration" }
    );
    println!(
        "\n{:<18} {:>5}  {:>7} {:>7}  {:>14} {:>8}  {:>9} {:>9}",
        "model", "n", "binary", "3-cls", "binary certain", "coverage", "base bin", "base 3cl"
    );
    let line = |name: &str, g: &Group| {
        println!(
            "{:<18} {:>5}  {:>7.3} {:>7.3}  {:>14.3} {:>8.3}  {:>9.3} {:>9.3}",
            name,
            g.builtin.n(),
            g.builtin.binary(),
            g.builtin.three(),
            g.certain_right as f64 / g.certain as f64,
            g.certain as f64 / g.builtin.n() as f64,
            g.baseline.binary(),
            g.baseline.three()
        );
    };
    for (m, g) in &groups {
        line(m, g);
    }
    line("(all)", &all);

    println!("\nreliability: among verdicts with confidence ≥ c, the share right (binary)");
    println!("{:>6} {:>9} {:>7} {:>10} {:>7}", "c", "verdicts", "share", "mean conf", "right");
    for c in [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98] {
        let above: Vec<(f64, bool)> =
            rows.iter().zip(&confidence).filter(|(_, p)| **p >= c).map(|(r, p)| (*p, r.right())).collect();
        if above.is_empty() {
            println!("{c:>6.2} {:>9}", 0);
            continue;
        }
        let n = above.len() as f64;
        let right = above.iter().filter(|(_, ok)| *ok).count() as f64 / n;
        let mean = above.iter().map(|(p, _)| p).sum::<f64>() / n;
        println!("{c:>6.2} {:>9} {:>7.3} {mean:>10.3} {right:>7.3}", above.len(), n / rows.len() as f64);
    }

    if groups.len() > 1 {
        for (m, g) in &groups {
            print_matrix(&format!("builtin, {m}"), &g.builtin);
        }
    }
    print_matrix("builtin, all rows", &all.builtin);
    print_matrix("baseline (21 openers), all rows", &all.baseline);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("score_classifier: {e}");
            ExitCode::FAILURE
        }
    }
}
