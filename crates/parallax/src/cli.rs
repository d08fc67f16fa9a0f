//! The command line: arguments only, no work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use parallax_core::limits;

/// Ask the same questions of many models in many regions, exactly once each, and compare the answers.
#[derive(Debug, Parser)]
#[command(name = "parallax", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The store: a SQLite file path (or `sqlite:` URL), or a PostgreSQL URL
    /// (`postgres://user@host/db`) that many workers can share
    #[arg(long, global = true, env = "PARALLAX_DB", hide_env_values = true, default_value = "parallax.db")]
    pub db: String,
    /// The catalog of regions, endpoints and models
    #[arg(long, global = true, env = "PARALLAX_CONFIG", default_value = "parallax.yaml")]
    pub config: PathBuf,
    /// Print nothing but data and errors
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Hide the progress bar
    #[arg(long, global = true, env = "PARALLAX_NO_PROGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_progress: bool,
    /// Log more (-v debug, -vv trace); RUST_LOG overrides
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show how many executions a job spec makes, which, and what each will send
    Plan(PlanArgs),
    /// Run a job spec: execute what is not done yet, exactly once each
    Run(RunArgs),
    /// Plan a job spec and enqueue it for workers; prints only the job id
    Submit(SubmitArgs),
    /// Run the submitted jobs' executions of these regions, until stopped
    Worker(WorkerArgs),
    /// Live and recently seen workers
    Workers(WorkersArgs),
    /// Cancel a job: workers stop claiming it, let calls in flight finish, and settle the rest
    Cancel(CancelArgs),
    /// Per model × region counts of a job; without an id, the recent jobs
    Status(StatusArgs),
    /// The executions of a job with their requests and answers
    Results(ResultsArgs),
    /// Label answers as compliance, partial or refusal (never calls a model again)
    Classify(ClassifyArgs),
    /// Findings: refusal rates with intervals, significant differences, divergent answers, audits
    Report(ReportArgs),
    /// Fingerprint the regions: ask one model a fixed probe set in every region and say,
    /// region by region, whether it served the same thing
    Probe(ProbeArgs),
    /// Serve the API, the live event stream and the portal over the store (and, unless
    /// `--no-runner`, run the submitted jobs in-process)
    Serve(ServeArgs),
    /// Check the catalog's models: raw-mode sentinels (do answers look instruction-tuned?)
    /// and chat-mode BOS (is it doubled?)
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only this model id
    #[arg(long)]
    pub model: Option<String>,
    /// Check only this region
    #[arg(long)]
    pub region: Option<String>,
    /// Tokens each sentinel answer may have (1 to 1,000,000)
    #[arg(long, default_value_t = 32, value_parser = max_tokens)]
    pub max_tokens: usize,
    /// Print the checks as JSON (`{"ok", "checks": [...]}`)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The job whose answers to label
    #[arg(required_unless_present = "input", conflicts_with = "input")]
    pub job_id: Option<String>,
    /// Classify `{"id", "prompt", "response"}` lines of a JSONL file (`-` for stdin) and
    /// write `{"id", "label", "evidence"}` lines to stdout
    #[arg(long, value_name = "FILE.jsonl")]
    pub input: Option<PathBuf>,
    /// Label again answers this classifier version already labelled
    #[arg(long, conflicts_with = "input")]
    pub all: bool,
    /// Also ask a catalog model (`openai-chat`, or a `local-gguf` chat model) to grade each
    /// answer with parallax's fixed rubric; its verdicts are stored beside the built-in
    /// labels, never over them. With `--input`, each output line gets a `judge` object
    /// (`name`, `rubric_version`, `label`, `raw`, `error`)
    #[arg(long, value_name = "MODEL@REGION")]
    pub judge: Option<String>,
    /// With `--judge`: grade only the answers whose built-in label is uncertain (the report
    /// then counts the judge's label for them)
    #[arg(long, requires = "judge", conflicts_with = "input")]
    pub uncertain_only: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    pub job_id: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write the report to this file instead of stdout
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Exit 1 when any model × region cell agrees with the questions' `expect` less often than this (0 to 1)
    #[arg(long, value_name = "FRACTION", value_parser = fraction)]
    pub min_agreement: Option<f64>,
    /// Count a built-in label below this confidence (0 to 1) as uncertain too: it then
    /// bounds its cell's rate, or a judge's label stands in for it
    #[arg(long, value_name = "FRACTION", value_parser = fraction)]
    pub min_confidence: Option<f64>,
    /// How many divergent questions to show in the table (0 to 100,000)
    #[arg(long, default_value_t = 10, value_parser = top)]
    pub top: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The job spec (YAML or JSON)
    pub spec: PathBuf,
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub format: PlanFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job spec (YAML or JSON)
    pub spec: PathBuf,
    #[command(flatten)]
    pub enqueue: EnqueueArgs,
    /// Override `run.limit`: execute at most this many items in this run
    #[arg(long, value_parser = limit)]
    pub limit: Option<u64>,
    /// Start without first checking each endpoint (`GET /models` with its key)
    #[arg(long)]
    pub no_preflight: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job spec (YAML or JSON)
    pub spec: PathBuf,
    #[command(flatten)]
    pub enqueue: EnqueueArgs,
}

/// How `run` and `submit` record a job.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Start a new job (`<id>-2`, `-3`, …) instead of continuing the recorded one
    #[arg(long)]
    pub fresh: bool,
    /// Re-arm failed executions in place with a fresh attempt budget
    #[arg(long)]
    pub retry_failed: bool,
    /// Re-arm parked executions (possibly billed attempts) in place
    #[arg(long)]
    pub retry_parked: bool,
    /// Override `run.concurrency` (1 to 10,000; with workers, it holds across them all)
    #[arg(long, value_parser = concurrency)]
    pub concurrency: Option<usize>,
}

impl EnqueueArgs {
    pub fn how(&self) -> parallax_app::Enqueue {
        parallax_app::Enqueue { fresh: self.fresh, retry_failed: self.retry_failed, retry_parked: self.retry_parked }
    }
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A region whose executions this worker runs (repeat for several); it needs only
    /// these regions' catalog entries and API keys
    #[arg(long = "region", value_name = "REGION", required = true)]
    pub regions: Vec<String>,
    /// Exit when these regions have nothing left to do (items under other workers' leases
    /// count until they finish or expire): 0 if everything it ran succeeded, 1 if some
    /// ended failed or parked
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Calls in flight per job, for jobs recorded without a policy (1 to 10,000)
    #[arg(long, value_parser = concurrency)]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The model (a catalog model id) to probe
    #[arg(long)]
    pub model: String,
    /// A region to compare (repeat for several); default: every region serving the model
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// `table` or `json` (`{"model", "probe_set", "job_id", "regions": [{"region", "verdict", "evidence"}]}`)
    #[arg(long, value_enum, default_value_t = ProbeFormat::Table)]
    pub format: ProbeFormat,
    /// Ask again (a new generation of the probe job) instead of reading a complete probe
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: std::net::SocketAddr,
    /// Only serve: workers elsewhere (`parallax worker`) run the jobs. Several servers can
    /// share one PostgreSQL store this way
    #[arg(long)]
    pub no_runner: bool,
    /// Anyone who can reach the server may read jobs, executions and reports without a
    /// token (submitting and cancelling still need one)
    #[arg(long)]
    pub public_read: bool,
    /// More API tokens, one per line: the token itself or `sha256:<hex>` of it
    /// (`PARALLAX_API_TOKEN` sets one more)
    #[arg(long, value_name = "FILE", env = "PARALLAX_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Calls in flight per job for the in-process runner, for jobs submitted without a
    /// policy (1 to 10,000)
    #[arg(long, value_parser = concurrency)]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Also list workers last seen more than an hour ago
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub job_id: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job id (see `parallax status` for the recent ones)
    pub job_id: Option<String>,
    /// List every attempt of the job
    #[arg(long)]
    pub attempts: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    pub job_id: String,
    #[arg(long)]
    pub question: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// List the attempts instead of the executions
    #[arg(long)]
    pub attempts: bool,
    /// Show what came back too: each row gains `raw_response`, `response_headers` and
    /// `system_fingerprint` (the result's attempt, else the last)
    #[arg(long)]
    pub raw: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Csv,
}

// Every number a flag takes has a range, checked as it is parsed (clap exits 2).

fn concurrency(s: &str) -> Result<usize, String> {
    limits::parse_in(s, &limits::CONCURRENCY).map(|n| n as usize)
}

fn limit(s: &str) -> Result<u64, String> {
    limits::parse_in(s, &limits::LIMIT)
}

fn max_tokens(s: &str) -> Result<usize, String> {
    limits::parse_in(s, &limits::MAX_TOKENS).map(|n| n as usize)
}

fn top(s: &str) -> Result<usize, String> {
    limits::parse_in(s, &limits::TOP).map(|n| n as usize)
}

fn fraction(s: &str) -> Result<f64, String> {
    limits::parse_f64_in(s, &limits::FRACTION)
}
