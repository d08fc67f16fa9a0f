//! What can go wrong in the application, sorted by who must act.

use parallax_runner::RunError;
use parallax_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input — a spec, a catalog, a flag, the environment. The message names the file,
    /// the field and the fix; the user must change something before trying again.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
    /// This process could not do its part (a client or a task could not start).
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn input(message: impl Into<String>) -> AppError {
        AppError::Input(message.into())
    }

    pub fn internal(message: impl std::fmt::Display) -> AppError {
        AppError::Internal(message.to_string())
    }
}
