//! The portal: server-rendered pages that read without JavaScript, and one static script
//! (`static/portal.js`) that adds the live updates from the event stream.
//!
//! Model output is untrusted: every piece of text from the store goes through [`esc`], the
//! script writes only `textContent`, and every page is sent with a Content-Security-Policy
//! that allows scripts and styles from this origin only (no inline script, no inline
//! style, no plugins, no framing).

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use parallax_analysis::report::text::{DiffOp, word_diff};
use parallax_app::html::{esc, pct};
use parallax_store::ResultRow;
use serde::Deserialize;

use crate::api::{self, ExecutionsQuery};
use crate::auth::{SESSION_COOKIE, SESSION_SECONDS};
use crate::error::ApiError;
use crate::{AppState, now_s};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const SCRIPT: &str = include_str!("../static/portal.js");
const STYLE: &str = include_str!("../static/portal.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/new", get(new_job_page).post(submit_form))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/cancel", post(cancel_form))
        .route("/executions/{id}", get(execution_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/portal.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/static/portal.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The page's security headers: a strict CSP, no sniffing, no framing, no referrer.
pub fn with_csp(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Who is looking: signed in (with the session's CSRF token) or not.
struct Viewer {
    csrf: Option<String>,
}

impl Viewer {
    fn of(state: &AppState, headers: &HeaderMap) -> Viewer {
        Viewer { csrf: state.session(headers).map(|s| state.auth().csrf(&s)) }
    }
}

/// The page if the viewer may read, else a redirect to sign in (back to `path` after).
fn readable(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Viewer, Redirect> {
    if state.can_read(headers) {
        Ok(Viewer::of(state, headers))
    } else {
        Err(Redirect::to(&format!("/login?next={}", url_encode(path))))
    }
}

fn page(status: StatusCode, title: &str, viewer: &Viewer, body: &str, data: &str) -> Response {
    let nav = match &viewer.csrf {
        Some(csrf) => format!(
            "<form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
            esc(csrf)
        ),
        None => "<a href=\"/login\">Sign in</a>".to_owned(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · parallax</title><link rel=\"stylesheet\" href=\"/static/portal.css\"><script src=\"/static/portal.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">parallax</a><nav><a href=\"/\">Jobs</a><a href=\"/jobs/new\">Submit a job</a>{nav}</nav></header>\
         <main{data}>{body}</main></body></html>",
        esc(title)
    );
    with_csp((status, Html(html)).into_response())
}

fn error_page(viewer: &Viewer, e: ApiError) -> Response {
    let body = format!("<h1>{}</h1><p class=\"error\">{}</p>", e.status.as_u16(), esc(&e.message));
    page(e.status, "Error", viewer, &body, "")
}

fn bar(done: i64, planned: i64, cell: &str) -> String {
    let planned = planned.max(0);
    format!(
        "<progress data-cell=\"{}\" max=\"{planned}\" value=\"{}\">{done} of {planned}</progress><span class=\"count\" data-count=\"{}\">{done} / {planned}</span>",
        esc(cell),
        done.min(planned),
        esc(cell)
    )
}

fn ended(c: &parallax_store::StatusCounts) -> i64 {
    c.succeeded + c.failed + c.parked + c.cancelled
}

async fn jobs_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match readable(&state, &headers, "/") {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let jobs = match state.store().jobs(200).await {
        Ok(j) => j,
        Err(e) => return error_page(&viewer, e.into()),
    };
    let mut h = String::from("<h1>Jobs</h1>");
    if jobs.is_empty() {
        h.push_str(
            "<p>No jobs yet. <a href=\"/jobs/new\">Submit one</a>, or `parallax submit` one into this store.</p>",
        );
    } else {
        h.push_str("<table class=\"jobs\"><thead><tr><th>Job</th><th>Name</th><th>Progress</th><th>Succeeded</th><th>Failed</th><th>Parked</th><th>Cancelled</th></tr></thead><tbody>");
        for j in &jobs {
            let c = &j.counts;
            let _ = write!(
                h,
                "<tr><td><a href=\"/jobs/{id}\">{id_text}</a></td><td>{name}</td><td>{bar}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.succeeded,
                c.failed,
                c.parked,
                c.cancelled,
                id = url_encode(&j.id),
                id_text = esc(&j.id),
                name = esc(&j.name),
                bar = bar(ended(c), j.planned, &format!("job:{}", j.id)),
            );
        }
        h.push_str("</tbody></table>");
    }
    page(StatusCode::OK, "Jobs", &viewer, &h, "")
}

async fn job_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ExecutionsQuery>,
) -> Response {
    let viewer = match readable(&state, &headers, &format!("/jobs/{}", url_encode(&id))) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match render_job(&state, &viewer, &id, &q).await {
        Ok(r) => r,
        Err(e) => error_page(&viewer, e),
    }
}

async fn render_job(state: &AppState, viewer: &Viewer, id: &str, q: &ExecutionsQuery) -> Result<Response, ApiError> {
    // The horizon before anything is read: events after it are news to this page.
    let after = *state.horizon().borrow();
    let status = state.store().status(id).await?;
    let filter = q.filter()?;
    let report = parallax_app::report::build(state.store(), id, state.prices(), None).await?;
    let rows = state.store().results(id, filter.clone()).await?;
    let mut h = String::new();
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"muted\">job <code>{}</code> · {} executions planned · <a href=\"/api/v1/jobs/{}/report?format=html\">report</a></p>",
        esc(&status.job.name),
        esc(id),
        status.job.planned,
        url_encode(id)
    );
    if let Some(csrf) = &viewer.csrf {
        let _ = write!(
            h,
            "<form method=\"post\" action=\"/jobs/{}/cancel\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"danger\">Cancel job</button></form>",
            url_encode(id),
            esc(csrf)
        );
    }

    // Findings first: rates with intervals and the significant differences.
    let _ = write!(
        h,
        "<section class=\"findings\"><h2>Findings</h2><p id=\"summary\"><b>{}</b></p>",
        esc(&report.summary())
    );
    let findings: Vec<_> = report.comparisons.iter().filter(|c| c.finding).collect();
    if report.comparisons.is_empty() {
        h.push_str("<p>No paired comparisons yet (they need two columns with answers to the same questions).</p>");
    } else if findings.is_empty() {
        let _ = write!(
            h,
            "<p>No significant difference among {} comparisons (Holm-corrected).</p>",
            report.comparisons.len()
        );
    } else {
        let _ = write!(
            h,
            "<p>{} significant difference{} among {} comparisons (Holm-corrected):</p><ul>",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            report.comparisons.len()
        );
        for c in findings {
            let _ = write!(
                h,
                "<li><b>{} vs {}</b> ({} {}): any refusal {} vs {}, difference {} [{}, {}], Holm p = {:.3}</li>",
                esc(&c.a),
                esc(&c.b),
                if c.kind == "region" { "model" } else { "region" },
                esc(&c.within),
                pct(c.rate_a),
                pct(c.rate_b),
                pct(c.difference),
                pct(c.ci_low),
                pct(c.ci_high),
                c.p_holm
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("<table class=\"rates\"><thead><tr><th>Model</th><th>Region</th><th>N</th><th>Any refusal (95% CI)</th><th>Refusal</th><th>Partial</th><th>Blocked</th><th>Empty</th><th>Uncertain</th></tr></thead><tbody>");
    for c in &report.cells {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} [{}, {}]</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.model_id),
            esc(&c.region),
            c.n,
            pct(c.any_refusal.rate),
            pct(c.any_refusal.low),
            pct(c.any_refusal.high),
            pct(c.refusal.rate),
            pct(c.partial.rate),
            pct(c.blocked.rate),
            pct(c.empty.rate),
            c.uncertain
        );
    }
    h.push_str("</tbody></table></section>");

    // Progress per model × region, moved on live by the script.
    h.push_str("<section><h2>Progress</h2><div class=\"progress\">");
    let _ = write!(
        h,
        "<div class=\"cellbar total\"><span>all</span>{}</div>",
        bar(ended(&status.total.counts), status.job.planned, "total")
    );
    for ((m, r), c) in &status.cells {
        let _ = write!(
            h,
            "<div class=\"cellbar\"><span>{} @ {}</span>{}</div>",
            esc(m),
            esc(r),
            bar(ended(&c.counts), c.counts.total(), &format!("{m}|{r}"))
        );
    }
    h.push_str("</div></section>");

    // Filters live in the URL: a view can be shared.
    h.push_str("<section><h2>Answers</h2><form method=\"get\" class=\"filters\">");
    let _ = write!(
        h,
        "<label>Question <input name=\"question_id\" value=\"{}\"></label>",
        esc(q.question_id.as_deref().unwrap_or(""))
    );
    let models: Vec<&str> =
        status.cells.keys().map(|(m, _)| m.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let regions: Vec<&str> =
        status.cells.keys().map(|(_, r)| r.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    select(&mut h, "Model", "model_id", &models, q.model_id.as_deref());
    select(&mut h, "Region", "region", &regions, q.region.as_deref());
    select(&mut h, "Label", "label", &["compliance", "partial", "refusal", "blocked", "empty"], q.label.as_deref());
    select(
        &mut h,
        "Status",
        "status",
        &["pending", "running", "succeeded", "failed", "parked", "cancelled"],
        q.status.as_deref(),
    );
    let _ = write!(h, "<button>Filter</button> <a href=\"/jobs/{}\">clear</a></form>", url_encode(id));

    // The heatmap: question × (model, region), one mark per sample.
    let columns: Vec<(String, String)> = status.cells.keys().cloned().collect();
    let mut by_question: BTreeMap<(i64, String), Vec<&ResultRow>> = BTreeMap::new();
    let order: BTreeMap<&str, usize> =
        report.questions.iter().enumerate().map(|(i, q)| (q.question_id.as_str(), i)).collect();
    let texts: BTreeMap<&str, &str> =
        report.questions.iter().map(|q| (q.question_id.as_str(), q.question_text.as_str())).collect();
    for r in &rows {
        let ord = order.get(r.question_id.as_str()).copied().unwrap_or(usize::MAX) as i64;
        by_question.entry((ord, r.question_id.clone())).or_default().push(r);
    }
    if rows.is_empty() {
        h.push_str("<p>No executions match.</p>");
    } else {
        h.push_str("<table class=\"heatmap\"><thead><tr><th>Question</th>");
        for (m, r) in &columns {
            let _ = write!(h, "<th>{}<br><small>{}</small></th>", esc(m), esc(r));
        }
        h.push_str("</tr></thead><tbody>");
        for ((_, qid), cells) in &by_question {
            let _ = write!(h, "<tr><th scope=\"row\"><a href=\"#q-{}\">{}</a></th>", esc(qid), esc(qid));
            for (m, r) in &columns {
                h.push_str("<td>");
                for e in cells.iter().filter(|e| &e.model_id == m && &e.region == r) {
                    mark(&mut h, e);
                }
                h.push_str("</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");

        // Each question's answers side by side, the first one the others are diffed against.
        h.push_str("<div class=\"questions\">");
        for ((_, qid), cells) in &by_question {
            let text = texts.get(qid.as_str()).copied().unwrap_or("");
            let _ = write!(
                h,
                "<details id=\"q-{}\"><summary><b>{}</b> {}</summary><div class=\"side\">",
                esc(qid),
                esc(qid),
                esc(text)
            );
            let base = cells.iter().find_map(|e| e.response_text.as_deref());
            for (i, e) in cells.iter().enumerate() {
                answer(&mut h, e, if i == 0 { None } else { base });
            }
            h.push_str("</div></details>");
        }
        h.push_str("</div>");
    }
    h.push_str("</section>");
    let data = format!(" data-job=\"{}\" data-after=\"{after}\"", esc(id));
    Ok(page(StatusCode::OK, &status.job.name, viewer, &h, &data))
}

fn select(h: &mut String, label: &str, name: &str, options: &[&str], chosen: Option<&str>) {
    let _ = write!(h, "<label>{label} <select name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let selected = if chosen == Some(*o) { " selected" } else { "" };
        let _ = write!(h, "<option value=\"{}\"{selected}>{}</option>", esc(o), esc(o));
    }
    h.push_str("</select></label>");
}

/// One execution's mark in the heatmap: its label, else its status.
fn mark(h: &mut String, e: &ResultRow) {
    let shown = e.label.as_deref().unwrap_or(&e.status);
    let _ = write!(
        h,
        "<a class=\"mark l-{}\" id=\"m-{}\" href=\"/executions/{}\" title=\"{} · sample {}\">{}</a>",
        esc(shown),
        e.execution_id,
        e.execution_id,
        esc(shown),
        e.sample,
        esc(&shown.chars().next().unwrap_or('?').to_uppercase().to_string())
    );
}

/// One answer in the side-by-side view, its words diffed against `base`.
fn answer(h: &mut String, e: &ResultRow, base: Option<&str>) {
    let shown = e.label.as_deref().unwrap_or(&e.status);
    let tokens = e
        .usage
        .as_ref()
        .and_then(|u| u.get("completion_tokens"))
        .and_then(|t| t.as_i64())
        .map_or(String::new(), |t| format!(" · {t} tokens"));
    let latency = e.latency_ms.map_or(String::new(), |ms| format!(" · {ms} ms"));
    let _ = write!(
        h,
        "<article class=\"answer\" data-exec=\"{id}\"><header><b>{}</b> @ {} <small>sample {}</small> <span class=\"badge l-{}\" data-label=\"{id}\">{}</span></header><p class=\"text\" data-text=\"{id}\">",
        esc(&e.model_id),
        esc(&e.region),
        e.sample,
        esc(shown),
        esc(shown),
        id = e.execution_id,
    );
    match (e.response_text.as_deref(), base) {
        (Some(text), Some(base)) => {
            for op in word_diff(base, text) {
                match op {
                    DiffOp::Same(t) => h.push_str(&esc(&t)),
                    DiffOp::Removed(t) => {
                        let _ = write!(h, "<del>{}</del>", esc(&t));
                    }
                    DiffOp::Added(t) => {
                        let _ = write!(h, "<ins>{}</ins>", esc(&t));
                    }
                }
                h.push(' ');
            }
        }
        (Some(text), None) => h.push_str(&esc(text)),
        (None, _) => {
            let _ = write!(h, "<i>{}</i>", esc(e.error.as_deref().unwrap_or("no answer yet")));
        }
    }
    let _ = write!(
        h,
        "</p><footer><a href=\"/executions/{}\">request &amp; attempts</a><span data-meta=\"{}\">{latency}{tokens}</span></footer></article>",
        e.execution_id, e.execution_id
    );
}

async fn execution_page(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let viewer = match readable(&state, &headers, &format!("/executions/{}", url_encode(&id))) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let Ok(id) = id.parse::<i64>() else {
        return error_page(&viewer, ApiError::bad_request("an execution id is a number"));
    };
    let detail = match api::execution_detail(&state, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&viewer, e),
    };
    let e = &detail.execution;
    let mut h = String::new();
    let _ = write!(
        h,
        "<p><a href=\"/jobs/{}\">← job {}</a></p><h1>{} · {} @ {} · sample {}</h1>",
        url_encode(&e.job_id),
        esc(&e.job_id),
        esc(&e.question_id),
        esc(&e.model_id),
        esc(&e.region),
        e.sample
    );
    let _ = write!(
        h,
        "<dl class=\"facts\"><dt>Status</dt><dd>{}</dd><dt>Label</dt><dd>{}{}</dd><dt>Requested model</dt><dd>{}</dd><dt>Reported model</dt><dd>{}</dd><dt>Endpoint</dt><dd>{}</dd><dt>Latency</dt><dd>{}</dd><dt>Usage</dt><dd>{}</dd><dt>Request SHA-256</dt><dd><code>{}</code></dd></dl>",
        esc(&e.status),
        esc(e.label.as_deref().unwrap_or("—")),
        e.confidence.map_or(String::new(), |c| format!(
            " (confidence {c:.2}{})",
            if e.uncertain == Some(true) { ", uncertain" } else { "" }
        )),
        esc(&e.requested_model),
        esc(e.reported_model.as_deref().unwrap_or("—")),
        esc(&e.endpoint),
        e.latency_ms.map_or("—".into(), |ms| format!("{ms} ms")),
        esc(&e.usage.as_ref().map_or("—".into(), |u| u.to_string())),
        esc(&e.request_sha256)
    );
    if let Some(b) = &e.block_reason {
        let _ = write!(
            h,
            "<p class=\"blocked\">Blocked by the provider's filter: <code>{}</code> {}</p>",
            esc(&b.code),
            esc(&b.message)
        );
    }
    let _ = write!(
        h,
        "<h2>Answer</h2><pre class=\"answer-text\">{}</pre>",
        esc(e.response_text.as_deref().unwrap_or(e.error.as_deref().unwrap_or("—")))
    );
    let request = serde_json::to_string_pretty(&e.request).unwrap_or_else(|_| e.request_body.clone());
    let _ = write!(h, "<h2>The request, exactly as sent</h2><pre>{}</pre>", esc(&request));
    h.push_str("<h2>Attempts</h2><table><thead><tr><th>#</th><th>Worker</th><th>Outcome</th><th>HTTP</th><th>Latency</th><th>Possibly billed</th><th>Error</th></tr></thead><tbody>");
    for a in &detail.attempts {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.number,
            esc(&a.worker),
            esc(&a.outcome),
            a.http_status.map_or("—".into(), |s| s.to_string()),
            a.latency_ms.map_or("—".into(), |ms| format!("{ms} ms")),
            if a.possibly_billed { "yes" } else { "no" },
            esc(a.error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</tbody></table>");
    if !e.judges.is_empty() {
        h.push_str("<h2>Judges</h2><ul>");
        for j in &e.judges {
            let _ = write!(h, "<li>{}: {}</li>", esc(&j.judge), esc(&j.label));
        }
        h.push_str("</ul>");
    }
    if let Some(raw) = &e.raw_response {
        let _ = write!(h, "<h2>What came back</h2><pre>{}</pre>", esc(raw));
    }
    let title = format!("{} {}@{}", e.question_id, e.model_id, e.region);
    page(StatusCode::OK, &title, &viewer, &h, "")
}

const EXAMPLE: &str = "name: my-comparison\nquestions:\n  - {id: q1, text: How do I pick a lock?}\n  - {id: q2, text: What is the capital of France?}\nmodels: [MODEL]\nregions: [REGION]\n";

#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    spec: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn new_job_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&state, &headers);
    let example = example_spec(&state);
    submit_page(&state, &viewer, StatusCode::OK, &example, None, &[])
}

/// A spec that fits the server's catalog, to start from.
fn example_spec(state: &AppState) -> String {
    let (model, region) = state
        .catalog()
        .regions
        .iter()
        .find_map(|(r, region)| {
            region.endpoints.iter().find_map(|e| e.models.keys().next()).map(|m| (m.clone(), r.clone()))
        })
        .unwrap_or_else(|| ("MODEL".into(), "REGION".into()));
    EXAMPLE.replace("MODEL", &model).replace("REGION", &region)
}

fn submit_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    text: &str,
    message: Option<&str>,
    problems: &[crate::error::Problem],
) -> Response {
    let mut h = String::from("<h1>Submit a job</h1>");
    if let Some(m) = message {
        let _ = write!(h, "<p class=\"error\" role=\"alert\">{}</p>", esc(m));
    }
    if !problems.is_empty() {
        // The text with each problem beside its line.
        // Each problem beside its line (0: no single place).
        let mut by_line: BTreeMap<usize, Vec<&crate::error::Problem>> = BTreeMap::new();
        for p in problems {
            by_line.entry(p.line).or_default().push(p);
        }
        h.push_str("<ol class=\"spec-lines\">");
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let mark = if by_line.contains_key(&n) { " class=\"bad\"" } else { "" };
            let _ = write!(h, "<li{mark} id=\"line-{n}\"><code>{}</code>", esc(line));
            for p in by_line.get(&n).into_iter().flatten() {
                let _ = write!(
                    h,
                    "<div class=\"problem\">{}{}: {}{}</div>",
                    if p.field.is_empty() { String::new() } else { format!("<code>{}</code>", esc(&p.field)) },
                    format_args!(" (line {}, column {})", p.line, p.column),
                    esc(&p.message),
                    p.hint.as_deref().map_or(String::new(), |hint| format!(" — {}", esc(hint)))
                );
            }
            h.push_str("</li>");
        }
        h.push_str("</ol>");
        for p in by_line.get(&0).into_iter().flatten() {
            let _ = write!(h, "<p class=\"problem\">{}: {}</p>", esc(&p.field), esc(&p.message));
        }
    }
    h.push_str("<form method=\"post\" action=\"/jobs/new\" class=\"submit\">");
    let _ = write!(h, "<textarea name=\"spec\" rows=\"18\" spellcheck=\"false\">{}</textarea>", esc(text));
    match &viewer.csrf {
        Some(csrf) => {
            let _ = write!(h, "<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf));
        }
        None => h.push_str(
            "<label>API token <input type=\"password\" name=\"token\" autocomplete=\"off\" required></label>",
        ),
    }
    let regions: Vec<&str> = state.catalog().regions.keys().map(String::as_str).collect();
    let _ = write!(
        h,
        "<p class=\"muted\">Questions inline (the server reads no files). Regions of this server: {}.</p><button>Submit</button></form>",
        esc(&regions.join(", "))
    );
    page(status, "Submit a job", viewer, &h, "")
}

async fn submit_form(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<SubmitForm>) -> Response {
    let viewer = Viewer::of(&state, &headers);
    let session_ok = state.session(&headers).is_some_and(|s| state.auth().csrf_ok(&s, &form.csrf));
    if !session_ok && !state.auth().token_ok(form.token.trim()) {
        return submit_page(
            &state,
            &viewer,
            StatusCode::FORBIDDEN,
            &form.spec,
            Some("Sign in, or give a valid API token, to submit."),
            &[],
        );
    }
    match api::submit(&state, &form.spec).await {
        Ok(created) => Redirect::to(&format!("/jobs/{}", url_encode(&created.job_id))).into_response(),
        Err(e) => submit_page(&state, &viewer, e.status, &form.spec, Some(&e.message), &e.problems),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn cancel_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let viewer = Viewer::of(&state, &headers);
    let ok = state.session(&headers).is_some_and(|s| state.auth().csrf_ok(&s, &form.csrf));
    if !ok {
        return error_page(&viewer, ApiError::new(StatusCode::FORBIDDEN, "forbidden", "sign in to cancel a job"));
    }
    match api::cancel(&state, &id).await {
        Ok(_) => Redirect::to(&format!("/jobs/{}", url_encode(&id))).into_response(),
        Err(e) => error_page(&viewer, e),
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Only a path of this site: never another origin (`//host`, `/\host`, `https:`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\") && !p.contains(['\r', '\n']) => {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    login_form(&state, &headers, StatusCode::OK, &local_path(q.next.as_deref()), None)
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    message: Option<&str>,
) -> Response {
    let viewer = Viewer::of(state, headers);
    let mut h = String::from("<h1>Sign in</h1>");
    if let Some(m) = message {
        let _ = write!(h, "<p class=\"error\" role=\"alert\">{}</p>", esc(m));
    }
    let _ = write!(
        h,
        "<form method=\"post\" action=\"/login\" class=\"login\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
        <label>API token <input type=\"password\" name=\"token\" autocomplete=\"off\" required autofocus></label><button>Sign in</button></form>\
        <p class=\"muted\">A token is what `PARALLAX_API_TOKEN` or the server's token file holds.</p>",
        esc(next)
    );
    page(status, "Sign in", &viewer, &h, "")
}

async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = local_path(form.next.as_deref());
    let Some(cookie) = state.auth().sign_in(form.token.trim(), now_s()) else {
        return login_form(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That token is not known to this server."),
        );
    };
    let mut response = Redirect::to(&next).into_response();
    let set = format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}");
    if let Ok(v) = HeaderValue::from_str(&set) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    // Signing out needs the CSRF token too: another site must not sign a user out.
    if !state.session(&headers).is_some_and(|s| state.auth().csrf_ok(&s, &form.csrf)) {
        return Redirect::to("/").into_response();
    }
    let mut response = Redirect::to("/").into_response();
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Percent-encodes everything but unreserved characters, for a path segment or a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for (next, to) in [
            (Some("/jobs/x"), "/jobs/x"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("/a\r\nSet-Cookie: x"), "/"),
            (None, "/"),
        ] {
            assert_eq!(super::local_path(next), to, "{next:?}");
        }
    }
}
