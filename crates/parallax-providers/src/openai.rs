//! OpenAI-compatible `/chat/completions` and `/completions` over HTTP(S): vLLM,
//! llama.cpp's server, Ollama, TGI and hosted APIs.

use std::time::{Duration, SystemTime};

use parallax_core::EndpointKind;
use serde_json::Value;

use crate::block::{self, BlockPatterns};
use crate::{
    Exchange, ExchangeFuture, Provider, RawResponse, Reply, SendError, SendFuture, SendRequest, parse_retry_after,
    scrub,
};

/// What a server may ask of a run: how long a wait (`Retry-After`) is honoured, and how
/// large an answer is read. The catalog sets them per endpoint (`max_retry_after_s`,
/// `max_response_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_retry_after: Duration,
    pub max_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_retry_after: Duration::from_secs(parallax_core::catalog::DEFAULT_MAX_RETRY_AFTER_S),
            max_response_bytes: parallax_core::catalog::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A client for one endpoint. Cheap to share: the connection pool is inside.
pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    /// Read from the environment variable the catalog names; never stored or logged.
    api_key: Option<String>,
    limits: Limits,
    block_patterns: BlockPatterns,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("limits", &self.limits)
            .field("block_patterns", &self.block_patterns)
            .finish()
    }
}

impl OpenAiProvider {
    pub fn new(base_url: &str, api_key: Option<String>, max_connections: usize) -> Result<OpenAiProvider, SendError> {
        let client = reqwest::Client::builder()
            // A redirect would send the request elsewhere (or turn it into a bodiless GET
            // whose answer is then taken for the model's): a 3xx is an answer, never followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(max_connections)
            .tcp_nodelay(true)
            .user_agent(concat!("parallax/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Connect(format!("cannot build an HTTP client: {e}")))?;
        Ok(OpenAiProvider {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            limits: Limits::default(),
            block_patterns: BlockPatterns::default(),
        })
    }

    /// The same client, taking answers that match `patterns` for provider blocks too (the
    /// catalog's `block_patterns`).
    pub fn with_block_patterns(mut self, patterns: BlockPatterns) -> OpenAiProvider {
        self.block_patterns = patterns;
        self
    }

    /// The same client, holding servers to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> OpenAiProvider {
        self.limits = limits;
        self
    }

    /// What may be stored or printed of a server's text: without anything that looks like a
    /// credential, this endpoint's key above all.
    fn clean(&self, t: &str) -> String {
        let t = match &self.api_key {
            Some(key) if !key.is_empty() => t.replace(key.as_str(), "***"),
            _ => t.to_owned(),
        };
        scrub(&t)
    }

    fn scrubbed(&self, e: SendError) -> SendError {
        e.map_text(|t| self.clean(t))
    }

    /// The model ids the server lists at `GET /models` (OpenAI's `data[].id`), asked with the
    /// endpoint's key: what a run checks before it starts. Sends no completion. A non-2xx
    /// answer is an `Http` error (401/403: the key was refused; 404: no such route).
    pub async fn list_models(&self, timeout: Duration) -> Result<Vec<String>, SendError> {
        /// A model list is small; a larger answer is not one.
        const MAX_LIST_BYTES: u64 = 4 << 20;
        let mut builder = self.client.get(format!("{}/models", self.base_url)).timeout(timeout);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let result = async {
            let mut response = builder.send().await.map_err(|e| classify(e, timeout))?;
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                return Err(redirected(&response));
            }
            let bytes = match read_capped(&mut response, MAX_LIST_BYTES).await.map_err(|e| classify(e, timeout))? {
                Body::Whole(b) => b,
                Body::Cut(b) if !(200..300).contains(&status) => b,
                Body::Cut(_) => return Err(SendError::TooLarge { status, max_bytes: MAX_LIST_BYTES }),
            };
            if !(200..300).contains(&status) {
                return Err(SendError::Http { status, message: error_message(&bytes), retry_after: None });
            }
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| SendError::BrokenBody { status, detail: format!("invalid JSON: {e}") })?;
            let list = v.get("data").or_else(|| v.get("models")).and_then(Value::as_array).ok_or_else(|| {
                SendError::BrokenBody { status, detail: "no `data` list of models in the answer".into() }
            })?;
            Ok(list
                .iter()
                .filter_map(|m| m.get("id").or_else(|| m.get("name")).and_then(Value::as_str).map(str::to_owned))
                .collect())
        }
        .await;
        result.map_err(|e| self.scrubbed(e))
    }

    /// What came back, with this endpoint's key removed wherever a server echoed it.
    fn scrubbed_raw(&self, mut raw: RawResponse) -> RawResponse {
        if let Some(key) = self.api_key.as_deref().filter(|k| !k.is_empty()) {
            let body = String::from_utf8_lossy(&raw.body);
            if body.contains(key) {
                raw.body = body.replace(key, "***").into_bytes();
            }
            for (_, v) in &mut raw.headers {
                *v = v.replace(key, "***");
            }
        }
        raw
    }

    async fn call(&self, req: SendRequest<'_>, raw: &mut Option<RawResponse>) -> Result<Reply, SendError> {
        let path = match req.kind {
            EndpointKind::OpenAiChat => "chat/completions",
            EndpointKind::OpenAiCompletions => "completions",
            EndpointKind::LocalGguf => {
                return Err(SendError::Local {
                    message: "a local-gguf request reached the HTTP provider (a bug in endpoint wiring)".into(),
                    retryable: false,
                });
            }
        };
        let mut builder = self
            .client
            .post(format!("{}/{path}", self.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", req.idempotency_key)
            .timeout(req.timeout)
            .body(req.body.to_vec());
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let mut response = builder.send().await.map_err(|e| classify(e, req.timeout))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if (300..400).contains(&status) {
            *raw = Some(RawResponse::new(status, &headers, Vec::new()));
            return Err(redirected(&response));
        }
        let retry_after_text = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let retry_after = retry_after_text.as_deref().and_then(|v| parse_retry_after(v, SystemTime::now()));
        let success = (200..300).contains(&status);
        let max = self.limits.max_response_bytes;
        let body = read_capped(&mut response, max).await.map_err(|e| classify(e, req.timeout))?;
        let (Body::Whole(bytes) | Body::Cut(bytes)) = &body;
        *raw = Some(RawResponse::new(status, &headers, bytes.clone()));
        let bytes = match body {
            Body::Whole(bytes) => bytes,
            // An error's body is only its message: its start is enough.
            Body::Cut(bytes) if !success => bytes,
            Body::Cut(_) => return Err(SendError::TooLarge { status, max_bytes: max }),
        };
        let error = if success {
            match error_in_body(&bytes) {
                Some((as_status, message)) => {
                    if let Some(block) = block::in_error(as_status, &bytes, &self.block_patterns) {
                        return Ok(blocked(status, &bytes, block));
                    }
                    SendError::ErrorInBody { status, as_status, message, retry_after }
                }
                None => return parse_reply(req.kind, status, &bytes, &self.block_patterns),
            }
        } else if let Some(block) = block::in_error(status, &bytes, &self.block_patterns) {
            return Ok(blocked(status, &bytes, block));
        } else {
            SendError::Http { status, message: error_message(&bytes), retry_after }
        };
        // A wait longer than the endpoint allows: fail now instead of holding a slot for it.
        match (retry_after, retry_after_text) {
            (Some(wait), Some(text)) if error.retryable() && wait > self.limits.max_retry_after => {
                let status = error.http_status().unwrap_or(status);
                let message = match error {
                    SendError::Http { message, .. } | SendError::ErrorInBody { message, .. } => message,
                    other => other.to_string(),
                };
                Err(SendError::WaitTooLong {
                    status,
                    retry_after: text.chars().take(100).collect(),
                    max_s: self.limits.max_retry_after.as_secs(),
                    message,
                })
            }
            _ => Err(error),
        }
    }
}

/// A 3xx, never followed: the error names where it pointed.
fn redirected(response: &reqwest::Response) -> SendError {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(300).collect())
        .unwrap_or_else(|| "(no Location header)".to_owned());
    SendError::Redirect { status: response.status().as_u16(), location }
}

/// A body read up to a cap: all of it, or its first `cap` bytes when there was more.
enum Body {
    Whole(Vec<u8>),
    Cut(Vec<u8>),
}

/// Reads at most `cap` bytes of the body (a declared length over the cap is not read at
/// all), so that a server cannot make us hold more than that.
async fn read_capped(response: &mut reqwest::Response, cap: u64) -> Result<Body, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Ok(Body::Cut(Vec::new()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = usize::try_from(cap).unwrap_or(usize::MAX).saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Body::Cut(bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Body::Whole(bytes))
}

impl Provider for OpenAiProvider {
    fn send<'a>(&'a self, request: SendRequest<'a>) -> SendFuture<'a> {
        Box::pin(async move { self.exchange(request).await.result })
    }

    fn exchange<'a>(&'a self, request: SendRequest<'a>) -> ExchangeFuture<'a> {
        Box::pin(async move {
            let mut raw = None;
            let result = self.call(request, &mut raw).await.map_err(|e| self.scrubbed(e));
            Exchange { result: result.map(|r| self.scrubbed_reply(r)), raw: raw.map(|r| self.scrubbed_raw(r)) }
        })
    }
}

impl OpenAiProvider {
    /// A block's words are the server's, stored and printed: scrubbed like its errors.
    fn scrubbed_reply(&self, mut reply: Reply) -> Reply {
        if let Some(b) = reply.block.take() {
            reply.block = Some(crate::Block { code: self.clean(&b.code), message: self.clean(&b.message) });
        }
        reply
    }
}

/// A provider block carried by an error answer: a served answer, with no text.
fn blocked(status: u16, bytes: &[u8], block: crate::Block) -> Reply {
    let v: Option<Value> = serde_json::from_slice(bytes).ok();
    Reply {
        http_status: Some(status),
        reported_model: v.as_ref().and_then(|v| v.get("model")).and_then(Value::as_str).map(str::to_owned),
        text: None,
        finish_reason: None,
        usage: v.as_ref().and_then(|v| v.get("usage")).filter(|u| !u.is_null()).cloned(),
        provenance: None,
        block: Some(block),
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> SendError {
    if e.is_timeout() {
        SendError::Timeout(timeout)
    } else if e.is_connect() {
        SendError::Connect(chain(&e))
    } else {
        SendError::Transport(chain(&e))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The server's own message from an OpenAI-style error body, else the body's start.
fn error_message(bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
            return m.to_owned();
        }
        if let Some(m) = v.get("error").and_then(Value::as_str).or(v.get("message").and_then(Value::as_str)) {
            return m.to_owned();
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let mut t: String = text.chars().take(300).collect();
    if t.is_empty() {
        t = "(empty body)".into();
    }
    t
}

/// A 2xx whose body is an error object (`{"error": …}` without `choices`): the status it
/// is classified as, and the server's message. The status is the one the error names
/// (`code` or `status` in 400–599), else one its `type`/`code` words imply, else 500 (an
/// unexplained error: transient, possibly billed).
fn error_in_body(bytes: &[u8]) -> Option<(u16, String)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let err = v.get("error").filter(|e| !e.is_null() && *e != &Value::Bool(false))?;
    if v.pointer("/choices/0").is_some() {
        return None;
    }
    let message = match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_owned),
        other => other.to_string(),
    };
    let message: String = message.chars().take(1000).collect();
    let named =
        [err.get("code"), err.get("status"), v.get("status"), v.get("code")].into_iter().flatten().find_map(|c| {
            let n = match c {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            }?;
            u16::try_from(n).ok().filter(|n| (400..600).contains(n))
        });
    if let Some(status) = named {
        return Some((status, message));
    }
    let words = [err.get("type"), err.get("code"), err.get("status")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let implied = [
        (&["rate_limit", "too_many_requests", "quota", "resource_exhausted"][..], 429),
        (&["overloaded", "unavailable"][..], 503),
        (&["timeout", "deadline"][..], 504),
        (&["auth", "invalid_api_key", "unauthenticated"][..], 401),
        (&["permission", "forbidden"][..], 403),
        (&["not_found"][..], 404),
        (
            &[
                "invalid_request",
                "bad_request",
                "invalid_argument",
                "context_length",
                "content_filter",
                "content_policy",
            ][..],
            400,
        ),
    ]
    .into_iter()
    .find(|(keys, _)| keys.iter().any(|k| words.contains(k)))
    .map_or(500, |(_, status)| status);
    Some((implied, message))
}

fn parse_reply(kind: EndpointKind, status: u16, bytes: &[u8], patterns: &BlockPatterns) -> Result<Reply, SendError> {
    let broken = |detail: String| SendError::BrokenBody { status, detail };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| broken(format!("invalid JSON: {e}")))?;
    let choice = v.pointer("/choices/0").ok_or_else(|| broken("no `choices[0]` in the answer".into()))?;
    let text = match kind {
        EndpointKind::OpenAiChat => choice.pointer("/message/content"),
        EndpointKind::OpenAiCompletions | EndpointKind::LocalGguf => choice.get("text"),
    };
    let text = match text {
        Some(Value::String(s)) => Some(s.clone()),
        // A chat model's own refusal may come in `refusal` with no content (OpenAI's
        // structured outputs): that is the answer's text.
        Some(Value::Null) | None => choice.pointer("/message/refusal").and_then(Value::as_str).map(str::to_owned),
        Some(other) => return Err(broken(format!("answer text is not a string: {other}"))),
    };
    Ok(Reply {
        block: block::in_choice(choice, patterns),
        http_status: Some(status),
        reported_model: v.get("model").and_then(Value::as_str).map(str::to_owned),
        text,
        finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned),
        usage: v.get("usage").filter(|u| !u.is_null()).cloned(),
        provenance: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chat_and_completion_answers() {
        let chat = br#"{"model":"m-2024","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}"#;
        let r = parse_reply(EndpointKind::OpenAiChat, 200, chat, &BlockPatterns::default()).unwrap();
        assert_eq!(r.text.as_deref(), Some("hi"));
        assert_eq!(r.reported_model.as_deref(), Some("m-2024"));
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        let raw = br#"{"model":"b","choices":[{"text":" world","finish_reason":"length"}]}"#;
        let r = parse_reply(EndpointKind::OpenAiCompletions, 200, raw, &BlockPatterns::default()).unwrap();
        assert_eq!(r.text.as_deref(), Some(" world"));
        assert_eq!(r.usage, None);
    }

    #[test]
    fn broken_bodies_are_possibly_billed_and_retryable() {
        let e = parse_reply(EndpointKind::OpenAiChat, 200, b"{\"choices\": [", &BlockPatterns::default()).unwrap_err();
        assert!(matches!(e, SendError::BrokenBody { .. }));
        assert!(e.possibly_billed() && e.retryable());
    }

    #[test]
    fn error_statuses_are_classified() {
        let http = |status| SendError::Http { status, message: String::new(), retry_after: None };
        assert!(http(429).retryable() && !http(429).possibly_billed());
        assert!(http(503).retryable() && !http(503).possibly_billed());
        assert!(http(500).retryable() && http(500).possibly_billed());
        assert!(http(504).retryable() && http(504).possibly_billed());
        assert!(!http(400).retryable() && !http(400).possibly_billed());
        assert!(!http(404).retryable());
        assert!(SendError::Connect("refused".into()).retryable());
        assert!(!SendError::Connect("refused".into()).possibly_billed());
    }

    #[test]
    fn an_error_object_in_a_success_is_classified_like_its_status() {
        let cases: [(&[u8], Option<u16>); 8] = [
            (br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#, Some(429)),
            (br#"{"error":{"message":"gone","code":404}}"#, Some(404)),
            (br#"{"error":{"message":"x","status":"503"}}"#, Some(503)),
            (br#"{"error":{"message":"busy","type":"overloaded_error"}}"#, Some(503)),
            (br#"{"error":"something broke"}"#, Some(500)),
            (br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#, Some(400)),
            (br#"{"error":null,"choices":[]}"#, None),
            (br#"{"error":{"message":"ignored"},"choices":[{"message":{"content":"hi"}}]}"#, None),
        ];
        for (body, status) in cases {
            assert_eq!(error_in_body(body).map(|(s, _)| s), status, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(error_in_body(br#"{"error":{"message":"slow down","type":"rate_limit"}}"#).unwrap().1, "slow down");
        let e = SendError::ErrorInBody { status: 200, as_status: 429, message: "m".into(), retry_after: None };
        assert!(e.retryable() && !e.possibly_billed());
        assert_eq!(e.http_status(), Some(200));
    }

    #[test]
    fn redirects_and_oversized_answers_are_terminal() {
        let r = SendError::Redirect { status: 302, location: "http://elsewhere/".into() };
        assert!(!r.retryable() && !r.possibly_billed());
        let t = SendError::TooLarge { status: 200, max_bytes: 8 };
        assert!(!t.retryable() && t.possibly_billed());
        let w = SendError::WaitTooLong { status: 429, retry_after: "1e300".into(), max_s: 60, message: "m".into() };
        assert!(!w.retryable() && !w.possibly_billed());
        assert!(w.to_string().contains("Retry-After: 1e300") && w.to_string().contains("max_retry_after_s (60 s)"));
    }

    #[test]
    fn error_message_prefers_the_servers_words() {
        assert_eq!(error_message(br#"{"error":{"message":"model not found","type":"x"}}"#), "model not found");
        assert_eq!(error_message(b""), "(empty body)");
    }
}
