//! `parallax classify`: label answers with the built-in classifier; no model is called.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::anyhow;
use parallax_core::classify::{self, CLASSIFIER_NAME, CLASSIFIER_VERSION, Label};
use parallax_store::{LabelRecord, Store};

use crate::cli::{ClassifyArgs, Global};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &ClassifyArgs) -> Outcome {
    if let Some(input) = &args.input {
        return classify_file(input);
    }
    let job_id = args.job_id.as_deref().expect("clap requires a job id without --input");
    let Some(store) = super::open_existing_store(global).await? else {
        return Err(Failure::input(anyhow!("no store at `{}`\n\nhint: pass `--db` or set PARALLAX_DB", global.db)));
    };
    let counts = label_job(&store, job_id, args.all).await?;
    if !global.quiet {
        let total: u64 = counts.values().sum();
        let parts: Vec<String> =
            Label::ALL.iter().map(|l| format!("{} {l}", counts.get(l).copied().unwrap_or(0))).collect();
        eprintln!(
            "job {job_id}: labelled {total} answer{} with {CLASSIFIER_NAME}@{CLASSIFIER_VERSION}: {}",
            if total == 1 { "" } else { "s" },
            parts.join(", ")
        );
    }
    Ok(Code::Success)
}

/// Labels the job's succeeded answers the built-in classifier has not labelled yet
/// (all of them with `all`), and stores the labels. Returns the count per label.
pub async fn label_job(store: &Store, job_id: &str, all: bool) -> Result<BTreeMap<Label, u64>, Failure> {
    let todo = store.to_label(job_id, CLASSIFIER_NAME, CLASSIFIER_VERSION, all).await?;
    let mut counts = BTreeMap::new();
    let labels: Vec<LabelRecord> = todo
        .into_iter()
        .map(|t| {
            let verdict = classify::classify(&t.question_text, &t.response_text);
            *counts.entry(verdict.label).or_insert(0) += 1;
            LabelRecord {
                execution_id: t.execution_id,
                classifier: CLASSIFIER_NAME.to_owned(),
                version: CLASSIFIER_VERSION.to_owned(),
                label: verdict.label.as_str().to_owned(),
                evidence: verdict.evidence,
                rubric: None,
                raw: None,
            }
        })
        .collect();
    if !labels.is_empty() {
        store.put_labels(labels).await?;
    }
    Ok(counts)
}

/// `--input FILE.jsonl`: every line is checked first; on any bad line nothing is written.
fn classify_file(path: &std::path::Path) -> Outcome {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::input(anyhow!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| Failure::input(anyhow!("cannot read `{}`: {e}", path.display())))?
    };
    let mut out = String::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match classify::classify_jsonl_line(line) {
            Ok(v) => {
                out.push_str(&v.to_string());
                out.push('\n');
            }
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(Failure::input(anyhow!(
            "{} bad line{} in `{}`:\n{}\n\nhint: each line is one {{\"id\", \"prompt\", \"response\"}} object",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            path.display(),
            problems.join("\n")
        )));
    }
    output::stdout(&out).map_err(|e| Failure::Internal(e.into()))?;
    Ok(Code::Success)
}
