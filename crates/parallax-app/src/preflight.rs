//! Checking endpoints before a run: is each reachable, does it take our key, does it list
//! the models we will ask for? No completion is sent (nothing outside the plan is ever
//! executed): only `GET /models` with the endpoint's key.
//!
//! Only an endpoint that cannot be reached or refuses the key stops a run: anything else (no
//! `/models` route, a model missing from the list, an odd answer) may still serve the job,
//! and is a warning.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use parallax_core::{Catalog, EndpointKind};
use parallax_providers::SendError;
use serde::Serialize;

use crate::AppError;
use crate::providers::http_provider;

/// How long one endpoint's check may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// It may still serve the job.
    Warning,
    /// It cannot serve the job: unreachable, or the key was refused.
    Fatal,
}

/// One endpoint's check.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointCheck {
    pub region: String,
    pub endpoint: String,
    pub base_url: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// Checks every HTTP endpoint that serves one of `pairs` (model id, region), concurrently.
/// A missing API key is bad input, as for a run.
pub async fn check(
    catalog: &Catalog,
    catalog_path: &Path,
    pairs: &[(String, String)],
) -> Result<Vec<EndpointCheck>, AppError> {
    // (region, endpoint name) → the endpoint, and the provider's names (and aliases) of the
    // models asked of it.
    type Wanted<'c> = (&'c parallax_core::Endpoint, Vec<Vec<String>>);
    let mut wanted: BTreeMap<(String, String), Wanted> = BTreeMap::new();
    for (model, region) in pairs {
        let Some((endpoint, entry)) = catalog.resolve(model, region) else {
            return Err(AppError::input(format!(
                "model `{model}` is not served in region `{region}` of `{}`",
                catalog_path.display()
            )));
        };
        if endpoint.kind == EndpointKind::LocalGguf {
            continue;
        }
        let names = std::iter::once(entry.name.clone()).chain(entry.aliases.iter().cloned()).collect();
        let (_, models) = wanted.entry((region.clone(), endpoint.name.clone())).or_insert((endpoint, Vec::new()));
        if !models.contains(&names) {
            models.push(names);
        }
    }
    let mut checks = Vec::new();
    for ((region, name), (endpoint, models)) in wanted {
        let provider = http_provider(endpoint, &region, catalog_path, 1)?;
        let base_url = endpoint.base_url.clone();
        checks.push(async move {
            let (verdict, detail) = judge(provider.list_models(TIMEOUT).await, &models);
            EndpointCheck { region, endpoint: name, base_url, verdict, detail }
        });
    }
    Ok(futures_util::future::join_all(checks).await)
}

fn judge(listed: Result<Vec<String>, SendError>, models: &[Vec<String>]) -> (Verdict, String) {
    match listed {
        Err(e @ (SendError::Connect(_) | SendError::Timeout(_) | SendError::Transport(_))) => {
            (Verdict::Fatal, format!("cannot be reached: {e}"))
        }
        Err(SendError::Http { status: status @ (401 | 403), message, .. }) => {
            (Verdict::Fatal, format!("refused the API key (HTTP {status}: {message})"))
        }
        Err(SendError::Http { status, .. }) => (
            Verdict::Warning,
            format!("`GET /models` answered HTTP {status}: reachable, but the models were not checked"),
        ),
        Err(e) => (Verdict::Warning, format!("`GET /models` gave no model list ({e}): the models were not checked")),
        Ok(ids) => {
            let missing: Vec<&str> = models
                .iter()
                .filter(|names| !names.iter().any(|n| ids.contains(n)))
                .map(|names| names[0].as_str())
                .collect();
            if missing.is_empty() {
                (Verdict::Ok, format!("reachable, key accepted, lists {}", listing(models)))
            } else {
                (
                    Verdict::Warning,
                    format!(
                        "reachable and the key is accepted, but `GET /models` does not list {} (it lists {} model{})",
                        missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                        ids.len(),
                        if ids.len() == 1 { "" } else { "s" }
                    ),
                )
            }
        }
    }
}

fn listing(models: &[Vec<String>]) -> String {
    models.iter().map(|names| format!("`{}`", names[0])).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_endpoint_or_a_refused_key_is_fatal() {
        let models = vec![vec!["gpt-4o".to_owned(), "gpt-4o-2024".to_owned()]];
        let http = |status| SendError::Http { status, message: "no".into(), retry_after: None };
        assert_eq!(judge(Err(SendError::Connect("refused".into())), &models).0, Verdict::Fatal);
        assert_eq!(judge(Err(http(401)), &models).0, Verdict::Fatal);
        assert_eq!(judge(Err(http(403)), &models).0, Verdict::Fatal);
        assert_eq!(judge(Err(http(404)), &models).0, Verdict::Warning);
        assert_eq!(judge(Err(http(500)), &models).0, Verdict::Warning);
        assert_eq!(judge(Ok(vec!["other".into()]), &models).0, Verdict::Warning);
        assert_eq!(judge(Ok(vec!["gpt-4o-2024".into()]), &models).0, Verdict::Ok, "an alias listed is enough");
    }
}
