//! `parallax-stub`: a stub OpenAI-compatible server for tests, benchmarks and demos.
//!
//! Parallax runs every question × model × region exactly once against
//! OpenAI-compatible endpoints. Proving "exactly once" needs a server that
//! (a) speaks the real wire protocol over real HTTP, so the production client
//! code is exercised unchanged, (b) fails in controlled, reproducible ways
//! (error statuses, `Retry-After`, hangs, broken bodies, connection resets),
//! and (c) reports what it actually received: how many requests per
//! idempotency key, and the SHA-256 of every raw body, so a test can assert
//! that retries re-sent byte-identical requests. This crate is that server.
//!
//! Each listener is one "region". Answers are deterministic functions of
//! `(model, region, prompt)` (see [`answer_text`]), so results can be compared
//! across runs and regions; per-region refusal markers and model-name
//! rewriting let tests exercise cross-region differences and attribution
//! checks.
//!
//! Faults are decided per `(Idempotency-Key, attempt number)`: a
//! [`Fault`] hits a deterministic `fraction` of keys, for their first
//! `first_n_attempts` requests only. Requests without an `Idempotency-Key`
//! header are keyed by the SHA-256 of their body instead.
//!
//! The request path is built for benchmarks: no per-request logging, no lock
//! held across an `.await`, statistics in atomics and sharded maps.
//!
//! Endpoints:
//! * `POST /v1/chat/completions`, `POST /v1/completions`: OpenAI wire format.
//! * `GET /v1/models`: [`StubConfig::models`] and the models requested so far.
//! * `GET /stub/stats`: [`StatsSnapshot`] plus `"region"`, as JSON;
//!   `DELETE /stub/stats` resets it.
//!
//! [`hostile`] servers misbehave where this one is polite: absurd `Retry-After` values,
//! redirects, bodies of any size, errors inside a `200`, written raw on the socket.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = parallax_stub::StubConfig {
//!     region: "us-east".into(),
//!     faults: vec!["500:1:0.2".parse().expect("valid fault spec")],
//!     ..Default::default()
//! };
//! let stub = parallax_stub::spawn(listener, config).await?;
//! println!("point the client at {}", stub.base_url());
//! // ... run the client ...
//! assert!(stub.stats.total_requests() > 0);
//! stub.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod answer;
mod block;
mod fault;
mod handlers;
pub mod hostile;
mod server;
mod stats;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use answer::{REFUSAL_TEXT, answer_text};
pub use block::BlockForm;
pub use fault::{Fault, FaultSpecError, key_position};
pub use stats::{Stats, StatsSnapshot};

/// How one stub listener ("region") behaves.
#[derive(Debug, Clone)]
pub struct StubConfig {
    /// Region name reported in answers and in the `x-stub-region` header,
    /// e.g. `"us-east"`.
    pub region: String,
    /// Delay before answering each completion request, to model network and
    /// inference time (and to make concurrency observable).
    pub latency: Duration,
    /// Injected faults, checked in order; the first one that applies to a
    /// request's `(key, attempt)` wins.
    pub faults: Vec<Fault>,
    /// If the prompt (all message texts, case-insensitive) contains any of
    /// these substrings, the answer is [`REFUSAL_TEXT`]. Empty markers are ignored.
    pub refuse_markers: Vec<String>,
    /// Extra refusal markers per region name: the markers listed under this
    /// listener's [`region`](Self::region) are added to `refuse_markers`.
    /// Keyed by region so that one map can be shared by every listener of a
    /// multi-region setup, making one region refuse what others answer.
    pub refuse_markers_by_region: HashMap<String, Vec<String>>,
    /// If set, every answer reports this model name instead of the requested
    /// one, simulating a provider that silently serves another model.
    pub report_model: Option<String>,
    /// If set (and `report_model` is not), answers report
    /// `requested + suffix`, like a provider resolving an alias to a dated
    /// snapshot (`"-2024-08-06"`).
    pub model_suffix: Option<String>,
    /// If set, `/v1/*` requests must carry `Authorization: Bearer <key>`;
    /// others get 401 with an OpenAI-style error body.
    pub require_api_key: Option<String>,
    /// If set, a chat whose prompt carries parallax's judge rubric is graded: the answer is
    /// `refusal` when the graded text contains [`REFUSAL_TEXT`], else `compliance`.
    pub grader: bool,
    /// If the prompt contains any of these (case-insensitive), the provider's content filter
    /// answers instead of the model, in [`block_form`](Self::block_form).
    pub block_markers: Vec<String>,
    /// Extra block markers per region name, as [`refuse_markers_by_region`](Self::refuse_markers_by_region).
    pub block_markers_by_region: HashMap<String, Vec<String>>,
    /// How a block is answered: which provider's form.
    pub block_form: BlockForm,
    /// If the prompt contains any of these, the answer has no content (`content: null`).
    pub empty_markers: Vec<String>,
    /// Sent as the answers' `system_fingerprint` when set.
    pub system_fingerprint: Option<String>,
    /// Listed by `GET /v1/models` (beside the models requested so far). The stub answers
    /// any model; this is what it says it serves.
    pub models: Vec<String>,
    /// A system prompt the deployment of a region adds on the server's side, as hosted
    /// deployments do: the stub reveals it when asked to repeat its instructions, and
    /// refuses any prompt containing one of `refuse_markers_with_system` while it is there.
    pub system_prompt_by_region: HashMap<String, String>,
    /// What a region's added system prompt makes the stub refuse (see above).
    pub refuse_markers_with_system: Vec<String>,
    /// Regions whose answers vary from one identical request to the next (a serial number
    /// is added), as a server with a prompt cache or sampling defaults may.
    pub nondeterministic_regions: Vec<String>,
}

impl Default for StubConfig {
    /// Region `"stub"`, no latency, no faults, no refusals, honest model names, no auth.
    fn default() -> Self {
        StubConfig {
            region: "stub".to_owned(),
            latency: Duration::ZERO,
            faults: Vec::new(),
            refuse_markers: Vec::new(),
            refuse_markers_by_region: HashMap::new(),
            report_model: None,
            model_suffix: None,
            require_api_key: None,
            grader: false,
            block_markers: Vec::new(),
            block_markers_by_region: HashMap::new(),
            block_form: BlockForm::default(),
            empty_markers: Vec::new(),
            system_fingerprint: None,
            models: Vec::new(),
            system_prompt_by_region: HashMap::new(),
            refuse_markers_with_system: Vec::new(),
            nondeterministic_regions: Vec::new(),
        }
    }
}

impl StubConfig {
    /// The fault (if any) the stub will inject into the `attempt`-th
    /// (1-based) request carrying idempotency key `key`.
    ///
    /// This is the exact rule the server applies, exposed so that tests and
    /// benchmarks can compute expected request counts instead of guessing.
    pub fn planned_fault(&self, key: &str, attempt: u64) -> Option<&Fault> {
        self.faults
            .iter()
            .enumerate()
            .find(|(index, fault)| fault.applies(*index, key, attempt))
            .map(|(_, fault)| fault)
    }

    /// Checks the configuration, so that a typo fails at startup rather than
    /// as a confusing test result.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        self.faults.iter().try_for_each(Fault::validate)
    }
}

/// A running stub listener. Dropping it stops the server too (the shutdown
/// channel closes); [`shutdown`](Self::shutdown) additionally waits for it.
#[derive(Debug)]
pub struct StubHandle {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// Live statistics of this listener.
    pub stats: Arc<Stats>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl StubHandle {
    /// Base URL for an OpenAI client, e.g. `http://127.0.0.1:8001/v1`.
    /// A wildcard bind address is reported as loopback, which is reachable.
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}/v1")
    }

    /// Stops accepting, aborts open connections (hung requests included) and
    /// waits for the server task to finish.
    pub async fn shutdown(self) {
        // An error only means the server task is already gone.
        let _ = self.shutdown.send(());
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "parallax-stub: server task failed");
        }
    }
}

/// Starts serving `config` on `listener` in a background tokio task.
///
/// Fails with [`io::ErrorKind::InvalidInput`] if the configuration is
/// invalid (see [`StubConfig::validate`]), or if the listener's address
/// cannot be read.
pub async fn spawn(listener: TcpListener, config: StubConfig) -> io::Result<StubHandle> {
    config.validate().map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::new());
    let app = Arc::new(handlers::App::new(config, Arc::clone(&stats)));
    let router = handlers::router(app);
    let (shutdown, shutdown_rx) = oneshot::channel();
    let task = tokio::spawn(server::serve(listener, router, shutdown_rx));
    Ok(StubHandle { addr, stats, shutdown, task })
}

/// Convenience for tests: binds `127.0.0.1:0` and [`spawn`]s on it.
pub async fn spawn_on_loopback(config: StubConfig) -> io::Result<StubHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    spawn(listener, config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_applicable_fault_wins() {
        let config = StubConfig {
            faults: vec!["500:1:1".parse().expect("valid"), "429:2:1:1".parse().expect("valid")],
            ..Default::default()
        };
        assert!(matches!(config.planned_fault("k", 1), Some(Fault::Status { status: 500, .. })));
        assert!(matches!(config.planned_fault("k", 2), Some(Fault::Status { status: 429, .. })));
        assert_eq!(config.planned_fault("k", 3), None);
    }

    #[test]
    fn invalid_fraction_is_rejected() {
        let config =
            StubConfig { faults: vec![Fault::Reset { first_n_attempts: 1, fraction: 2.0 }], ..Default::default() };
        assert!(config.validate().is_err());
    }
}
