//! One module per verb.

pub mod cancel;
pub mod classify;
pub mod doctor;
pub mod plan;
pub mod probe;
pub mod report;
pub mod results;
pub mod run;
pub mod serve;
pub mod status;
pub mod submit;
pub mod worker;
pub mod workers;

use crate::cli::Global;
use crate::exit::Failure;
use parallax_store::Store;

/// Opens the store for reading or writing.
pub async fn open_store(global: &Global) -> Result<Store, Failure> {
    Ok(Store::open(&global.db).await?)
}

/// Opens the store only if it already exists (verbs that only read must not create one).
pub async fn open_existing_store(global: &Global) -> Result<Option<Store>, Failure> {
    if Store::sqlite_path(&global.db).is_some_and(|path| !path.exists()) {
        return Ok(None);
    }
    open_store(global).await.map(Some)
}

/// Opens an existing store for reading only (`status`, `results`, `report`, `workers`):
/// they work on a store they may not write to.
pub async fn open_store_to_read(global: &Global) -> Result<Option<Store>, Failure> {
    if Store::sqlite_path(&global.db).is_some_and(|path| !path.exists()) {
        return Ok(None);
    }
    Ok(Some(Store::open_read_only(&global.db).await?))
}

/// Warns of `sampling.extra` parameters the job's local models will not apply.
pub fn warn_ignored_extras(global: &Global, spec: &parallax_core::JobSpec, units: &[parallax_app::local::LocalUnit]) {
    let ignored = parallax_app::local::ignored_extras(spec, units);
    if !ignored.is_empty() && !global.quiet {
        let names: Vec<String> = ignored.iter().map(|k| format!("`sampling.extra.{k}`")).collect();
        eprintln!(
            "warning: local models do not apply {} (llama.cpp's are {}); the requests store it all the same",
            names.join(", "),
            parallax_core::spec::LOCAL_EXTRA.join(", ")
        );
    }
}
