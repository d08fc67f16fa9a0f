//! Errors as the API answers them: a status and a JSON body, never a stack trace.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parallax_core::Diagnostics;
use parallax_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// What went wrong: `error` is a stable code (`bad_request`, `invalid_spec`,
/// `unauthorized`, `forbidden`, `not_found`, `payload_too_large`, `store_unavailable`,
/// `internal`), `message` says it for people, `problems` lists every problem of a spec.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// One problem of a job spec, where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// The field's path, e.g. `questions[2].text` or `run.concurrency`.
    pub field: String,
    /// 1-based line and column in the submitted text; 0 when it has no single place.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, error, message: message.into(), problems: Vec::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this needs `Authorization: Bearer <token>` with a token the server knows",
        )
    }

    pub fn invalid_spec(d: &Diagnostics) -> ApiError {
        let problems: Vec<Problem> = d.0.iter().map(Problem::from).collect();
        let n = problems.len();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: "invalid_spec",
            message: format!("the job spec has {n} problem{}", if n == 1 { "" } else { "s" }),
            problems,
        }
    }
}

impl From<&parallax_core::Diagnostic> for Problem {
    fn from(d: &parallax_core::Diagnostic) -> Problem {
        Problem {
            field: d.field.clone(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoSuchJob(id) => ApiError::not_found(format!("no job `{id}`")),
            e if e.is_unavailable() => {
                tracing::warn!(error = %error_chain(&e), "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; try again",
                )
            }
            e => internal(&e),
        }
    }
}

impl From<parallax_app::AppError> for ApiError {
    fn from(e: parallax_app::AppError) -> ApiError {
        match e {
            parallax_app::AppError::Input(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", message)
            }
            parallax_app::AppError::Store(e) => e.into(),
            e => internal(&e),
        }
    }
}

impl From<parallax_runner::RunError> for ApiError {
    fn from(e: parallax_runner::RunError) -> ApiError {
        match e {
            parallax_runner::RunError::Store(e) => e.into(),
            #[allow(unreachable_patterns)]
            e => internal(&e),
        }
    }
}

/// Logged in full on the server; the client learns only that it happened.
fn internal(e: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %error_chain(e), "request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed to answer; its log says why")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
