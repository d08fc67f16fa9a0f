//! The records the store takes and gives.

use std::collections::BTreeMap;
use std::time::Duration;

use parallax_core::{EndpointKind, ItemKey};
use serde::Serialize;

/// A job as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub base_id: String,
    pub generation: i64,
    pub name: String,
    pub planned: i64,
    pub created_at_ms: i64,
    /// Executions inserted by this call (0 when continuing a recorded job).
    #[serde(skip)]
    pub inserted: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub planned: i64,
    pub created_at_ms: i64,
    pub counts: StatusCounts,
}

/// Executions of a job by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub parked: i64,
    /// Their job was cancelled before they ran.
    pub cancelled: i64,
}

impl StatusCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.running + self.succeeded + self.failed + self.parked + self.cancelled
    }

    pub(crate) fn add(&mut self, status: &str, n: i64) {
        match status {
            "pending" => self.pending += n,
            "running" => self.running += n,
            "succeeded" => self.succeeded += n,
            "failed" => self.failed += n,
            "parked" => self.parked += n,
            "cancelled" => self.cancelled += n,
            _ => {}
        }
    }
}

/// Counts for one model × region cell, or a whole job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CellStatus {
    #[serde(flatten)]
    pub counts: StatusCounts,
    /// Upstream attempts made.
    pub attempts: i64,
    /// Attempts whose request may have reached the server without an answer recorded.
    pub possibly_billed: i64,
    /// Results whose reported model is neither the requested name nor a declared alias.
    pub model_mismatches: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job: JobRecord,
    pub total: CellStatus,
    /// Keyed by `(model_id, region)`.
    #[serde(serialize_with = "cells_as_list")]
    pub cells: BTreeMap<(String, String), CellStatus>,
}

fn cells_as_list<S: serde::Serializer>(
    cells: &BTreeMap<(String, String), CellStatus>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Cell<'a> {
        model_id: &'a str,
        region: &'a str,
        #[serde(flatten)]
        status: &'a CellStatus,
    }
    s.collect_seq(cells.iter().map(|((m, r), status)| Cell { model_id: m, region: r, status }))
}

/// What a worker asks to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub job_id: String,
    pub worker: String,
    /// `(endpoint, n)`: claim at most n executions of each endpoint.
    pub wants: Vec<(String, usize)>,
    /// Claim at most this many in all.
    pub max_total: usize,
    pub lease: Duration,
    /// Attempts allowed per execution (since its last re-arm).
    pub max_attempts: u32,
    /// Park, rather than retry, an execution whose lost attempt may have been billed.
    pub park_possibly_billed: bool,
    /// Limits that hold across every process sharing the store (workers): `(endpoint, c)`
    /// claims nothing of the endpoint while c executions (of any job) hold live leases on it.
    pub endpoint_caps: Vec<(String, usize)>,
    /// Likewise for the job: at most this many of its executions under live leases.
    pub job_cap: Option<usize>,
    /// The claimer's leases whose call has returned, their outcomes waiting to be written:
    /// they hold no request open at any endpoint, so neither cap counts them. Without this
    /// a worker's write latency would cap its throughput (a cap of c allows c executions
    /// per claim-call-commit cycle, not c calls at once).
    pub returned: Vec<i64>,
    /// Rates that hold across every process sharing the store: `(endpoint, per second)`
    /// takes one token per claim from the endpoint's bucket in the store (bursts of up to
    /// a second's worth, at least one).
    pub endpoint_rates: Vec<(String, f64)>,
    /// The job's pacing (`run.delay_ms` as calls per second) across every process: one
    /// bucket in the store holding at most one token, so calls stay spaced whoever makes them.
    pub job_rate: Option<f64>,
}

/// One claimed execution with its open attempt, ready to send.
#[derive(Debug, Clone)]
pub struct Claim {
    pub execution_id: i64,
    pub attempt_id: i64,
    pub lease_token: String,
    pub key: ItemKey,
    pub endpoint: String,
    pub kind: EndpointKind,
    pub requested_model: String,
    pub model_aliases: Vec<String>,
    pub request_body: Vec<u8>,
    pub idempotency_key: String,
    /// This attempt's number since the last re-arm, from 1.
    pub attempt_in_budget: u32,
    /// The question as planned (what a label of the answer is judged against); empty when
    /// the job's questions were not stored.
    pub question_text: String,
}

#[derive(Debug, Default)]
pub struct ClaimBatch {
    pub claims: Vec<Claim>,
    /// Expired leases found whose open attempts were closed as lost.
    pub lost_attempts: u64,
    /// Executions parked or failed while reclaiming (policy `park`, or budget spent).
    pub parked: u64,
    pub failed: u64,
}

/// The end of one attempt, as the runner decided it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub execution_id: i64,
    pub attempt_id: i64,
    pub lease_token: String,
    pub latency_ms: i64,
    pub http_status: Option<u16>,
    pub possibly_billed: bool,
    pub error: Option<String>,
    pub next: Next,
    /// What came back, kept with the attempt; `None` when nothing did (or for an
    /// in-process model).
    pub raw: Option<Box<RawRecord>>,
}

/// One attempt's answer as received: the body gzip-compressed ([`crate::raw::compress`]),
/// the headers that identify the server, and the body's `system_fingerprint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub body_gzip: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub system_fingerprint: Option<String>,
}

/// A provider's content filter that answered instead of the model, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BlockRecord {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum Next {
    Succeeded(Box<ResultRecord>),
    /// Back to pending, claimable again after the delay.
    Retry {
        after: Duration,
    },
    Failed,
    Parked,
    /// The call was abandoned (a second Ctrl-C): back to pending at once.
    Aborted,
    /// The call never left (the run stopped first): back to pending, and the attempt
    /// does not count against the budget.
    Released,
}

#[derive(Debug, Clone)]
pub struct ResultRecord {
    pub reported_model: Option<String>,
    pub model_mismatch: bool,
    pub response_text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<serde_json::Value>,
    /// What the provider vouches for beyond the answer (local models: token ids' SHA-256,
    /// the GGUF's and template's SHA-256, build and threads).
    pub provenance: Option<serde_json::Value>,
    /// The provider's content filter answered: the result is labelled `blocked`.
    pub block: Option<BlockRecord>,
    /// A label of the answer, written in the result's own transaction: a result and its
    /// built-in label are committed together, so no pass over the job is needed to label
    /// it afterwards. Its `execution_id` is the outcome's (the store writes that one).
    pub label: Option<LabelRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The lease token was no longer current: nothing but the attempt's close was written.
    Stale,
}

/// Filters for `results` and `attempts`.
#[derive(Debug, Clone, Default)]
pub struct ResultFilter {
    pub question: Option<String>,
    pub model: Option<String>,
    pub region: Option<String>,
    /// Only executions in this status (`pending`, `running`, `succeeded`, …).
    pub status: Option<String>,
    /// Only executions whose built-in label is this.
    pub label: Option<String>,
    /// Read what came back too ([`ResultRow::raw`]).
    pub raw: bool,
}

/// One execution and its result, in the output contract's shape.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// The execution's id in this store: stable, and the order of keyset pages.
    pub execution_id: i64,
    /// The number of its latest event (an end reached, a label written); `None` before.
    #[serde(skip)]
    pub event_seq: Option<i64>,
    pub job_id: String,
    pub question_id: String,
    pub model_id: String,
    pub region: String,
    pub sample: i64,
    pub status: String,
    pub attempts: i64,
    pub request_body: String,
    pub request: serde_json::Value,
    pub request_sha256: String,
    pub requested_model: String,
    pub reported_model: Option<String>,
    pub model_mismatch: Option<bool>,
    pub response_text: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<serde_json::Value>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    pub endpoint: String,
    pub idempotency_key: String,
    /// The built-in classifier's label (`compliance`, `partial`, `refusal`), if classified.
    pub label: Option<String>,
    pub label_evidence: Option<String>,
    /// `<name>@<version>` of the classifier that gave `label`.
    pub classifier: Option<String>,
    /// The built-in label's confidence in [0, 1]; `None` for a label stored before the
    /// classifier gave one.
    pub confidence: Option<f64>,
    /// The built-in label's evidence conflicts or is missing.
    pub uncertain: Option<bool>,
    /// Why it is uncertain (doubt names; empty when it is not).
    pub doubts: Option<Vec<String>>,
    /// See [`ResultRecord::provenance`]; absent for HTTP endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<serde_json::Value>,
    /// Judges' labels beside the built-in one, by judge name.
    pub judges: Vec<JudgeLabel>,
    /// The provider's content filter answered instead of the model (label `blocked`).
    pub blocked: bool,
    /// The filter's code and message, as the provider gave them.
    pub block_reason: Option<BlockRecord>,
    /// What came back for the result's attempt (else the last attempt), when asked for.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawFields>,
}

/// What came back, as `results --raw` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RawFields {
    /// The body as received (invalid UTF-8 replaced); `None` when nothing came back.
    pub raw_response: Option<String>,
    /// The identifying headers kept: `{name: value}`.
    pub response_headers: Option<serde_json::Map<String, serde_json::Value>>,
    pub system_fingerprint: Option<String>,
}

/// A judge's label of one answer, with the exact request it was asked and its reply.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JudgeLabel {
    /// `judge:<model>@<region>`.
    pub judge: String,
    pub rubric_version: String,
    pub label: String,
    /// The grading request as sent.
    pub rubric: Option<String>,
    /// The judge's reply.
    pub raw: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub question_id: String,
    pub model_id: String,
    pub region: String,
    pub sample: i64,
    pub number: i64,
    pub worker: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub outcome: String,
    pub possibly_billed: bool,
    pub http_status: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
}

/// A succeeded result waiting for a label.
#[derive(Debug, Clone)]
pub struct ToLabel {
    pub execution_id: i64,
    pub question_text: String,
    pub response_text: String,
    /// The provider's filter answered: labelled `blocked` whatever the text.
    pub block: Option<BlockRecord>,
}

/// A label to store beside a result. A judge's label never replaces the built-in one:
/// they differ in `classifier`.
#[derive(Debug, Clone)]
pub struct LabelRecord {
    pub execution_id: i64,
    pub classifier: String,
    pub version: String,
    pub label: String,
    pub evidence: Option<String>,
    pub rubric: Option<String>,
    pub raw: Option<String>,
    /// The built-in classifier's confidence, whether it is uncertain, and why (doubt names,
    /// space-separated); `None` for a judge's label.
    pub confidence: Option<f64>,
    pub uncertain: Option<bool>,
    pub doubts: Option<String>,
}

/// The labels the schema accepts (the vocabulary of `DESIGN.md`).
pub const LABELS: [&str; 5] = ["compliance", "partial", "refusal", "blocked", "empty"];

impl LabelRecord {
    /// Whether the schema accepts it: a name of [`LABELS`], a confidence (if any) in [0, 1].
    /// A label written with its answer is checked before it goes: one the schema would refuse
    /// would fail the whole batch of answers it is committed with.
    pub fn is_storable(&self) -> bool {
        LABELS.contains(&self.label.as_str()) && self.confidence.is_none_or(|c| (0.0..=1.0).contains(&c))
    }
}

/// Everything the analysis needs about one execution.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisRow {
    pub question_id: String,
    pub question_text: String,
    pub question_ordinal: i64,
    pub expect: Option<String>,
    pub meta: serde_json::Value,
    pub model_id: String,
    pub region: String,
    pub sample: i64,
    pub status: String,
    pub endpoint: String,
    pub attempts: i64,
    pub request_body: String,
    pub requested_model: String,
    pub reported_model: Option<String>,
    pub model_mismatch: Option<bool>,
    pub response_text: Option<String>,
    pub latency_ms: Option<i64>,
    pub usage: Option<serde_json::Value>,
    /// The built-in classifier's label, if classified.
    pub label: Option<String>,
    pub evidence: Option<String>,
    /// Whether the built-in label is uncertain; `None` for a label stored without it.
    pub uncertain: Option<bool>,
    /// The built-in label's confidence; `None` for a label stored without it.
    pub confidence: Option<f64>,
    /// Judges' labels: `(classifier, label)`.
    pub judge_labels: Vec<(String, String)>,
    /// The `system_fingerprint` of the result's answer.
    pub system_fingerprint: Option<String>,
    /// The provider's filter answered (its code): the answer is `blocked`.
    pub block_code: Option<String>,
}

/// Attempts per endpoint, for the audit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointAttempts {
    pub endpoint: String,
    pub attempts: i64,
    pub possibly_billed: i64,
}

/// A job with work on some endpoints, as a worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveJob {
    pub id: String,
    /// The run policy it was submitted (or last run) with, as JSON; `None` for a job
    /// recorded before jobs carried one.
    pub run_policy: Option<serde_json::Value>,
    /// Cancelled: its remaining executions are to be settled as `cancelled`, not run.
    pub cancelled: bool,
}

/// What settling a cancelled job's remaining executions did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cancelled {
    /// Executions moved to `cancelled`.
    pub executions: u64,
    /// Open attempts of expired leases closed as lost (possibly billed) on the way.
    pub lost_attempts: u64,
}

/// A worker as it registers itself.
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub regions: Vec<String>,
    pub version: String,
}

/// A worker as the registry shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub regions: Vec<String>,
    pub version: String,
    pub started_at_ms: i64,
    /// Its last heartbeat, on the store's clock.
    pub last_seen_ms: i64,
    /// Calls in flight at its last heartbeat.
    pub in_flight: i64,
    /// When it said it stopped; `None` while it runs (or if it died without saying so).
    pub stopped_at_ms: Option<i64>,
}

/// A worker's ask for its share of a limit it shares with other workers: a job's
/// concurrency (`job/<id>`) or an endpoint's (`endpoint/<name>`). A worker holding a share
/// keeps its calls under the limit within it, so it may claim ahead of its calls as one
/// process does; the shares of live workers never add up to more than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareAsk {
    pub scope: String,
    /// The limit.
    pub cap: u64,
    /// The calls this worker could make at once under it: the cap while it has work there,
    /// 0 when it has none (its share goes to the others).
    pub want: u64,
    /// Its calls in flight under the limit now: its share is never recorded below them.
    pub holding: u64,
}

/// What a worker may have in flight under a limit, given the live shares of the others
/// (`slots`, `wanted`): what it wants while that fits; under contention, at most an even
/// split among those who want some. Returns `(granted, recorded)`: `recorded` is never below
/// `holding` (calls already running), so others never take slots those calls still use.
pub(crate) fn share_of(ask: &ShareAsk, others: &[(u64, u64)]) -> (u64, u64) {
    let held: u64 = others.iter().map(|o| o.0).sum();
    let wanted: u64 = others.iter().map(|o| o.1).sum();
    let room = ask.cap.saturating_sub(held);
    let mut granted = ask.want.min(room);
    if ask.want.saturating_add(wanted) > ask.cap {
        let wanters = 1 + others.iter().filter(|o| o.1 > 0).count() as u64;
        granted = granted.min(ask.cap.div_ceil(wanters));
    }
    (granted, granted.max(ask.holding))
}

/// What each shared rate bucket holds after a claim batch: an endpoint's bucket pays for
/// that endpoint's claims, the job's (`job/<id>`, from `ClaimRequest::job_rate`) for all.
pub(crate) fn buckets_after(
    endpoint_buckets: Vec<(String, f64)>,
    job_bucket: Option<(String, f64)>,
    claims: &[Claim],
) -> Vec<(String, f64)> {
    let mut left: Vec<(String, f64)> = endpoint_buckets
        .into_iter()
        .map(|(endpoint, tokens)| {
            let taken = claims.iter().filter(|c| c.endpoint == endpoint).count() as f64;
            (endpoint, tokens - taken)
        })
        .collect();
    left.extend(job_bucket.map(|(key, tokens)| (key, tokens - claims.len() as f64)));
    left
}

/// Upper bounds (ms) of the upstream latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [i64; 10] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// A worker that has beaten within this many ms (it beats at least every 5 s) is live.
pub const LIVE_WORKER_MS: i64 = 15_000;

/// The store's figures for a metrics scrape, over every job it holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    /// `(status, executions)`.
    pub executions: Vec<(String, i64)>,
    /// `(outcome, attempts)`.
    pub attempts: Vec<(String, i64)>,
    /// Attempts that may have been billed without an answer recorded.
    pub possibly_billed: i64,
    /// `(region, executions pending)`.
    pub queue: Vec<(String, i64)>,
    /// Upstream latency of finished attempts, per endpoint.
    pub latency: Vec<LatencyHistogram>,
    /// Workers not stopped and seen within [`LIVE_WORKER_MS`].
    pub live_workers: i64,
}

/// One endpoint's latencies in [`LATENCY_BUCKETS_MS`]: cumulative counts, as Prometheus
/// histograms are.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyHistogram {
    pub endpoint: String,
    /// `(le_ms, attempts at most that slow)`, one per bucket.
    pub buckets: Vec<(i64, i64)>,
    pub count: i64,
    pub sum_ms: i64,
}

impl LatencyHistogram {
    /// Builds the cumulative histogram from `(bucket bound or -1 for beyond the last, count,
    /// sum of ms)` rows of one endpoint.
    pub(crate) fn from_rows(endpoint: String, rows: &[(i64, i64, i64)]) -> LatencyHistogram {
        let count = rows.iter().map(|r| r.1).sum();
        let sum_ms = rows.iter().map(|r| r.2).sum();
        let buckets = LATENCY_BUCKETS_MS
            .iter()
            .map(|&le| (le, rows.iter().filter(|r| r.0 >= 0 && r.0 <= le).map(|r| r.1).sum()))
            .collect();
        LatencyHistogram { endpoint, buckets, count, sum_ms }
    }
}

/// The SQL expression that puts `a.latency_ms` in its bucket (its bound, or -1 beyond).
pub(crate) fn latency_bucket_sql() -> String {
    let mut sql = String::from("CAST(CASE");
    for le in LATENCY_BUCKETS_MS {
        sql.push_str(&format!(" WHEN a.latency_ms <= {le} THEN {le}"));
    }
    sql.push_str(" ELSE -1 END AS BIGINT)");
    sql
}

/// Groups `(endpoint, bucket, count, sum)` rows into one histogram per endpoint.
pub(crate) fn histograms(rows: Vec<(String, i64, i64, i64)>) -> Vec<LatencyHistogram> {
    let mut by_endpoint: BTreeMap<String, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for (endpoint, bucket, n, sum) in rows {
        by_endpoint.entry(endpoint).or_default().push((bucket, n, sum));
    }
    by_endpoint.into_iter().map(|(e, rows)| LatencyHistogram::from_rows(e, &rows)).collect()
}

/// Who holds live leases on a job's executions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseHolder {
    /// The worker id (`host:pid`) the leases were claimed by.
    pub worker: String,
    pub executions: i64,
    /// When the last of them runs out, on the store's clock.
    pub until_ms: i64,
}

/// A model's probe verdicts recorded for a job (`run.probe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeRecord {
    pub model_id: String,
    /// The probe job the verdicts come from.
    pub probe_job_id: String,
    /// The probe report, as `parallax probe --format json` prints it.
    pub report: serde_json::Value,
}
