//! Provider blocks: a content filter that answered instead of the model.
//!
//! A block is an answer, not a failure: dropping it from the results would take it out of
//! the refusal rate's denominator, and a region that blocks more would show a *lower*
//! refusal rate. So a block ends its execution `succeeded`, never retried, with the
//! provider's own words kept as evidence.
//!
//! The forms recognised, from the providers' documentation:
//!
//! - **OpenAI**: HTTP 400 with `code: invalid_prompt` ("your prompt was flagged as potentially
//!   violating our usage policy") or `content_policy_violation`; `finish_reason:
//!   content_filter` on an answer cut by the filter.
//! - **Azure OpenAI**: HTTP 400 with `code: content_filter` and `innererror.code:
//!   ResponsibleAIPolicyViolation` ("…triggering Azure OpenAI's content management policy");
//!   `finish_reason: content_filter` with `content_filter_results` on the choice.
//! - **OpenRouter**: HTTP 403 whose message says the input was flagged (moderation), with
//!   `metadata.reasons`; a filtered completion's `finish_reason: content_filter`.
//! - **Gemini** (OpenAI-compatible endpoint): `finish_reason: content_filter` for its
//!   `SAFETY`, `PROHIBITED_CONTENT`, `BLOCKLIST` and `SPII` stops; a blocked prompt's HTTP 400
//!   naming `SAFETY` or a `blockReason`.
//! - **Anthropic** (OpenAI SDK compatibility): a stop by its safety classifiers, reported as
//!   `finish_reason: content_filter` (or its native `refusal` stop reason).
//!
//! A catalog endpoint may add its own patterns (`block_patterns`, regular expressions matched
//! case-insensitively against the error's code, type and message, or the finish reason).

use serde_json::Value;

/// What the provider's filter said, in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The provider's code for it (`content_filter`, `invalid_prompt`, …), else the HTTP
    /// status that carried it.
    pub code: String,
    /// The provider's message, or what the answer said about the stop.
    pub message: String,
}

/// Finish reasons that mean the provider's filter stopped the answer.
const FINISH_REASONS: &[&str] =
    &["content_filter", "content-filter", "safety", "prohibited_content", "blocklist", "spii", "refusal"];

/// Words in an error's code, type or message that mean a content filter refused the
/// request. Lower case; matched as substrings of the lower-cased text.
const ERROR_WORDS: &[&str] = &[
    "content_filter",
    "content filter",
    "content-filter",
    "content_policy",
    "content policy",
    "content management policy",
    "responsibleaipolicyviolation",
    "usage policy",
    "usage policies",
    "invalid_prompt",
    "flagged",
    "moderation",
    "prohibited_content",
    "blockreason",
    "block_reason",
    "safety",
];

/// Statuses a provider blocks with: a bad request, forbidden, unprocessable, or
/// unavailable for legal reasons. An auth failure (401) or a missing model (404) is never
/// a block, whatever its message says.
const BLOCK_STATUSES: &[u16] = &[400, 403, 422, 451];

/// An endpoint's own block patterns, compiled.
#[derive(Debug, Clone, Default)]
pub struct BlockPatterns(Vec<regex::Regex>);

impl BlockPatterns {
    /// Compiles the patterns (case-insensitive). The catalog validated them already; a
    /// pattern that does not compile is reported here too.
    pub fn new(patterns: &[String]) -> Result<BlockPatterns, String> {
        patterns
            .iter()
            .map(|p| parallax_core::catalog::block_pattern(p).map_err(|e| format!("block pattern `{p}`: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(BlockPatterns)
    }

    fn matches(&self, text: &str) -> bool {
        self.0.iter().any(|r| r.is_match(text))
    }
}

/// A block in an error answer (`status` is the status the error is classified as).
pub(crate) fn in_error(status: u16, body: &[u8], patterns: &BlockPatterns) -> Option<Block> {
    if !BLOCK_STATUSES.contains(&status) {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error").unwrap_or(&v);
    let text_of = |p: &str| {
        err.pointer(p).and_then(|x| match x {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let code = text_of("/code");
    let kind = text_of("/type");
    let inner = text_of("/innererror/code");
    let message = match err {
        Value::String(s) => Some(s.clone()),
        _ => text_of("/message"),
    };
    // OpenRouter names what was flagged in `metadata.reasons`; Gemini in a `blockReason`.
    let reasons = err.pointer("/metadata/reasons").map(Value::to_string);
    let haystack = [&code, &kind, &inner, &message, &reasons]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let lower = haystack.to_lowercase();
    let filtered = ERROR_WORDS.iter().any(|w| lower.contains(w))
        || err.get("content_filter_result").is_some()
        || patterns.matches(&haystack);
    filtered.then(|| Block {
        code: inner.or(code).or(kind).unwrap_or_else(|| status.to_string()),
        message: cap(message.unwrap_or_else(|| haystack.clone())),
    })
}

/// A block in a successful answer: a finish reason that says the filter stopped it.
pub(crate) fn in_choice(choice: &Value, patterns: &BlockPatterns) -> Option<Block> {
    let reason = choice.get("finish_reason").and_then(Value::as_str)?;
    let lower = reason.to_ascii_lowercase();
    if !FINISH_REASONS.contains(&lower.as_str()) && !patterns.matches(reason) {
        return None;
    }
    // Azure lists which category filtered it; OpenAI's chat may carry the model's own
    // refusal message.
    let detail = choice
        .get("content_filter_results")
        .filter(|v| !v.is_null())
        .map(|v| format!("content_filter_results: {v}"))
        .or_else(|| choice.pointer("/message/refusal").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| format!("the answer stopped with finish_reason `{reason}`"));
    Some(Block { code: reason.to_owned(), message: cap(detail) })
}

fn cap(s: String) -> String {
    if s.chars().count() <= 1000 { s } else { s.chars().take(1000).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> BlockPatterns {
        BlockPatterns::default()
    }

    #[test]
    fn the_documented_error_forms_are_blocks() {
        let cases: [(u16, &str, &str); 4] = [
            // OpenAI
            (
                400,
                r#"{"error":{"message":"Invalid prompt: your prompt was flagged as potentially violating our usage policy.","type":"invalid_request_error","param":null,"code":"invalid_prompt"}}"#,
                "invalid_prompt",
            ),
            // Azure OpenAI
            (
                400,
                r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#,
                "ResponsibleAIPolicyViolation",
            ),
            // OpenRouter
            (
                403,
                r#"{"error":{"code":403,"message":"openai/gpt-4o requires moderation on OpenAI. Your input was flagged for \"violence\".","metadata":{"reasons":["violence"],"flagged_input":"...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"#,
                "403",
            ),
            // Gemini's OpenAI-compatible endpoint, a blocked prompt
            (
                400,
                r#"{"error":{"message":"The prompt was blocked: blockReason SAFETY","code":400,"status":"INVALID_ARGUMENT"}}"#,
                "400",
            ),
        ];
        for (status, body, code) in cases {
            let b = in_error(status, body.as_bytes(), &none()).unwrap_or_else(|| panic!("not a block: {body}"));
            assert_eq!(b.code, code, "{body}");
            assert!(!b.message.is_empty());
        }
    }

    #[test]
    fn other_client_errors_are_not_blocks() {
        for (status, body) in [
            (400, r#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error","code":null}}"#),
            (401, r#"{"error":{"message":"Incorrect API key (flagged)","code":"invalid_api_key"}}"#),
            (404, r#"{"error":{"message":"The model does not exist (content policy)"}}"#),
            (400, "not json"),
        ] {
            assert_eq!(in_error(status, body.as_bytes(), &none()), None, "{body}");
        }
    }

    #[test]
    fn a_catalogs_patterns_add_forms() {
        let body =
            br#"{"error":{"message":"Request rejected by the regional guardrail G-7","code":"guardrail_intervened"}}"#;
        assert_eq!(in_error(400, body, &none()), None);
        let p = BlockPatterns::new(&["GUARDRAIL_intervened".into()]).unwrap();
        let b = in_error(400, body, &p).unwrap();
        assert_eq!(b.code, "guardrail_intervened");
        assert!(b.message.contains("regional guardrail"));
        let choice = serde_json::json!({"finish_reason": "guardrail_intervened", "message": {"content": ""}});
        assert_eq!(in_choice(&choice, &p).unwrap().code, "guardrail_intervened");
        assert!(BlockPatterns::new(&["(unclosed".into()]).is_err());
    }

    #[test]
    fn a_filtered_finish_is_a_block_and_an_ordinary_one_is_not() {
        let azure = serde_json::json!({
            "finish_reason": "content_filter",
            "message": {"role": "assistant", "content": null},
            "content_filter_results": {"violence": {"filtered": true, "severity": "medium"}}
        });
        let b = in_choice(&azure, &none()).unwrap();
        assert_eq!(b.code, "content_filter");
        assert!(b.message.contains("violence"));
        for reason in ["stop", "length", "tool_calls"] {
            assert_eq!(in_choice(&serde_json::json!({"finish_reason": reason}), &none()), None);
        }
        assert_eq!(in_choice(&serde_json::json!({"finish_reason": "SAFETY"}), &none()).unwrap().code, "SAFETY");
    }
}
