//! One module per verb.

pub mod classify;
pub mod plan;
pub mod report;
pub mod results;
pub mod run;
pub mod status;

use crate::cli::Global;
use crate::exit::Failure;
use parallax_store::Store;

/// Opens the store for reading or writing.
pub async fn open_store(global: &Global) -> Result<Store, Failure> {
    Ok(Store::open(&global.db).await?)
}

/// Opens the store only if it already exists (read-only verbs must not create one).
pub async fn open_existing_store(global: &Global) -> Result<Option<Store>, Failure> {
    let path = global.db.strip_prefix("sqlite://").or(global.db.strip_prefix("sqlite:")).unwrap_or(&global.db);
    if !global.db.starts_with("postgres") && !std::path::Path::new(path).exists() {
        return Ok(None);
    }
    open_store(global).await.map(Some)
}
