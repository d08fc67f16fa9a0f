//! Scores the built-in refusal classifier, and the XSTest authors' string-match baseline,
//! against human labels.
//!
//! ```text
//! cargo run -p parallax-analysis --example score_classifier -- FILE.csv [--dump OUT.csv] [--rules LIST]
//! ```
//!
//! `FILE.csv` needs the columns `prompt`, `completion` and `final_label` (`1_full_compliance`,
//! `2_full_refusal`, `3_partial_refusal`); a `model` column, if present, splits the figures by
//! model. Prints binary accuracy (refusal or partial vs compliance) and three-class accuracy
//! per model and overall, and a 3×3 confusion matrix for each scorer. `--dump` writes one row
//! per input row with both predictions and the classifier's evidence, for reading the errors.
//! `--rules` turns on only the listed rules added since builtin@2 (`pivot-to-content`,
//! `plain-list`, `no-opinion-rights`, `deflection`, `referral`, comma-separated, or `none`); all
//! are on by default.

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;

use parallax_analysis::classify::baseline::xstest_string_match;
use parallax_analysis::classify::{AddedRule, Label, classify_with};

fn gold(s: &str) -> Result<Label, String> {
    match s.trim() {
        "1_full_compliance" => Ok(Label::Compliance),
        "2_full_refusal" => Ok(Label::Refusal),
        "3_partial_refusal" => Ok(Label::Partial),
        other => Err(format!("unknown final_label `{other}`")),
    }
}

/// `pivot-to-content`, `plain-list`, `no-opinion-rights`, `deflection` or `referral`: the rules of
/// [`AddedRule`], by name.
fn partial_rule(name: &str) -> Option<AddedRule> {
    match name {
        "pivot-to-content" => Some(AddedRule::PivotToContent),
        "plain-list" => Some(AddedRule::PlainList),
        "no-opinion-rights" => Some(AddedRule::NoOpinionRights),
        "deflection" => Some(AddedRule::Deflection),
        "referral" => Some(AddedRule::Referral),
        _ => None,
    }
}

fn idx(l: Label) -> usize {
    match l {
        Label::Compliance => 0,
        Label::Partial => 1,
        Label::Refusal => 2,
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
    for l in Label::ALL {
        let r = t.m[idx(l)];
        println!("{:>12} {:>11} {:>8} {:>8} {:>6}", l.as_str(), r[0], r[1], r[2], r.iter().sum::<usize>());
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut dump = None;
    let mut enabled: Vec<AddedRule> = AddedRule::ALL.to_vec();
    while let Some(a) = args.next() {
        if a == "--dump" {
            dump = Some(args.next().ok_or("--dump needs a path")?);
        } else if a == "--rules" {
            let list = args.next().ok_or("--rules needs a list")?;
            enabled = list
                .split(',')
                .filter(|n| !n.is_empty() && *n != "none")
                .map(|n| partial_rule(n).ok_or_else(|| format!("unknown rule `{n}`")))
                .collect::<Result<_, _>>()?;
        } else if file.is_none() {
            file = Some(a);
        } else {
            return Err(format!("unexpected argument `{a}`").into());
        }
    }
    let file = file.ok_or("usage: score_classifier FILE.csv [--dump OUT.csv] [--rules LIST]")?;

    let mut rdr = csv::Reader::from_path(&file)?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let need = |name: &str| col(name).ok_or_else(|| format!("{file}: no `{name}` column"));
    let (c_prompt, c_completion, c_label) = (need("prompt")?, need("completion")?, need("final_label")?);
    let c_model = col("model");
    let c_id = col("id");

    let mut dumper = match &dump {
        Some(p) => {
            let mut w = csv::Writer::from_path(p)?;
            w.write_record(["model", "id", "gold", "builtin", "baseline", "evidence", "prompt", "completion"])?;
            Some(w)
        }
        None => None,
    };

    // model -> (builtin, baseline); "(all)" is the overall group.
    let mut groups: BTreeMap<String, (Tally, Tally)> = BTreeMap::new();
    let mut all = (Tally::default(), Tally::default());
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let prompt = &rec[c_prompt];
        let completion = &rec[c_completion];
        let g = gold(&rec[c_label]).map_err(|e| format!("{file}: row {}: {e}", i + 2))?;
        let model = c_model.map_or("(no model column)", |c| &rec[c]).to_owned();
        let v = classify_with(prompt, completion, &enabled);
        let b = xstest_string_match(completion);
        let e = groups.entry(model.clone()).or_default();
        e.0.add(g, v.label);
        e.1.add(g, b);
        all.0.add(g, v.label);
        all.1.add(g, b);
        if let Some(w) = dumper.as_mut() {
            let id = c_id.map_or(String::new(), |c| rec[c].to_owned());
            w.write_record([
                model.as_str(),
                &id,
                g.as_str(),
                v.label.as_str(),
                b.as_str(),
                v.evidence.as_deref().unwrap_or(""),
                prompt,
                completion,
            ])?;
        }
    }
    if let Some(mut w) = dumper {
        w.flush()?;
    }

    println!("{file}: builtin = parallax_analysis::classify::classify; baseline = XSTest 21-opener string match");
    println!(
        "\n{:<20} {:>5}  {:>14} {:>14}  {:>15} {:>15}",
        "model", "n", "builtin binary", "builtin 3-cls", "baseline binary", "baseline 3-cls"
    );
    let row = |name: &str, t: &(Tally, Tally)| {
        println!(
            "{:<20} {:>5}  {:>14.3} {:>14.3}  {:>15.3} {:>15.3}",
            name,
            t.0.n(),
            t.0.binary(),
            t.0.three(),
            t.1.binary(),
            t.1.three()
        );
    };
    for (m, t) in &groups {
        row(m, t);
    }
    if all.0.n() == 0 {
        return Err(format!("{file}: no rows").into());
    }
    row("(all)", &all);

    for (m, t) in &groups {
        if groups.len() > 1 {
            print_matrix(&format!("builtin, {m}"), &t.0);
        }
    }
    print_matrix("builtin, all rows", &all.0);
    print_matrix("baseline (21 openers), all rows", &all.1);
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
