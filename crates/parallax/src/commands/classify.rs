//! `parallax classify`: label answers with the built-in classifier (no model is called), and,
//! with `--judge`, have a catalog model grade them beside it.

use std::io::Read;
use std::sync::Arc;

use anyhow::anyhow;
use parallax_analysis::classify::{self, CLASSIFIER_NAME, CLASSIFIER_VERSION, Label, judge};
use parallax_app::label::{self, Graded, Grader};
use parallax_store::Store;

use crate::cli::{ClassifyArgs, Global};
use crate::exit::{Code, Failure, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &ClassifyArgs) -> Outcome {
    if let Some(input) = &args.input {
        return classify_file(global, input, args.judge.as_deref()).await;
    }
    let job_id = args.job_id.as_deref().expect("clap requires a job id without --input");
    let Some(store) = super::open_existing_store(global).await? else {
        return Err(Failure::input(anyhow!("no store at `{}`\n\nhint: pass `--db` or set PARALLAX_DB", global.db)));
    };
    if let Some(judge) = &args.judge {
        return judge_job(global, &store, job_id, judge, args.all, args.uncertain_only).await;
    }
    let counts = label::label_job(&store, job_id, args.all).await?;
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

/// `--judge MODEL@REGION`: grade every answer the judge has not graded with this rubric.
async fn judge_job(
    global: &Global,
    store: &Store,
    job_id: &str,
    judge: &str,
    all: bool,
    uncertain_only: bool,
) -> Outcome {
    let s = label::judge_job(store, &global.config, job_id, judge, all, uncertain_only).await?;
    if !global.quiet {
        let parts: Vec<String> =
            Label::OF_TEXT.iter().map(|l| format!("{} {l}", s.counts.get(l).copied().unwrap_or(0))).collect();
        eprintln!(
            "job {job_id}: {} (rubric v{}) graded {} answers: {}",
            s.name,
            judge::JUDGE_RUBRIC_VERSION,
            s.stored,
            parts.join(", ")
        );
        warn_ungraded(s.unreadable, &s.failed);
    }
    Ok(if s.unreadable > 0 || !s.failed.is_empty() { Code::SomeFailed } else { Code::Success })
}

fn warn_ungraded(unreadable: u64, failed: &[String]) {
    if unreadable > 0 {
        eprintln!("warning: {unreadable} replies named no single label and were not stored; run again to retry them");
    }
    if let Some(first) = failed.first() {
        eprintln!(
            "warning: {} calls to the judge failed (first: {}); run again to retry them",
            failed.len(),
            crate::output::escape_controls(first)
        );
    }
}

/// `--input FILE.jsonl`: every line is checked first; on any bad line nothing is written.
/// With `--judge`, each line also gets the judge's verdict (`judge`), in input order.
async fn classify_file(global: &Global, path: &std::path::Path, judge: Option<&str>) -> Outcome {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::input(anyhow!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| Failure::input(anyhow!("cannot read `{}`: {e}", path.display())))?
    };
    let mut lines: Vec<(serde_json::Value, classify::InputLine)> = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match classify::read_jsonl_line(line) {
            Ok(input) => lines.push((input.verdict_json(), input)),
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
    let mut code = Code::Success;
    if let Some(judge) = judge {
        let (grader, name) = Grader::open(&global.config, judge)?;
        let mut items = Vec::with_capacity(lines.len());
        for (i, (_, input)) in lines.iter().enumerate() {
            items.push((i, grader.request(&input.prompt, &input.response)?));
        }
        let (mut unreadable, mut failed) = (0u64, Vec::new());
        for (i, _, verdict) in label::grade(Arc::new(grader), items).await? {
            let (label, raw, error) = match verdict {
                Graded::Label(label, raw) => (Some(label.as_str()), Some(raw), None),
                Graded::Unreadable(raw) => {
                    unreadable += 1;
                    (None, Some(raw), None)
                }
                Graded::Failed(e) => {
                    failed.push(e.clone());
                    (None, None, Some(e))
                }
            };
            lines[i].0["judge"] = serde_json::json!({
                "name": name,
                "rubric_version": judge::JUDGE_RUBRIC_VERSION,
                "label": label,
                "raw": raw,
                "error": error,
            });
        }
        if !global.quiet {
            warn_ungraded(unreadable, &failed);
        }
        if unreadable > 0 || !failed.is_empty() {
            code = Code::SomeFailed;
        }
    }
    let mut out = String::new();
    for (v, _) in &lines {
        out.push_str(&v.to_string());
        out.push('\n');
    }
    output::stdout(&out).map_err(|e| Failure::Internal(e.into()))?;
    Ok(code)
}
