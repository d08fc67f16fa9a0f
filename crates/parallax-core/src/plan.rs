//! The plan: the exact list of executions a spec asks for, each with the request it will send.
//!
//! Requests are rendered here, once, before anything is stored or sent; the store keeps
//! the bytes and the provider sends them unchanged. The plan is the product of the
//! requested sets and nothing else: `questions × models × regions × samples`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, EndpointKind};
use crate::diagnostic::Diagnostics;
use crate::spec::{JobSpec, Mode, Question};

/// An execution's identity within a job. With the job id it is the unique key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ItemKey {
    pub question_id: String,
    pub model_id: String,
    pub region: String,
    /// Counts from 1.
    pub sample: u32,
}

/// One planned execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanItem {
    #[serde(flatten)]
    pub key: ItemKey,
    /// `<region>/<endpoint name>`: the unit of per-endpoint limits.
    pub endpoint: String,
    pub kind: EndpointKind,
    /// The provider's model name sent in the request.
    pub requested_model: String,
    /// Names the server may answer with that still count as the requested model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_aliases: Vec<String>,
    /// The exact request body, rendered once.
    #[serde(skip)]
    pub request_body: String,
    pub request_sha256: String,
    /// True where the spec declared a regional system prompt for this item's region.
    pub regional_override: bool,
}

impl PlanItem {
    /// The request, parsed, for display.
    pub fn request(&self) -> Json {
        serde_json::from_str(&self.request_body).unwrap_or(Json::Null)
    }
}

/// The exact plan of a job spec against a catalog.
///
/// Items are rendered on demand by [`Plan::items`], always in the same order and to the
/// same bytes, so a plan of a million executions costs memory for its questions, not for
/// its requests.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// `<name>-<12 hex>`: the first generation's job id. `--fresh` runs get `-2`, `-3`, ….
    pub base_job_id: String,
    /// The canonical JSON of everything that shapes the requests; its SHA-256 names the job.
    pub identity: Json,
    pub parity: Parity,
    spec: JobSpec,
    /// Per (model, region), models outer: where and as what each is sent.
    cells: Vec<ResolvedCell>,
}

#[derive(Debug, Clone)]
struct ResolvedCell {
    endpoint: String,
    kind: EndpointKind,
    requested_model: String,
    model_aliases: Vec<String>,
}

/// Whether every region sends the same messages for the same question and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parity {
    /// (question, model, sample) groups compared across regions.
    pub groups: usize,
    /// Groups whose regions' prompts are all identical.
    pub identical: usize,
    /// Groups that differ only through a declared `system_by_region` override.
    pub declared_overrides: usize,
    /// Groups that differ without a declared reason. Zero by construction; audited anyway.
    pub undeclared: usize,
    /// Regions with a declared override.
    pub override_regions: Vec<String>,
}

impl Plan {
    /// Resolves every (model, region) in the catalog and renders every request.
    /// Problems are reported together, pointing at the spec's lines.
    pub fn build(spec: &JobSpec, catalog: &Catalog) -> Result<Plan, Diagnostics> {
        let mut diags = Diagnostics(Vec::new());
        let pos = &spec.positions;
        let file = pos.file.as_path();
        let expected_kind = match spec.prompt.mode {
            Mode::Chat => EndpointKind::OpenAiChat,
            Mode::Raw => EndpointKind::OpenAiCompletions,
        };
        let mode_name = match spec.prompt.mode {
            Mode::Chat => "chat",
            Mode::Raw => "raw",
        };
        for region in &spec.regions {
            if !catalog.regions.contains_key(region) {
                let known: Vec<&str> = catalog.regions.keys().map(String::as_str).collect();
                let hint = crate::diagnostic::did_you_mean(region, &known)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        format!("the catalog `{}` has regions: {}", catalog.file.display(), known.join(", "))
                    });
                diags.push(
                    file,
                    pos.regions.get(region).copied().unwrap_or((0, 0)),
                    "regions",
                    format!("region `{region}` is not in the catalog"),
                    Some(hint),
                );
            }
        }
        for model in &spec.models {
            let mut missing = Vec::new();
            for region in spec.regions.iter().filter(|r| catalog.regions.contains_key(*r)) {
                match catalog.resolve(model, region) {
                    None => missing.push(region.as_str()),
                    Some((endpoint, _)) if endpoint.kind != expected_kind => {
                        diags.push(
                            file,
                            pos.mode,
                            "prompt.mode",
                            format!("`{mode_name}` mode cannot use endpoint `{}` (kind `{}`) serving `{model}` in `{region}`", endpoint.name, endpoint.kind.as_str()),
                            Some(format!("`{mode_name}` mode needs a `{}` endpoint", expected_kind.as_str())),
                        );
                    }
                    Some(_) => {}
                }
            }
            if !missing.is_empty() {
                let known = catalog.model_ids();
                let hint = crate::diagnostic::did_you_mean(model, &known)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "add `{model}: <provider model name>` to an endpoint of each region in `{}`",
                            catalog.file.display()
                        )
                    });
                diags.push(
                    file,
                    pos.models.get(model).copied().unwrap_or((0, 0)),
                    "models",
                    format!(
                        "model `{model}` is not served in region{} {}",
                        if missing.len() == 1 { "" } else { "s" },
                        missing.join(", ")
                    ),
                    Some(hint),
                );
            }
        }
        if !diags.is_empty() {
            return Err(diags.sorted());
        }

        let identity = identity(spec, catalog);
        let hash = hex::encode(Sha256::digest(canonical_json(&identity).as_bytes()));
        let base_job_id = format!("{}-{}", spec.name, &hash[..12]);

        let mut cells = Vec::with_capacity(spec.models.len() * spec.regions.len());
        for model in &spec.models {
            for region in &spec.regions {
                let (endpoint, entry) = catalog.resolve(model, region).expect("resolved above");
                cells.push(ResolvedCell {
                    endpoint: format!("{region}/{}", endpoint.name),
                    kind: endpoint.kind,
                    requested_model: entry.name.clone(),
                    model_aliases: entry.aliases.clone(),
                });
            }
        }
        let mut plan = Plan {
            name: spec.name.clone(),
            base_job_id,
            identity,
            parity: Parity {
                groups: 0,
                identical: 0,
                declared_overrides: 0,
                undeclared: 0,
                override_regions: Vec::new(),
            },
            spec: spec.clone(),
            cells,
        };
        plan.parity = parity(&plan);
        Ok(plan)
    }

    /// The number of executions: questions × models × regions × samples.
    pub fn len(&self) -> usize {
        self.cells.len() * self.spec.questions.len() * self.spec.samples as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The questions, in spec order.
    pub fn questions(&self) -> &[Question] {
        &self.spec.questions
    }

    /// Every execution with its rendered request, in plan order: questions, then models,
    /// then regions, then samples.
    pub fn items(&self) -> impl ExactSizeIterator<Item = PlanItem> + '_ {
        (0..self.len()).map(move |i| self.item(i))
    }

    fn item(&self, i: usize) -> PlanItem {
        let spec = &self.spec;
        let samples = spec.samples as usize;
        let per_question = self.cells.len() * samples;
        let (q, rest) = (i / per_question, i % per_question);
        let (c, s) = (rest / samples, rest % samples);
        let (m, r) = (c / spec.regions.len(), c % spec.regions.len());
        let (question, region, cell) = (&spec.questions[q], &spec.regions[r], &self.cells[c]);
        let sample = s as u32 + 1;
        let (system, regional_override) = spec.prompt.system_for(region);
        let body = render_request(spec, &cell.requested_model, system, &question.text, sample);
        PlanItem {
            key: ItemKey {
                question_id: question.id.clone(),
                model_id: spec.models[m].clone(),
                region: region.clone(),
                sample,
            },
            endpoint: cell.endpoint.clone(),
            kind: cell.kind,
            requested_model: cell.requested_model.clone(),
            model_aliases: cell.model_aliases.clone(),
            request_sha256: sha256_hex(body.as_bytes()),
            request_body: body,
            regional_override,
        }
    }
}

/// Renders one request body. Key order is fixed, so equal inputs give equal bytes.
fn render_request(spec: &JobSpec, model: &str, system: Option<&str>, text: &str, sample: u32) -> String {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    match spec.prompt.mode {
        Mode::Chat => {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": text}));
            body.insert("messages".into(), Json::Array(messages));
        }
        Mode::Raw => {
            body.insert("prompt".into(), json!(text));
        }
    }
    let s = &spec.sampling;
    if let Some(t) = s.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = s.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(m) = s.max_tokens {
        body.insert("max_tokens".into(), json!(m));
    }
    if let Some(seed) = s.seed {
        // Sample k uses seed + k - 1, so samples differ but reruns repeat.
        body.insert("seed".into(), json!(seed.wrapping_add(i64::from(sample) - 1)));
    }
    if !s.stop.is_empty() {
        body.insert("stop".into(), json!(s.stop));
    }
    Json::Object(body).to_string()
}

/// Everything that shapes the requests, and nothing else (not run policy, not base URLs).
fn identity(spec: &JobSpec, catalog: &Catalog) -> Json {
    let models: BTreeMap<&str, BTreeMap<&str, &str>> = spec
        .models
        .iter()
        .map(|m| {
            let per_region = spec
                .regions
                .iter()
                .filter_map(|r| catalog.resolve(m, r).map(|(_, e)| (r.as_str(), e.name.as_str())))
                .collect();
            (m.as_str(), per_region)
        })
        .collect();
    let questions: Vec<Json> =
        spec.questions.iter().map(|q| json!({"id": q.id, "text": q.text, "expect": q.expect})).collect();
    json!({
        "questions": questions,
        "models": models,
        "regions": spec.regions,
        "prompt": spec.prompt,
        "sampling": spec.sampling,
        "samples": spec.samples,
    })
}

/// JSON with object keys sorted at every level and no whitespace: one text per value.
pub fn canonical_json(value: &Json) -> String {
    fn sort(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Json::Object(entries.into_iter().map(|(k, v)| (k.clone(), sort(v))).collect())
            }
            Json::Array(items) => Json::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The `Idempotency-Key` of an execution: the hex SHA-256 of its full key. The same on
/// every attempt, different for every execution.
pub fn idempotency_key(job_id: &str, key: &ItemKey) -> String {
    let text = canonical_json(&json!([job_id, key.question_id, key.model_id, key.region, key.sample]));
    sha256_hex(text.as_bytes())
}

/// The prompt part of a request: messages or prompt text, and sampling — not the model name,
/// which legitimately differs between providers.
fn prompt_part(body: &str) -> Json {
    let mut v: Json = serde_json::from_str(body).unwrap_or(Json::Null);
    if let Json::Object(map) = &mut v {
        map.remove("model");
    }
    v
}

/// Compares, for every (question, model, sample), the prompt each region would get.
/// Items of one (question, model) are adjacent in plan order, so this streams.
fn parity(plan: &Plan) -> Parity {
    let mut parity =
        Parity { groups: 0, identical: 0, declared_overrides: 0, undeclared: 0, override_regions: Vec::new() };
    let block = plan.spec.regions.len() * plan.spec.samples as usize;
    let mut items = plan.items().peekable();
    while items.peek().is_some() {
        let members: Vec<PlanItem> = items.by_ref().take(block).collect();
        for sample in 1..=plan.spec.samples {
            let group: Vec<&PlanItem> = members.iter().filter(|i| i.key.sample == sample).collect();
            parity.groups += 1;
            let all_same = |items: &[&&PlanItem]| {
                let prompts: Vec<Json> = items.iter().map(|i| prompt_part(&i.request_body)).collect();
                prompts.windows(2).all(|w| w[0] == w[1])
            };
            let all: Vec<&&PlanItem> = group.iter().collect();
            let baseline: Vec<&&PlanItem> = group.iter().filter(|i| !i.regional_override).collect();
            if all_same(&all) {
                parity.identical += 1;
            } else if all_same(&baseline) {
                parity.declared_overrides += 1;
            } else {
                parity.undeclared += 1;
            }
        }
    }
    parity.override_regions =
        plan.spec.regions.iter().filter(|r| plan.spec.prompt.system_by_region.contains_key(*r)).cloned().collect();
    parity
}
