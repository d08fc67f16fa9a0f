//! Reading the catalog and spec from disk, with every problem reported at once.

use std::path::Path;

use parallax_core::{Catalog, Diagnostics, JobSpec, Plan};

use crate::AppError;
use crate::local::{self, LocalUnit};

pub fn catalog(path: &Path) -> Result<Catalog, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AppError::input(format!(
            "cannot read the catalog `{}`: {e}\n\nhint: pass `--config FILE` or set PARALLAX_CONFIG; a catalog maps regions to endpoints",
            path.display()
        ))
    })?;
    Catalog::parse(&text, path).map_err(|d| diagnostics("catalog", d))
}

pub fn spec(path: &Path) -> Result<JobSpec, AppError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AppError::input(format!("cannot read the job spec `{}`: {e}", path.display())))?;
    let mut read = |p: &Path| std::fs::read_to_string(p);
    JobSpec::parse(&text, path, &mut read).map_err(|d| diagnostics("job spec", d))
}

/// The spec, the catalog, the plan they make, and the plan's local models.
pub fn plan(spec_path: &Path, catalog_path: &Path) -> Result<(JobSpec, Catalog, Plan, Vec<LocalUnit>), AppError> {
    // Read both before failing, so the user sees every problem in one go.
    let spec = spec(spec_path);
    let catalog = catalog(catalog_path);
    let (spec, catalog) = match (spec, catalog) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
        (Err(AppError::Input(a)), Err(AppError::Input(b))) => return Err(AppError::input(format!("{a}\n{b}"))),
        (Err(e), Err(_)) => return Err(e),
    };
    let (plan, units) = plan_of(&spec, &catalog, catalog_path)?;
    Ok((spec, catalog, plan, units))
}

/// The plan of a spec already read, and its local models (read from their files, which
/// `catalog_path`'s directory anchors).
pub fn plan_of(spec: &JobSpec, catalog: &Catalog, catalog_path: &Path) -> Result<(Plan, Vec<LocalUnit>), AppError> {
    let units = local::units(spec, catalog, catalog_path)?;
    let context = local::plan_context(&units);
    let plan = Plan::build_with(spec, catalog, &context).map_err(|d| diagnostics("job spec", d))?;
    Ok((plan, units))
}

fn diagnostics(what: &str, d: Diagnostics) -> AppError {
    AppError::input(format!("invalid {what}: {}", d.to_string().trim_end()))
}
