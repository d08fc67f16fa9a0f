//! Provider wiring: how each endpoint a job uses is reached — an HTTP client with the key
//! its catalog entry names, or an in-process local model — and limited.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parallax_core::{Catalog, Endpoint, EndpointKind, JobSpec};
use parallax_providers::{BlockPatterns, Limits, OpenAiProvider};
use parallax_runner::EndpointRuntime;

use crate::AppError;
use crate::local::{self, LocalUnit};

/// The runtime of every endpoint the spec's models and regions resolve to, keyed by the
/// plan's endpoint name (`<region>/<endpoint>`, or `<region>/<endpoint>/<model>` for a
/// local model). Built before anything is written: a missing API key is bad input.
pub fn endpoint_runtimes(
    spec: &JobSpec,
    catalog: &Catalog,
    catalog_path: &Path,
    local_units: &[LocalUnit],
    default_concurrency: usize,
) -> Result<HashMap<String, EndpointRuntime>, AppError> {
    let mut endpoints = HashMap::new();
    for unit in local_units {
        endpoints.insert(unit.unit.clone(), local::runtime(unit)?);
    }
    for (model, region) in spec.models.iter().flat_map(|m| spec.regions.iter().map(move |r| (m, r))) {
        let Some((endpoint, _)) = catalog.resolve(model, region) else {
            return Err(AppError::input(format!(
                "model `{model}` is not served in region `{region}` of `{}`",
                catalog_path.display()
            )));
        };
        if endpoint.kind == EndpointKind::LocalGguf {
            continue;
        }
        let name = format!("{region}/{}", endpoint.name);
        if endpoints.contains_key(&name) {
            continue;
        }
        endpoints.insert(name, http_runtime(endpoint, region, catalog_path, default_concurrency)?);
    }
    Ok(endpoints)
}

/// The runtime of an HTTP endpoint: its client, limited by the endpoint's concurrency and
/// rate (its connections by `default_concurrency` where it names no concurrency).
pub(crate) fn http_runtime(
    endpoint: &Endpoint,
    region: &str,
    catalog_path: &Path,
    default_concurrency: usize,
) -> Result<EndpointRuntime, AppError> {
    let max_connections = endpoint.concurrency.unwrap_or(default_concurrency).max(1);
    let provider = http_provider(endpoint, region, catalog_path, max_connections)?;
    Ok(EndpointRuntime {
        provider: Arc::new(provider),
        concurrency: endpoint.concurrency,
        rate_per_s: endpoint.rate_per_s,
        residency: None,
    })
}

/// An HTTP client for an OpenAI-compatible endpoint, with the API key its `api_key_env`
/// names. The key lives only in the provider: it is never stored or printed.
pub fn http_provider(
    endpoint: &Endpoint,
    region: &str,
    catalog_path: &Path,
    max_connections: usize,
) -> Result<OpenAiProvider, AppError> {
    let api_key = match &endpoint.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            AppError::input(format!(
                "the environment variable `{var}` is not set\n\nhint: endpoint `{}` of region `{region}` in `{}` reads its API key from it",
                endpoint.name,
                catalog_path.display()
            ))
        })?),
        None => None,
    };
    let limits = Limits {
        max_retry_after: std::time::Duration::from_secs(
            endpoint.max_retry_after_s.unwrap_or(parallax_core::catalog::DEFAULT_MAX_RETRY_AFTER_S),
        ),
        max_response_bytes: endpoint.max_response_bytes.unwrap_or(parallax_core::catalog::DEFAULT_MAX_RESPONSE_BYTES),
    };
    // The catalog compiled each pattern already; one that fails here is a bug, reported.
    let patterns = BlockPatterns::new(&endpoint.block_patterns).map_err(AppError::internal)?;
    Ok(OpenAiProvider::new(&endpoint.base_url, api_key, max_connections)
        .map_err(AppError::internal)?
        .with_limits(limits)
        .with_block_patterns(patterns))
}

/// The runtime of every endpoint of `regions` in the catalog — what a worker pinned to
/// them can serve, whichever job asks — with every local model those regions serve read
/// from its file (and hashed, as a plan would). Only these regions' API keys are needed.
pub fn region_runtimes(
    regions: &[String],
    catalog: &Catalog,
    catalog_path: &Path,
    default_concurrency: usize,
) -> Result<HashMap<String, EndpointRuntime>, AppError> {
    let mut pairs = Vec::new();
    let mut unknown = Vec::new();
    for region in regions {
        let Some(r) = catalog.regions.get(region) else {
            unknown.push(region.as_str());
            continue;
        };
        for endpoint in &r.endpoints {
            pairs.extend(endpoint.models.keys().map(|m| (m.clone(), region.clone())));
        }
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = catalog.regions.keys().map(String::as_str).collect();
        return Err(AppError::input(format!(
            "no region {} in `{}`\n\nhint: its regions are {}",
            unknown.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", "),
            catalog_path.display(),
            known.join(", ")
        )));
    }
    let units = local::units_of(&pairs, catalog, catalog_path)?;
    let mut endpoints = HashMap::new();
    for unit in &units {
        endpoints.insert(unit.unit.clone(), local::runtime(unit)?);
    }
    for region in regions {
        for endpoint in catalog.regions.get(region).map(|r| r.endpoints.as_slice()).unwrap_or_default() {
            if endpoint.kind == EndpointKind::LocalGguf {
                continue;
            }
            let runtime = http_runtime(endpoint, region, catalog_path, default_concurrency)?;
            endpoints.insert(format!("{region}/{}", endpoint.name), runtime);
        }
    }
    Ok(endpoints)
}
