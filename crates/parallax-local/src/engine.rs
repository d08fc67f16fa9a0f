//! The llama.cpp engine: one backend per process, one resident model at a time, its
//! generations side by side while their threads fit the machine's cores.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use sha2::{Digest, Sha256};

/// The llama.cpp bindings this build links (checked against `Cargo.lock` by a test), so a
/// result records which implementation produced it.
pub const LLAMA_CPP_SYS_VERSION: &str = "0.1.161";

/// Prompt tokens decoded per llama.cpp batch.
const BATCH: usize = 512;

/// Why a generation did not finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
    #[error("cannot read `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("llama.cpp cannot load `{path}` (is it a GGUF model file?)")]
    Load { path: PathBuf },
    #[error(
        "`{path}` has SHA-256 {found}, but the job was planned against {expected}: the file changed since; plan the job again (it will get a new id)"
    )]
    FileChanged { path: PathBuf, expected: String, found: String },
    #[error(
        "the prompt ({prompt} tokens) and max_tokens ({max_tokens}) exceed the model's context of {context} tokens"
    )]
    TooLong { prompt: usize, max_tokens: usize, context: usize },
    #[error("llama.cpp failed: {0}")]
    Inference(String),
    #[error("llama.cpp cannot read the grammar: {0}")]
    Grammar(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    /// Whether another attempt may succeed (a bad file or prompt will not get better).
    pub fn retryable(&self) -> bool {
        matches!(self, EngineError::Inference(_) | EngineError::Timeout(_) | EngineError::Cancelled)
    }
}

/// How to sample, read from the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub max_tokens: usize,
    pub seed: u32,
    pub stop: Vec<String>,
    /// Generate exactly `max_tokens`, past any end-of-generation token (benchmarks).
    pub ignore_eos: bool,
    /// A GBNF grammar (root rule `root`) the output must follow, as llama.cpp reads it: a
    /// judge's verdict is one of its label words, whatever the model's size.
    pub grammar: Option<String>,
    /// llama.cpp's own samplers, where a spec's `sampling.extra` names them.
    pub extra: Extra,
}

/// The provider-specific samplers a spec may pin (`sampling.extra`), as llama.cpp's server
/// names them. Unset: not in the chain (llama.cpp's server would apply `repeat_penalty: 1.1`
/// by default; parallax applies nothing it was not asked for).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    /// Tokens the penalties look back over; 64 (llama.cpp's default) when a penalty is set.
    pub repeat_last_n: Option<i32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
}

impl Extra {
    fn penalised(&self) -> bool {
        self.repeat_penalty.is_some() || self.frequency_penalty.is_some() || self.presence_penalty.is_some()
    }
}

/// One generation to run.
#[derive(Debug, Clone)]
pub struct Generation<'a> {
    pub file: &'a Path,
    /// The file's SHA-256 where the caller hashed it in this process already (the CLI
    /// does, to plan); `None`: the engine hashes the file when it loads it.
    pub file_sha256: Option<&'a str>,
    /// The SHA-256 the job was planned against; the loaded file must match it.
    pub gguf_sha256: &'a str,
    pub prompt: &'a str,
    pub add_bos: bool,
    /// Tokenize control-token text as control tokens (chat prompts), or as plain text (raw).
    pub parse_special: bool,
    /// Byte ranges of `prompt` always tokenized as plain text: a chat prompt's message
    /// content, so that a question cannot forge a turn (see `parallax_core::plan::LocalPrompt`).
    pub plain: &'a [(usize, usize)],
    pub sampling: Sampling,
    pub threads: usize,
}

/// What came out.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub text: String,
    /// `stop` (end of generation token or a stop string) or `length` (max_tokens).
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The hex SHA-256 of the prompt's token ids, each as 4 little-endian bytes.
    pub token_ids_sha256: String,
    pub sampler: String,
    pub prompt_ms: f64,
    pub generation_ms: f64,
}

struct Resident {
    file: PathBuf,
    sha256: String,
    model: LlamaModel,
}

/// The process's llama.cpp engine. At most one model is resident: asking for another waits
/// until the resident one's generations end, then frees it before loading the next.
/// Generations of the resident model run side by side while their threads fit this
/// machine's cores (one that needs more than all of them runs alone). Each has a context of
/// its own over the shared weights, so an answer is the one it would be alone.
pub struct Engine {
    state: Mutex<State>,
    /// Signalled whenever a generation ends or a model is loaded.
    changed: Condvar,
    /// The threads generations may use at once.
    cores: usize,
    /// How many times a model was loaded (tests and the bench check grouping with it).
    loads: AtomicU64,
    /// The most generations that ran at once (tests check side-by-side running with it).
    most_at_once: AtomicUsize,
}

#[derive(Default)]
struct State {
    resident: Option<Arc<Resident>>,
    /// Generations and tokenizations holding the resident model, and their threads.
    users: usize,
    threads: usize,
    /// Callers waiting to load another model. While any waits, the resident model takes
    /// no new users, or a steady stream of them would keep the other from its turn.
    swaps_waiting: usize,
}

/// The resident model, held by one generation or tokenization: it stays resident until
/// every holder is done.
struct Held<'e> {
    // Fields drop in order: the model goes with the last `Arc`, so ours goes before the
    // count says we are done, and a swap that follows frees the weights itself (and returns
    // their heap at once).
    resident: Arc<Resident>,
    _slot: Slot<'e>,
}

/// A holder's place in the engine's count of users and threads, given back when dropped.
struct Slot<'e> {
    engine: &'e Engine,
    threads: usize,
}

impl std::ops::Deref for Held<'_> {
    type Target = Resident;
    fn deref(&self) -> &Resident {
        &self.resident
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut s = self.engine.lock();
        s.users -= 1;
        s.threads -= self.threads;
        drop(s);
        self.engine.changed.notify_all();
    }
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
static ENGINE: OnceLock<Engine> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs every tensor it loads; keep them out of the user's terminal.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default().with_logs_enabled(false));
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

impl Engine {
    /// Inference threads when a catalog does not say: every core of this machine.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The engine of this process (llama.cpp's backend can be initialised only once).
    pub fn global() -> &'static Engine {
        ENGINE.get_or_init(|| Engine {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            cores: Engine::default_threads(),
            loads: AtomicU64::new(0),
            most_at_once: AtomicUsize::new(0),
        })
    }

    /// Models loaded so far by this process.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// The most generations this process has run at once.
    pub fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }

    /// How many generations of `threads` threads each this engine runs side by side.
    pub fn side_by_side(threads: usize) -> usize {
        (Engine::default_threads() / threads.max(1)).max(1)
    }

    /// The token ids a text becomes on `file`'s vocabulary, as a generation would feed them.
    pub fn tokenize(
        &self,
        file: &Path,
        text: &str,
        add_bos: bool,
        parse_special: bool,
    ) -> Result<Vec<i32>, EngineError> {
        self.tokenize_prompt(file, text, add_bos, parse_special, &[])
    }

    /// Like [`Engine::tokenize`], with the `plain` byte ranges tokenized as plain text.
    pub fn tokenize_prompt(
        &self,
        file: &Path,
        text: &str,
        add_bos: bool,
        parse_special: bool,
        plain: &[(usize, usize)],
    ) -> Result<Vec<i32>, EngineError> {
        let r = self.hold(backend()?, file, None, 0)?;
        Ok(prompt_tokens(&r.model, text, add_bos, parse_special, plain).iter().map(|t| t.0).collect())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `file` as the resident model for a caller that computes on `threads` threads:
    /// at once if it is resident and the threads fit, else once they do or, for another
    /// model, once the resident one's holders are done (it is freed, then `file` loaded).
    fn hold(
        &self,
        backend: &LlamaBackend,
        file: &Path,
        known_sha256: Option<&str>,
        threads: usize,
    ) -> Result<Held<'_>, EngineError> {
        let mut s = self.lock();
        let mut waits_to_swap = false;
        let resident = loop {
            let here = s.resident.as_ref().filter(|r| r.file == file).cloned();
            if here.is_some() && waits_to_swap {
                // Another caller loaded this model meanwhile: wait as one of its users.
                waits_to_swap = false;
                s.swaps_waiting -= 1;
                self.changed.notify_all();
            }
            let fits = s.users == 0 || s.threads + threads <= self.cores;
            match here {
                Some(resident) if fits && s.swaps_waiting == 0 => break resident,
                Some(_) => {}
                None if s.users == 0 => {
                    // No longer waiting (taken back first: a load that panics must not leave
                    // a swap counted that nobody waits for, holding back every later caller).
                    if waits_to_swap {
                        s.swaps_waiting -= 1;
                    }
                    // Free the old weights before mapping the new ones: one model resident at a time.
                    if s.resident.take().is_some() {
                        return_freed_memory();
                    }
                    let loaded = self.load(backend, file, known_sha256);
                    self.changed.notify_all();
                    let resident = Arc::new(loaded?);
                    s.resident = Some(resident.clone());
                    break resident;
                }
                None if !waits_to_swap => {
                    waits_to_swap = true;
                    s.swaps_waiting += 1;
                }
                None => {}
            }
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        };
        s.users += 1;
        s.threads += threads;
        self.most_at_once.fetch_max(s.users, Ordering::SeqCst);
        Ok(Held { resident, _slot: Slot { engine: self, threads } })
    }

    fn load(&self, backend: &LlamaBackend, file: &Path, known_sha256: Option<&str>) -> Result<Resident, EngineError> {
        let sha256 = match known_sha256 {
            Some(s) => s.to_owned(),
            None => sha256_file(file)?,
        };
        let model = LlamaModel::load_from_file(backend, file, &LlamaModelParams::default())
            .map_err(|_| EngineError::Load { path: file.to_owned() })?;
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(Resident { file: file.to_owned(), sha256, model })
    }

    /// Runs one generation, loading its model first if another is resident. The timeout
    /// counts from when the engine is free for it; it and `cancel` are checked between tokens.
    pub fn generate(
        &self,
        g: &Generation<'_>,
        timeout: Option<Duration>,
        cancel: &AtomicBool,
    ) -> Result<Generated, EngineError> {
        let backend = backend()?;
        let threads = g.threads.max(1);
        let r = self.hold(backend, g.file, g.file_sha256, threads)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        if r.sha256 != g.gguf_sha256 {
            return Err(EngineError::FileChanged {
                path: g.file.to_owned(),
                expected: g.gguf_sha256.to_owned(),
                found: r.sha256.clone(),
            });
        }
        run(backend, &r.model, g, deadline, cancel)
    }
}

fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    g: &Generation<'_>,
    deadline: Option<Instant>,
    cancel: &AtomicBool,
) -> Result<Generated, EngineError> {
    let vocab = model.vocab();
    let tokens = prompt_tokens(model, g.prompt, g.add_bos, g.parse_special, g.plain);
    let mut hasher = Sha256::new();
    for t in &tokens {
        hasher.update(t.0.to_le_bytes());
    }
    let token_ids_sha256 = hex::encode(hasher.finalize());

    let context = model.n_ctx_train() as usize;
    let needed = tokens.len() + g.sampling.max_tokens;
    if needed > context || tokens.is_empty() {
        return Err(EngineError::TooLong { prompt: tokens.len(), max_tokens: g.sampling.max_tokens, context });
    }
    let threads = i32::try_from(g.threads.max(1)).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(needed as u32))
        .with_n_batch(BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params).map_err(|e| EngineError::Inference(e.to_string()))?;

    let started = Instant::now();
    let check = |at: Instant| -> Result<(), EngineError> {
        if cancel.load(Ordering::SeqCst) {
            return Err(EngineError::Cancelled);
        }
        match deadline {
            Some(d) if at >= d => Err(EngineError::Timeout(d.saturating_duration_since(started))),
            _ => Ok(()),
        }
    };
    let s = &g.sampling;
    // Built before the prompt is decoded: a grammar llama.cpp cannot read fails at once. The
    // grammar goes first, so that what the others choose from is only what it allows.
    let mut chain = Vec::new();
    let mut names = Vec::new();
    if let Some(grammar) = &s.grammar {
        chain.push(LlamaSampler::grammar(model, grammar, "root").map_err(|e| EngineError::Grammar(e.to_string()))?);
        names.push("grammar".to_owned());
    }
    // llama.cpp's order: penalties, then the truncations, then temperature.
    let x = &s.extra;
    if x.penalised() {
        let (last_n, repeat, freq, present) = (
            x.repeat_last_n.unwrap_or(64),
            x.repeat_penalty.unwrap_or(1.0),
            x.frequency_penalty.unwrap_or(0.0),
            x.presence_penalty.unwrap_or(0.0),
        );
        chain.push(LlamaSampler::penalties(model.n_vocab(), last_n, repeat, freq, present));
        names.push(format!("penalties(last_n={last_n} repeat={repeat} freq={freq} present={present})"));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        names.push("greedy".to_owned());
    } else {
        if let Some(k) = x.top_k.filter(|k| *k > 0) {
            chain.push(LlamaSampler::top_k(k));
            names.push(format!("top_k={k}"));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if let Some(p) = x.min_p.filter(|p| *p > 0.0) {
            chain.push(LlamaSampler::min_p(p, 1));
            names.push(format!("min_p={p}"));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed));
        names.push(format!("top_p={} temp={} dist(seed={})", s.top_p, s.temperature, s.seed));
    }
    let sampler_name = names.join(" ");
    let mut sampler = match chain.len() {
        1 => chain.remove(0),
        _ => LlamaSampler::chain_simple(chain),
    };

    let mut batch = LlamaBatch::new(BATCH, 1);
    for (c, chunk) in tokens.chunks(BATCH).enumerate() {
        check(Instant::now())?;
        batch.clear();
        let last_chunk = (c + 1) * BATCH >= tokens.len();
        for (i, t) in chunk.iter().enumerate() {
            let pos = (c * BATCH + i) as i32;
            let logits = last_chunk && i + 1 == chunk.len();
            batch.add(*t, pos, &[0], logits).map_err(|e| EngineError::Inference(e.to_string()))?;
        }
        ctx.decode(&mut batch).map_err(|e| EngineError::Inference(e.to_string()))?;
    }
    let prompt_done = Instant::now();

    let mut out: Vec<u8> = Vec::new();
    let mut finish_reason = "length";
    let mut completion_tokens = 0;
    let mut pos = tokens.len() as i32;
    let mut logits_at = batch.n_tokens() - 1;
    while completion_tokens < s.max_tokens {
        check(Instant::now())?;
        // `sample` also accepts the token into every sampler's state (the grammar's).
        let token = sampler.sample(&ctx, logits_at);
        completion_tokens += 1;
        if vocab.is_eog(token) && !s.ignore_eos {
            finish_reason = "stop";
            break;
        }
        out.extend_from_slice(&vocab.token_to_piece(token, false, None));
        if let Some(end) = stop_at(&out, &s.stop) {
            out.truncate(end);
            finish_reason = "stop";
            break;
        }
        if completion_tokens == s.max_tokens {
            break;
        }
        batch.clear();
        batch.add(token, pos, &[0], true).map_err(|e| EngineError::Inference(e.to_string()))?;
        pos += 1;
        logits_at = 0;
        ctx.decode(&mut batch).map_err(|e| EngineError::Inference(e.to_string()))?;
    }
    let done = Instant::now();
    Ok(Generated {
        text: String::from_utf8_lossy(&out).into_owned(),
        finish_reason,
        prompt_tokens: tokens.len(),
        completion_tokens,
        token_ids_sha256,
        sampler: sampler_name,
        prompt_ms: (prompt_done - started).as_secs_f64() * 1e3,
        generation_ms: (done - prompt_done).as_secs_f64() * 1e3,
    })
}

/// Hands the heap a freed model leaves behind back to the system. The weights are mapped
/// and go with the model; its buffers stay in malloc's arenas otherwise, and count against
/// the next model (`bench/local-memory.sh`: a SmolLM2-then-Gemma job peaked at 1.05–1.09×
/// Gemma alone without this, 0.96–1.01× with it).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only returns free pages to the kernel; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The prompt's tokens: BOS only when asked (the plan decided it), never EOS. The `plain`
/// ranges (sorted, apart, on character boundaries: the caller checked) are tokenized as
/// plain text, the rest with `parse_special`.
fn prompt_tokens(
    model: &LlamaModel,
    text: &str,
    add_bos: bool,
    parse_special: bool,
    plain: &[(usize, usize)],
) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    let mut tokens = Vec::new();
    if add_bos {
        tokens.push(vocab.bos());
    }
    let mut piece = |part: &str, special: bool| {
        if !part.is_empty() {
            tokens.extend(vocab.tokenize(part.as_bytes(), false, special));
        }
    };
    let mut at = 0;
    for &(start, end) in plain {
        piece(&text[at..start], parse_special);
        piece(&text[start..end], false);
        at = end;
    }
    piece(&text[at..], parse_special);
    tokens
}

/// Whether `plain` ranges fit `text` as [`prompt_tokens`] needs them: sorted, apart, within
/// it and on character boundaries.
pub fn plain_ranges_fit(text: &str, plain: &[(usize, usize)]) -> bool {
    let mut at = 0;
    plain.iter().all(|&(start, end)| {
        let ok = at <= start
            && start <= end
            && end <= text.len()
            && text.is_char_boundary(start)
            && text.is_char_boundary(end);
        at = end;
        ok
    })
}

/// Where the earliest stop string begins in the output, if one has appeared.
fn stop_at(out: &[u8], stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| out.windows(s.len()).position(|w| w == s.as_bytes())).min()
}

/// The hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, EngineError> {
    let read_err = |e: std::io::Error| EngineError::Read { path: path.to_owned(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(read_err)?;
    parallax_core::sha256_reader(file).map_err(read_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stops = vec!["\n\n".to_owned(), "END".to_owned()];
        assert_eq!(stop_at(b"abc END\n\n", &stops), Some(4));
        assert_eq!(stop_at(b"abc\n\nEND", &stops), Some(3));
        assert_eq!(stop_at(b"abc", &stops), None);
        assert_eq!(stop_at(b"abc", &[String::new()]), None);
    }

    #[test]
    fn the_recorded_bindings_version_is_the_locked_one() {
        let lock = include_str!("../../../Cargo.lock");
        let entry =
            lock.split("[[package]]").find(|p| p.contains("name = \"llama-cpp-sys-2\"")).expect("in Cargo.lock");
        assert!(entry.contains(&format!("version = \"{LLAMA_CPP_SYS_VERSION}\"")), "{entry}");
    }
}
