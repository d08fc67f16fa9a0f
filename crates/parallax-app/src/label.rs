//! Labels beside results: the built-in classifier's (no model is called), and a judge's —
//! a catalog model grading answers with the fixed rubric — stored beside it, never over it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parallax_analysis::classify::{self, CLASSIFIER_NAME, CLASSIFIER_VERSION, Label, judge};
use parallax_core::{Catalog, EndpointKind, ItemKey, JobSpec, Mode, Plan, PlanItem, PromptSpec, Question, RunPolicy};
use parallax_providers::SendRequest;
use parallax_runner::{EndpointRuntime, Labeller, RunConfig, Scope, Silent, Stop};
use parallax_store::{BlockRecord, LabelRecord, ResultFilter, ResultRecord, Store, ToLabel};

use crate::{AppError, load, local, providers};

/// Labels the job's succeeded answers the built-in classifier has not labelled yet
/// (all of them with `all`), and stores the labels. Returns the count per label.
pub async fn label_job(store: &Store, job_id: &str, all: bool) -> Result<BTreeMap<Label, u64>, AppError> {
    const PAGE: usize = 2000;
    let mut counts = BTreeMap::new();
    let page_after = |after: i64| store.to_label(job_id, CLASSIFIER_NAME, CLASSIFIER_VERSION, all, after, PAGE);
    // Page through the answers so memory stays flat however large the job. While one
    // page's labels are written, the next page is read and classified (its rows lie past
    // this page's: nothing the write changes).
    let first = page_after(0).await?;
    let mut page = (first.len() == PAGE, label_page(first, &mut counts));
    while let (full, labels) = page
        && let Some(last) = labels.last()
    {
        let (asked, n, after) = (std::time::Instant::now(), labels.len(), last.execution_id);
        let mut next_counts = BTreeMap::new();
        let next = async {
            let todo = if full { page_after(after).await? } else { Vec::new() };
            Ok::<_, AppError>((todo.len() == PAGE, label_page(todo, &mut next_counts)))
        };
        let (written, next) = tokio::join!(store.put_labels(labels), next);
        written?;
        page = next?;
        for (label, n) in next_counts {
            *counts.entry(label).or_insert(0) += n;
        }
        tracing::debug!(target: "parallax_app::label", elapsed_us = asked.elapsed().as_micros() as u64, labels = n, "label page");
    }
    Ok(counts)
}

/// The built-in classifier's labels of a page of answers, counted in `counts`.
fn label_page(todo: Vec<ToLabel>, counts: &mut BTreeMap<Label, u64>) -> Vec<LabelRecord> {
    todo.into_iter()
        .map(|t| {
            let (label, record) = builtin(t.execution_id, &t.question_text, Some(&t.response_text), t.block.as_ref());
            *counts.entry(label).or_insert(0) += 1;
            record
        })
        .collect()
}

/// The built-in classifier's label of one answer (a provider's block is labelled `blocked`).
fn builtin(
    execution_id: i64,
    question: &str,
    response: Option<&str>,
    block: Option<&BlockRecord>,
) -> (Label, LabelRecord) {
    let block = block.map(|b| format!("{}: {}", b.code, b.message));
    let verdict = classify::classify_served(question, response, block.as_deref());
    let record = LabelRecord {
        execution_id,
        classifier: CLASSIFIER_NAME.to_owned(),
        version: CLASSIFIER_VERSION.to_owned(),
        label: verdict.label.as_str().to_owned(),
        confidence: Some(verdict.confidence),
        uncertain: Some(verdict.uncertain),
        doubts: Some(verdict.doubts.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(" ")),
        evidence: verdict.evidence,
        rubric: None,
        raw: None,
    };
    (verdict.label, record)
}

/// The built-in classifier as the runner's [`Labeller`]: each answer is labelled in its
/// call's task and its label committed with it, so a run leaves nothing to label.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

impl Builtin {
    /// For a run's configuration.
    pub fn labeller() -> Option<Arc<dyn Labeller>> {
        Some(Arc::new(Builtin))
    }
}

impl Labeller for Builtin {
    fn label(&self, execution_id: i64, question: &str, answer: &ResultRecord) -> Option<LabelRecord> {
        // As the pass over a job labels it: an answer with no text is labelled as empty.
        let response = answer.response_text.as_deref().or(Some(""));
        Some(builtin(execution_id, question, response, answer.block.as_ref()).1)
    }
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
///
/// The gradings are a job of their own in the store (`judge-<job>-…`): one execution per
/// answer graded (its question id `e<execution id>`), claimed, recorded and resumed like any
/// execution, its attempts and cost in the ledger. The same answers to grade make the same
/// judge job, so a run stopped half way is continued, not asked again; a complete judge
/// job whose replies could not all be read is asked again as a new generation.
pub async fn judge_job(
    store: &Store,
    catalog_path: &Path,
    job_id: &str,
    judge: &str,
    all: bool,
    uncertain_only: bool,
) -> Result<JudgeSummary, AppError> {
    let (grader, name) = Grader::open(catalog_path, judge)?;
    let mut summary = JudgeSummary { name, ..JudgeSummary::default() };
    if uncertain_only {
        // Built-in labels first, so that every answer's uncertainty is known.
        label_job(store, job_id, false).await?;
    }
    // A complete judge job is read first: at most one more round asks again what it could
    // not read.
    for round in 0..3 {
        let todo = to_grade(store, job_id, &summary.name, all, uncertain_only).await?;
        if todo.is_empty() {
            break;
        }
        let plan = grader.plan(job_id, &summary.name, &todo)?;
        let mut job = crate::enqueue(store, plan.clone(), &grader.policy(), crate::Enqueue::default()).await?.job;
        let counts = store.status(&job.id).await?.total.counts;
        if counts.pending + counts.running == 0 {
            // Done before: what it answered is stored now; what it could not grade is
            // asked again, once, as the next generation.
            let stored = harvest(store, &job.id, &mut summary, false).await?;
            if stored > 0 || round > 0 {
                continue;
            }
            job = crate::enqueue(store, plan, &grader.policy(), crate::Enqueue { fresh: true, ..Default::default() })
                .await?
                .job;
        }
        let config = RunConfig {
            scope: Scope::Job { job_id: job.id.clone(), policy: grader.policy() },
            worker: crate::worker_id(),
            endpoints: grader.runtimes(),
            hooks: Default::default(),
            // A judge's replies are read by `harvest`, not by the built-in classifier.
            labeller: None,
        };
        let (_stop, stop_rx) = tokio::sync::watch::channel(Stop::Running);
        parallax_runner::run(store.clone(), config, Arc::new(Silent), stop_rx).await?;
        harvest(store, &job.id, &mut summary, true).await?;
        break;
    }
    Ok(summary)
}

/// The answers the judge has yet to grade: not blocked, not empty.
async fn to_grade(
    store: &Store,
    job_id: &str,
    name: &str,
    all: bool,
    uncertain_only: bool,
) -> Result<Vec<ToLabel>, AppError> {
    let version = judge::JUDGE_RUBRIC_VERSION;
    let todo = if uncertain_only {
        store.to_label_uncertain(job_id, name, version, all).await?
    } else {
        store.to_label(job_id, name, version, all, 0, usize::MAX).await?
    };
    // A block or an empty answer has no text to grade: its label is a fact, not a judgement.
    let gradable =
        |t: &ToLabel| t.block.is_none() && !matches!(classify::classify("", &t.response_text).label, Label::Empty);
    Ok(todo.into_iter().filter(gradable).collect())
}

/// Stores the labels a judge job's replies give, counting them in `summary`; with `last`,
/// the replies that named no label and the calls that failed are counted too. Returns how
/// many labels it stored.
async fn harvest(store: &Store, judge_job: &str, summary: &mut JudgeSummary, last: bool) -> Result<usize, AppError> {
    let mut labels = Vec::new();
    for row in store.results(judge_job, ResultFilter::default()).await? {
        let Some(execution_id) = row.question_id.strip_prefix('e').and_then(|id| id.parse::<i64>().ok()) else {
            continue;
        };
        match (row.status.as_str(), row.response_text) {
            ("succeeded", Some(raw)) => match judge::parse_verdict(&raw) {
                Some(label) => {
                    *summary.counts.entry(label).or_insert(0) += 1;
                    labels.push(LabelRecord {
                        execution_id,
                        classifier: summary.name.clone(),
                        version: judge::JUDGE_RUBRIC_VERSION.to_owned(),
                        label: label.as_str().to_owned(),
                        evidence: None,
                        rubric: Some(row.request_body),
                        raw: Some(raw),
                        confidence: None,
                        uncertain: None,
                        doubts: None,
                    });
                }
                None if last => summary.unreadable += 1,
                None => {}
            },
            (_, _) if last => summary.failed.push(row.error.unwrap_or_else(|| format!("ended {}", row.status))),
            _ => {}
        }
    }
    let stored = labels.len();
    summary.stored += stored;
    store.put_labels(labels).await?;
    Ok(stored)
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
                .runtime
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

/// A judge: its endpoint's runtime, and how to write its requests.
pub struct Grader {
    /// Built once: the gradings' job and `classify --input` send through it.
    runtime: EndpointRuntime,
    concurrency: usize,
    /// Per grading. A local judge's first grading also loads the model, which on a large
    /// file and a slow disk takes a while.
    timeout: Duration,
    /// A `local-gguf` judge's model, its compiled chat template and the day for it.
    local:
        Option<(parallax_core::plan::LocalModel, parallax_core::template::ChatTemplate, parallax_core::template::Date)>,
    /// The provider's model name.
    model: String,
    /// The judge's model id and region in the catalog.
    model_id: String,
    region: String,
    /// Its plan endpoint (`<region>/<endpoint>`, or `<region>/<endpoint>/<model>` when local)
    /// and the names the server may answer with.
    endpoint: String,
    aliases: Vec<String>,
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
                Grader {
                    runtime: providers::http_runtime(endpoint, region, catalog_path, concurrency)?,
                    concurrency,
                    timeout: Duration::from_secs(120),
                    local: None,
                    model: entry.name.clone(),
                    model_id: model.to_owned(),
                    region: region.to_owned(),
                    endpoint: format!("{region}/{}", endpoint.name),
                    aliases: entry.aliases.clone(),
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
        Ok(Grader {
            runtime: local::runtime(&unit)?,
            concurrency: 1,
            timeout: Duration::from_secs(600),
            model: unit.name.clone(),
            model_id: model.to_owned(),
            region: region.to_owned(),
            endpoint: unit.unit.clone(),
            aliases: Vec::new(),
            local: Some((unit.info, template, local::today())),
        })
    }

    fn kind(&self) -> EndpointKind {
        if self.local.is_some() { EndpointKind::LocalGguf } else { EndpointKind::OpenAiChat }
    }

    /// The policy a judge job runs under: the judge's concurrency and timeout.
    fn policy(&self) -> RunPolicy {
        RunPolicy { concurrency: self.concurrency, timeout_s: self.timeout.as_secs_f64(), ..RunPolicy::default() }
    }

    /// The spec of a judge job: its name, one question per answer, the judge's model and region.
    fn spec(&self, job_id: &str, todo: &[ToLabel]) -> JobSpec {
        JobSpec {
            name: format!("judge-{job_id}"),
            questions: todo
                .iter()
                .map(|t| Question {
                    id: format!("e{}", t.execution_id),
                    text: t.question_text.clone(),
                    expect: None,
                    meta: Default::default(),
                })
                .collect(),
            models: vec![self.model_id.clone()],
            regions: vec![self.region.clone()],
            prompt: PromptSpec {
                mode: Mode::Chat,
                system: None,
                system_by_region: Default::default(),
                date: None,
                parse_special: false,
            },
            sampling: Default::default(),
            samples: 1,
            run: self.policy(),
            positions: Default::default(),
        }
    }

    /// The judge job for these answers: each grading request rendered once, keyed by the
    /// answer's execution; named by the job, the judge, the rubric and the answers, so the
    /// same answers make the same job.
    fn plan(&self, job_id: &str, name: &str, todo: &[ToLabel]) -> Result<Plan, AppError> {
        let mut items = Vec::with_capacity(todo.len());
        for t in todo {
            let body = self.request(&t.question_text, &t.response_text)?;
            items.push(PlanItem {
                key: ItemKey {
                    question_id: format!("e{}", t.execution_id),
                    model_id: self.model_id.clone(),
                    region: self.region.clone(),
                    sample: 1,
                },
                endpoint: self.endpoint.clone(),
                kind: self.kind(),
                requested_model: self.model.clone(),
                model_aliases: self.aliases.clone(),
                request_sha256: parallax_core::sha256_hex(body.as_bytes()),
                request_body: body,
                regional_override: false,
            });
        }
        let identity = serde_json::json!({
            "judge_of": job_id,
            "judge": name,
            "rubric_version": judge::JUDGE_RUBRIC_VERSION,
            "requests": items.iter().map(|i| [i.key.question_id.clone(), i.request_sha256.clone()]).collect::<Vec<_>>(),
        });
        Ok(Plan::of_requests(self.spec(job_id, todo), identity, items))
    }

    /// The judge's endpoint as the runner drives it.
    fn runtimes(&self) -> std::collections::HashMap<String, EndpointRuntime> {
        std::collections::HashMap::from([(self.endpoint.clone(), self.runtime.clone())])
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
