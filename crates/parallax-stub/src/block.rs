//! Provider blocks as hosted APIs send them, so that a client's recognition of each form is
//! tested over the wire: an error status with the provider's error body, or a `200` whose
//! choice says the filter stopped it.

use std::str::FromStr;

use serde_json::{Value, json};

/// Which provider's form a blocking stub answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockForm {
    /// OpenAI: HTTP 400, `code: invalid_prompt`, "flagged as potentially violating our usage policy".
    #[default]
    OpenAi,
    /// Azure OpenAI, a filtered prompt: HTTP 400, `code: content_filter`,
    /// `innererror.code: ResponsibleAIPolicyViolation` with `content_filter_result`.
    Azure,
    /// Azure OpenAI, a filtered answer: HTTP 200, `finish_reason: content_filter`, no content,
    /// `content_filter_results` on the choice.
    AzureFinish,
    /// OpenRouter's moderation: HTTP 403 with `metadata.reasons`.
    OpenRouter,
    /// Gemini's OpenAI-compatible endpoint: HTTP 200, `finish_reason: content_filter`, empty content.
    Gemini,
}

impl BlockForm {
    pub const ALL: [BlockForm; 5] =
        [BlockForm::OpenAi, BlockForm::Azure, BlockForm::AzureFinish, BlockForm::OpenRouter, BlockForm::Gemini];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockForm::OpenAi => "openai",
            BlockForm::Azure => "azure",
            BlockForm::AzureFinish => "azure-finish",
            BlockForm::OpenRouter => "openrouter",
            BlockForm::Gemini => "gemini",
        }
    }
}

impl FromStr for BlockForm {
    type Err = String;

    fn from_str(s: &str) -> Result<BlockForm, String> {
        BlockForm::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = BlockForm::ALL.iter().map(|f| f.as_str()).collect();
            format!("unknown block form `{s}`: expected one of {}", names.join(", "))
        })
    }
}

/// A block: an error answer (status, body), or the choice of a `200` answer.
pub(crate) enum Blocked {
    Error(u16, Value),
    Choice(Value),
}

/// The answer of `form` to a blocked request for `model`.
pub(crate) fn blocked(form: BlockForm, model: &str, chat: bool) -> Blocked {
    let filtered =
        json!({"hate": {"filtered": false, "severity": "safe"}, "violence": {"filtered": true, "severity": "high"}});
    let empty_choice = |content: Value, extra: Option<(&str, Value)>| {
        let mut choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "content_filter"})
        } else {
            json!({"index": 0, "text": content, "finish_reason": "content_filter"})
        };
        if let Some((k, v)) = extra {
            choice[k] = v;
        }
        choice
    };
    match form {
        BlockForm::OpenAi => Blocked::Error(
            400,
            json!({"error": {
                "message": "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again with a different prompt.",
                "type": "invalid_request_error", "param": null, "code": "invalid_prompt"}}),
        ),
        BlockForm::Azure => Blocked::Error(
            400,
            json!({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": filtered}}}),
        ),
        BlockForm::AzureFinish => {
            Blocked::Choice(empty_choice(Value::Null, Some(("content_filter_results", filtered))))
        }
        BlockForm::OpenRouter => Blocked::Error(
            403,
            json!({"error": {
                "code": 403,
                "message": format!("{model} requires moderation on the provider. Your input was flagged for \"violence\"."),
                "metadata": {"reasons": ["violence"], "flagged_input": "…", "provider_name": "stub", "model_slug": model}}}),
        ),
        BlockForm::Gemini => Blocked::Choice(empty_choice(json!(""), None)),
    }
}
