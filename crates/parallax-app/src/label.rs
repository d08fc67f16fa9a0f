//! Labels beside results: the built-in classifier's (no model is called), and a judge's —
//! a catalog model grading answers with the fixed rubric — stored beside it, never over it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parallax_analysis::classify::{self, CLASSIFIER_NAME, CLASSIFIER_VERSION, Label, judge};
use parallax_core::{Catalog, EndpointKind};
use parallax_providers::{Provider, SendRequest};
use parallax_store::{LabelRecord, Store, ToLabel};

use crate::{AppError, load, local, providers};

/// Labels the job's succeeded answers the built-in classifier has not labelled yet
/// (all of them with `all`), and stores the labels. Returns the count per label.
pub async fn label_job(store: &Store, job_id: &str, all: bool) -> Result<BTreeMap<Label, u64>, AppError> {
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

async fn label_page(store: &Store, todo: Vec<ToLabel>, counts: &mut BTreeMap<Label, u64>) -> Result<(), AppError> {
    let labels: Vec<LabelRecord> = todo
        .into_iter()
        .map(|t| {
            let block = t.block.as_ref().map(|b| format!("{}: {}", b.code, b.message));
            let verdict = classify::classify_served(&t.question_text, Some(&t.response_text), block.as_deref());
            *counts.entry(verdict.label).or_insert(0) += 1;
            LabelRecord {
                execution_id: t.execution_id,
                classifier: CLASSIFIER_NAME.to_owned(),
                version: CLASSIFIER_VERSION.to_owned(),
                label: verdict.label.as_str().to_owned(),
                confidence: Some(verdict.confidence),
                uncertain: Some(verdict.uncertain),
                doubts: Some(verdict.doubts.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(" ")),
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

/// What one judge run did.
#[derive(Debug, Default)]
pub struct JudgeSummary {
    /// The judge's name as labels record it (`judge:<model>@<region>`).
    pub name: String,
    pub stored: usize,
    pub counts: BTreeMap<Label, u64>,
    /// Replies that named no single label (not stored; a later run asks again).
    pub unreadable: u64,
    /// Calls that failed (not stored; a later run asks again).
    pub failed: Vec<String>,
}

/// Has the judge `MODEL@REGION` grade every answer it has not graded with this rubric
/// (every answer with `all`; with `uncertain_only`, only those whose built-in label is
/// uncertain — the usual case, a fraction of the cost), and stores its labels beside the
/// built-in ones.
pub async fn judge_job(
    store: &Store,
    catalog_path: &Path,
    job_id: &str,
    judge: &str,
    all: bool,
    uncertain_only: bool,
) -> Result<JudgeSummary, AppError> {
    let (grader, name) = Grader::open(catalog_path, judge)?;
    let version = judge::JUDGE_RUBRIC_VERSION;
    let todo = if uncertain_only {
        // Built-in labels first, so that every answer's uncertainty is known.
        label_job(store, job_id, false).await?;
        store.to_label_uncertain(job_id, &name, version, all).await?
    } else {
        store.to_label(job_id, &name, version, all, 0, usize::MAX).await?
    };
    let mut items = Vec::with_capacity(todo.len());
    // A block or an empty answer has no text to grade: its label is a fact, not a judgement.
    let gradable =
        |t: &ToLabel| t.block.is_none() && !matches!(classify::classify("", &t.response_text).label, Label::Empty);
    for t in todo.into_iter().filter(gradable) {
        let body = grader.request(&t.question_text, &t.response_text)?;
        items.push((t.execution_id, body));
    }
    let mut summary = JudgeSummary { name, ..JudgeSummary::default() };
    let mut labels = Vec::new();
    for (execution_id, body, verdict) in grade(Arc::new(grader), items).await? {
        match verdict {
            Graded::Label(label, raw) => {
                *summary.counts.entry(label).or_insert(0) += 1;
                labels.push(LabelRecord {
                    execution_id,
                    classifier: summary.name.clone(),
                    version: judge::JUDGE_RUBRIC_VERSION.to_owned(),
                    label: label.as_str().to_owned(),
                    evidence: None,
                    rubric: Some(body),
                    raw: Some(raw),
                    confidence: None,
                    uncertain: None,
                    doubts: None,
                });
            }
            Graded::Unreadable(_) => summary.unreadable += 1,
            Graded::Failed(e) => summary.failed.push(e),
        }
    }
    summary.stored = labels.len();
    store.put_labels(labels).await?;
    Ok(summary)
}

/// What a judge said of one answer.
#[derive(Debug)]
pub enum Graded {
    /// A label, and the reply it was read from.
    Label(Label, String),
    /// A reply naming no single label.
    Unreadable(String),
    /// The call failed.
    Failed(String),
}

/// Sends every grading request, at most the grader's concurrency at once; the verdicts come
/// back in no particular order, each with its key and the request sent.
pub async fn grade<K: Send + 'static>(
    grader: Arc<Grader>,
    items: Vec<(K, String)>,
) -> Result<Vec<(K, String, Graded)>, AppError> {
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
        out.push(joined.map_err(AppError::internal)?);
    }
    Ok(out)
}

/// A judge: its provider, and how to write its requests.
pub struct Grader {
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
    /// The judge named `MODEL@REGION` in the catalog at `catalog_path`, and its name as
    /// labels record it.
    pub fn open(catalog_path: &Path, judge: &str) -> Result<(Grader, String), AppError> {
        let Some((model, region)) = judge.split_once('@') else {
            return Err(AppError::input(format!("`--judge {judge}`: expected MODEL@REGION, e.g. `gpt-4o@us-east`")));
        };
        let catalog = load::catalog(catalog_path)?;
        let Some((endpoint, entry)) = catalog.resolve(model, region) else {
            return Err(AppError::input(format!(
                "the judge `{model}` is not served in region `{region}` of `{}`",
                catalog_path.display()
            )));
        };
        let grader = match endpoint.kind {
            EndpointKind::OpenAiChat => {
                let concurrency = endpoint.concurrency.unwrap_or(8).max(1);
                let provider = providers::http_provider(endpoint, region, catalog_path, concurrency)?;
                Grader {
                    provider: Arc::new(provider),
                    concurrency,
                    timeout: Duration::from_secs(120),
                    local: None,
                    model: entry.name.clone(),
                }
            }
            EndpointKind::LocalGguf => Grader::local(&catalog, catalog_path, model, region)?,
            other => {
                return Err(AppError::input(format!(
                    "the judge must be served by an `openai-chat` or `local-gguf` endpoint; `{}` is `{}`",
                    endpoint.name,
                    other.as_str()
                )));
            }
        };
        Ok((grader, judge::judge_name(model, region)))
    }

    /// A `local-gguf` judge: its model read from its file (a chat model: the rubric is a
    /// conversation), served in this process one grading at a time.
    fn local(catalog: &Catalog, catalog_path: &Path, model: &str, region: &str) -> Result<Grader, AppError> {
        let units = local::units_of(&[(model.to_owned(), region.to_owned())], catalog, catalog_path)?;
        let unit = units
            .into_iter()
            .next()
            .ok_or_else(|| AppError::internal(format!("`{model}@{region}` is local but was not read")))?;
        let Some(source) = unit.info.chat_template.as_deref() else {
            return Err(AppError::input(format!(
                "the judge `{model}@{region}` has no chat template (a base model?), and the rubric is a conversation\n\nhint: judge with a chat model, or give the endpoint a `chat_template:` file"
            )));
        };
        let template = parallax_core::template::ChatTemplate::new(source).map_err(|e| {
            AppError::input(format!("the chat template of the judge `{model}@{region}` does not compile: {e}"))
        })?;
        let runtime = local::runtime(&unit)?;
        Ok(Grader {
            provider: runtime.provider,
            concurrency: 1,
            timeout: Duration::from_secs(600),
            model: unit.name.clone(),
            local: Some((unit.info, template, local::today())),
        })
    }

    fn kind(&self) -> EndpointKind {
        if self.local.is_some() { EndpointKind::LocalGguf } else { EndpointKind::OpenAiChat }
    }

    /// The grading request for one answer, rendered once: what is sent is what is stored.
    pub fn request(&self, question: &str, answer: &str) -> Result<String, AppError> {
        match &self.local {
            None => Ok(judge::judge_request(&self.model, question, answer)),
            Some((info, template, date)) => {
                judge::judge_local_request(&self.model, info, template, *date, question, answer)
                    .map_err(|e| AppError::input(format!("the judge's chat template cannot render the rubric: {e}")))
            }
        }
    }
}
