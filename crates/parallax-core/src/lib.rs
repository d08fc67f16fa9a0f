//! The pure core of parallax: job specs, catalogs, plans and request rendering.
//!
//! This crate does no network, database or async work. The only files it reads are
//! those a spec names, and it reads them through a function the caller passes in.
//! Everything here is deterministic: the same spec and catalog give the same plan,
//! byte for byte, and the same job id.

pub mod catalog;
mod decode;
pub mod diagnostic;
pub mod gguf;
pub mod hash;
pub mod limits;
pub mod plan;
pub mod spec;
pub mod template;
pub mod yaml;

pub use catalog::{Catalog, Endpoint, EndpointKind, ModelEntry};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use hash::{sha256_hex, sha256_reader};
pub use plan::{ItemKey, Parity, Plan, PlanItem, canonical_json, idempotency_key, logical_prompt};
pub use spec::{Expect, JobSpec, Mode, OnPossiblyBilled, PromptSpec, Question, RunPolicy, Sampling};
