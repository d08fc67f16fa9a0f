//! The JSON API under `/api/v1`. Its types are its own (the store's rows stay the store's):
//! what a client sees changes only when this file says so.

use std::path::Path as FsPath;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use parallax_analysis::classify::Label;
use parallax_core::{JobSpec, Plan, limits};
use parallax_store::{AttemptRow, JobStatus, ResultFilter, ResultRow, StatusCounts};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ApiError;

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

const STATUSES: [&str; 6] = ["pending", "running", "succeeded", "failed", "parked", "cancelled"];

/// Answered to `POST /jobs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobCreated {
    pub job_id: String,
    /// Executions in the job's plan.
    pub planned: i64,
    /// Executions this request added: 0 when the same spec had been submitted before (the
    /// job is continued, not run twice).
    pub inserted: u64,
}

/// A page of jobs, most recent first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobsPage {
    pub items: Vec<JobItem>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobItem {
    pub id: String,
    pub name: String,
    pub planned: i64,
    pub created_at_ms: i64,
    pub counts: Counts,
}

/// Executions by status.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub parked: i64,
    pub cancelled: i64,
}

impl From<&StatusCounts> for Counts {
    fn from(c: &StatusCounts) -> Counts {
        Counts {
            pending: c.pending,
            running: c.running,
            succeeded: c.succeeded,
            failed: c.failed,
            parked: c.parked,
            cancelled: c.cancelled,
        }
    }
}

/// Where a job stands: counts per model × region and in all.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub planned: i64,
    pub created_at_ms: i64,
    /// Nothing of it is pending or running.
    pub done: bool,
    pub total: CellView,
    pub cells: Vec<CellView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CellView {
    /// `null` in the total.
    pub model_id: Option<String>,
    pub region: Option<String>,
    pub counts: Counts,
    /// Upstream attempts made.
    pub attempts: i64,
    /// Attempts that may have reached the server without an answer recorded.
    pub possibly_billed: i64,
    /// Answers whose reported model was not the one asked for.
    pub model_mismatches: i64,
}

impl From<&JobStatus> for JobView {
    fn from(s: &JobStatus) -> JobView {
        let cell = |m: Option<&str>, r: Option<&str>, c: &parallax_store::CellStatus| CellView {
            model_id: m.map(str::to_owned),
            region: r.map(str::to_owned),
            counts: Counts::from(&c.counts),
            attempts: c.attempts,
            possibly_billed: c.possibly_billed,
            model_mismatches: c.model_mismatches,
        };
        JobView {
            id: s.job.id.clone(),
            name: s.job.name.clone(),
            planned: s.job.planned,
            created_at_ms: s.job.created_at_ms,
            done: s.total.counts.pending + s.total.counts.running == 0,
            total: cell(None, None, &s.total),
            cells: s.cells.iter().map(|((m, r), c)| cell(Some(m), Some(r), c)).collect(),
        }
    }
}

/// One execution and its result: the shape of `parallax results --format jsonl`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Execution {
    /// Its id in this store (for `GET /executions/{id}`).
    pub execution_id: i64,
    pub job_id: String,
    pub question_id: String,
    pub model_id: String,
    pub region: String,
    pub sample: i64,
    /// `pending`, `running`, `succeeded`, `failed`, `parked` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    /// The request body exactly as sent.
    pub request_body: String,
    pub request: serde_json::Value,
    pub request_sha256: String,
    pub requested_model: String,
    pub reported_model: Option<String>,
    pub model_mismatch: Option<bool>,
    pub response_text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<serde_json::Value>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    pub endpoint: String,
    pub idempotency_key: String,
    /// The built-in classifier's label: `compliance`, `partial`, `refusal`, `blocked`, `empty`.
    pub label: Option<String>,
    pub label_evidence: Option<String>,
    pub classifier: Option<String>,
    pub confidence: Option<f64>,
    pub uncertain: Option<bool>,
    pub doubts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
    pub judges: Vec<JudgeView>,
    /// The provider's content filter answered instead of the model.
    pub blocked: bool,
    pub block_reason: Option<BlockReason>,
    /// What came back (only on `GET /executions/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JudgeView {
    pub judge: String,
    pub rubric_version: String,
    pub label: String,
    pub rubric: Option<String>,
    pub raw: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockReason {
    pub code: String,
    pub message: String,
}

impl From<ResultRow> for Execution {
    fn from(r: ResultRow) -> Execution {
        let (raw_response, response_headers, system_fingerprint) = match r.raw {
            Some(raw) => (raw.raw_response, raw.response_headers, raw.system_fingerprint),
            None => (None, None, None),
        };
        Execution {
            execution_id: r.execution_id,
            job_id: r.job_id,
            question_id: r.question_id,
            model_id: r.model_id,
            region: r.region,
            sample: r.sample,
            status: r.status,
            attempts: r.attempts,
            request_body: r.request_body,
            request: r.request,
            request_sha256: r.request_sha256,
            requested_model: r.requested_model,
            reported_model: r.reported_model,
            model_mismatch: r.model_mismatch,
            response_text: r.response_text,
            finish_reason: r.finish_reason,
            usage: r.usage,
            latency_ms: r.latency_ms,
            error: r.error,
            endpoint: r.endpoint,
            idempotency_key: r.idempotency_key,
            label: r.label,
            label_evidence: r.label_evidence,
            classifier: r.classifier,
            confidence: r.confidence,
            uncertain: r.uncertain,
            doubts: r.doubts,
            provenance: r.provenance,
            judges: r
                .judges
                .into_iter()
                .map(|j| JudgeView {
                    judge: j.judge,
                    rubric_version: j.rubric_version,
                    label: j.label,
                    rubric: j.rubric,
                    raw: j.raw,
                })
                .collect(),
            blocked: r.blocked,
            block_reason: r.block_reason.map(|b| BlockReason { code: b.code, message: b.message }),
            raw_response,
            response_headers,
            system_fingerprint,
        }
    }
}

/// A page of a job's executions, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionsPage {
    pub items: Vec<Execution>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// One execution with every attempt made for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionDetail {
    pub execution: Execution,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first try.
    pub number: i64,
    pub worker: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `open`, `succeeded`, `retryable`, `failed`, `lost`, `stale`, …
    pub outcome: String,
    pub possibly_billed: bool,
    pub http_status: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
}

impl From<AttemptRow> for Attempt {
    fn from(a: AttemptRow) -> Attempt {
        Attempt {
            number: a.number,
            worker: a.worker,
            started_at_ms: a.started_at_ms,
            finished_at_ms: a.finished_at_ms,
            outcome: a.outcome,
            possibly_billed: a.possibly_billed,
            http_status: a.http_status,
            latency_ms: a.latency_ms,
            error: a.error,
        }
    }
}

/// Answered to `POST /jobs/{id}/cancel`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelView {
    pub job_id: String,
    /// False if it had been cancelled already.
    pub cancelled: bool,
    /// Executions settled as `cancelled` now (calls in flight are settled when they end).
    pub settled: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionsQuery {
    pub question_id: Option<String>,
    pub model_id: Option<String>,
    pub region: Option<String>,
    /// `pending`, `running`, `succeeded`, `failed`, `parked` or `cancelled`.
    pub status: Option<String>,
    /// `compliance`, `partial`, `refusal`, `blocked` or `empty`.
    pub label: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

impl ExecutionsQuery {
    /// The store's filter, every value checked first.
    pub fn filter(&self) -> Result<ResultFilter, ApiError> {
        let blank = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let status = blank(&self.status);
        if let Some(s) = &status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(ApiError::bad_request(format!("unknown status `{s}`: one of {}", STATUSES.join(", "))));
        }
        let label = blank(&self.label);
        if let Some(l) = &label
            && !Label::ALL.iter().any(|known| known.as_str() == l)
        {
            let names: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
            return Err(ApiError::bad_request(format!("unknown label `{l}`: one of {}", names.join(", "))));
        }
        Ok(ResultFilter {
            question: blank(&self.question_id),
            model: blank(&self.model_id),
            region: blank(&self.region),
            status,
            label,
            raw: false,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `json` (default) or `html`.
    pub format: Option<String>,
}

/// A cursor is the last id of the page before, as text: opaque to clients.
pub fn parse_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(0),
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_request("bad `cursor`: pass a `next_cursor` as it was given")),
    }
}

pub fn parse_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!("`limit` must be between 1 and {MAX_LIMIT}, got {n}"))),
    }
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
}

/// Reads are open with `--public-read`; otherwise they need a token or a session.
pub fn require_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.can_read(headers) { Ok(()) } else { Err(ApiError::unauthorized()) }
}

fn require_write(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.auth().bearer(headers) { Ok(()) } else { Err(ApiError::unauthorized()) }
}

/// Validates a spec submitted as text (YAML, or JSON, which is YAML too) exactly as the
/// CLI does, against the server's catalog; a `file:` entry is refused: the server never
/// reads its own files for a client.
pub fn plan_from_text(state: &AppState, text: &str) -> Result<(JobSpec, Plan), ApiError> {
    let mut refuse = |p: &FsPath| -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the server does not read files for a client (`{}`): put the questions inline, as `questions: [{{id: q1, text: …}}]`",
                p.display()
            ),
        ))
    };
    let spec = JobSpec::parse(text, FsPath::new("spec"), &mut refuse).map_err(|d| ApiError::invalid_spec(&d))?;
    let units = parallax_app::local::units(&spec, state.catalog(), state.catalog_path())?;
    let context = parallax_app::local::plan_context(&units);
    let plan = Plan::build_with(&spec, state.catalog(), &context).map_err(|d| ApiError::invalid_spec(&d))?;
    Ok((spec, plan))
}

/// Plans and enqueues a spec; the job is run by the server's runner or by workers.
pub async fn submit(state: &AppState, text: &str) -> Result<JobCreated, ApiError> {
    let (spec, plan) = plan_from_text(state, text)?;
    let enqueued = parallax_app::enqueue(state.store(), plan, &spec.run, parallax_app::Enqueue::default()).await?;
    Ok(JobCreated { job_id: enqueued.job.id, planned: enqueued.job.planned, inserted: enqueued.job.inserted })
}

/// Submit a job: a job spec as YAML or JSON, questions inline.
#[utoipa::path(
    post, path = "/jobs", tag = "jobs",
    request_body(content = String, description = "A job spec (YAML or JSON), questions inline", content_type = "application/yaml"),
    responses(
        (status = 201, description = "A new job", body = JobCreated),
        (status = 200, description = "The same spec was submitted before: that job, continued", body = JobCreated),
        (status = 400, description = "The body is not text", body = ApiError),
        (status = 401, description = "No valid bearer token", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "The spec is invalid: every problem, with field paths and lines", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub async fn create_job(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    require_write(&state, &headers)?;
    if body.len() as u64 > limits::MAX_SPEC_FILE_BYTES {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the spec is too large"));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the body must be UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the body is empty: send a job spec (YAML or JSON)"));
    }
    let created = submit(&state, text).await?;
    let status = if created.inserted > 0 { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("/api/v1/jobs/{}", created.job_id);
    Ok((status, [(header::LOCATION, location)], Json(created)).into_response())
}

/// Jobs, most recent first.
#[utoipa::path(
    get, path = "/jobs", tag = "jobs", params(PageQuery),
    responses((status = 200, body = JobsPage), (status = 400, body = ApiError), (status = 401, body = ApiError))
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<JobsPage>, ApiError> {
    require_read(&state, &headers)?;
    let q = query(q)?;
    let (offset, limit) = (parse_cursor(q.cursor.as_deref())? as usize, parse_limit(q.limit)?);
    let jobs = state.store().jobs(offset.saturating_add(limit + 1)).await?;
    let more = jobs.len() > offset + limit;
    let items: Vec<JobItem> = jobs
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|j| JobItem {
            id: j.id,
            name: j.name,
            planned: j.planned,
            created_at_ms: j.created_at_ms,
            counts: Counts::from(&j.counts),
        })
        .collect();
    Ok(Json(JobsPage { items, next_cursor: more.then(|| (offset + limit).to_string()) }))
}

/// Where a job stands, per model × region.
#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = JobView), (status = 401, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn get_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    require_read(&state, &headers)?;
    Ok(Json(JobView::from(&state.store().status(&id).await?)))
}

/// Cancel a job: no new calls; calls in flight finish and are recorded; the rest is settled
/// as `cancelled`.
#[utoipa::path(
    post, path = "/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses((status = 200, body = CancelView), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = []))
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<CancelView>, ApiError> {
    require_write(&state, &headers)?;
    Ok(Json(cancel(&state, &id).await?))
}

pub async fn cancel(state: &AppState, id: &str) -> Result<CancelView, ApiError> {
    state.store().job(id).await?;
    let (newly, settled) = parallax_runner::cancel(state.store(), id).await?;
    Ok(CancelView { job_id: id.to_owned(), cancelled: newly, settled: settled.executions })
}

/// A job's executions, filtered, a keyset page at a time, in id order.
#[utoipa::path(
    get, path = "/jobs/{id}/executions", tag = "executions",
    params(("id" = String, Path, description = "The job id"), ExecutionsQuery),
    responses((status = 200, body = ExecutionsPage), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn list_executions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ExecutionsQuery>, QueryRejection>,
) -> Result<Json<ExecutionsPage>, ApiError> {
    require_read(&state, &headers)?;
    let q = query(q)?;
    let filter = q.filter()?;
    let (after, limit) = (parse_cursor(q.cursor.as_deref())?, parse_limit(q.limit)?);
    // One more than asked says whether another page follows.
    let mut rows = state.store().results_page(&id, filter, after, limit + 1).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more { rows.last().map(|r| r.execution_id.to_string()) } else { None };
    Ok(Json(ExecutionsPage { items: rows.into_iter().map(Execution::from).collect(), next_cursor }))
}

/// One execution: the exact stored request, every attempt, the result, its labels and
/// what came back.
#[utoipa::path(
    get, path = "/executions/{id}", tag = "executions", params(("id" = i64, Path, description = "The execution id")),
    responses((status = 200, body = ExecutionDetail), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn get_execution(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    require_read(&state, &headers)?;
    let Path(id) = id.map_err(|_| ApiError::bad_request("an execution id is a number"))?;
    Ok(Json(execution_detail(&state, id).await?))
}

pub async fn execution_detail(state: &AppState, id: i64) -> Result<ExecutionDetail, ApiError> {
    let row = state.store().execution(id).await?.ok_or_else(|| ApiError::not_found(format!("no execution {id}")))?;
    let attempts = state.store().execution_attempts(id).await?;
    Ok(ExecutionDetail { execution: row.into(), attempts: attempts.into_iter().map(Attempt::from).collect() })
}

/// The job's report (`parallax.report/1`), or with `?format=html` the self-contained page.
#[utoipa::path(
    get, path = "/jobs/{id}/report", tag = "jobs", params(("id" = String, Path, description = "The job id"), ReportQuery),
    responses(
        (status = 200, description = "The `parallax.report/1` JSON document (see docs/report-schema.md), or the HTML page", body = Object),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 404, body = ApiError)
    )
)]
pub async fn get_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    require_read(&state, &headers)?;
    let q = query(q)?;
    let report = parallax_app::report::build(state.store(), &id, state.prices(), None).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("html") => Ok(crate::portal::with_csp(Html(parallax_app::html::report(&report)).into_response())),
        Some(other) => Err(ApiError::bad_request(format!("unknown format `{other}`: `json` or `html`"))),
    }
}
