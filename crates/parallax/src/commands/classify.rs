//! `parallax classify`: label answers with the built-in classifier (no model is called), and,
//! with `--judge`, have a catalog model grade them beside it.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::anyhow;
use std::sync::Arc;
use std::time::Duration;

use parallax_core::EndpointKind;
use parallax_core::classify::{self, CLASSIFIER_NAME, CLASSIFIER_VERSION, Label, judge};
use parallax_providers::{OpenAiProvider, Provider, SendRequest};
use parallax_store::{LabelRecord, Store, ToLabel};

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
        return judge_job(global, &store, job_id, judge, args.all).await;
    }
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
    const PAGE: usize = 2000;
    let mut counts = BTreeMap::new();
    let mut after = 0;
    // Page through the answers so memory stays flat however large the job.
    loop {
        let todo = store.to_label(job_id, CLASSIFIER_NAME, CLASSIFIER_VERSION, all, after, PAGE).await?;
        let Some(last) = todo.last() else { break };
        after = last.execution_id;
        let full = todo.len() == PAGE;
        label_page(store, todo, &mut counts).await?;
        if !full {
            break;
        }
    }
    Ok(counts)
}

async fn label_page(store: &Store, todo: Vec<ToLabel>, counts: &mut BTreeMap<Label, u64>) -> Result<(), Failure> {
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
    Ok(())
}

/// `--judge MODEL@REGION`: grade every answer the judge has not graded with this rubric.
async fn judge_job(global: &Global, store: &Store, job_id: &str, judge: &str, all: bool) -> Outcome {
    let (grader, name) = grader(global, judge)?;
    let todo = store.to_label(job_id, &name, judge::JUDGE_RUBRIC_VERSION, all, 0, usize::MAX).await?;
    let mut items = Vec::with_capacity(todo.len());
    for t in todo {
        let body = grader.request(&t.question_text, &t.response_text)?;
        items.push((t.execution_id, body));
    }
    let (mut labels, mut unreadable, mut failed) = (Vec::new(), 0u64, Vec::new());
    let mut counts: BTreeMap<Label, u64> = BTreeMap::new();
    for (execution_id, body, verdict) in grade(Arc::new(grader), items).await? {
        match verdict {
            Graded::Label(label, raw) => {
                *counts.entry(label).or_insert(0) += 1;
                labels.push(LabelRecord {
                    execution_id,
                    classifier: name.clone(),
                    version: judge::JUDGE_RUBRIC_VERSION.to_owned(),
                    label: label.as_str().to_owned(),
                    evidence: None,
                    rubric: Some(body),
                    raw: Some(raw),
                });
            }
            Graded::Unreadable(_) => unreadable += 1,
            Graded::Failed(e) => failed.push(e),
        }
    }
    let stored = labels.len();
    store.put_labels(labels).await?;
    if !global.quiet {
        let parts: Vec<String> =
            Label::ALL.iter().map(|l| format!("{} {l}", counts.get(l).copied().unwrap_or(0))).collect();
        eprintln!(
            "job {job_id}: {name} (rubric v{}) graded {stored} answers: {}",
            judge::JUDGE_RUBRIC_VERSION,
            parts.join(", ")
        );
        warn_ungraded(unreadable, &failed);
    }
    Ok(if unreadable > 0 || !failed.is_empty() { Code::SomeFailed } else { Code::Success })
}

fn warn_ungraded(unreadable: u64, failed: &[String]) {
    if unreadable > 0 {
        eprintln!("warning: {unreadable} replies named no single label and were not stored; run again to retry them");
    }
    if let Some(first) = failed.first() {
        eprintln!("warning: {} calls to the judge failed (first: {first}); run again to retry them", failed.len());
    }
}

/// What a judge said of one answer.
enum Graded {
    /// A label, and the reply it was read from.
    Label(Label, String),
    /// A reply naming no single label.
    Unreadable(String),
    /// The call failed.
    Failed(String),
}

/// Sends every grading request, at most the grader's concurrency at once; the verdicts come
/// back in no particular order, each with its key and the request sent.
async fn grade<K: Send + 'static>(
    grader: Arc<Grader>,
    items: Vec<(K, String)>,
) -> Result<Vec<(K, String, Graded)>, Failure> {
    let limit = Arc::new(tokio::sync::Semaphore::new(grader.concurrency));
    let mut calls = tokio::task::JoinSet::new();
    for (key, body) in items {
        let (grader, limit) = (grader.clone(), limit.clone());
        calls.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let idempotency_key = parallax_core::sha256_hex(body.as_bytes());
            let reply = grader
                .provider
                .send(SendRequest {
                    kind: grader.kind(),
                    body: body.as_bytes(),
                    idempotency_key: &idempotency_key,
                    timeout: grader.timeout,
                })
                .await;
            let verdict = match reply {
                Ok(reply) => {
                    let raw = reply.text.unwrap_or_default();
                    match judge::parse_verdict(&raw) {
                        Some(label) => Graded::Label(label, raw),
                        None => Graded::Unreadable(raw),
                    }
                }
                Err(e) => Graded::Failed(e.to_string()),
            };
            (key, body, verdict)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = calls.join_next().await {
        out.push(joined.map_err(|e| Failure::Internal(e.into()))?);
    }
    Ok(out)
}

/// The judge named `MODEL@REGION` in the catalog, and its name as labels record it.
fn grader(global: &Global, judge: &str) -> Result<(Grader, String), Failure> {
    let Some((model, region)) = judge.split_once('@') else {
        return Err(Failure::input(anyhow!("`--judge {judge}`: expected MODEL@REGION, e.g. `gpt-4o@us-east`")));
    };
    let catalog = crate::load::catalog(&global.config)?;
    let Some((endpoint, entry)) = catalog.resolve(model, region) else {
        return Err(Failure::input(anyhow!(
            "the judge `{model}` is not served in region `{region}` of `{}`",
            global.config.display()
        )));
    };
    let grader = match endpoint.kind {
        EndpointKind::OpenAiChat => {
            let api_key = match &endpoint.api_key_env {
                Some(var) => Some(
                    std::env::var(var)
                        .map_err(|_| Failure::input(anyhow!("the environment variable `{var}` is not set")))?,
                ),
                None => None,
            };
            let concurrency = endpoint.concurrency.unwrap_or(8).max(1);
            let provider = OpenAiProvider::new(&endpoint.base_url, api_key, concurrency)
                .map_err(|e| Failure::Internal(e.into()))?;
            Grader {
                provider: Arc::new(provider),
                concurrency,
                timeout: Duration::from_secs(120),
                local: None,
                model: entry.name.clone(),
            }
        }
        EndpointKind::LocalGguf => local_grader(global, &catalog, model, region)?,
        other => {
            return Err(Failure::input(anyhow!(
                "the judge must be served by an `openai-chat` or `local-gguf` endpoint; `{}` is `{}`",
                endpoint.name,
                other.as_str()
            )));
        }
    };
    Ok((grader, judge::judge_name(model, region)))
}

/// The judge's provider, and how to write its requests.
struct Grader {
    provider: Arc<dyn Provider>,
    concurrency: usize,
    /// Per grading. A local judge's first grading also loads the model, which on a large
    /// file and a slow disk takes a while.
    timeout: Duration,
    /// A `local-gguf` judge's model, its compiled chat template and the day for it.
    local:
        Option<(parallax_core::plan::LocalModel, parallax_core::template::ChatTemplate, parallax_core::template::Date)>,
    /// The provider's model name.
    model: String,
}

impl Grader {
    fn kind(&self) -> EndpointKind {
        if self.local.is_some() { EndpointKind::LocalGguf } else { EndpointKind::OpenAiChat }
    }

    fn request(&self, question: &str, answer: &str) -> Result<String, Failure> {
        match &self.local {
            None => Ok(judge::judge_request(&self.model, question, answer)),
            Some((info, template, date)) => {
                judge::judge_local_request(&self.model, info, template, *date, question, answer)
                    .map_err(|e| Failure::input(anyhow!("the judge's chat template cannot render the rubric: {e}")))
            }
        }
    }
}

/// A `local-gguf` judge: its model read from its file (a chat model: the rubric is a
/// conversation), served in this process one grading at a time.
fn local_grader(
    global: &Global,
    catalog: &parallax_core::Catalog,
    model: &str,
    region: &str,
) -> Result<Grader, Failure> {
    let units = crate::local::units_of(&[(model.to_owned(), region.to_owned())], catalog, &global.config)?;
    let unit = units
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Internal(anyhow!("`{model}@{region}` is local but was not read")))?;
    let Some(source) = unit.info.chat_template.as_deref() else {
        return Err(Failure::input(anyhow!(
            "the judge `{model}@{region}` has no chat template (a base model?), and the rubric is a conversation\n\nhint: judge with a chat model, or give the endpoint a `chat_template:` file"
        )));
    };
    let template = parallax_core::template::ChatTemplate::new(source).map_err(|e| {
        Failure::input(anyhow!("the chat template of the judge `{model}@{region}` does not compile: {e}"))
    })?;
    let runtime = crate::local::runtime(&unit)?;
    Ok(Grader {
        provider: runtime.provider,
        concurrency: 1,
        timeout: Duration::from_secs(600),
        model: unit.name.clone(),
        local: Some((unit.info, template, crate::local::today())),
    })
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
        let (grader, name) = grader(global, judge)?;
        let mut items = Vec::with_capacity(lines.len());
        for (i, (_, input)) in lines.iter().enumerate() {
            items.push((i, grader.request(&input.prompt, &input.response)?));
        }
        let (mut unreadable, mut failed) = (0u64, Vec::new());
        for (i, _, verdict) in grade(Arc::new(grader), items).await? {
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
