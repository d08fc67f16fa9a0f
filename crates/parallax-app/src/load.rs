//! Reading the catalog and spec from disk, with every problem reported at once.

use std::io::Read;
use std::path::Path;

use parallax_core::{Catalog, Diagnostics, JobSpec, Plan, limits};

use crate::AppError;
use crate::local::{self, LocalUnit};

pub fn catalog(path: &Path) -> Result<Catalog, AppError> {
    let text = read_bounded(path, limits::MAX_SPEC_FILE_BYTES).map_err(|e| {
        AppError::input(format!(
            "cannot read the catalog `{}`: {e}\n\nhint: pass `--config FILE` or set PARALLAX_CONFIG; a catalog maps regions to endpoints",
            path.display()
        ))
    })?;
    Catalog::parse(&text, path).map_err(|d| diagnostics("catalog", d))
}

pub fn spec(path: &Path) -> Result<JobSpec, AppError> {
    let text = read_bounded(path, limits::MAX_SPEC_FILE_BYTES)
        .map_err(|e| AppError::input(format!("cannot read the job spec `{}`: {e}", path.display())))?;
    let mut read = |p: &Path| read_bounded(p, limits::MAX_QUESTION_FILE_BYTES);
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

/// Reads a file a user named as text: only a regular file (not `/dev/zero`, a FIFO or a
/// directory), and at most `max` bytes of it.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    // Looked at before opening: opening a FIFO would wait for a writer.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(Error::new(ErrorKind::InvalidInput, what));
    }
    let too_large = |n: u64| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{} bytes is larger than the {} MiB a file may have", limits::grouped(n), max >> 20),
        )
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let mut text = String::new();
    // A file that grows while it is read is still read no further than the cap.
    std::fs::File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::read_bounded;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.txt");
        std::fs::write(&file, "hello\n").unwrap();
        assert_eq!(read_bounded(&file, 100).unwrap(), "hello\n");
        let e = read_bounded(&file, 3).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(read_bounded(dir.path(), 100).unwrap_err().to_string().contains("directory"));
        #[cfg(unix)]
        assert!(
            read_bounded(std::path::Path::new("/dev/zero"), 100)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
    }
}
