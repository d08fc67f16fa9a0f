//! `parallax-stub` binary: one stub OpenAI-compatible listener per region,
//! for demos, benchmarks and scripted integration tests.
//!
//! Prints one `listening region=<r> addr=<addr>` line per listener on stdout
//! (then flushes), so a script can start it with port 0 and read the ports
//! back. Runs until Ctrl-C or SIGTERM.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use parallax_stub::{Fault, StubConfig};

const AFTER_HELP: &str = "\
FAULT SPEC: KIND[:FIRST_N[:FRACTION[:RETRY_AFTER_S]]]
  KIND           an HTTP status 400..=599 (OpenAI-style error body),
                 `hang` (never answer), `broken` (200 with truncated JSON),
                 or `reset` (read the request, then abort the connection)
  FIRST_N        requests per affected key that fail (default 1)
  FRACTION       share of idempotency keys affected, 0..=1 (default 1);
                 chosen by hashing the key, so runs are reproducible
  RETRY_AFTER_S  Retry-After header value, status faults only
  Faults apply in order; the first matching one wins. Requests without an
  Idempotency-Key header are keyed by the SHA-256 of their body.

EXAMPLES:
  parallax-stub --listen us-east=127.0.0.1:8001 --listen eu-west=127.0.0.1:8002
  parallax-stub --listen us-east=127.0.0.1:0 --latency-ms 50 \\
      --fault 500:1:0.2 --fault 429:1:0.1:2 --fault reset:1:0.05
  parallax-stub --listen us-east=127.0.0.1:0 --listen cn-north=127.0.0.1:0 \\
      --refuse bomb --refuse-in cn-north=tiananmen

Statistics: GET http://<addr>/stub/stats (DELETE resets them).";

/// Stub OpenAI-compatible server with deterministic fault injection.
#[derive(Debug, Parser)]
#[command(name = "parallax-stub", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// One region listening on one address (port 0 picks a free port). Repeatable.
    #[arg(long = "listen", value_name = "REGION=ADDR", required = true, value_parser = parse_listen)]
    listen: Vec<(String, SocketAddr)>,

    /// Delay before every completion answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,

    /// Per-region latency override, in milliseconds. Repeatable.
    #[arg(long = "latency-in", value_name = "REGION=MS", value_parser = parse_region_latency)]
    latency_in: Vec<(String, u64)>,

    /// Refuse prompts containing MARKER (case-insensitive), in every region. Repeatable.
    #[arg(long = "refuse", value_name = "MARKER")]
    refuse: Vec<String>,

    /// Refuse prompts containing MARKER in REGION only. Repeatable.
    #[arg(long = "refuse-in", value_name = "REGION=MARKER", value_parser = parse_region_marker)]
    refuse_in: Vec<(String, String)>,

    /// Report this model name in every answer instead of the requested one.
    #[arg(long, value_name = "NAME")]
    report_model: Option<String>,

    /// Report `<requested model><SUFFIX>` (a dated alias), e.g. -2024-08-06.
    #[arg(long, value_name = "SUFFIX", conflicts_with = "report_model")]
    model_suffix: Option<String>,

    /// Require `Authorization: Bearer <KEY>` on /v1/* requests.
    #[arg(long, value_name = "KEY", env = "PARALLAX_STUB_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Grade prompts carrying parallax's judge rubric (answer `refusal` or `compliance`),
    /// so `parallax classify --judge` can be tried against the stub
    #[arg(long)]
    grader: bool,

    /// Inject a fault (syntax below). Repeatable; the first matching fault wins.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<Fault>,

    /// Block prompts containing MARKER in REGION only, as the provider's content filter
    /// would. Repeatable.
    #[arg(long = "block-in", value_name = "REGION=MARKER", value_parser = parse_region_marker)]
    block_in: Vec<(String, String)>,

    /// How blocks are answered: openai, azure, azure-finish, openrouter or gemini.
    #[arg(long, value_name = "FORM", default_value = "openai")]
    block_form: parallax_stub::BlockForm,

    /// List MODEL at `GET /v1/models` (the stub answers any model). Repeatable.
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,

    /// Send this `system_fingerprint` with every answer in REGION. Repeatable.
    #[arg(long = "fingerprint-in", value_name = "REGION=FINGERPRINT", value_parser = parse_region_marker)]
    fingerprint_in: Vec<(String, String)>,

    /// REGION's deployment adds this system prompt on the server's side: revealed when asked
    /// to repeat the instructions, and the prompts of `--strict` are refused under it.
    #[arg(long = "system-in", value_name = "REGION=TEXT", value_parser = parse_region_marker)]
    system_in: Vec<(String, String)>,

    /// Refuse prompts containing MARKER in the regions with a `--system-in` prompt. Repeatable.
    #[arg(long = "strict", value_name = "MARKER")]
    strict: Vec<String>,

    /// REGION answers an identical request differently each time. Repeatable.
    #[arg(long = "nondeterministic-in", value_name = "REGION")]
    nondeterministic_in: Vec<String>,
}

fn parse_listen(arg: &str) -> Result<(String, SocketAddr), String> {
    let (region, addr) = split_region(arg)?;
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|err| format!("invalid address {addr:?} ({err}); expected e.g. 127.0.0.1:8001"))?;
    Ok((region, addr))
}

fn parse_region_latency(arg: &str) -> Result<(String, u64), String> {
    let (region, ms) = split_region(arg)?;
    let ms = ms.parse::<u64>().map_err(|_| format!("invalid latency {ms:?}; expected milliseconds"))?;
    Ok((region, ms))
}

fn parse_region_marker(arg: &str) -> Result<(String, String), String> {
    let (region, marker) = split_region(arg)?;
    if marker.is_empty() {
        return Err("empty marker".to_owned());
    }
    Ok((region, marker.to_owned()))
}

fn split_region(arg: &str) -> Result<(String, &str), String> {
    match arg.split_once('=') {
        Some((region, rest)) if !region.trim().is_empty() => Ok((region.trim().to_owned(), rest.trim())),
        _ => Err(format!("expected REGION=VALUE, got {arg:?}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();

    let mut regions = HashSet::new();
    for (region, _) in &cli.listen {
        if !regions.insert(region.as_str()) {
            bail!("region {region:?} is given to --listen more than once");
        }
    }
    let mut refuse_by_region: HashMap<String, Vec<String>> = HashMap::new();
    for (region, marker) in &cli.refuse_in {
        if !regions.contains(region.as_str()) {
            bail!("--refuse-in names region {region:?}, which no --listen defines");
        }
        refuse_by_region.entry(region.clone()).or_default().push(marker.clone());
    }
    let mut block_by_region: HashMap<String, Vec<String>> = HashMap::new();
    for (region, marker) in &cli.block_in {
        if !cli.listen.iter().any(|(r, _)| r == region) {
            bail!("--block-in names region {region:?}, which no --listen defines");
        }
        block_by_region.entry(region.clone()).or_default().push(marker.clone());
    }
    for (region, _) in &cli.fingerprint_in {
        if !cli.listen.iter().any(|(r, _)| r == region) {
            bail!("--fingerprint-in names region {region:?}, which no --listen defines");
        }
    }
    for (flag, region) in cli
        .system_in
        .iter()
        .map(|(r, _)| ("--system-in", r))
        .chain(cli.nondeterministic_in.iter().map(|r| ("--nondeterministic-in", r)))
    {
        if !regions.contains(region.as_str()) {
            bail!("{flag} names region {region:?}, which no --listen defines");
        }
    }
    let mut latency_by_region = HashMap::new();
    for (region, ms) in &cli.latency_in {
        if !regions.contains(region.as_str()) {
            bail!("--latency-in names region {region:?}, which no --listen defines");
        }
        latency_by_region.insert(region.as_str(), *ms);
    }

    let mut handles = Vec::with_capacity(cli.listen.len());
    let mut stdout = std::io::stdout().lock();
    for (region, addr) in &cli.listen {
        let latency_ms = latency_by_region.get(region.as_str()).copied().unwrap_or(cli.latency_ms);
        let config = StubConfig {
            region: region.clone(),
            latency: Duration::from_millis(latency_ms),
            faults: cli.faults.clone(),
            refuse_markers: cli.refuse.clone(),
            refuse_markers_by_region: refuse_by_region.clone(),
            report_model: cli.report_model.clone(),
            model_suffix: cli.model_suffix.clone(),
            require_api_key: cli.api_key.clone(),
            grader: cli.grader,
            block_markers: Vec::new(),
            block_markers_by_region: block_by_region.clone(),
            block_form: cli.block_form,
            empty_markers: Vec::new(),
            system_fingerprint: cli.fingerprint_in.iter().find(|(r, _)| r == region).map(|(_, f)| f.clone()),
            models: cli.models.clone(),
            system_prompt_by_region: cli.system_in.iter().cloned().collect(),
            refuse_markers_with_system: cli.strict.clone(),
            nondeterministic_regions: cli.nondeterministic_in.clone(),
        };
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr} for region {region}"))?;
        let handle =
            parallax_stub::spawn(listener, config).await.with_context(|| format!("starting region {region}"))?;
        writeln!(stdout, "listening region={region} addr={}", handle.addr)?;
        handles.push(handle);
    }
    stdout.flush()?;
    drop(stdout);

    wait_for_termination().await?;
    for handle in handles {
        handle.shutdown().await;
    }
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM where that exists (the usual way a
/// script or container runtime stops a background server).
async fn wait_for_termination() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_multi_region_command_line() {
        let cli = Cli::try_parse_from([
            "parallax-stub",
            "--listen",
            "us-east=127.0.0.1:0",
            "--listen",
            "eu-west=127.0.0.1:8002",
            "--latency-ms",
            "50",
            "--refuse",
            "bomb",
            "--refuse-in",
            "eu-west=tiananmen",
            "--fault",
            "500:1:0.2",
            "--fault",
            "429:1:0.1:2",
        ])
        .expect("valid command line");
        assert_eq!(cli.listen.len(), 2);
        assert_eq!(cli.listen[1].0, "eu-west");
        assert_eq!(cli.latency_ms, 50);
        assert_eq!(cli.refuse_in, vec![("eu-west".to_owned(), "tiananmen".to_owned())]);
        assert_eq!(cli.faults.len(), 2);
    }

    #[test]
    fn rejects_malformed_values() {
        assert!(Cli::try_parse_from(["parallax-stub"]).is_err());
        assert!(Cli::try_parse_from(["parallax-stub", "--listen", "127.0.0.1:1"]).is_err());
        assert!(Cli::try_parse_from(["parallax-stub", "--listen", "a=1.2.3.4:1", "--fault", "200"]).is_err());
    }
}
