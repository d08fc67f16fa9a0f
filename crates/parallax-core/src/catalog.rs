//! The catalog: where models run. Regions → endpoints → the provider's name for each model id.
//!
//! Secrets never appear here: an endpoint names the *environment variable* that holds
//! its API key (`api_key_env`), and only the provider reads it, at send time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::Decoder;
use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::yaml::{self, Node, Value};

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
    "models",
    "path",
    "threads",
    "chat_template",
];
const LOCAL_ONLY_FIELDS: &[&str] = &["path", "threads", "chat_template"];
const HTTP_ONLY_FIELDS: &[&str] = &["base_url", "api_key_env", "rate_per_s"];
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
        let mut served: BTreeMap<String, String> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let Some(endpoint) = decode_endpoint(d, item, &field) else { continue };
            if endpoints.iter().any(|e| e.name == endpoint.name) {
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
        req(d, "base_url").and_then(|(url, n)| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Some(url.trim_end_matches('/').to_owned())
            } else {
                d.error(
                    n,
                    &format!("{field}.base_url"),
                    format!("`{url}` is not an http(s) URL"),
                    Some("e.g. `http://127.0.0.1:8000/v1`".into()),
                );
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
            Some(n) => Some(d.uint(n, &format!("{field}.threads"), 1)? as usize),
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
        Some(n) => Some(d.uint(n, &format!("{field}.concurrency"), 1)? as usize),
        None => None,
    };
    let rate_per_s = match f.get("rate_per_s") {
        Some(n) => Some(d.number(n, &format!("{field}.rate_per_s"), 0.001)?),
        None => None,
    };
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
                Some(v) => d.number(v, &format!("{pf}.{k}"), 0.0),
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
