//! The plan: the exact list of executions a spec asks for, each with the request it will send.
//!
//! Requests are rendered here, once, before anything is stored or sent; the store keeps
//! the bytes and the provider sends them unchanged. The plan is the product of the
//! requested sets and nothing else: `questions × models × regions × samples`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::catalog::{Catalog, EndpointKind};
use crate::diagnostic::Diagnostics;
use crate::hash::sha256_hex;
use crate::spec::{JobSpec, Mode, Question};
use crate::template::{self, ChatTemplate, Date, Message, RenderOptions};

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
    /// A plan of requests rendered elsewhere ([`Plan::of_requests`]): its items, as given.
    fixed: Option<Arc<[PlanItem]>>,
}

#[derive(Debug, Clone)]
struct ResolvedCell {
    endpoint: String,
    kind: EndpointKind,
    requested_model: String,
    model_aliases: Vec<String>,
    /// For a `local-gguf` cell: the model's tokenizer facts and compiled template.
    local: Option<Arc<LocalCell>>,
}

/// What rendering prompts for a local GGUF model needs, read from its file by the caller
/// (core reads no files itself).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModel {
    /// The hex SHA-256 of the GGUF file: which weights answer.
    pub gguf_sha256: String,
    /// The chat template: the endpoint's override, else the GGUF's own; `None` for a base
    /// model without one (it can only run in raw mode).
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Whether the model expects BOS at the start of every prompt.
    pub add_bos: bool,
    /// The vocabulary's control tokens: markup that must not appear in a raw prompt.
    pub control_tokens: Vec<String>,
}

/// What a plan needs besides the spec and catalog.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// The day templates' `strftime_now` reports, unless the spec pins `prompt.date`.
    pub date: Date,
    /// The local models of `local-gguf` cells, keyed by (`<region>/<endpoint>`, model id).
    pub local: BTreeMap<(String, String), LocalModel>,
}

impl Default for PlanContext {
    fn default() -> Self {
        PlanContext { date: Date::new(2026, 1, 1).expect("a valid date"), local: BTreeMap::new() }
    }
}

#[derive(Debug)]
struct LocalCell {
    model: LocalModel,
    template: Option<ChatTemplate>,
    date: Date,
}

/// Whether every region sends the same messages for the same question and model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parity {
    /// (question, model, sample) groups compared across regions.
    pub groups: usize,
    /// Groups whose regions' prompts are all identical.
    pub identical: usize,
    /// Groups that differ only through a declared `system_by_region` override.
    pub declared_overrides: usize,
    /// Groups that differ without a declared reason. Zero by construction; audited anyway.
    pub undeclared: usize,
    /// Identical groups whose regions encode the same prompt differently on the wire
    /// (endpoints of different kinds: chat messages here, a local model's template there).
    pub rendered_differently: usize,
    /// Regions with a declared override.
    pub override_regions: Vec<String>,
}

impl Plan {
    /// Resolves every (model, region) in the catalog and renders every request.
    /// Problems are reported together, pointing at the spec's lines.
    pub fn build(spec: &JobSpec, catalog: &Catalog) -> Result<Plan, Diagnostics> {
        Plan::build_with(spec, catalog, &PlanContext::default())
    }

    /// [`Plan::build`] with the facts of local models and the template date.
    pub fn build_with(spec: &JobSpec, catalog: &Catalog, context: &PlanContext) -> Result<Plan, Diagnostics> {
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
                    Some((endpoint, _))
                        if endpoint.kind != expected_kind && endpoint.kind != EndpointKind::LocalGguf =>
                    {
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

        let date = spec.prompt.date.unwrap_or(context.date);
        let mut cells = Vec::with_capacity(spec.models.len() * spec.regions.len());
        for model in &spec.models {
            for region in &spec.regions {
                let (endpoint, entry) = catalog.resolve(model, region).expect("resolved above");
                let mut endpoint_name = format!("{region}/{}", endpoint.name);
                let local = if endpoint.kind == EndpointKind::LocalGguf {
                    let cell = local_cell(spec, context, &endpoint_name, model, region, date);
                    // Each local model is its own unit of limits: the runner runs one
                    // model's work at a time, so that it is loaded once.
                    endpoint_name = local_endpoint_unit(region, &endpoint.name, model);
                    match cell {
                        Ok(cell) => Some(Arc::new(cell)),
                        Err(problems) => {
                            for (message, hint) in problems {
                                diags.push(
                                    file,
                                    pos.models.get(model).copied().unwrap_or((0, 0)),
                                    "models",
                                    message,
                                    hint,
                                );
                            }
                            None
                        }
                    }
                } else {
                    None
                };
                cells.push(ResolvedCell {
                    endpoint: endpoint_name,
                    kind: endpoint.kind,
                    requested_model: entry.name.clone(),
                    model_aliases: entry.aliases.clone(),
                    local,
                });
            }
        }
        if spec.prompt.mode == Mode::Raw {
            // Raw mode sends the text as given: chat markup in it means a template leaked in.
            for question in &spec.questions {
                for cell in &cells {
                    let control: Vec<&str> = cell
                        .local
                        .as_ref()
                        .map(|l| l.model.control_tokens.iter().map(String::as_str).collect())
                        .unwrap_or_default();
                    if let Some(marker) = template::find_template_markers(&question.text, &control) {
                        diags.push(
                            file,
                            pos.mode,
                            format!("questions.{}", question.id),
                            format!(
                                "question `{}` contains the chat-template marker `{marker}`, but raw mode must reach `{}` without template markup",
                                question.id, cell.requested_model
                            ),
                            Some("remove the marker from the question, or use `mode: chat`".into()),
                        );
                        break;
                    }
                }
            }
        }
        if !diags.is_empty() {
            return Err(diags.sorted());
        }

        let identity = identity(spec, catalog, &cells);
        let hash = sha256_hex(canonical_json(&identity).as_bytes());
        let base_job_id = format!("{}-{}", spec.name, &hash[..12]);

        let mut plan = Plan {
            name: spec.name.clone(),
            base_job_id,
            identity,
            parity: Parity::default(),
            spec: spec.clone(),
            cells,
            fixed: None,
        };
        plan.parity = parity(&plan);
        Ok(plan)
    }

    /// A plan of requests another part of parallax rendered (a judge's gradings): one
    /// question per item, each item as given, named `<name>-<12 hex>` by `identity` like any
    /// plan, so that the same requests make the same job and are executed once. `spec`
    /// carries the name, the questions (in the items' order), the model and the region.
    pub fn of_requests(spec: JobSpec, identity: Json, items: Vec<PlanItem>) -> Plan {
        let hash = sha256_hex(canonical_json(&identity).as_bytes());
        Plan {
            name: spec.name.clone(),
            base_job_id: format!("{}-{}", spec.name, &hash[..12]),
            identity,
            parity: Parity::default(),
            spec,
            cells: Vec::new(),
            fixed: Some(items.into()),
        }
    }

    /// The number of executions: questions × models × regions × samples.
    pub fn len(&self) -> usize {
        if let Some(items) = &self.fixed {
            return items.len();
        }
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
        if let Some(items) = &self.fixed {
            return items[i].clone();
        }
        let spec = &self.spec;
        let samples = spec.samples as usize;
        let per_question = self.cells.len() * samples;
        let (q, rest) = (i / per_question, i % per_question);
        let (c, s) = (rest / samples, rest % samples);
        let (m, r) = (c / spec.regions.len(), c % spec.regions.len());
        let (question, region, cell) = (&spec.questions[q], &spec.regions[r], &self.cells[c]);
        let sample = s as u32 + 1;
        let (system, regional_override) = spec.prompt.system_for(region);
        let body = match &cell.local {
            None => render_request(spec, &cell.requested_model, system, &question.text, sample),
            Some(local) => render_local_request(spec, &cell.requested_model, local, system, &question.text, sample)
                .expect("every local prompt was rendered once when the plan was built"),
        };
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
    sampling_fields(spec, &mut body, sample);
    Json::Object(body).to_string()
}

fn sampling_fields(spec: &JobSpec, body: &mut serde_json::Map<String, Json>, sample: u32) {
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
    // Provider-specific parameters, verbatim (their names cannot be any of the above).
    for (k, v) in &s.extra {
        body.insert(k.clone(), v.clone());
    }
}

/// The plan's endpoint (the unit of limits) of a local model: `<region>/<endpoint>/<model>`.
pub fn local_endpoint_unit(region: &str, endpoint: &str, model: &str) -> String {
    format!("{region}/{endpoint}/{model}")
}

/// Checks a local cell's model against the mode and compiles its template; every prompt
/// of the cell is rendered once here, so that rendering an item later cannot fail.
fn local_cell(
    spec: &JobSpec,
    context: &PlanContext,
    endpoint: &str,
    model: &str,
    region: &str,
    date: Date,
) -> Result<LocalCell, Vec<(String, Option<String>)>> {
    let Some(info) = context.local.get(&(endpoint.to_owned(), model.to_owned())) else {
        return Err(vec![(
            format!("the local model `{model}` of `{endpoint}` was not loaded"),
            Some("this is a bug in the caller: local models must be read before planning".into()),
        )]);
    };
    let template = match (&info.chat_template, spec.prompt.mode) {
        (_, Mode::Raw) => None,
        (None, Mode::Chat) => {
            return Err(vec![(
                format!("`{model}` in `{region}` has no chat template (a base model?), so it cannot run in chat mode"),
                Some("use `prompt: { mode: raw }`, or give the endpoint a `chat_template:` file".into()),
            )]);
        }
        (Some(source), Mode::Chat) => match ChatTemplate::new(source) {
            Ok(t) => Some(t),
            Err(e) => {
                return Err(vec![(
                    format!("the chat template of `{model}` in `{region}` does not compile: {e}"),
                    Some("fix the template, or override it with the endpoint's `chat_template:`".into()),
                )]);
            }
        },
    };
    let cell = LocalCell { model: info.clone(), template, date };
    let (system, _) = spec.prompt.system_for(region);
    let mut problems = Vec::new();
    for question in &spec.questions {
        if let Err(e) = render_local_request(spec, model, &cell, system, &question.text, 1) {
            problems.push((
                format!("the chat template of `{model}` in `{region}` cannot render question `{}`: {e}", question.id),
                Some("a template may reject some conversations (e.g. a system message); change the prompt or override the template".into()),
            ));
            if problems.len() >= 3 {
                break;
            }
        }
    }
    if problems.is_empty() { Ok(cell) } else { Err(problems) }
}

/// The prompt a local model is fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPrompt {
    pub text: String,
    /// Add BOS before it: in chat mode only if the template did not already write it; in
    /// raw mode where the model requires one.
    pub add_bos: bool,
    /// Byte ranges of `text` that are message content, tokenized as plain text while the
    /// rest (the template's markup) is parsed for control tokens. `None`: no separation —
    /// raw text, or `prompt.parse_special: true`.
    pub plain: Option<Vec<(usize, usize)>>,
}

/// The prompt text a local model is fed: in chat mode the model's template with the
/// generation prompt, its message text kept apart from its markup unless `parse_special`
/// (`prompt.parse_special`) asks for the whole prompt to be parsed as a server would; in
/// raw mode the text as given.
pub fn local_prompt(
    model: &LocalModel,
    template: Option<&ChatTemplate>,
    date: Date,
    system: Option<&str>,
    text: &str,
    parse_special: bool,
) -> Result<LocalPrompt, template::TemplateError> {
    let bos = model.bos_token.as_deref().unwrap_or("");
    match template {
        None => Ok(LocalPrompt { text: text.to_owned(), add_bos: model.add_bos && !bos.is_empty(), plain: None }),
        Some(t) => {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(Message::new("system", system));
            }
            messages.push(Message::new("user", text));
            let mut opts = RenderOptions::new(bos, model.eos_token.as_deref().unwrap_or(""), date);
            opts.add_generation_prompt = true;
            let (prompt, plain) = if parse_special {
                (t.render(&messages, &opts)?, None)
            } else {
                let (prompt, plain) = t.render_spans(&messages, &opts)?;
                (prompt, Some(plain))
            };
            let add_bos = model.add_bos && !template::starts_with_bos(&prompt, bos);
            Ok(LocalPrompt { text: prompt, add_bos, plain })
        }
    }
}

/// Renders one local request: the exact text fed to the tokenizer, with the provenance
/// the provider checks (the GGUF's and the template's SHA-256) and the sampling.
fn render_local_request(
    spec: &JobSpec,
    model: &str,
    cell: &LocalCell,
    system: Option<&str>,
    text: &str,
    sample: u32,
) -> Result<String, template::TemplateError> {
    let parse_special = spec.prompt.parse_special;
    let prompt = local_prompt(&cell.model, cell.template.as_ref(), cell.date, system, text, parse_special)?;
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("prompt".into(), json!(prompt.text));
    body.insert("add_bos".into(), json!(prompt.add_bos));
    // Chat prompts carry the template's control tokens, parsed as such; the messages' own
    // text in them (`plain_spans`) is tokenized as plain text, so a question cannot forge
    // a turn. Raw text is plain text, unless the spec asks for control tokens to be parsed.
    body.insert("parse_special".into(), json!(cell.template.is_some() || parse_special));
    if let Some(plain) = &prompt.plain {
        body.insert("plain_spans".into(), json!(plain.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>()));
    }
    body.insert("gguf_sha256".into(), json!(cell.model.gguf_sha256));
    if let Some(t) = &cell.template {
        body.insert("template_sha256".into(), json!(t.sha256()));
    }
    sampling_fields(spec, &mut body, sample);
    Ok(Json::Object(body).to_string())
}

/// Everything that shapes the requests, and nothing else (not run policy, not base URLs).
/// A local model is named by its file's and its template's SHA-256 as well as its name.
fn identity(spec: &JobSpec, catalog: &Catalog, cells: &[ResolvedCell]) -> Json {
    let models: BTreeMap<&str, BTreeMap<&str, String>> = spec
        .models
        .iter()
        .enumerate()
        .map(|(m, model)| {
            let per_region = spec
                .regions
                .iter()
                .enumerate()
                .filter_map(|(r, region)| {
                    let (_, entry) = catalog.resolve(model, region)?;
                    let name = match &cells[m * spec.regions.len() + r].local {
                        None => entry.name.clone(),
                        Some(l) => format!(
                            "{}@sha256:{}{}",
                            entry.name,
                            l.model.gguf_sha256,
                            l.template.as_ref().map(|t| format!("+template:{}", t.sha256())).unwrap_or_default()
                        ),
                    };
                    Some((region.as_str(), name))
                })
                .collect();
            (model.as_str(), per_region)
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

/// The `Idempotency-Key` of an execution: the hex SHA-256 of its full key. The same on
/// every attempt, different for every execution.
pub fn idempotency_key(job_id: &str, key: &ItemKey) -> String {
    let text = canonical_json(&json!([job_id, key.question_id, key.model_id, key.region, key.sample]));
    sha256_hex(text.as_bytes())
}

/// The prompt part of a request: messages or prompt text, and sampling — not the model name,
/// which legitimately differs between providers.
/// The logical prompt of a stored request: its messages (role and text, in order) and its
/// sampling, whatever the wire form — chat messages, a completion prompt, or a local
/// model's rendered template, whose messages' text is exactly its `plain_spans`. Parity is
/// checked on this, so one model served by two kinds of endpoint (a server's chat API and
/// the in-process provider) is compared on what was asked, not on how it was encoded. A
/// local chat prompt stored without spans (`prompt.parse_special`) keeps its rendered text.
pub fn logical_prompt(body: &str) -> Json {
    let Ok(Json::Object(map)) = serde_json::from_str::<Json>(body) else { return Json::Null };
    let mut sampling = map.clone();
    for wire in
        ["model", "messages", "prompt", "add_bos", "parse_special", "plain_spans", "gguf_sha256", "template_sha256"]
    {
        sampling.remove(wire);
    }
    let message = |role: &str, content: &str| json!({"role": role, "content": content});
    let messages = match (map.get("messages"), map.get("prompt"), map.get("plain_spans")) {
        (Some(Json::Array(m)), _, _) => {
            Json::Array(m.iter().map(|m| json!({"role": m["role"], "content": m["content"]})).collect())
        }
        (_, Some(Json::String(prompt)), Some(Json::Array(spans))) => {
            let texts: Vec<&str> = spans
                .iter()
                .filter_map(|s| Some((s.get(0)?.as_u64()? as usize, s.get(1)?.as_u64()? as usize)))
                .filter_map(|(a, b)| prompt.get(a..b))
                .collect();
            // The plan renders [system,] user: the last span is the user's.
            let n = texts.len();
            Json::Array(
                texts.iter().enumerate().map(|(i, t)| message(if i + 1 == n { "user" } else { "system" }, t)).collect(),
            )
        }
        (_, Some(Json::String(prompt)), None) if map.contains_key("template_sha256") => {
            json!({"rendered": prompt})
        }
        (_, Some(Json::String(prompt)), None) => Json::Array(vec![message("raw", prompt)]),
        _ => Json::Null,
    };
    json!({"messages": messages, "sampling": sampling})
}

/// A request's wire prompt: its body without the model name.
fn wire_prompt(body: &str) -> Json {
    let mut v: Json = serde_json::from_str(body).unwrap_or(Json::Null);
    if let Json::Object(map) = &mut v {
        map.remove("model");
    }
    v
}

/// Compares, for every (question, model, sample), the prompt each region would get. Each
/// group's items are rendered by their index, one group at a time: time linear in the
/// plan, memory one request per region (not regions × samples of them).
fn parity(plan: &Plan) -> Parity {
    let mut parity = Parity::default();
    let (regions, samples) = (plan.spec.regions.len(), plan.spec.samples as usize);
    let per_question = plan.cells.len() * samples;
    for q in 0..plan.spec.questions.len() {
        for m in 0..plan.spec.models.len() {
            for s in 0..samples {
                let group: Vec<(Json, Json, bool)> = (0..regions)
                    .map(|r| plan.item(q * per_question + (m * regions + r) * samples + s))
                    .map(|i| (logical_prompt(&i.request_body), wire_prompt(&i.request_body), i.regional_override))
                    .collect();
                parity.groups += 1;
                let all_same = |prompts: &[&Json]| prompts.windows(2).all(|w| w[0] == w[1]);
                let all: Vec<&Json> = group.iter().map(|(p, _, _)| p).collect();
                let baseline: Vec<&Json> = group.iter().filter(|(_, _, o)| !o).map(|(p, _, _)| p).collect();
                if all_same(&all) {
                    parity.identical += 1;
                    let wires: Vec<&Json> = group.iter().map(|(_, w, _)| w).collect();
                    if !all_same(&wires) {
                        parity.rendered_differently += 1;
                    }
                } else if all_same(&baseline) {
                    parity.declared_overrides += 1;
                } else {
                    parity.undeclared += 1;
                }
            }
        }
    }
    parity.override_regions =
        plan.spec.regions.iter().filter(|r| plan.spec.prompt.system_by_region.contains_key(*r)).cloned().collect();
    parity
}

#[cfg(test)]
mod tests {
    use super::logical_prompt;
    use serde_json::json;

    #[test]
    fn the_logical_prompt_is_the_same_whatever_the_wire_form() {
        let chat = json!({"model": "a", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}], "temperature": 0, "max_tokens": 4}).to_string();
        let prompt =
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n";
        let (s0, u0) = (prompt.find("Be brief.").unwrap(), prompt.find("Hi?").unwrap());
        let local = json!({"model": "b", "prompt": prompt, "add_bos": false, "parse_special": true,
            "plain_spans": [[s0, s0 + 9], [u0, u0 + 3]], "gguf_sha256": "x", "template_sha256": "y", "temperature": 0, "max_tokens": 4})
        .to_string();
        assert_eq!(logical_prompt(&chat), logical_prompt(&local));
        // Sampling is part of it; so is the text.
        let hotter = chat.replace("\"temperature\":0", "\"temperature\":1");
        assert_ne!(logical_prompt(&chat), logical_prompt(&hotter));
        let other = chat.replace("Hi?", "Ho?");
        assert_ne!(logical_prompt(&chat), logical_prompt(&other));
        // Raw text is raw text, sent to a server or fed in-process.
        let completion = json!({"model": "a", "prompt": "Once upon", "max_tokens": 4}).to_string();
        let raw_local = json!({"model": "b", "prompt": "Once upon", "add_bos": true, "parse_special": false, "gguf_sha256": "x", "max_tokens": 4}).to_string();
        assert_eq!(logical_prompt(&completion), logical_prompt(&raw_local));
        // A local chat prompt parsed whole cannot be split: its rendering is compared.
        let whole = json!({"model": "b", "prompt": prompt, "parse_special": true, "template_sha256": "y", "temperature": 0, "max_tokens": 4}).to_string();
        assert_ne!(logical_prompt(&chat), logical_prompt(&whole));
    }
}
