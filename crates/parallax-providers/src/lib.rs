//! Providers: send one rendered request to one endpoint and say what came back.
//!
//! A provider never sees the store and never changes a request: it sends the exact
//! bytes it is given, with an `Idempotency-Key` header, and classifies what happened
//! the way `LEDGER.md` asks — was the call possibly billed, may it be retried, did the
//! server ask us to wait. Decisions (retry, park, fail) belong to the runner.

mod openai;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use openai::OpenAiProvider;
use parallax_core::EndpointKind;

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
            SendError::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            SendError::Local { retryable, .. } => *retryable,
        }
    }

    /// Whether the request may have reached the model and been paid for.
    pub fn possibly_billed(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::Local { .. } => false,
            SendError::Timeout(_) | SendError::Transport(_) | SendError::BrokenBody { .. } => true,
            // 408/429/503 are refusals to start the work; other 5xx may come after it.
            SendError::Http { status, .. } => *status >= 500 && *status != 503,
        }
    }

    /// The wait the server asked for (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            SendError::Http { status, .. } | SendError::BrokenBody { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, SendError>> + Send + 'a>>;

/// Sends rendered requests to one endpoint.
pub trait Provider: Send + Sync {
    fn send<'a>(&'a self, request: SendRequest<'a>) -> SendFuture<'a>;
}
