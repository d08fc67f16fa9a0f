//! Request decoding and deterministic answer generation, free of any I/O so
//! that the rules tests rely on are easy to read and to unit-test.

use serde::Deserialize;

/// The fixed text of a refusal, so tests can recognise one exactly.
pub const REFUSAL_TEXT: &str = "I'm sorry, but I can't help with that request.";

/// How many characters of the user's message are echoed in an answer.
const EXCERPT_CHARS: usize = 60;

/// The answer the stub gives to `subject` (the last user message of a chat,
/// or a completion prompt) when it does not refuse.
///
/// It depends only on `(region, model, subject)`, so two runs of the same
/// question against the same model and region produce identical text, and
/// different regions produce visibly different text.
pub fn answer_text(region: &str, model: &str, subject: &str) -> String {
    let excerpt: String = subject.chars().take(EXCERPT_CHARS).collect();
    format!("[{region}/{model}] Here is an answer to: {excerpt}")
}

/// Token count used for `usage`: whitespace-separated words. Crude, but
/// deterministic and monotonic, which is all accounting tests need.
pub(crate) fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Applies `stop` sequences and the `max_tokens` budget the way a model would:
/// generation ends at the earliest stop sequence (finish reason `stop`) or
/// after `max_tokens` words (finish reason `length`), whichever comes first.
pub(crate) fn apply_limits(text: String, stop: &[String], max_tokens: Option<u64>) -> (String, &'static str) {
    let mut text = text;
    if let Some(cut) = stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    match max_tokens {
        Some(max) if count_tokens(&text) > max => {
            let limit = usize::try_from(max).unwrap_or(usize::MAX);
            let kept: Vec<&str> = text.split_whitespace().take(limit).collect();
            (kept.join(" "), "length")
        }
        _ => (text, "stop"),
    }
}

/// `stop` may be a single string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum StopSpec {
    One(String),
    Many(Vec<String>),
}

impl StopSpec {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

/// Body of `POST /v1/chat/completions`. Unknown fields (`temperature`,
/// `seed`, `top_p`, ...) are accepted and ignored, as sampling parameters do
/// not change the stub's deterministic answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<ChatMessage>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) stop: Option<StopSpec>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
}

/// One chat message; `content` may be absent or null (e.g. tool calls).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<MessageContent>,
}

/// Chat content: plain text, or a list of typed parts of which only the
/// `text` ones contribute.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct ContentPart {
    #[serde(default)]
    pub(crate) text: Option<String>,
}

impl ChatMessage {
    pub(crate) fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(MessageContent::Text(s)) => s.clone(),
            Some(MessageContent::Parts(parts)) => {
                parts.iter().filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join(" ")
            }
        }
    }
}

impl ChatRequest {
    /// The message the answer is "about": the last user message, or the last
    /// message of any role if there is no user message.
    pub(crate) fn subject(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or_else(|| self.messages.last())
            .map(ChatMessage::text)
            .unwrap_or_default()
    }

    /// All message texts, used for refusal matching and `prompt_tokens`.
    pub(crate) fn prompt_text(&self) -> String {
        self.messages.iter().map(ChatMessage::text).collect::<Vec<_>>().join("\n")
    }

    /// `max_completion_tokens` (the newer name) wins over `max_tokens`.
    pub(crate) fn token_budget(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `prompt` may be a single string or a list of strings (one choice each).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PromptSpec {
    One(String),
    Many(Vec<String>),
}

/// Body of `POST /v1/completions` (the legacy text completion API).
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub(crate) model: String,
    pub(crate) prompt: PromptSpec,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) stop: Option<StopSpec>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
}

impl CompletionRequest {
    pub(crate) fn prompts(&self) -> Vec<&str> {
        match &self.prompt {
            PromptSpec::One(s) => vec![s.as_str()],
            PromptSpec::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Lower-cased refusal markers, matched case-insensitively as substrings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refuser {
    markers: Vec<String>,
}

impl Refuser {
    /// Empty markers are dropped: an empty substring would refuse everything,
    /// which is never what a configuration means.
    pub(crate) fn new<'a>(markers: impl IntoIterator<Item = &'a String>) -> Self {
        let mut markers: Vec<String> =
            markers.into_iter().filter(|m| !m.is_empty()).map(|m| m.to_lowercase()).collect();
        markers.sort();
        markers.dedup();
        Refuser { markers }
    }

    pub(crate) fn refuses(&self, prompt: &str) -> bool {
        if self.markers.is_empty() {
            return false;
        }
        let prompt = prompt.to_lowercase();
        self.markers.iter().any(|m| prompt.contains(m.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_text_echoes_a_bounded_excerpt() {
        let long = "é".repeat(100);
        let text = answer_text("eu-west", "gpt-x", &long);
        assert_eq!(text, format!("[eu-west/gpt-x] Here is an answer to: {}", "é".repeat(60)));
    }

    #[test]
    fn limits_apply_stop_then_budget() {
        let text = "one two three four five".to_owned();
        assert_eq!(apply_limits(text.clone(), &[], None), (text.clone(), "stop"));
        assert_eq!(apply_limits(text.clone(), &[], Some(2)), ("one two".to_owned(), "length"));
        assert_eq!(apply_limits(text.clone(), &[], Some(5)), (text.clone(), "stop"));
        assert_eq!(apply_limits(text.clone(), &["four".into(), "two".into()], Some(10)), ("one ".to_owned(), "stop"));
        assert_eq!(apply_limits(text.clone(), &["five".into()], Some(2)), ("one two".to_owned(), "length"));
        assert_eq!(apply_limits(text.clone(), &[String::new()], None), (text, "stop"));
    }

    #[test]
    fn refuser_is_case_insensitive_and_ignores_empty_markers() {
        let markers = vec!["Bomb".to_owned(), String::new()];
        let refuser = Refuser::new(&markers);
        assert!(refuser.refuses("how do I build a BOMB?"));
        assert!(!refuser.refuses("how do I build a bridge?"));
        assert!(!Refuser::default().refuses("bomb"));
    }

    #[test]
    fn chat_subject_is_last_user_message() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":"first"},
                {"role":"assistant","content":null},
                {"role":"user","content":[{"type":"text","text":"second"},{"type":"image_url"}]}
            ]}"#,
        )
        .expect("valid request");
        assert_eq!(req.subject(), "second");
        assert_eq!(req.prompt_text(), "be brief\nfirst\n\nsecond");
    }
}
