//! HTTP routes: the OpenAI-compatible endpoints plus `/stub/stats`.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::answer::{
    ChatRequest, CompletionRequest, REFUSAL_TEXT, Refuser, StopSpec, answer_text, apply_limits, count_tokens,
};
use crate::block::{Blocked, blocked};
use crate::server::AbortConnection;
use crate::{Fault, Stats, StatsSnapshot, StubConfig};

/// Largest request body accepted. Generous: prompts in tests can be long, but
/// a runaway client must not make the stub buffer without bound.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How long a [`Fault::Hang`] request sleeps: far longer than any sane client timeout.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// Name of the header that carries the client's idempotency key.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Region that served the request, to make cross-region debugging easy.
const X_STUB_REGION: HeaderName = HeaderName::from_static("x-stub-region");
/// 1-based attempt number the stub counted for this request's key.
const X_STUB_ATTEMPT: HeaderName = HeaderName::from_static("x-stub-attempt");

/// Source of unique response ids within the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Shared, immutable per-listener state (plus the lock-light [`Stats`]).
pub(crate) struct App {
    config: StubConfig,
    refuser: Refuser,
    /// Prompts the provider's filter blocks, in `config.block_form`.
    blocker: Refuser,
    /// Prompts answered with no content at all.
    emptier: Refuser,
    region_header: HeaderValue,
    stats: Arc<Stats>,
}

impl App {
    pub(crate) fn new(config: StubConfig, stats: Arc<Stats>) -> Self {
        let extra = config.refuse_markers_by_region.get(&config.region).into_iter().flatten();
        let refuser = Refuser::new(config.refuse_markers.iter().chain(extra));
        let extra = config.block_markers_by_region.get(&config.region).into_iter().flatten();
        let blocker = Refuser::new(config.block_markers.iter().chain(extra));
        let emptier = Refuser::new(config.empty_markers.iter());
        let region_header =
            HeaderValue::from_str(&config.region).unwrap_or_else(|_| HeaderValue::from_static("invalid-region-name"));
        App { config, refuser, blocker, emptier, region_header, stats }
    }
}

/// Which completion API a request came in on.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Chat,
    Text,
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(text_completions))
        .route("/v1/models", get(list_models))
        .route("/stub/stats", get(get_stats).delete(reset_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn chat_completions(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    app.complete(Endpoint::Chat, &headers, body).await
}

async fn text_completions(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    app.complete(Endpoint::Text, &headers, body).await
}

async fn list_models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(denied) = app.check_api_key(&headers) {
        return denied.into_response();
    }
    let mut ids = app.config.models.clone();
    ids.extend(app.stats.models_seen().into_iter().filter(|m| !app.config.models.contains(m)));
    let data: Vec<Value> = ids
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "parallax-stub"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

/// Body of `GET /stub/stats`.
#[derive(Serialize)]
struct StatsReport<'a> {
    region: &'a str,
    #[serde(flatten)]
    stats: StatsSnapshot,
}

async fn get_stats(State(app): State<Arc<App>>) -> Response {
    let report = StatsReport { region: &app.config.region, stats: app.stats.snapshot() };
    json_response(StatusCode::OK, &report)
}

async fn reset_stats(State(app): State<Arc<App>>) -> Response {
    app.stats.reset();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "Unknown endpoint for parallax-stub.",
        "invalid_request_error",
        Some("unknown_url"),
    )
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed for this endpoint.",
        "invalid_request_error",
        None,
    )
}

impl App {
    /// The full life of one completion request: read raw bytes, record them,
    /// wait the configured latency, authenticate, inject a fault if one is
    /// planned for this (key, attempt), then decode and answer.
    async fn complete(&self, endpoint: Endpoint, headers: &HeaderMap, body: Body) -> Response {
        let _in_flight = self.stats.enter();

        let raw = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(raw) => raw,
            Err(_) if declared_length(headers).is_some_and(|n| n > MAX_BODY_BYTES) => {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("Request body exceeds {MAX_BODY_BYTES} bytes."),
                    "invalid_request_error",
                    None,
                );
            }
            Err(err) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("Could not read the request body: {err}"),
                    "invalid_request_error",
                    None,
                );
            }
        };
        let digest: [u8; 32] = Sha256::digest(&raw).into();
        let header_key = headers.get(IDEMPOTENCY_KEY).map(|v| String::from_utf8_lossy(v.as_bytes()));
        let attempt = self.stats.record(header_key.as_deref(), digest);

        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }

        let mut response = match self.check_api_key(headers) {
            Err(denied) => denied.into_response(),
            Ok(()) => {
                // Without a header, the body digest identifies the logical request.
                let fault_key = header_key.unwrap_or_else(|| Cow::Owned(hex::encode(digest)));
                match self.config.planned_fault(&fault_key, attempt) {
                    Some(Fault::Status { status, retry_after_s, .. }) => {
                        fault_status_response(*status, *retry_after_s, attempt)
                    }
                    Some(Fault::Reset { .. }) => {
                        // The connection layer sees the marker and aborts
                        // the connection instead of writing this response.
                        let mut response = Response::new(Body::empty());
                        response.extensions_mut().insert(AbortConnection);
                        response
                    }
                    Some(Fault::Hang { .. }) => {
                        tokio::time::sleep(HANG_FOR).await;
                        error_response(StatusCode::GATEWAY_TIMEOUT, "Injected hang expired.", "server_error", None)
                    }
                    Some(Fault::BrokenBody { .. }) => self.answer(endpoint, &raw, true),
                    None => self.answer(endpoint, &raw, false),
                }
            }
        };
        let extra = response.headers_mut();
        extra.insert(X_STUB_REGION, self.region_header.clone());
        extra.insert(X_STUB_ATTEMPT, HeaderValue::from(attempt));
        // What hosted APIs send beside an answer: a request id and timing, and a cookie
        // (a client must keep the first two and never the third).
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Ok(v) = HeaderValue::from_str(&format!("req-stub{id:012x}")) {
            extra.insert(HeaderName::from_static("x-request-id"), v);
        }
        extra.insert(
            HeaderName::from_static("openai-processing-ms"),
            HeaderValue::from(self.config.latency.as_millis() as u64),
        );
        extra.insert(axum::http::header::SET_COOKIE, HeaderValue::from_static("__stub_session=do-not-keep; HttpOnly"));
        response
    }

    /// Decodes the request and builds the success body; with `broken`, the
    /// serialized JSON is cut in half (see [`Fault::BrokenBody`]).
    fn answer(&self, endpoint: Endpoint, raw: &[u8], broken: bool) -> Response {
        let answer = match endpoint {
            Endpoint::Chat => decode::<ChatRequest>(raw).and_then(|req| self.chat_answer(req)),
            Endpoint::Text => decode::<CompletionRequest>(raw).and_then(|req| self.text_answer(req)),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(rejection) => return rejection.into_response(),
        };
        match serde_json::to_vec(&answer) {
            Ok(mut bytes) => {
                if broken {
                    bytes.truncate(bytes.len() / 2);
                }
                bytes_response(StatusCode::OK, bytes)
            }
            Err(err) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Could not encode the answer: {err}"),
                "server_error",
                None,
            ),
        }
    }

    fn chat_answer(&self, mut req: ChatRequest) -> Result<Value, ApiError> {
        validate_common(&req.model, req.stream)?;
        if req.messages.is_empty() {
            return Err(invalid_request("'messages' must contain at least one message."));
        }
        self.stats.note_model(&req.model);
        let prompt = req.prompt_text();
        // The instructions this deployment runs under: its own system prompt, then the
        // client's system messages.
        let server_system = self.config.system_prompt_by_region.get(&self.config.region);
        let instructions: Vec<String> = server_system
            .cloned()
            .into_iter()
            .chain(req.messages.iter().filter(|m| m.role == "system").map(|m| m.text()))
            .collect();
        let stop = req.stop.take().map(StopSpec::into_vec).unwrap_or_default();
        let prompt_tokens = count_tokens(&prompt);
        let (choice, completion_tokens) = if let Some(choice) = self.block(&req.model, &prompt, true)? {
            (choice, 0)
        } else if self.emptier.refuses(&prompt) {
            (json!({"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "stop"}), 0)
        } else {
            let subject = req.subject();
            let lower = subject.to_lowercase();
            let strict =
                server_system.is_some() && Refuser::new(self.config.refuse_markers_with_system.iter()).refuses(&prompt);
            let (content, finish_reason) = if lower.contains("repeat") && lower.contains("instructions") {
                // Asked to repeat its instructions, it does, word for word.
                let text = if instructions.is_empty() { "NONE".to_owned() } else { instructions.join("\n") };
                apply_limits(text, &stop, req.token_budget())
            } else if strict {
                apply_limits(REFUSAL_TEXT.to_owned(), &stop, req.token_budget())
            } else {
                self.generate(&req.model, &subject, &prompt, &stop, req.token_budget())
            };
            let n = count_tokens(&content);
            (
                json!({"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}),
                n,
            )
        };
        let mut answer = json!({
            "id": format!("chatcmpl-stub{:012x}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            "object": "chat.completion",
            "created": unix_now(),
            "model": self.reported_model(&req.model),
            "choices": [choice],
            "usage": usage(prompt_tokens, completion_tokens),
        });
        if let Some(fp) = &self.config.system_fingerprint {
            answer["system_fingerprint"] = json!(fp);
        }
        Ok(answer)
    }

    /// The provider's filter, if it blocks this prompt: an error answer, or the choice of a
    /// `200` that says the filter stopped it.
    fn block(&self, model: &str, prompt: &str, chat: bool) -> Result<Option<Value>, ApiError> {
        if !self.blocker.refuses(prompt) {
            return Ok(None);
        }
        match blocked(self.config.block_form, model, chat) {
            Blocked::Error(status, body) => {
                Err(ApiError { status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), body })
            }
            Blocked::Choice(choice) => Ok(Some(choice)),
        }
    }

    fn text_answer(&self, mut req: CompletionRequest) -> Result<Value, ApiError> {
        validate_common(&req.model, req.stream)?;
        let stop = req.stop.take().map(StopSpec::into_vec).unwrap_or_default();
        let prompts = req.prompts();
        if prompts.is_empty() {
            return Err(invalid_request("'prompt' must not be an empty list."));
        }
        self.stats.note_model(&req.model);
        let mut prompt_tokens = 0;
        let mut completion_tokens = 0;
        let choices: Vec<Value> = prompts
            .iter()
            .enumerate()
            .map(|(index, prompt)| {
                prompt_tokens += count_tokens(prompt);
                if let Some(mut choice) = self.block(&req.model, prompt, false)? {
                    choice["index"] = json!(index);
                    return Ok(choice);
                }
                let (text, finish_reason) = self.generate(&req.model, prompt, prompt, &stop, req.max_tokens);
                completion_tokens += count_tokens(&text);
                Ok(json!({
                    "index": index,
                    "text": text,
                    "logprobs": null,
                    "finish_reason": finish_reason,
                }))
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(json!({
            "id": format!("cmpl-stub{:012x}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            "object": "text_completion",
            "created": unix_now(),
            "model": self.reported_model(&req.model),
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens),
        }))
    }

    /// Produces the (possibly refused, then truncated) answer text.
    fn generate(
        &self,
        model: &str,
        subject: &str,
        prompt: &str,
        stop: &[String],
        budget: Option<u64>,
    ) -> (String, &'static str) {
        let text = if self.config.grader && prompt.contains("parallax-judge") {
            if prompt.contains(REFUSAL_TEXT) { "refusal" } else { "compliance" }.to_owned()
        } else if self.refuser.refuses(prompt) {
            REFUSAL_TEXT.to_owned()
        } else {
            answer_text(&self.config.region, model, subject)
        };
        let text = if self.config.nondeterministic_regions.contains(&self.config.region) {
            format!("{text} (variant {})", NEXT_ID.fetch_add(1, Ordering::Relaxed))
        } else {
            text
        };
        apply_limits(text, stop, budget)
    }

    /// The model name reported back: `report_model` (attribution mismatch)
    /// wins over `model_suffix` (dated alias), which wins over an echo.
    fn reported_model(&self, requested: &str) -> String {
        match (&self.config.report_model, &self.config.model_suffix) {
            (Some(reported), _) => reported.clone(),
            (None, Some(suffix)) => format!("{requested}{suffix}"),
            (None, None) => requested.to_owned(),
        }
    }

    /// Enforces `require_api_key` with OpenAI's 401 error shape.
    fn check_api_key(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.config.require_api_key else {
            return Ok(());
        };
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        if presented == Some(expected.as_str()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ))
        }
    }
}

/// Rejects what the stub cannot serve, with the error a client would get
/// from the real API.
fn validate_common(model: &str, stream: Option<bool>) -> Result<(), ApiError> {
    if model.trim().is_empty() {
        return Err(invalid_request("'model' must be a non-empty string."));
    }
    if stream == Some(true) {
        return Err(invalid_request("Streaming ('stream': true) is not supported by parallax-stub."));
    }
    Ok(())
}

/// Parses a request body, turning any JSON or schema error into a 400 with
/// an OpenAI-style error body.
fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|err| {
        if err.is_syntax() || err.is_eof() {
            invalid_request(&format!("We could not parse the JSON body of your request. ({err})"))
        } else {
            invalid_request(&format!("Invalid request body: {err}"))
        }
    })
}

fn invalid_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message, "invalid_request_error", None)
}

/// An error answer: OpenAI's shape, or a provider's own (a block).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: &str, kind: &'static str, code: Option<&'static str>) -> Self {
        ApiError { status, body: json!({"error": {"message": message, "type": kind, "param": null, "code": code}}) }
    }

    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// The response for an injected [`Fault::Status`]: the error shape the real
/// API uses for that status, so client error classification is exercised.
fn fault_status_response(status: u16, retry_after_s: Option<u64>, attempt: u64) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code) = match status.as_u16() {
        429 => ("requests", Some("rate_limit_exceeded")),
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    let message = format!("parallax-stub injected fault: HTTP {} on attempt {attempt}.", status.as_u16());
    let mut response = error_response(status, &message, kind, code);
    if let Some(secs) = retry_after_s {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `{"error":{"message","type","param","code"}}`, as the OpenAI API sends it.
fn error_response(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    json_response(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes_response(status, bytes),
        Err(_) => {
            let mut response = Response::new(Body::from(
                r#"{"error":{"message":"Could not encode the response.","type":"server_error","param":null,"code":null}}"#,
            ));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
    }
}

fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
