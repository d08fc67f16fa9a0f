//! Providers: send one rendered request to one endpoint and say what came back.
//!
//! A provider never sees the store and never changes a request: it sends the exact
//! bytes it is given, with an `Idempotency-Key` header, and classifies what happened
//! the way `LEDGER.md` asks — was the call possibly billed, may it be retried, did the
//! server ask us to wait. Decisions (retry, park, fail) belong to the runner.

mod block;
mod openai;
mod raw;
mod retry_after;
mod scrub;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use block::{Block, BlockPatterns};
pub use openai::{Limits, OpenAiProvider};
use parallax_core::EndpointKind;
pub use raw::RawResponse;
pub use retry_after::parse_retry_after;
pub use scrub::scrub;

/// One call to make.
#[derive(Debug, Clone, Copy)]
pub struct SendRequest<'a> {
    pub kind: EndpointKind,
    /// The exact request body, rendered at plan time.
    pub body: &'a [u8],
    /// The hex SHA-256 of the execution key; the same on every attempt.
    pub idempotency_key: &'a str,
    pub timeout: Duration,
}

/// A successful answer, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status; `None` for an in-process provider.
    pub http_status: Option<u16>,
    /// The `model` field of the answer: who the server says answered.
    pub reported_model: Option<String>,
    pub text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<serde_json::Value>,
    /// What the provider can vouch for beyond the answer (see `parallax-local`).
    pub provenance: Option<serde_json::Value>,
    /// The provider's content filter answered instead of the model (see [`Block`]): the
    /// request was served and is not retried.
    pub block: Option<Block>,
}

/// Why a call did not produce an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Nothing reached the server (connection refused, DNS): not billed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request went out and no answer came in time: possibly billed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request was sent: possibly billed.
    #[error("connection lost after sending: {0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String, retry_after: Option<Duration> },
    /// A 2xx answer whose body is not a valid completion: possibly billed.
    #[error("unparseable answer (HTTP {status}): {detail}")]
    BrokenBody { status: u16, detail: String },
    /// The server asked for a wait (`Retry-After`) longer than the endpoint allows
    /// (`max_retry_after_s`): this attempt fails now rather than hold its slot that long,
    /// and the item is left for a later `run --retry-failed`.
    #[error(
        "HTTP {status}: the server asked to wait `Retry-After: {retry_after}`, longer than the endpoint's \
         max_retry_after_s ({max_s} s); not retried now (`run --retry-failed` tries again later): {message}"
    )]
    WaitTooLong { status: u16, retry_after: String, max_s: u64, message: String },
    /// A 3xx: redirects are never followed (the request would go elsewhere, or come back
    /// as a bodiless GET). Not retried.
    #[error(
        "HTTP {status}: redirected to `{location}`; parallax does not follow redirects (set `base_url` to the final address)"
    )]
    Redirect { status: u16, location: String },
    /// The answer was longer than the endpoint allows (`max_response_bytes`): reading
    /// stopped there. The request was served, so possibly billed; not retried.
    #[error(
        "HTTP {status}: the answer is larger than the endpoint's max_response_bytes ({max_bytes} bytes); reading stopped"
    )]
    TooLarge { status: u16, max_bytes: u64 },
    /// A 2xx whose body is an error object (`{"error": …}`), classified like the status
    /// the error names or implies (`as_status`); the server's message is kept.
    #[error("HTTP {status} carrying an error (taken as HTTP {as_status}): {message}")]
    ErrorInBody { status: u16, as_status: u16, message: String, retry_after: Option<Duration> },
    /// An in-process model failed (it could not load, the prompt does not fit, the file
    /// changed): never billed; retried only where another attempt may succeed.
    #[error("{message}")]
    Local { message: String, retryable: bool },
}

impl SendError {
    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::Timeout(_) | SendError::Transport(_) | SendError::BrokenBody { .. } => {
                true
            }
            SendError::Http { status, .. } | SendError::ErrorInBody { as_status: status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            SendError::WaitTooLong { .. } | SendError::Redirect { .. } | SendError::TooLarge { .. } => false,
            SendError::Local { retryable, .. } => *retryable,
        }
    }

    /// Whether the request may have reached the model and been paid for.
    pub fn possibly_billed(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::Local { .. } | SendError::Redirect { .. } => false,
            SendError::Timeout(_)
            | SendError::Transport(_)
            | SendError::BrokenBody { .. }
            | SendError::TooLarge { .. } => true,
            // 408/429/503 are refusals to start the work; other 5xx may come after it.
            SendError::Http { status, .. }
            | SendError::WaitTooLong { status, .. }
            | SendError::ErrorInBody { as_status: status, .. } => *status >= 500 && *status != 503,
        }
    }

    /// The wait the server asked for (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Http { retry_after, .. } | SendError::ErrorInBody { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The same error with every text it carries passed through `f` (used to scrub
    /// credentials before an error can be stored or printed).
    pub fn map_text(self, f: impl Fn(&str) -> String) -> SendError {
        match self {
            SendError::Connect(t) => SendError::Connect(f(&t)),
            SendError::Timeout(d) => SendError::Timeout(d),
            SendError::Transport(t) => SendError::Transport(f(&t)),
            SendError::Http { status, message, retry_after } => {
                SendError::Http { status, message: f(&message), retry_after }
            }
            SendError::BrokenBody { status, detail } => SendError::BrokenBody { status, detail: f(&detail) },
            SendError::WaitTooLong { status, retry_after, max_s, message } => {
                SendError::WaitTooLong { status, retry_after: f(&retry_after), max_s, message: f(&message) }
            }
            SendError::Redirect { status, location } => SendError::Redirect { status, location: f(&location) },
            SendError::TooLarge { status, max_bytes } => SendError::TooLarge { status, max_bytes },
            SendError::ErrorInBody { status, as_status, message, retry_after } => {
                SendError::ErrorInBody { status, as_status, message: f(&message), retry_after }
            }
            SendError::Local { message, retryable } => SendError::Local { message: f(&message), retryable },
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            SendError::Http { status, .. }
            | SendError::BrokenBody { status, .. }
            | SendError::WaitTooLong { status, .. }
            | SendError::Redirect { status, .. }
            | SendError::TooLarge { status, .. }
            | SendError::ErrorInBody { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, SendError>> + Send + 'a>>;

/// One call as it happened: what it meant, and what came back as it came (an HTTP
/// provider's body and identifying headers; `None` for an in-process model or when
/// nothing came back).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub result: Result<Reply, SendError>,
    pub raw: Option<RawResponse>,
}

pub type ExchangeFuture<'a> = Pin<Box<dyn Future<Output = Exchange> + Send + 'a>>;

/// Sends rendered requests to one endpoint.
pub trait Provider: Send + Sync {
    fn send<'a>(&'a self, request: SendRequest<'a>) -> SendFuture<'a>;

    /// [`send`](Provider::send), with what came back kept. Providers that receive a raw
    /// answer override it; the default keeps nothing.
    fn exchange<'a>(&'a self, request: SendRequest<'a>) -> ExchangeFuture<'a> {
        Box::pin(async move { Exchange { result: self.send(request).await, raw: None } })
    }
}
