//! What came back, kept as it came: the body, the headers that identify the server, and
//! the body's `system_fingerprint`. What a region served is evidence only if it is kept.

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Headers that say which server, deployment or build answered, or how it was limited.
/// Only these are kept: never `set-cookie`, `authorization` or anything else that may carry
/// a credential.
const KEPT_HEADERS: &[&str] = &[
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
    "openai-model",
    "server",
    "via",
    "cf-ray",
    "x-envoy-upstream-service-time",
    "apim-request-id",
    "azureml-model-deployment",
    "x-ms-region",
    "x-ms-deployment-name",
    "x-ms-rai-invoked",
    "x-model-id",
    "x-served-by",
    "retry-after",
];

/// Prefixes of kept headers: rate-limit state, which differs by region and key.
const KEPT_PREFIXES: &[&str] = &["x-ratelimit-", "anthropic-ratelimit-", "ratelimit-"];

/// At most this many headers, and this many characters of each value, are kept.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_CHARS: usize = 300;

/// One answer as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub http_status: u16,
    /// The kept headers, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as read (up to the endpoint's `max_response_bytes`).
    pub body: Vec<u8>,
    /// The body's `system_fingerprint`, where it has one.
    pub system_fingerprint: Option<String>,
}

impl RawResponse {
    pub(crate) fn new(http_status: u16, headers: &HeaderMap, body: Vec<u8>) -> RawResponse {
        let system_fingerprint = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("system_fingerprint").and_then(Value::as_str).map(str::to_owned))
            .map(|f| f.chars().take(MAX_HEADER_CHARS).collect());
        RawResponse { http_status, headers: kept_headers(headers), body, system_fingerprint }
    }
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            KEPT_HEADERS.contains(&n) || KEPT_PREFIXES.iter().any(|p| n.starts_with(p))
        })
        .take(MAX_HEADERS)
        .map(|(name, value)| {
            let value: String = String::from_utf8_lossy(value.as_bytes()).chars().take(MAX_HEADER_CHARS).collect();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    #[test]
    fn only_identifying_headers_are_kept_never_credentials() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("x-request-id", "req-1"),
            ("set-cookie", "session=secret"),
            ("authorization", "Bearer sk-secret"),
            ("x-ratelimit-remaining-requests", "99"),
            ("openai-processing-ms", "12"),
            ("x-api-key", "sk-secret"),
            ("server", "uvicorn"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let raw = RawResponse::new(200, &h, br#"{"system_fingerprint":"fp_abc","choices":[]}"#.to_vec());
        let names: Vec<&str> = raw.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-request-id", "x-ratelimit-remaining-requests", "openai-processing-ms", "server"]);
        assert!(!format!("{:?}", raw.headers).contains("secret"));
        assert_eq!(raw.system_fingerprint.as_deref(), Some("fp_abc"));
    }
}
