//! OpenAI-compatible `/chat/completions` and `/completions` over HTTP(S): vLLM,
//! llama.cpp's server, Ollama, TGI and hosted APIs.

use std::time::Duration;

use parallax_core::EndpointKind;
use serde_json::Value;

use crate::{Provider, Reply, SendError, SendFuture, SendRequest};

/// A client for one endpoint. Cheap to share: the connection pool is inside.
pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    /// Read from the environment variable the catalog names; never stored or logged.
    api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OpenAiProvider {
    pub fn new(base_url: &str, api_key: Option<String>, max_connections: usize) -> Result<OpenAiProvider, SendError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_connections)
            .tcp_nodelay(true)
            .user_agent(concat!("parallax/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Connect(format!("cannot build an HTTP client: {e}")))?;
        Ok(OpenAiProvider { client, base_url: base_url.trim_end_matches('/').to_owned(), api_key })
    }

    async fn call(&self, req: SendRequest<'_>) -> Result<Reply, SendError> {
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
        let response = builder.send().await.map_err(|e| classify(e, req.timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let bytes = response.bytes().await.map_err(|e| classify(e, req.timeout))?;
        if !(200..300).contains(&status) {
            return Err(SendError::Http { status, message: error_message(&bytes), retry_after });
        }
        parse_reply(req.kind, status, &bytes)
    }
}

impl Provider for OpenAiProvider {
    fn send<'a>(&'a self, request: SendRequest<'a>) -> SendFuture<'a> {
        Box::pin(self.call(request))
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

fn parse_reply(kind: EndpointKind, status: u16, bytes: &[u8]) -> Result<Reply, SendError> {
    let broken = |detail: String| SendError::BrokenBody { status, detail };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| broken(format!("invalid JSON: {e}")))?;
    let choice = v.pointer("/choices/0").ok_or_else(|| broken("no `choices[0]` in the answer".into()))?;
    let text = match kind {
        EndpointKind::OpenAiChat => choice.pointer("/message/content"),
        EndpointKind::OpenAiCompletions | EndpointKind::LocalGguf => choice.get("text"),
    };
    let text = match text {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => return Err(broken(format!("answer text is not a string: {other}"))),
    };
    Ok(Reply {
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
        let r = parse_reply(EndpointKind::OpenAiChat, 200, chat).unwrap();
        assert_eq!(r.text.as_deref(), Some("hi"));
        assert_eq!(r.reported_model.as_deref(), Some("m-2024"));
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        let raw = br#"{"model":"b","choices":[{"text":" world","finish_reason":"length"}]}"#;
        let r = parse_reply(EndpointKind::OpenAiCompletions, 200, raw).unwrap();
        assert_eq!(r.text.as_deref(), Some(" world"));
        assert_eq!(r.usage, None);
    }

    #[test]
    fn broken_bodies_are_possibly_billed_and_retryable() {
        let e = parse_reply(EndpointKind::OpenAiChat, 200, b"{\"choices\": [").unwrap_err();
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
    fn error_message_prefers_the_servers_words() {
        assert_eq!(error_message(br#"{"error":{"message":"model not found","type":"x"}}"#), "model not found");
        assert_eq!(error_message(b""), "(empty body)");
    }
}
