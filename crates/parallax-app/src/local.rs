//! Local GGUF models: where a `local-gguf` endpoint's files are, what the plan needs to
//! know of each (read from the file's metadata), and the runtime that serves them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parallax_core::catalog::LocalEndpoint;
use parallax_core::gguf::{self, GgufMetadata};
use parallax_core::plan::{LocalModel, PlanContext, local_endpoint_unit};
use parallax_core::{Catalog, Endpoint, JobSpec};

use crate::AppError;
use crate::hub;

/// One local model of the plan: the unit the runner limits, and where its weights are.
#[derive(Debug, Clone)]
pub struct LocalUnit {
    /// `<region>/<endpoint>/<model>`.
    pub unit: String,
    /// `<region>/<endpoint>`: with the model id, the plan's key for the model's facts.
    pub endpoint: String,
    pub region: String,
    pub model_id: String,
    /// The provider's model name (what the plan requests and the result reports).
    pub name: String,
    pub file: PathBuf,
    pub threads: Option<usize>,
    /// The endpoint's `concurrency`: generations at once (default: as many as fit the cores).
    pub concurrency: Option<usize>,
    pub info: LocalModel,
}

/// Expands `~/` and `${VAR}` / `${VAR:-default}` in a catalog path, and resolves it against
/// the catalog's directory.
pub fn expand_path(raw: &str, catalog: &Path) -> Result<PathBuf, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`{raw}`: `${{` without a closing `}}`"))?;
        let expr = &after[..end];
        let (var, default) = match expr.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (expr, None),
        };
        match (std::env::var(var).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("`{raw}` names the environment variable `{var}`, which is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let path = match out.strip_prefix("~/") {
        Some(tail) => {
            let home =
                std::env::var_os("HOME").ok_or_else(|| format!("`{raw}` starts with `~/` but HOME is not set"))?;
            PathBuf::from(home).join(tail)
        }
        None => PathBuf::from(out),
    };
    Ok(if path.is_relative() { catalog.parent().unwrap_or(Path::new(".")).join(path) } else { path })
}

/// The GGUF file that serves `name` on a local endpoint. Either may be a Hugging Face
/// reference (`hf:owner/repo/file.gguf`, see [`crate::hub`]), downloaded on first use.
fn model_file(endpoint: &Endpoint, local: &LocalEndpoint, name: &str, catalog: &Path) -> Result<PathBuf, String> {
    if let Some(reference) = hub::HubRef::parse(&local.path).transpose()? {
        if endpoint.models.len() > 1 {
            return Err(format!(
                "`path: {reference}` is one file, but endpoint `{}` serves {} models\n\nhint: name each model `hf:<owner>/<repo>/<file>.gguf` under `models:` and make `path:` the directory to download into",
                endpoint.name,
                endpoint.models.len()
            ));
        }
        return hub::fetch(&reference, &hub::models_dir()?);
    }
    let path = expand_path(&local.path, catalog)?;
    if let Some(reference) = hub::HubRef::parse(name).transpose()? {
        return hub::fetch(&reference, &path);
    }
    let file = if path.is_dir() {
        path.join(name)
    } else if endpoint.models.len() > 1 {
        return Err(format!(
            "`{}` is a file, but endpoint `{}` serves {} models",
            path.display(),
            endpoint.name,
            endpoint.models.len()
        ));
    } else {
        path
    };
    match std::fs::metadata(&file) {
        Ok(meta) if meta.is_file() => Ok(file),
        // A device, a FIFO or a directory would be read forever or not at all.
        Ok(_) => Err(format!(
            "the model file `{}` is not a regular file\n\nhint: `path:` names a GGUF file, or the directory that holds the models' files",
            file.display()
        )),
        Err(_) => Err(format!(
            "the model file `{}` does not exist\n\nhint: `bash scripts/fetch-models.sh` fetches the quickstart's models into ~/.cache/parallax/models (or $PARALLAX_MODELS)",
            file.display()
        )),
    }
}

/// What the plan needs of a GGUF file: its SHA-256, template, BOS/EOS and control tokens.
pub fn read_model(file: &Path, template_override: Option<&Path>) -> Result<LocalModel, String> {
    let mut reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| format!("cannot open `{}`: {e}", file.display()))?,
    );
    let meta = GgufMetadata::read(&mut reader)
        .map_err(|e| format!("`{}` is not a readable GGUF file: {e}", file.display()))?;
    let chat_template = match template_override {
        Some(t) => Some(
            std::fs::read_to_string(t).map_err(|e| format!("cannot read the chat template `{}`: {e}", t.display()))?,
        ),
        None => meta.chat_template().map(str::to_owned),
    };
    // llama.cpp's default where the file does not say: SentencePiece vocabularies take BOS.
    let spm = matches!(meta.raw.get("tokenizer.ggml.model"), Some(gguf::Value::Str(m)) if m == "llama");
    let add_bos = meta.add_bos_token().unwrap_or(spm);
    Ok(LocalModel {
        gguf_sha256: std::fs::File::open(file)
            .and_then(parallax_core::sha256_reader)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?,
        chat_template,
        bos_token: meta.bos_token().map(str::to_owned),
        eos_token: meta.eos_token().map(str::to_owned),
        add_bos,
        control_tokens: meta.control_tokens().into_iter().map(str::to_owned).collect(),
    })
}

/// Reads every local model a spec uses. Each file is read (and hashed) once.
pub fn units(spec: &JobSpec, catalog: &Catalog, catalog_path: &Path) -> Result<Vec<LocalUnit>, AppError> {
    let pairs: Vec<(String, String)> =
        spec.models.iter().flat_map(|m| spec.regions.iter().map(move |r| (m.clone(), r.clone()))).collect();
    units_of(&pairs, catalog, catalog_path)
}

/// Reads the local models among these (model, region) pairs.
pub fn units_of(
    pairs: &[(String, String)],
    catalog: &Catalog,
    catalog_path: &Path,
) -> Result<Vec<LocalUnit>, AppError> {
    let mut units = Vec::new();
    let mut read: HashMap<(PathBuf, Option<PathBuf>), LocalModel> = HashMap::new();
    let mut problems = Vec::new();
    for (model, region) in pairs {
        // A `local-gguf` endpoint is the one kind with local settings (the catalog's rule).
        let Some((endpoint, entry)) = catalog.resolve(model, region) else { continue };
        let Some(local) = endpoint.local.as_ref() else { continue };
        let at = format!("regions.{region}: endpoint `{}`, model `{model}`", endpoint.name);
        let file = match model_file(endpoint, local, &entry.name, catalog_path) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        let template = match &local.chat_template {
            Some(t) => match expand_path(t, catalog_path) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            },
            None => None,
        };
        let key = (file.clone(), template.clone());
        let info = match read.get(&key) {
            Some(i) => i.clone(),
            None => match read_model(&file, template.as_deref()) {
                Ok(i) => {
                    read.insert(key, i.clone());
                    i
                }
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            },
        };
        units.push(LocalUnit {
            unit: local_endpoint_unit(region, &endpoint.name, model),
            endpoint: format!("{region}/{}", endpoint.name),
            region: region.clone(),
            model_id: model.clone(),
            name: entry.name.clone(),
            file,
            threads: local.threads,
            concurrency: endpoint.concurrency,
            info,
        });
    }
    if !problems.is_empty() {
        return Err(AppError::input(format!(
            "invalid catalog `{}`:\n{}",
            catalog_path.display(),
            problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(units)
}

/// The plan context for these local models, with today's date for templates.
pub fn plan_context(units: &[LocalUnit]) -> PlanContext {
    let local = units.iter().map(|u| ((u.endpoint.clone(), u.model_id.clone()), u.info.clone())).collect();
    PlanContext { date: today(), local }
}

/// Today (UTC), for templates' `strftime_now`.
pub fn today() -> parallax_core::template::Date {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| (d.as_secs() / 86_400) as i64);
    parallax_core::template::Date::from_days_since_epoch(days).unwrap_or_else(|| PlanContext::default().date)
}

/// The runtime of a local unit: its provider (one model, in-process), as many generations at
/// once as the endpoint's `concurrency` says (default: as many as the engine runs side by
/// side, every core busy), and its file as residency so the runner loads each model once.
#[cfg(feature = "local")]
pub fn runtime(unit: &LocalUnit) -> Result<parallax_runner::EndpointRuntime, AppError> {
    let files = HashMap::from([(unit.name.clone(), (unit.file.clone(), unit.info.gguf_sha256.clone()))]);
    let provider = parallax_local::LocalProvider::new(files, unit.threads);
    let concurrency = unit.concurrency.unwrap_or_else(|| parallax_local::Engine::side_by_side(provider.threads()));
    Ok(parallax_runner::EndpointRuntime {
        provider: std::sync::Arc::new(provider),
        concurrency: Some(concurrency),
        rate_per_s: None,
        residency: Some(unit.file.display().to_string()),
    })
}

#[cfg(not(feature = "local"))]
pub fn runtime(unit: &LocalUnit) -> Result<parallax_runner::EndpointRuntime, AppError> {
    Err(AppError::input(format!(
        "`{}` is a local-gguf model, but this parallax was built without local models\n\nhint: build with `--features local` (the default)",
        unit.unit
    )))
}

/// `sampling.extra` parameters the job's local models will not apply (llama.cpp knows only
/// [`parallax_core::spec::LOCAL_EXTRA`]): they are still stored with each request, but
/// change nothing in-process. Empty when the job has no local model.
pub fn ignored_extras(spec: &JobSpec, units: &[LocalUnit]) -> Vec<String> {
    if units.is_empty() {
        return Vec::new();
    }
    spec.sampling.extra.keys().filter(|k| !parallax_core::spec::LOCAL_EXTRA.contains(&k.as_str())).cloned().collect()
}
