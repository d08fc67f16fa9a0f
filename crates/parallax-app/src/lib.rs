//! The parallax application: what the CLI, the worker and the HTTP server all do the same
//! way, behind the argument parsing and printing each of them owns.
//!
//! - [`load`] reads a job spec and a catalog from disk and builds the [`Plan`], reading
//!   every local model the job names (files are hashed once, here).
//! - [`providers`] turns a plan's endpoints into the runner's [`EndpointRuntime`]s: API keys
//!   from the environment, HTTP clients, in-process local models.
//! - [`label`] stores the built-in classifier's labels and has a catalog model judge answers.
//! - [`probe`] asks one model the probe set in every region, as a job of its own, and
//!   compares the regions.
//! - [`report`] builds the [`Report`] of a job from the store, reading only, and renders it as
//!   the self-contained HTML page ([`html`]).
//!
//! Errors are [`AppError`]: bad input (with a message naming the file, field and fix) apart
//! from store and runner failures, so each caller maps them to its own exit codes or statuses.
//!
//! [`Plan`]: parallax_core::Plan
//! [`EndpointRuntime`]: parallax_runner::EndpointRuntime
//! [`Report`]: parallax_analysis::report::Report

mod enqueue;
mod error;
pub mod html;
pub mod hub;
pub mod label;
pub mod load;
pub mod local;
pub mod preflight;
pub mod probe;
pub mod providers;
pub mod report;

pub use enqueue::{Enqueue, Enqueued, enqueue};
pub use error::AppError;

/// Names this process in leases, attempts and the worker registry: host and pid.
pub fn worker_id() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// Registers this process in the store's worker registry for `regions`; returns its id.
pub async fn register_worker(store: &parallax_store::Store, regions: &[String]) -> Result<String, AppError> {
    let id = worker_id();
    store
        .register_worker(parallax_store::WorkerRecord {
            id: id.clone(),
            host: host_name(),
            pid: i64::from(std::process::id()),
            regions: regions.to_vec(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .await?;
    Ok(id)
}

/// This machine's name, for the worker registry.
pub fn host_name() -> String {
    parallax_runner::host_name()
}
