//! Hugging Face references for `local-gguf` models: `hf:owner/repo/file.gguf`, downloaded
//! once with the `hf-hub` crate.
//!
//! The syntax is `hf:<owner>/<repo>[@<revision>]/<file>`: the repository is always the
//! first two segments, the file (which may sit in folders) is the rest and ends in
//! `.gguf`, and the revision (a branch, tag or commit; default `main`) may not contain
//! `/`. A reference may stand in two places of a `local-gguf` endpoint:
//!
//! - as a model's `name` under `models:` — the endpoint's `path:` is then the directory the
//!   file is downloaded into (created if missing; a file there is an error), so one endpoint
//!   can mix local files and hub files. `path: ${PARALLAX_MODELS:-~/.cache/parallax/models}`
//!   makes it the directory `scripts/fetch-models.sh` fills;
//! - as the endpoint's `path:` itself, for an endpoint of one model (as a file path is) —
//!   the file is then downloaded into `$PARALLAX_MODELS`, or `~/.cache/parallax/models`.
//!
//! Downloads use hf-hub's cache layout under that directory
//! (`models--<owner>--<repo>/{blobs,snapshots,refs}`). A file already there is used as is,
//! without asking the hub (a branch is not re-checked: remove the `models--…` folder to
//! update it). `HF_ENDPOINT` replaces `https://huggingface.co`; `HF_TOKEN` (else the token
//! file of `$HF_HOME`, or `~/.cache/huggingface/token`) authenticates gated repositories.
//! What is downloaded is said on stderr, with a progress bar on a terminal. A download that
//! receives nothing for `PARALLAX_HUB_STALL_SECS` (default 60) fails instead of hanging.

use std::path::{Path, PathBuf};

/// How a Hugging Face reference starts.
pub const PREFIX: &str = "hf:";

/// `hf:<owner>/<repo>[@<revision>]/<file>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `owner/repo`.
    pub repo: String,
    pub revision: String,
    /// The file's path inside the repository.
    pub file: String,
}

impl HubRef {
    /// `None` when `raw` is not a Hugging Face reference (no `hf:` prefix); otherwise the
    /// reference, or why it is malformed.
    pub fn parse(raw: &str) -> Option<Result<HubRef, String>> {
        let rest = raw.strip_prefix(PREFIX)?;
        Some(Self::parse_rest(rest).map_err(|why| {
            format!("`{raw}` is not a Hugging Face reference: {why}\n\nhint: write `hf:<owner>/<repo>/<file>.gguf` or `hf:<owner>/<repo>@<revision>/<file>.gguf`")
        }))
    }

    fn parse_rest(rest: &str) -> Result<HubRef, String> {
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() < 3 {
            return Err("it needs an owner, a repository and a file".into());
        }
        if let Some(bad) = segments.iter().find(|s| s.is_empty() || **s == "." || **s == "..") {
            return Err(format!("`{bad}` is not a path segment"));
        }
        let (name, revision) = match segments[1].split_once('@') {
            Some((_, "")) => return Err("the revision after `@` is empty".into()),
            Some((name, rev)) => (name, rev),
            None => (segments[1], "main"),
        };
        if name.is_empty() {
            return Err("the repository name is empty".into());
        }
        if segments.iter().enumerate().any(|(i, s)| i != 1 && s.contains('@')) {
            return Err("only the repository may carry an `@<revision>`".into());
        }
        let file = segments[2..].join("/");
        if !file.to_ascii_lowercase().ends_with(".gguf") {
            return Err(format!("the file `{file}` is not a `.gguf` file"));
        }
        Ok(HubRef { repo: format!("{}/{name}", segments[0]), revision: revision.to_owned(), file })
    }
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.revision == "main" {
            write!(f, "{PREFIX}{}/{}", self.repo, self.file)
        } else {
            let (owner, name) = self.repo.split_once('/').expect("owner/repo");
            write!(f, "{PREFIX}{owner}/{name}@{}/{}", self.revision, self.file)
        }
    }
}

/// The models directory: `$PARALLAX_MODELS`, or `~/.cache/parallax/models` (where
/// `scripts/fetch-models.sh` puts its models).
pub fn models_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PARALLAX_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/parallax/models"))
        .ok_or_else(|| {
            "neither PARALLAX_MODELS nor HOME is set, so there is no models directory to download into".into()
        })
}

/// The hub's base URL: `HF_ENDPOINT`, or `https://huggingface.co`.
#[cfg(feature = "local")]
fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .map_or_else(|| "https://huggingface.co".to_owned(), |e| e.trim_end_matches('/').to_owned())
}

/// `HF_TOKEN`, else the token file the Hugging Face tools write.
#[cfg(feature = "local")]
fn token() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN").ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let file = match std::env::var_os("HF_HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join("token"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface/token"),
    };
    std::fs::read_to_string(file).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The local file of `reference`, downloaded into `cache` unless it is there already.
#[cfg(feature = "local")]
pub fn fetch(reference: &HubRef, cache: &Path) -> Result<PathBuf, String> {
    use hf_hub::api::tokio::ApiBuilder;
    use hf_hub::{Cache, Repo, RepoType};

    if cache.exists() && !cache.is_dir() {
        return Err(format!(
            "`{}` is a file, but `{reference}` is downloaded into a directory: make `path:` a directory (e.g. `${{PARALLAX_MODELS:-~/.cache/parallax/models}}`)",
            cache.display()
        ));
    }
    let repo = Repo::with_revision(reference.repo.clone(), RepoType::Model, reference.revision.clone());
    if let Some(file) = Cache::new(cache.to_owned()).repo(repo.clone()).get(&reference.file) {
        return Ok(file);
    }
    let endpoint = endpoint();
    let api = ApiBuilder::from_cache(Cache::new(cache.to_owned()))
        .with_endpoint(endpoint.clone())
        .with_token(token())
        .with_progress(false)
        .build()
        .map_err(|e| format!("cannot set up a Hugging Face client for `{reference}`: {}", chain(&e)))?;
    let api = api.repo(repo);
    let url = api.url(&reference.file);
    let progress = Progress::new(format!("{reference} from {url} into {}", cache.display()));
    let stall = stall_timeout()?;
    let activity = progress.activity.clone();
    // `units_of` is synchronous and called from async commands: the download runs on a
    // thread of its own with its own runtime, whatever runtime the caller is on.
    let downloaded = std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let done = runtime.block_on(async {
                // hf-hub sets no timeout: a hub that stops sending would hang the command. A
                // download that finished wins over a watchdog that fired at the same moment.
                tokio::select! {
                    biased;
                    done = api.download_with_progress(&reference.file, progress) => Some(done),
                    () = activity.stalled(stall) => None,
                }
            });
            // Do not wait for a stalled connection's blocking work (a DNS lookup) to end.
            runtime.shutdown_background();
            Ok::<_, std::io::Error>(done)
        })
        .join()
    });
    match downloaded {
        Ok(Ok(Some(Ok(file)))) => {
            eprintln!("downloaded {reference}: {}", file.display());
            Ok(file)
        }
        Ok(Ok(Some(Err(e)))) => Err(download_error(reference, &url, &endpoint, &e)),
        Ok(Ok(None)) => Err(format!(
            "cannot download `{reference}` from {url}: the hub sent nothing for {} s\n\nhint: the hub is {endpoint}; check the network, or raise {STALL_ENV} (seconds) on a slow link",
            stall.as_secs()
        )),
        Ok(Err(e)) => Err(format!("cannot download `{reference}`: cannot start a runtime: {e}")),
        Err(_) => Err(format!("cannot download `{reference}` from {url}: the download panicked")),
    }
}

#[cfg(not(feature = "local"))]
pub fn fetch(reference: &HubRef, _cache: &Path) -> Result<PathBuf, String> {
    Err(format!(
        "`{reference}` is a Hugging Face model, but this parallax was built without local models\n\nhint: build with `--features local` (the default)"
    ))
}

#[cfg(feature = "local")]
fn download_error(reference: &HubRef, url: &str, endpoint: &str, e: &hf_hub::api::tokio::ApiError) -> String {
    use hf_hub::api::tokio::ApiError;
    let status = match e {
        ApiError::RequestError(r) => r.status().map(|s| s.as_u16()),
        _ => None,
    };
    let why = match status {
        Some(401 | 403) => format!(
            "the hub refused access ({}): a gated or private repository needs HF_TOKEN",
            status.unwrap_or_default()
        ),
        Some(404) => "the hub has no such repository, revision or file".to_owned(),
        _ => chain(e),
    };
    format!(
        "cannot download `{reference}` from {url}: {why}\n\nhint: the hub is {endpoint} (set HF_ENDPOINT to use another); without access to it, download the file yourself and point the endpoint's `path:` at it (or at its directory, naming the model by its file name), or run `bash scripts/fetch-models.sh` for the quickstart's models"
    )
}

/// An error and its sources, `: `-joined (reqwest's own message hides the cause).
#[cfg(feature = "local")]
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// How long a download may go without receiving a byte, in seconds (default 60).
#[cfg(feature = "local")]
const STALL_ENV: &str = "PARALLAX_HUB_STALL_SECS";

#[cfg(feature = "local")]
fn stall_timeout() -> Result<std::time::Duration, String> {
    match std::env::var(STALL_ENV).ok().filter(|v| !v.is_empty()) {
        None => Ok(std::time::Duration::from_secs(60)),
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s > 0 => Ok(std::time::Duration::from_secs(s)),
            _ => Err(format!("{STALL_ENV}=`{v}`: expected a whole number of seconds above 0")),
        },
    }
}

/// When a download last heard from the hub (its start counts): the watchdog's clock.
#[cfg(feature = "local")]
#[derive(Clone)]
struct Activity(std::sync::Arc<std::sync::Mutex<std::time::Instant>>);

#[cfg(feature = "local")]
impl Activity {
    fn new() -> Activity {
        Activity(std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    /// Returns once `limit` has passed without a [`touch`](Self::touch).
    async fn stalled(&self, limit: std::time::Duration) {
        loop {
            let last = *self.0.lock().unwrap_or_else(|p| p.into_inner());
            match limit.checked_sub(last.elapsed()) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return,
            }
        }
    }
}

/// Says on stderr what is being downloaded, with a bar on a terminal.
#[cfg(feature = "local")]
#[derive(Clone)]
struct Progress {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    activity: Activity,
}

#[cfg(feature = "local")]
impl Progress {
    fn new(what: String) -> Progress {
        use std::io::IsTerminal;
        let quiet = std::env::var("PARALLAX_NO_PROGRESS").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::hidden();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress { what, bar, activity: Activity::new() }
    }
}

#[cfg(feature = "local")]
impl hf_hub::api::tokio::Progress for Progress {
    async fn init(&mut self, size: usize, _filename: &str) {
        self.activity.touch();
        eprintln!("downloading {} ({:.1} MB)", self.what, size as f64 / 1e6);
        if let Some(bar) = &self.bar {
            bar.set_length(size as u64);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    async fn update(&mut self, size: usize) {
        self.activity.touch();
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        }
    }

    async fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<HubRef, String> {
        HubRef::parse(raw).expect("an hf: reference")
    }

    #[test]
    fn references_parse_with_and_without_a_revision() {
        assert_eq!(HubRef::parse("SmolLM2-135M-Instruct.Q4_1.gguf"), None);
        let r = parse("hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_0.gguf").unwrap();
        assert_eq!(r.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(r.revision, "main");
        assert_eq!(r.file, "SmolLM2-135M-Instruct-Q4_0.gguf");
        assert_eq!(r.to_string(), "hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_0.gguf");
        let r = parse("hf:org/repo@v1.0/sub/dir/model.GGUF").unwrap();
        assert_eq!((r.repo.as_str(), r.revision.as_str(), r.file.as_str()), ("org/repo", "v1.0", "sub/dir/model.GGUF"));
        assert_eq!(r.to_string(), "hf:org/repo@v1.0/sub/dir/model.GGUF");
    }

    #[test]
    fn malformed_references_say_why() {
        for (raw, why) in [
            ("hf:org/model.gguf", "an owner, a repository and a file"),
            ("hf:org//model.gguf", "not a path segment"),
            ("hf:org/repo/../x.gguf", "not a path segment"),
            ("hf:org/repo@/model.gguf", "revision after `@` is empty"),
            ("hf:org/@rev/model.gguf", "repository name is empty"),
            ("hf:org/repo/model@x.gguf", "only the repository"),
            ("hf:org/repo/model.safetensors", "not a `.gguf` file"),
        ] {
            let e = parse(raw).unwrap_err();
            assert!(e.contains(why) && e.contains(raw) && e.contains("hint:"), "{raw}: {e}");
        }
    }
}
