//! The job spec: what to ask, of which models, in which regions, and how to run it.
//!
//! A spec is YAML or JSON. [`JobSpec::parse`] reports every problem at once, each with
//! its file, line, column and field, and reads question files through a caller-given
//! reader so this crate stays free of I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::{Decoder, join};
use crate::diagnostic::Diagnostics;
use crate::limits;
use crate::yaml::{self, Node, Value};

/// A parsed, validated job spec.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub questions: Vec<Question>,
    pub models: Vec<String>,
    pub regions: Vec<String>,
    pub prompt: PromptSpec,
    pub sampling: Sampling,
    pub samples: u32,
    pub run: RunPolicy,
    /// Where each top-level list came from, so later checks (catalog resolution) can
    /// point at the spec's own lines.
    pub positions: SpecPositions,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecPositions {
    pub file: PathBuf,
    pub models: HashMap<String, (usize, usize)>,
    pub regions: HashMap<String, (usize, usize)>,
    pub mode: (usize, usize),
    pub system: Option<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Question {
    pub id: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Other fields of a JSONL line (e.g. `category`), kept for reports.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Comply,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Chat,
    Raw,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptSpec {
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Declared regional overrides of the system prompt.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub system_by_region: BTreeMap<String, String>,
    /// The day chat templates' `strftime_now` reports (local models); when absent, the
    /// day the job was first recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<crate::template::Date>,
    /// Local chat prompts: parse control-token text in the questions too, as a server that
    /// tokenizes the rendered prompt whole does (a question can then forge a turn). Off by
    /// default, and then absent from the job's identity.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parse_special: bool,
}

impl PromptSpec {
    /// The system prompt a region gets, and whether it is a declared override.
    pub fn system_for(&self, region: &str) -> (Option<&str>, bool) {
        match self.system_by_region.get(region) {
            Some(s) => (Some(s.as_str()), true),
            None => (self.system.as_deref(), false),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Sampling {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Provider-specific sampling parameters (`repeat_penalty: 1.0`, `top_k: 1`): sent
    /// verbatim on `openai-*` endpoints, applied by the local provider where it knows them
    /// ([`LOCAL_EXTRA`]). Part of the job's identity only when present, so specs without it
    /// keep their job ids.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The `sampling.extra` parameters the local provider applies; the others it does not know.
pub const LOCAL_EXTRA: &[&str] =
    &["top_k", "min_p", "repeat_penalty", "repeat_last_n", "frequency_penalty", "presence_penalty"];

/// At most this many `sampling.extra` parameters.
const MAX_EXTRA: usize = 64;

/// How to run the job. Not part of the job's identity: changing it continues the job.
/// Stored with a submitted job (as its JSON) for the workers that run it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunPolicy {
    pub concurrency: usize,
    pub delay_ms: u64,
    pub max_attempts: u32,
    pub timeout_s: f64,
    /// Execute at most this many items in this run.
    pub limit: Option<u64>,
    pub on_possibly_billed: OnPossiblyBilled,
    /// How long a claim lasts without a heartbeat; defaults to `timeout_s + 30`.
    pub lease_s: Option<f64>,
    /// `parallax run` first probes each model in the job's regions (`parallax probe`) and
    /// the report shows each region's verdict beside its rates.
    pub probe: bool,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            concurrency: 8,
            delay_ms: 0,
            max_attempts: 4,
            timeout_s: 60.0,
            limit: None,
            on_possibly_billed: OnPossiblyBilled::Retry,
            lease_s: None,
            probe: false,
        }
    }
}

impl RunPolicy {
    pub fn lease_s(&self) -> f64 {
        self.lease_s.unwrap_or(self.timeout_s + 30.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPossiblyBilled {
    Retry,
    Park,
}

const TOP_FIELDS: &[&str] = &["name", "questions", "models", "regions", "prompt", "sampling", "samples", "run"];
const QUESTION_FIELDS: &[&str] = &["id", "text", "question", "expect", "file", "id_prefix"];
const PROMPT_FIELDS: &[&str] = &["system", "system_by_region", "mode", "date", "parse_special"];
const SAMPLING_FIELDS: &[&str] = &["temperature", "top_p", "max_tokens", "seed", "stop", "extra"];

/// Request fields parallax writes itself: an `extra` parameter may not replace one.
const RESERVED_EXTRA: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "stop",
    "stream",
    "add_bos",
    "parse_special",
    "plain_spans",
    "gguf_sha256",
    "template_sha256",
    "grammar",
];
const RUN_FIELDS: &[&str] =
    &["concurrency", "delay_ms", "max_attempts", "timeout_s", "limit", "on_possibly_billed", "lease_s", "probe"];

/// Reads a file named by the spec (question files). The CLI passes `std::fs::read_to_string`.
pub type ReadFile<'a> = &'a mut dyn FnMut(&Path) -> std::io::Result<String>;

impl JobSpec {
    /// Parses and validates a spec. `path` names the file in diagnostics and anchors
    /// relative `file:` entries.
    pub fn parse(text: &str, path: &Path, read: ReadFile<'_>) -> Result<JobSpec, Diagnostics> {
        let mut d = Decoder::new(path);
        let root = match yaml::parse(text) {
            Ok(root) => root,
            Err(e) => {
                d.diags.push(path, (e.line, e.column), "", format!("invalid YAML: {}", e.message), None);
                return Err(d.diags);
            }
        };
        let spec = decode_spec(&mut d, &root, path, read);
        match spec {
            Some(spec) if d.diags.is_empty() => Ok(spec),
            _ => Err(d.diags.sorted()),
        }
    }
}

fn decode_spec(d: &mut Decoder<'_>, root: &Node, path: &Path, read: ReadFile<'_>) -> Option<JobSpec> {
    if matches!(root.value, Value::Null) {
        d.error(root, "", "the spec is empty", Some("a spec needs `name`, `questions`, `models` and `regions`".into()));
        return None;
    }
    let top = d.fields(root, "", TOP_FIELDS)?;
    let mut positions = SpecPositions { file: path.to_owned(), ..Default::default() };

    let name = match top.get("name") {
        Some(n) => d.name(n, "name").and_then(|name| {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
                Some(name)
            } else {
                d.error(
                    n,
                    "name",
                    format!("`{name}` has characters a job id cannot carry"),
                    Some("use letters, digits, `-`, `_` and `.`".into()),
                );
                None
            }
        }),
        None => {
            d.error(root, "name", "missing field `name`", Some("add `name: my-job`: it prefixes the job id".into()));
            None
        }
    };

    let questions = match top.get("questions") {
        Some(q) => decode_questions(d, q, path, read),
        None => {
            d.error(
                root,
                "questions",
                "missing field `questions`",
                Some("add a list of `{id, text}` items or `file:` entries".into()),
            );
            None
        }
    };

    let list = |d: &mut Decoder<'_>, field: &str, positions: &mut HashMap<String, (usize, usize)>| {
        let node = match top.get(field) {
            Some(node) => node,
            None => {
                d.error(
                    root,
                    field,
                    format!("missing field `{field}`"),
                    Some(format!("add `{field}: [...]` naming entries of the catalog")),
                );
                return None;
            }
        };
        let names = d.names(node, field)?;
        if names.is_empty() {
            d.error(node, field, "must name at least one entry", None);
            return None;
        }
        let mut out = Vec::new();
        for (i, (name, n)) in names.into_iter().enumerate() {
            if positions.contains_key(&name) {
                d.error(
                    n,
                    &format!("{field}[{i}]"),
                    format!("`{name}` is listed twice"),
                    Some("remove the duplicate".into()),
                );
                continue;
            }
            positions.insert(name.clone(), (n.line, n.column));
            out.push(name);
        }
        Some(out)
    };
    let models = list(d, "models", &mut positions.models);
    let regions = list(d, "regions", &mut positions.regions);

    let prompt = decode_prompt(d, top.get("prompt"), &mut positions, regions.as_deref().unwrap_or(&[]));
    let sampling = top.get("sampling").map_or(Some(Sampling::default()), |n| decode_sampling(d, n));
    let samples = match top.get("samples") {
        Some(n) => d.uint(n, "samples", limits::SAMPLES).map(|s| s as u32),
        None => Some(1),
    };
    let run = top.get("run").map_or(Some(RunPolicy::default()), |n| decode_run(d, n));

    // The plan is never built past its bound: every count is known here.
    if let (Some(q), Some(m), Some(r), Some(s)) = (&questions, &models, &regions, samples) {
        let n = [q.len() as u64, m.len() as u64, r.len() as u64, u64::from(s)]
            .into_iter()
            .try_fold(1u64, u64::checked_mul)
            .unwrap_or(u64::MAX);
        if n > limits::MAX_EXECUTIONS {
            let at = top.get("samples").or(top.get("questions")).unwrap_or(root);
            d.error(
                at,
                if top.get("samples").is_some() { "samples" } else { "questions" },
                format!(
                    "{} questions × {} models × {} regions × {s} samples is more than {} executions",
                    limits::grouped(q.len() as u64),
                    m.len(),
                    r.len(),
                    limits::grouped(limits::MAX_EXECUTIONS)
                ),
                Some("split the job, or ask for fewer samples".into()),
            );
            return None;
        }
    }

    Some(JobSpec {
        name: name?,
        questions: questions?,
        models: models?,
        regions: regions?,
        prompt: prompt?,
        sampling: sampling?,
        samples: samples?,
        run: run?,
        positions,
    })
}

fn decode_prompt(
    d: &mut Decoder<'_>,
    node: Option<&Node>,
    positions: &mut SpecPositions,
    regions: &[String],
) -> Option<PromptSpec> {
    let Some(node) = node else {
        return Some(PromptSpec {
            mode: Mode::Chat,
            system: None,
            system_by_region: BTreeMap::new(),
            date: None,
            parse_special: false,
        });
    };
    positions.mode = (node.line, node.column);
    let f = d.fields(node, "prompt", PROMPT_FIELDS)?;
    let system = match f.get("system") {
        Some(n) if matches!(n.value, Value::Null) => None,
        Some(n) => {
            positions.system = Some((n.line, n.column));
            Some(d.string(n, "prompt.system")?)
        }
        None => None,
    };
    let mut system_by_region = BTreeMap::new();
    let known: std::collections::HashSet<&str> = regions.iter().map(String::as_str).collect();
    if let Some(n) = f.get("system_by_region") {
        let overrides = d.open_fields(n, "prompt.system_by_region")?;
        for (region, value) in overrides.iter() {
            let field = format!("prompt.system_by_region.{region}");
            if !regions.is_empty() && !known.contains(region) {
                d.error(
                    value,
                    &field,
                    format!("`{region}` is not one of the spec's regions"),
                    Some(format!("regions: {}", regions.join(", "))),
                );
            }
            if let Some(text) = d.string(value, &field) {
                system_by_region.insert(region.to_owned(), text);
            }
        }
    }
    let date = match f.get("date") {
        Some(n) => {
            let text = d.string(n, "prompt.date")?;
            match text.parse::<crate::template::Date>() {
                Ok(date) => Some(date),
                Err(_) => {
                    d.error(
                        n,
                        "prompt.date",
                        format!("`{text}` is not a date"),
                        Some("write it as YYYY-MM-DD, e.g. `2026-07-26`".into()),
                    );
                    return None;
                }
            }
        }
        None => None,
    };
    let mode = match f.get("mode") {
        Some(n) => {
            positions.mode = (n.line, n.column);
            match d.string(n, "prompt.mode")?.as_str() {
                "chat" => Mode::Chat,
                "raw" => Mode::Raw,
                other => {
                    d.error(
                        n,
                        "prompt.mode",
                        format!("unknown mode `{other}`"),
                        Some(
                            "use `chat` (messages, the server's chat template) or `raw` (the exact text, no template)"
                                .into(),
                        ),
                    );
                    return None;
                }
            }
        }
        None => Mode::Chat,
    };
    if mode == Mode::Raw && (system.is_some() || !system_by_region.is_empty()) {
        let at = f.get("system").or(f.get("system_by_region")).unwrap_or(node);
        d.error(
            at,
            "prompt.system",
            "raw mode sends the question text as is and has no system prompt",
            Some("remove `system`, or use `mode: chat`".into()),
        );
        return None;
    }
    let parse_special = match f.get("parse_special") {
        Some(n) => d.bool(n, "prompt.parse_special")?,
        None => false,
    };
    Some(PromptSpec { mode, system, system_by_region, date, parse_special })
}

fn decode_sampling(d: &mut Decoder<'_>, node: &Node) -> Option<Sampling> {
    let f = d.fields(node, "sampling", SAMPLING_FIELDS)?;
    let mut s = Sampling::default();
    let mut ok = true;
    macro_rules! opt {
        ($name:literal, $e:expr) => {
            if let Some(n) = f.get($name) {
                let v = $e(d, n, concat!("sampling.", $name));
                ok &= v.is_some();
                v
            } else {
                None
            }
        };
    }
    s.temperature = opt!("temperature", |d: &mut Decoder<'_>, n, f| d.number(n, f, limits::TEMPERATURE));
    s.top_p = opt!("top_p", |d: &mut Decoder<'_>, n, f| d.number(n, f, limits::TOP_P));
    s.max_tokens = opt!("max_tokens", |d: &mut Decoder<'_>, n, f| d.uint(n, f, limits::MAX_TOKENS));
    s.seed = opt!("seed", |d: &mut Decoder<'_>, n, f| d.int(n, f));
    s.stop = opt!("stop", |d: &mut Decoder<'_>, n, f| d.strings(n, f)).unwrap_or_default();
    if let Some(n) = f.get("extra") {
        ok &= decode_extra(d, n).map(|e| s.extra = e).is_some();
    }
    if s.stop.len() > limits::STOP_STRINGS {
        d.error(
            f.get("stop").unwrap_or(node),
            "sampling.stop",
            format!("{} stop strings; at most {}", s.stop.len(), limits::STOP_STRINGS),
            None,
        );
        ok = false;
    }
    ok.then_some(s)
}

/// `sampling.extra`: names of provider parameters to scalar values.
fn decode_extra(d: &mut Decoder<'_>, node: &Node) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
    let f = d.open_fields(node, "sampling.extra")?;
    let mut out = std::collections::BTreeMap::new();
    let mut ok = true;
    for (name, v) in f.iter() {
        let field = format!("sampling.extra.{name}");
        if RESERVED_EXTRA.contains(&name) {
            let hint = if SAMPLING_FIELDS.contains(&name) {
                format!("set it as `sampling.{name}`")
            } else {
                "parallax writes this field itself".to_owned()
            };
            d.error(v, &field, format!("`{name}` is not a provider-specific parameter"), Some(hint));
            ok = false;
            continue;
        }
        let value = match &v.value {
            crate::yaml::Value::Bool(b) => serde_json::json!(b),
            crate::yaml::Value::Int(i) => serde_json::json!(i),
            crate::yaml::Value::Float(x) if x.is_finite() => serde_json::json!(x),
            crate::yaml::Value::Str(t) if t.chars().count() <= 1000 => serde_json::json!(t),
            _ => {
                d.error(
                    v,
                    &field,
                    format!(
                        "expected a number, a boolean or a string (at most 1,000 characters), found {}",
                        v.value.type_name()
                    ),
                    None,
                );
                ok = false;
                continue;
            }
        };
        out.insert(name.to_owned(), value);
    }
    if out.len() > MAX_EXTRA {
        d.error(node, "sampling.extra", format!("{} parameters; at most {MAX_EXTRA}", out.len()), None);
        ok = false;
    }
    ok.then_some(out)
}

fn decode_run(d: &mut Decoder<'_>, node: &Node) -> Option<RunPolicy> {
    let f = d.fields(node, "run", RUN_FIELDS)?;
    let mut r = RunPolicy::default();
    let mut ok = true;
    if let Some(n) = f.get("concurrency") {
        ok &= d.uint(n, "run.concurrency", limits::CONCURRENCY).map(|v| r.concurrency = v as usize).is_some();
    }
    if let Some(n) = f.get("delay_ms") {
        ok &= d.uint(n, "run.delay_ms", limits::DELAY_MS).map(|v| r.delay_ms = v).is_some();
    }
    if let Some(n) = f.get("max_attempts") {
        ok &= d.uint(n, "run.max_attempts", limits::MAX_ATTEMPTS).map(|v| r.max_attempts = v as u32).is_some();
    }
    if let Some(n) = f.get("timeout_s") {
        ok &= d.number(n, "run.timeout_s", limits::TIMEOUT_S).map(|v| r.timeout_s = v).is_some();
    }
    if let Some(n) = f.get("lease_s") {
        ok &= d.number(n, "run.lease_s", limits::LEASE_S).map(|v| r.lease_s = Some(v)).is_some();
    }
    if let Some(n) = f.get("limit") {
        ok &= d.uint(n, "run.limit", limits::LIMIT).map(|v| r.limit = Some(v)).is_some();
    }
    if let Some(n) = f.get("probe") {
        ok &= d.bool(n, "run.probe").map(|v| r.probe = v).is_some();
    }
    if let Some(n) = f.get("on_possibly_billed") {
        match d.string(n, "run.on_possibly_billed").as_deref() {
            Some("retry") => r.on_possibly_billed = OnPossiblyBilled::Retry,
            Some("park") => r.on_possibly_billed = OnPossiblyBilled::Park,
            Some(other) => {
                d.error(
                    n,
                    "run.on_possibly_billed",
                    format!("unknown policy `{other}`"),
                    Some("use `retry` or `park`".into()),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(r)
}

/// Where a question came from, for duplicate-id messages.
struct Origin {
    file: PathBuf,
    line: usize,
    column: usize,
}

fn decode_questions(d: &mut Decoder<'_>, node: &Node, spec_path: &Path, read: ReadFile<'_>) -> Option<Vec<Question>> {
    let Value::Seq(items) = &node.value else {
        d.error(
            node,
            "questions",
            format!("expected a list, found {}", node.value.type_name()),
            Some("write `questions:` as a list of `- id: ...` / `- file: ...` items".into()),
        );
        return None;
    };
    let mut out: Vec<Question> = Vec::new();
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut ok = true;
    let (mut total_bytes, mut too_many) = (0usize, false);
    let mut add = |d: &mut Decoder<'_>, q: Question, origin: Origin| {
        if out.len() >= limits::MAX_QUESTIONS || total_bytes + q.text.len() > limits::MAX_QUESTION_FILE_BYTES as usize {
            if !too_many {
                too_many = true;
                d.diags.push(
                    &origin.file,
                    (origin.line, origin.column),
                    "questions",
                    format!(
                        "too many questions: a job holds at most {} questions of {} MiB in all",
                        limits::grouped(limits::MAX_QUESTIONS as u64),
                        limits::MAX_QUESTION_FILE_BYTES >> 20
                    ),
                    Some("split the question set over several jobs".into()),
                );
            }
            return false;
        }
        total_bytes += q.text.len();
        if let Some(first) = seen.get(&q.id) {
            d.diags.push(
                &origin.file,
                (origin.line, origin.column),
                "id",
                format!("duplicate question id `{}`", q.id),
                Some(format!(
                    "first defined at {}:{}; ids must be unique across the job",
                    first.file.display(),
                    first.line
                )),
            );
            return false;
        }
        seen.insert(q.id.clone(), origin);
        out.push(q);
        true
    };
    for (i, item) in items.iter().enumerate() {
        let field = format!("questions[{i}]");
        let Some(f) = d.fields(item, &field, QUESTION_FIELDS) else {
            ok = false;
            continue;
        };
        if let Some(file_node) = f.get("file") {
            if f.get("id").or(f.get("text")).or(f.get("question")).or(f.get("expect")).is_some() {
                d.error(
                    item,
                    &field,
                    "a `file:` entry takes no fields but `id_prefix`",
                    Some("put inline questions in their own `- id: ...` items".into()),
                );
                ok = false;
                continue;
            }
            let Some(rel) = d.string(file_node, &join(&field, "file")) else {
                ok = false;
                continue;
            };
            let path = spec_path.parent().unwrap_or(Path::new("")).join(&rel);
            let text = match read(&path) {
                Ok(text) => text,
                Err(e) => {
                    d.error(
                        file_node,
                        &join(&field, "file"),
                        format!("cannot read `{}`: {e}", path.display()),
                        Some("paths are relative to the spec file".into()),
                    );
                    ok = false;
                    continue;
                }
            };
            // Parallel sets often reuse ids (`q01` in English and in Chinese): a prefix keeps them apart.
            let prefix = match f.get("id_prefix") {
                Some(n) => match d.name(n, &join(&field, "id_prefix")) {
                    Some(p) => p,
                    None => {
                        ok = false;
                        continue;
                    }
                },
                None => String::new(),
            };
            for (mut q, origin) in read_question_file(d, &path, &text) {
                q.id.insert_str(0, &prefix);
                ok &= add(d, q, origin);
            }
            continue;
        }
        if let Some(n) = f.get("id_prefix") {
            d.error(
                n,
                &join(&field, "id_prefix"),
                "`id_prefix` applies to `file:` entries only",
                Some("write the full `id` of an inline question".into()),
            );
            ok = false;
            continue;
        }
        let id = match f.get("id") {
            Some(n) => d.name(n, &join(&field, "id")),
            None => {
                d.error(
                    item,
                    &join(&field, "id"),
                    "missing field `id`",
                    Some("every question needs a unique `id`".into()),
                );
                None
            }
        };
        let text_node = match (f.get("text"), f.get("question")) {
            (Some(_), Some(q)) => {
                d.error(
                    q,
                    &join(&field, "question"),
                    "both `text` and `question` given",
                    Some("keep one of them".into()),
                );
                None
            }
            (Some(n), None) | (None, Some(n)) => Some(n),
            (None, None) => {
                d.error(item, &join(&field, "text"), "missing field `text`", Some("add the question's `text`".into()));
                None
            }
        };
        let text = text_node.and_then(|n| {
            let text = d.string(n, &join(&field, "text"))?;
            if text.trim().is_empty() {
                d.error(
                    n,
                    &join(&field, "text"),
                    "the question is empty",
                    Some("write the question, or remove the item".into()),
                );
                return None;
            }
            if text.len() > limits::MAX_QUESTION_BYTES {
                d.error(n, &join(&field, "text"), too_long(text.len()), None);
                return None;
            }
            Some(text)
        });
        let expect = match f.get("expect") {
            Some(n) => decode_expect(d, n, &join(&field, "expect")),
            None => Some(None),
        };
        match (id, text, expect) {
            (Some(id), Some(text), Some(expect)) => {
                let origin = Origin { file: d.file.to_owned(), line: item.line, column: item.column };
                ok &= add(d, Question { id, text, expect, meta: Default::default() }, origin);
            }
            _ => ok = false,
        }
    }
    if ok && out.is_empty() {
        d.error(node, "questions", "no questions", Some("add at least one question".into()));
        return None;
    }
    ok.then_some(out)
}

fn decode_expect(d: &mut Decoder<'_>, n: &Node, field: &str) -> Option<Option<Expect>> {
    match d.string(n, field)?.as_str() {
        "comply" => Some(Some(Expect::Comply)),
        "refuse" => Some(Some(Expect::Refuse)),
        other => {
            d.error(n, field, format!("unknown expectation `{other}`"), Some("use `comply` or `refuse`".into()));
            None
        }
    }
}

fn too_long(bytes: usize) -> String {
    format!(
        "the question is {} bytes; a question holds at most {} bytes",
        limits::grouped(bytes as u64),
        limits::grouped(limits::MAX_QUESTION_BYTES as u64)
    )
}

/// Reads a JSONL (`{"id", "text" | "question", "expect"?, ...}`) or a `.txt` file (one
/// question a line, id `<stem>-<line>`). Blank lines are skipped in both.
fn read_question_file(d: &mut Decoder<'_>, path: &Path, text: &str) -> Vec<(Question, Origin)> {
    let mut out = Vec::new();
    let is_txt = path.extension().is_some_and(|e| e == "txt");
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let origin = Origin { file: path.to_owned(), line: lineno, column: 1 };
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > limits::MAX_QUESTION_BYTES + 4096 {
            d.diags.push(path, (lineno, 1), "text", too_long(line.len()), None);
            continue;
        }
        if is_txt {
            if line.trim_end().len() > limits::MAX_QUESTION_BYTES {
                d.diags.push(path, (lineno, 1), "text", too_long(line.trim_end().len()), None);
                continue;
            }
            out.push((
                Question {
                    id: format!("{stem}-{lineno}"),
                    text: line.trim_end().to_owned(),
                    expect: None,
                    meta: Default::default(),
                },
                origin,
            ));
            continue;
        }
        let mut problem = |field: &str, message: String, hint: &str| {
            d.diags.push(path, (lineno, 1), field, message, Some(hint.to_owned()));
        };
        let obj = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(obj)) => obj,
            Ok(_) => {
                problem("", "expected a JSON object".into(), "each line is one {\"id\": ..., \"text\": ...} object");
                continue;
            }
            Err(e) => {
                problem("", format!("invalid JSON: {e}"), "each line is one {\"id\": ..., \"text\": ...} object");
                continue;
            }
        };
        let mut meta = serde_json::Map::new();
        let (mut id, mut text, mut expect, mut bad) = (None, None, None, false);
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("id", serde_json::Value::String(s)) if !s.trim().is_empty() => id = Some(s),
                ("id", serde_json::Value::Number(n)) => id = Some(n.to_string()),
                ("id", v) => {
                    problem(
                        "id",
                        format!("`id` must be a non-empty string, found {v}"),
                        "give every line a unique string id",
                    );
                    bad = true;
                }
                ("text" | "question", serde_json::Value::String(s)) => {
                    if text.is_some() {
                        problem(&k, "both `text` and `question` given".into(), "keep one of them");
                        bad = true;
                    }
                    text = Some(s);
                }
                ("text" | "question", v) => {
                    problem(&k, format!("expected a string, found {v}"), "the question is a string");
                    bad = true;
                }
                ("expect", serde_json::Value::String(s)) if s == "comply" || s == "refuse" => {
                    expect = Some(if s == "comply" { Expect::Comply } else { Expect::Refuse });
                }
                ("expect", serde_json::Value::Null) => {}
                ("expect", v) => {
                    problem("expect", format!("unknown expectation {v}"), "use \"comply\" or \"refuse\"");
                    bad = true;
                }
                (_, v) => {
                    meta.insert(k, v);
                }
            }
        }
        match (id, text) {
            _ if bad => {}
            (None, _) => problem("id", "missing field `id`".into(), "give every line a unique string id"),
            (_, None) => problem("text", "missing field `text` (or `question`)".into(), "add the question's text"),
            (Some(_), Some(t)) if t.trim().is_empty() => {
                problem("text", "the question is empty".into(), "write the question, or remove the line")
            }
            (Some(_), Some(t)) if t.len() > limits::MAX_QUESTION_BYTES => {
                problem("text", too_long(t.len()), "shorten it")
            }
            (Some(id), Some(text)) => out.push((Question { id, text, expect, meta }, origin)),
        }
    }
    out
}
