//! The catalog: where models run. Regions → endpoints → the provider's name for each model id.
//!
//! Secrets never appear here: an endpoint names the *environment variable* that holds
//! its API key (`api_key_env`), and only the provider reads it, at send time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::Decoder;
use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::limits;
use crate::yaml::{self, Node, Value};

/// The longest `Retry-After` an endpoint honours unless its `max_retry_after_s` says
/// otherwise: a longer ask fails the attempt, to be retried later.
pub const DEFAULT_MAX_RETRY_AFTER_S: u64 = 60;
/// The largest answer read from an endpoint unless its `max_response_bytes` says otherwise.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub file: PathBuf,
    pub regions: BTreeMap<String, Region>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub endpoints: Vec<Endpoint>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub name: String,
    pub kind: EndpointKind,
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// The longest `Retry-After` honoured (HTTP endpoints); [`DEFAULT_MAX_RETRY_AFTER_S`] when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retry_after_s: Option<u64>,
    /// The largest answer read (HTTP endpoints); [`DEFAULT_MAX_RESPONSE_BYTES`] when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// The endpoint's own forms of a provider block, beside the built-in ones: regular
    /// expressions matched case-insensitively against an error's code, type and message, or
    /// an answer's finish reason (HTTP endpoints).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub block_patterns: Vec<String>,
    pub models: BTreeMap<String, ModelEntry>,
    /// Where a `local-gguf` endpoint finds its models; `None` for HTTP endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalEndpoint>,
}

/// A `local-gguf` endpoint: GGUF files run in-process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalEndpoint {
    /// A GGUF file, or a directory of them (each model's `name` is then its file name), as
    /// written: relative to the catalog's directory, `~` and `${VAR}` expanded by the caller.
    pub path: String,
    /// Threads for inference; the CPU count when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// A template file that overrides every model's own `tokenizer.chat_template`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum EndpointKind {
    #[serde(rename = "openai-chat")]
    OpenAiChat,
    #[serde(rename = "openai-completions")]
    OpenAiCompletions,
    /// A GGUF model run in-process (llama.cpp); serves both chat and raw mode.
    #[serde(rename = "local-gguf")]
    LocalGguf,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::OpenAiChat => "openai-chat",
            EndpointKind::OpenAiCompletions => "openai-completions",
            EndpointKind::LocalGguf => "local-gguf",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointKind> {
        match s {
            "openai-chat" => Some(EndpointKind::OpenAiChat),
            "openai-completions" => Some(EndpointKind::OpenAiCompletions),
            "local-gguf" => Some(EndpointKind::LocalGguf),
            _ => None,
        }
    }
}

/// The provider's name for a model, the dated aliases it may answer with, and its price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_per_mtok: Option<Price>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

const ENDPOINT_FIELDS: &[&str] = &[
    "name",
    "kind",
    "base_url",
    "api_key_env",
    "concurrency",
    "rate_per_s",
    "max_retry_after_s",
    "max_response_bytes",
    "block_patterns",
    "models",
    "path",
    "threads",
    "chat_template",
];
const LOCAL_ONLY_FIELDS: &[&str] = &["path", "threads", "chat_template"];
const HTTP_ONLY_FIELDS: &[&str] =
    &["base_url", "api_key_env", "rate_per_s", "max_retry_after_s", "max_response_bytes", "block_patterns"];

/// At most this many `block_patterns` per endpoint, each at most this long.
const MAX_BLOCK_PATTERNS: usize = 64;
const MAX_BLOCK_PATTERN_CHARS: usize = 500;

/// Compiles a block pattern the way the provider will (case-insensitive, a bounded size).
pub fn block_pattern(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(p).case_insensitive(true).size_limit(1 << 20).build()
}
const MODEL_FIELDS: &[&str] = &["name", "aliases", "price_per_mtok"];

impl Catalog {
    pub fn parse(text: &str, path: &Path) -> Result<Catalog, Diagnostics> {
        let mut d = Decoder::new(path);
        let root = match yaml::parse(text) {
            Ok(root) => root,
            Err(e) => {
                d.diags.push(path, (e.line, e.column), "", format!("invalid YAML: {}", e.message), None);
                return Err(d.diags);
            }
        };
        let catalog = decode_catalog(&mut d, &root, path);
        match catalog {
            Some(c) if d.diags.is_empty() => Ok(c),
            _ => Err(d.diags.sorted()),
        }
    }

    /// The endpoint serving `model` in `region`, and the model's entry there.
    pub fn resolve(&self, model: &str, region: &str) -> Option<(&Endpoint, &ModelEntry)> {
        self.regions.get(region)?.endpoints.iter().find_map(|e| e.models.get(model).map(|m| (e, m)))
    }

    /// Every model id any endpoint of the catalog serves.
    pub fn model_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .regions
            .values()
            .flat_map(|r| r.endpoints.iter().flat_map(|e| e.models.keys().map(String::as_str)))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

fn decode_catalog(d: &mut Decoder<'_>, root: &Node, path: &Path) -> Option<Catalog> {
    let top = d.fields(root, "", &["regions"])?;
    let Some(regions_node) = top.get("regions") else {
        d.error(
            root,
            "regions",
            "missing field `regions`",
            Some("a catalog maps region names to lists of endpoints".into()),
        );
        return None;
    };
    let regions_map = d.open_fields(regions_node, "regions")?;
    let mut regions = BTreeMap::new();
    for (region, node) in regions_map.iter() {
        let field = format!("regions.{region}");
        let Value::Seq(items) = &node.value else {
            d.error(
                node,
                &field,
                format!("expected a list of endpoints, found {}", node.value.type_name()),
                Some("write each endpoint as `- name: ...` under the region".into()),
            );
            continue;
        };
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut served: BTreeMap<String, String> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let Some(endpoint) = decode_endpoint(d, item, &field) else { continue };
            if !names.insert(endpoint.name.clone()) {
                d.error(
                    item,
                    &format!("{field}.name"),
                    format!("endpoint name `{}` is used twice in region `{region}`", endpoint.name),
                    Some("give each endpoint of a region its own name".into()),
                );
            }
            for model in endpoint.models.keys() {
                if let Some(other) = served.insert(model.clone(), endpoint.name.clone()) {
                    d.error(item, &format!("{field}.models.{model}"), format!("model `{model}` is served by two endpoints of region `{region}`: `{other}` and `{}`", endpoint.name), Some("each (model, region) must resolve to exactly one endpoint: remove one, or use a different model id".into()));
                }
            }
            endpoints.push(endpoint);
        }
        regions.insert(region.to_owned(), Region { endpoints, line: node.line });
    }
    Some(Catalog { file: path.to_owned(), regions })
}

fn decode_endpoint(d: &mut Decoder<'_>, node: &Node, field: &str) -> Option<Endpoint> {
    let f = d.fields(node, field, ENDPOINT_FIELDS)?;
    let req = |d: &mut Decoder<'_>, name: &str| match f.get(name) {
        Some(n) => d.string(n, &format!("{field}.{name}")).map(|s| (s, n)),
        None => {
            d.error(node, &format!("{field}.{name}"), format!("missing field `{name}`"), None);
            None
        }
    };
    let name = req(d, "name");
    let kind = req(d, "kind").and_then(|(k, n)| {
        EndpointKind::parse(&k).or_else(|| {
            let hint = match did_you_mean(&k, &["openai-chat", "openai-completions", "local-gguf"]) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "use `openai-chat` (chat mode), `openai-completions` (raw mode) or `local-gguf` (either, in-process)".into(),
            };
            d.error(n, &format!("{field}.kind"), format!("unknown endpoint kind `{k}`"), Some(hint));
            None
        })
    });
    let is_local = kind == Some(EndpointKind::LocalGguf);
    let (wrong, why) = if is_local {
        (HTTP_ONLY_FIELDS, "a `local-gguf` endpoint runs in-process and has no")
    } else {
        (LOCAL_ONLY_FIELDS, "only a `local-gguf` endpoint has")
    };
    for name in wrong {
        if let Some(n) = f.get(name) {
            d.error(n, &format!("{field}.{name}"), format!("{why} `{name}`"), Some(format!("remove `{name}`")));
        }
    }
    let base_url = if is_local {
        Some(String::new())
    } else {
        req(d, "base_url").and_then(|(url, n)| match check_base_url(&url) {
            Ok(()) => Some(url.trim_end_matches('/').to_owned()),
            Err((message, hint)) => {
                d.error(n, &format!("{field}.base_url"), message, Some(hint));
                None
            }
        })
    };
    let local = if is_local {
        let path = match f.get("path") {
            Some(n) => d.string(n, &format!("{field}.path")),
            None => {
                d.error(
                    node,
                    &format!("{field}.path"),
                    "missing field `path`",
                    Some("a GGUF file, or a directory of them (each model's name is then its file name)".into()),
                );
                None
            }
        };
        let threads = match f.get("threads") {
            Some(n) => Some(d.uint(n, &format!("{field}.threads"), limits::THREADS)? as usize),
            None => None,
        };
        let chat_template = match f.get("chat_template") {
            Some(n) => Some(d.string(n, &format!("{field}.chat_template"))?),
            None => None,
        };
        Some(LocalEndpoint { path: path?, threads, chat_template })
    } else {
        None
    };
    let api_key_env = match f.get("api_key_env") {
        Some(n) => {
            let v = d.string(n, &format!("{field}.api_key_env"))?;
            if v.starts_with("sk-") || v.len() > 64 || v.contains(' ') {
                d.error(n, &format!("{field}.api_key_env"), "this looks like a key, not the name of an environment variable", Some("put the key in an environment variable and name the variable here, e.g. `api_key_env: OPENAI_API_KEY`".into()));
                return None;
            }
            Some(v)
        }
        None => None,
    };
    let concurrency = match f.get("concurrency") {
        Some(n) => Some(d.uint(n, &format!("{field}.concurrency"), limits::CONCURRENCY)? as usize),
        None => None,
    };
    let rate_per_s = match f.get("rate_per_s") {
        Some(n) => Some(d.number(n, &format!("{field}.rate_per_s"), limits::RATE_PER_S)?),
        None => None,
    };
    let max_retry_after_s = match f.get("max_retry_after_s") {
        Some(n) => Some(d.uint(n, &format!("{field}.max_retry_after_s"), limits::MAX_RETRY_AFTER_S)?),
        None => None,
    };
    let max_response_bytes = match f.get("max_response_bytes") {
        Some(n) => Some(d.uint(n, &format!("{field}.max_response_bytes"), limits::MAX_RESPONSE_BYTES)?),
        None => None,
    };
    let mut block_patterns = Vec::new();
    if let Some(n) = f.get("block_patterns") {
        let bfield = format!("{field}.block_patterns");
        let patterns = d.strings(n, &bfield)?;
        if patterns.len() > MAX_BLOCK_PATTERNS {
            d.error(n, &bfield, format!("{} patterns; at most {MAX_BLOCK_PATTERNS}", patterns.len()), None);
            return None;
        }
        for p in patterns {
            let problem = if p.chars().count() > MAX_BLOCK_PATTERN_CHARS {
                Some(format!("a pattern longer than {MAX_BLOCK_PATTERN_CHARS} characters"))
            } else if p.is_empty() {
                Some("an empty pattern matches every error".to_owned())
            } else {
                block_pattern(&p).err().map(|e| format!("`{p}` is not a regular expression: {e}"))
            };
            match problem {
                Some(message) => d.error(
                    n,
                    &bfield,
                    message,
                    Some("a regular expression matched case-insensitively, e.g. `guardrail_intervened`".into()),
                ),
                None => block_patterns.push(p),
            }
        }
    }
    let mut models = BTreeMap::new();
    match f.get("models") {
        Some(n) => {
            let m = d.open_fields(n, &format!("{field}.models"))?;
            for (id, entry) in m.iter() {
                let mfield = format!("{field}.models.{id}");
                if let Some(e) = decode_model(d, entry, &mfield) {
                    models.insert(id.to_owned(), e);
                }
            }
        }
        None => d.error(
            node,
            &format!("{field}.models"),
            "missing field `models`",
            Some("map each model id to the provider's model name".into()),
        ),
    }
    Some(Endpoint {
        name: name?.0,
        kind: kind?,
        base_url: base_url?,
        api_key_env,
        concurrency,
        rate_per_s,
        max_retry_after_s,
        max_response_bytes,
        block_patterns,
        models,
        local,
    })
}

fn decode_model(d: &mut Decoder<'_>, node: &Node, field: &str) -> Option<ModelEntry> {
    if let Value::Str(name) = &node.value {
        return Some(ModelEntry { name: name.clone(), aliases: Vec::new(), price_per_mtok: None });
    }
    let f = d.fields(node, field, MODEL_FIELDS)?;
    let name = match f.get("name") {
        Some(n) => d.string(n, &format!("{field}.name")),
        None => {
            d.error(node, &format!("{field}.name"), "missing field `name`", Some("the provider's model name".into()));
            None
        }
    };
    let aliases = match f.get("aliases") {
        Some(n) => d.strings(n, &format!("{field}.aliases"))?,
        None => Vec::new(),
    };
    let price = match f.get("price_per_mtok") {
        Some(n) => {
            let pf = format!("{field}.price_per_mtok");
            let p = d.fields(n, &pf, &["input", "output"])?;
            let mut get = |k: &str| match p.get(k) {
                Some(v) => d.number(v, &format!("{pf}.{k}"), limits::PRICE_PER_MTOK),
                None => {
                    d.error(n, &format!("{pf}.{k}"), format!("missing field `{k}`"), None);
                    None
                }
            };
            Some(Price { input: get("input")?, output: get("output")? })
        }
        None => None,
    };
    Some(ModelEntry { name: name?, aliases, price_per_mtok: price })
}

/// Refuses a `base_url` that is not plain `http(s)://host[:port][/path]`: credentials in
/// it (`user:pw@`, `?api_key=…`) would be sent as a second `Authorization` header or glued
/// before the request's path, and end up in stored errors. The message never repeats a
/// credential.
fn check_base_url(url: &str) -> Result<(), (String, String)> {
    let key_hint =
        "put the key in an environment variable and name it in `api_key_env`, e.g. `api_key_env: OPENAI_API_KEY`";
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        let shown: String = url.chars().take(60).filter(|c| !c.is_control()).collect();
        let shown = if url.contains('@') || url.contains('?') { "this value".to_owned() } else { format!("`{shown}`") };
        return Err((format!("{shown} is not an http(s) URL"), "e.g. `http://127.0.0.1:8000/v1`".into()));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@') {
        let host = &authority[at + 1..];
        return Err((
            format!("`base_url` carries credentials (`…@{host}`): they would be sent and stored"),
            key_hint.into(),
        ));
    }
    if authority.is_empty() {
        return Err(("`base_url` has no host".into(), "e.g. `http://127.0.0.1:8000/v1`".into()));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err((
            "`base_url` contains spaces or control characters".into(),
            "e.g. `http://127.0.0.1:8000/v1`".into(),
        ));
    }
    let tail = &rest[authority_end..];
    if let Some(i) = tail.find(['?', '#']) {
        let after = &tail[i + 1..];
        let names = ["key", "token", "secret", "password", "auth", "sig", "credential"];
        let lower = after.to_ascii_lowercase();
        let hint = if names.iter().any(|n| lower.contains(n)) {
            key_hint.to_owned()
        } else {
            "parallax appends `/chat/completions` or `/completions` to `base_url`: end it at the path".to_owned()
        };
        let what = if tail.as_bytes()[i] == b'?' { "a query string (`?…`)" } else { "a fragment (`#…`)" };
        return Err((format!("`base_url` has {what}; it would be glued before the request's path"), hint));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_base_url;

    #[test]
    fn base_urls_with_credentials_are_refused_without_repeating_them() {
        assert!(check_base_url("http://127.0.0.1:8000/v1").is_ok());
        assert!(check_base_url("https://api.example.com").is_ok());
        for url in [
            "http://user:hunter2@127.0.0.1:8000/v1",
            "https://hunter2@api.example.com/v1",
            "https://api.example.com/v1?api_key=hunter2",
            "https://api.example.com/v1?x=1&token=hunter2",
            "https://api.example.com/v1#key=hunter2",
            "ftp://user:hunter2@host/",
        ] {
            let (message, hint) = check_base_url(url).unwrap_err();
            assert!(!message.contains("hunter2") && !hint.contains("hunter2"), "{url}: {message}");
        }
        let (message, hint) = check_base_url("http://u:p@h/v1").unwrap_err();
        assert!(message.contains("credentials") && hint.contains("api_key_env"), "{message} / {hint}");
        let (_, hint) = check_base_url("https://h/v1?api_key=x").unwrap_err();
        assert!(hint.contains("api_key_env"), "{hint}");
        assert!(check_base_url("http:///v1").is_err());
        assert!(check_base_url("http://h/v1 x").is_err());
    }
}
