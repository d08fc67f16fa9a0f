//! `local-gguf` endpoints: GGUF models run in-process on llama.cpp.
//!
//! The plan (in `parallax-core`) has already rendered each request to the exact text the
//! tokenizer is fed, with whether to add BOS and the SHA-256 of the GGUF file and template
//! it was rendered for. This crate only tokenizes that text, checks that the file it loads
//! is the one planned, and generates. Each result carries its provenance: the token ids'
//! SHA-256, the GGUF's and template's SHA-256, the llama.cpp build and the thread count —
//! what a remote endpoint cannot prove.
//!
//! One model is resident per process ([`Engine::global`]), its generations side by side while
//! their threads fit the cores; the runner groups local work by model so that each is loaded
//! once.

mod engine;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use engine::{Engine, EngineError, Extra, Generated, Generation, LLAMA_CPP_SYS_VERSION, Sampling, sha256_file};
use parallax_providers::{Provider, Reply, SendError, SendFuture, SendRequest};
use serde_json::{Value as Json, json};

/// Defaults where a spec leaves sampling open (recorded in each result's provenance).
pub const DEFAULT_MAX_TOKENS: usize = 256;
pub const DEFAULT_TEMPERATURE: f32 = 1.0;

/// The provider of one `local-gguf` endpoint.
pub struct LocalProvider {
    /// The provider's model name (the plan's `requested_model`) → its GGUF file and the
    /// file's SHA-256 as hashed for the plan (so the engine need not read it again).
    files: HashMap<String, (PathBuf, String)>,
    threads: usize,
}

impl LocalProvider {
    /// `threads`: inference threads; `None` for every core of this machine.
    pub fn new(files: HashMap<String, (PathBuf, String)>, threads: Option<usize>) -> LocalProvider {
        LocalProvider { files, threads: threads.unwrap_or_else(Engine::default_threads) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Sets the flag when the call is dropped (timed out, or aborted by the user), so the
/// generation stops at its next token.
struct CancelOnDrop(Arc<AtomicBool>);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn bad_request(message: impl Into<String>) -> SendError {
    SendError::Local { message: message.into(), retryable: false }
}

/// The parts of a rendered local request (see `parallax_core::plan`).
struct Request {
    model: String,
    prompt: String,
    add_bos: bool,
    parse_special: bool,
    /// Byte ranges of `prompt` tokenized as plain text (a chat prompt's message content).
    plain_spans: Vec<(usize, usize)>,
    gguf_sha256: String,
    template_sha256: Option<String>,
    sampling: Sampling,
}

fn parse(body: &[u8]) -> Result<Request, SendError> {
    let v: Json = serde_json::from_slice(body).map_err(|e| bad_request(format!("local request is not JSON: {e}")))?;
    let str_field = |k: &str| v.get(k).and_then(Json::as_str).map(str::to_owned);
    let field = |k: &str| str_field(k).ok_or_else(|| bad_request(format!("local request lacks `{k}`")));
    let stop = match v.get("stop") {
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let prompt = field("prompt")?;
    let plain_spans = match v.get("plain_spans") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => {
            let spans: Option<Vec<(usize, usize)>> = items
                .iter()
                .map(|i| {
                    let pair = i.as_array().filter(|p| p.len() == 2)?;
                    Some((pair[0].as_u64()? as usize, pair[1].as_u64()? as usize))
                })
                .collect();
            spans
                .filter(|s| engine::plain_ranges_fit(&prompt, s))
                .ok_or_else(|| bad_request("`plain_spans` must be sorted [start, end] byte ranges within the prompt"))?
        }
        Some(_) => return Err(bad_request("`plain_spans` must be a list of [start, end] byte ranges")),
    };
    // A sample's seed is `seed + k - 1` (the plan's rule); llama.cpp takes 32 bits of it.
    let seed = v.get("seed").and_then(Json::as_i64).unwrap_or(0) as u32;
    Ok(Request {
        model: field("model")?,
        prompt,
        plain_spans,
        add_bos: v.get("add_bos").and_then(Json::as_bool).unwrap_or(false),
        parse_special: v.get("parse_special").and_then(Json::as_bool).unwrap_or(false),
        gguf_sha256: field("gguf_sha256")?,
        template_sha256: str_field("template_sha256"),
        sampling: Sampling {
            temperature: v.get("temperature").and_then(Json::as_f64).map_or(DEFAULT_TEMPERATURE, |t| t as f32),
            top_p: v.get("top_p").and_then(Json::as_f64).map_or(1.0, |p| p as f32),
            max_tokens: v.get("max_tokens").and_then(Json::as_u64).map_or(DEFAULT_MAX_TOKENS, |m| m as usize),
            seed,
            stop,
            ignore_eos: false,
            grammar: str_field("grammar"),
            // `sampling.extra`: the parameters llama.cpp knows; a value of the wrong type is
            // refused rather than dropped.
            extra: Extra {
                top_k: int_field(&v, "top_k")?,
                min_p: float_field(&v, "min_p")?,
                repeat_penalty: float_field(&v, "repeat_penalty")?,
                repeat_last_n: int_field(&v, "repeat_last_n")?,
                frequency_penalty: float_field(&v, "frequency_penalty")?,
                presence_penalty: float_field(&v, "presence_penalty")?,
            },
        },
    })
}

fn float_field(v: &Json, k: &str) -> Result<Option<f32>, SendError> {
    match v.get(k) {
        None | Some(Json::Null) => Ok(None),
        Some(x) => {
            x.as_f64().filter(|x| x.is_finite()).map(|x| Some(x as f32)).ok_or_else(|| {
                bad_request(format!("`sampling.extra.{k}` must be a number for a local model, found {x}"))
            })
        }
    }
}

fn int_field(v: &Json, k: &str) -> Result<Option<i32>, SendError> {
    match v.get(k) {
        None | Some(Json::Null) => Ok(None),
        Some(x) => x.as_i64().and_then(|x| i32::try_from(x).ok()).map(Some).ok_or_else(|| {
            bad_request(format!("`sampling.extra.{k}` must be a whole number for a local model, found {x}"))
        }),
    }
}

impl Provider for LocalProvider {
    fn send<'a>(&'a self, request: SendRequest<'a>) -> SendFuture<'a> {
        Box::pin(async move {
            let req = parse(request.body)?;
            let (file, file_sha256) = self
                .files
                .get(&req.model)
                .cloned()
                .ok_or_else(|| bad_request(format!("this endpoint has no model `{}`", req.model)))?;
            let threads = self.threads;
            let timeout = request.timeout;
            let cancel = Arc::new(AtomicBool::new(false));
            let _guard = CancelOnDrop(cancel.clone());
            let req = Arc::new(req);
            let job = {
                let req = req.clone();
                tokio::task::spawn_blocking(move || {
                    let g = Generation {
                        file: &file,
                        file_sha256: Some(&file_sha256),
                        gguf_sha256: &req.gguf_sha256,
                        prompt: &req.prompt,
                        add_bos: req.add_bos,
                        parse_special: req.parse_special,
                        plain: &req.plain_spans,
                        sampling: req.sampling.clone(),
                        threads,
                    };
                    // The timeout counts from when the engine has room for this generation.
                    Engine::global().generate(&g, Some(timeout), &cancel)
                })
            };
            let generated = job.await.map_err(|e| SendError::Local { message: e.to_string(), retryable: true })?;
            // In-process work is never billed, so a timeout here is a local failure (retried),
            // not the possibly billed `SendError::Timeout` of a remote call.
            let generated =
                generated.map_err(|e| SendError::Local { retryable: e.retryable(), message: e.to_string() })?;
            Ok(reply(&req, generated, threads))
        })
    }
}

fn reply(req: &Request, g: Generated, threads: usize) -> Reply {
    let tokens_per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    Reply {
        http_status: None,
        block: None,
        // The planned file's SHA-256 was checked against the loaded file's before generating.
        reported_model: Some(req.model.clone()),
        text: Some(g.text),
        finish_reason: Some(g.finish_reason.to_owned()),
        usage: Some(json!({
            "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens,
        })),
        provenance: Some(json!({
            "engine": "llama.cpp",
            "build": format!("llama-cpp-sys-2 {LLAMA_CPP_SYS_VERSION}, parallax-local {}", env!("CARGO_PKG_VERSION")),
            "threads": threads,
            "gguf_sha256": req.gguf_sha256,
            "template_sha256": req.template_sha256,
            "token_ids_sha256": g.token_ids_sha256,
            "add_bos": req.add_bos,
            "parse_special": req.parse_special,
            "plain_spans": req.plain_spans.len(),
            "sampler": g.sampler,
            "max_tokens": req.sampling.max_tokens,
            "prompt_tokens_per_s": tokens_per_s(g.prompt_tokens, g.prompt_ms),
            "generation_tokens_per_s": tokens_per_s(g.completion_tokens, g.generation_ms),
        })),
    }
}
