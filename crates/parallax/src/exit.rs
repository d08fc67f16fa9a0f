//! Exit codes, every verb: 0 success; 1 the run finished but some items failed or were
//! parked; 2 bad input (arguments, spec, catalog); 3 store or internal error; 130
//! interrupted.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success = 0,
    SomeFailed = 1,
    Interrupted = 130,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code as u8)
    }
}

/// Why a command could not do its work.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: arguments, spec or catalog. Exit 2.
    Input(anyhow::Error),
    /// The store or something internal failed. Exit 3.
    Internal(anyhow::Error),
}

impl Failure {
    pub fn input(e: impl Into<anyhow::Error>) -> Failure {
        Failure::Input(e.into())
    }

    pub fn report(self) -> ExitCode {
        let (e, code) = match self {
            Failure::Input(e) => (e, 2),
            Failure::Internal(e) => (e, 3),
        };
        // Errors quote files and servers: nothing in them may act on the terminal.
        let safe = |t: String| crate::output::terminal_safe(&t);
        eprintln!("error: {}", safe(e.to_string()));
        let mut source = e.source();
        let mut first = true;
        while let Some(s) = source {
            if first {
                eprintln!("\nCaused by:");
                first = false;
            }
            eprintln!("  {}", safe(s.to_string()));
            source = s.source();
        }
        ExitCode::from(code)
    }
}

impl From<parallax_store::StoreError> for Failure {
    fn from(e: parallax_store::StoreError) -> Failure {
        match e {
            parallax_store::StoreError::NoSuchJob(_) | parallax_store::StoreError::Location(_) => {
                Failure::Input(e.into())
            }
            e => Failure::Internal(e.into()),
        }
    }
}

impl From<parallax_app::AppError> for Failure {
    fn from(e: parallax_app::AppError) -> Failure {
        use parallax_app::AppError;
        match e {
            AppError::Input(message) => Failure::Input(anyhow::Error::msg(message)),
            AppError::Store(e) => e.into(),
            AppError::Run(e) => e.into(),
            AppError::Internal(message) => Failure::Internal(anyhow::Error::msg(message)),
        }
    }
}

impl From<parallax_runner::RunError> for Failure {
    fn from(e: parallax_runner::RunError) -> Failure {
        Failure::Internal(e.into())
    }
}

pub type Outcome = Result<Code, Failure>;
