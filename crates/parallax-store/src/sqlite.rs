//! The embedded SQLite ledger.
//!
//! One connection behind a mutex: SQLite has one writer anyway, and every write is a
//! `BEGIN IMMEDIATE` transaction, so two processes on one file queue instead of failing.
//! WAL with `synchronous=FULL`: a committed transaction survives a crash; batches keep
//! that to one fsync per claim batch and one per result batch.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parallax_core::{EndpointKind, ItemKey, Plan, idempotency_key};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::model::{LIVE_WORKER_MS, LeaseHolder, Metrics, ProbeRecord, ShareAsk};
use crate::{
    ActiveJob, AnalysisRow, Applied, AttemptRow, BlockRecord, Cancelled, CellStatus, Claim, ClaimBatch, ClaimRequest,
    Clock, EndpointAttempts, JobRecord, JobStatus, JobSummary, LabelRecord, Next, Outcome, ResultFilter, ResultRow,
    StatusCounts, StoreError, ToLabel, WorkerRecord, WorkerRow,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "ledger", include_str!("../migrations/sqlite/0001_ledger.sql")),
    (2, "labels", include_str!("../migrations/sqlite/0002_labels.sql")),
    (3, "claim_indexes", include_str!("../migrations/sqlite/0003_claim_indexes.sql")),
    (4, "provenance", include_str!("../migrations/sqlite/0004_provenance.sql")),
    (5, "workers", include_str!("../migrations/sqlite/0005_workers.sql")),
    (6, "label_confidence", include_str!("../migrations/sqlite/0006_label_confidence.sql")),
    (7, "served", include_str!("../migrations/sqlite/0007_served.sql")),
    (8, "events", include_str!("../migrations/sqlite/0008_events.sql")),
    (9, "probes", include_str!("../migrations/sqlite/0009_probes.sql")),
    (10, "label_events_per_statement", include_str!("../migrations/sqlite/0010_label_events_per_statement.sql")),
    (11, "labels_with_results", include_str!("../migrations/sqlite/0011_labels_with_results.sql")),
    (12, "limit_shares", include_str!("../migrations/sqlite/0012_limit_shares.sql")),
    (13, "no_endpoint_lease_index", include_str!("../migrations/sqlite/0013_no_endpoint_lease_index.sql")),
];

/// Stores a label (`?1` execution, then the [`LabelRecord`]'s fields, `?8` now). The same
/// label again rewrites nothing (and gives live views no event), as on PostgreSQL.
const PUT_LABEL: &str = "INSERT INTO labels (execution_id, classifier, version, label, evidence, rubric, raw, created_at_ms,
                                             confidence, uncertain, doubts)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (execution_id, classifier) DO UPDATE SET version = excluded.version, label = excluded.label,
         evidence = excluded.evidence, rubric = excluded.rubric, raw = excluded.raw, created_at_ms = excluded.created_at_ms,
         confidence = excluded.confidence, uncertain = excluded.uncertain, doubts = excluded.doubts
     WHERE (labels.version, labels.label, labels.evidence, labels.rubric, labels.raw, labels.confidence,
            labels.uncertain, labels.doubts)
       IS NOT (excluded.version, excluded.label, excluded.evidence, excluded.rubric, excluded.raw,
            excluded.confidence, excluded.uncertain, excluded.doubts)";

/// Runs [`PUT_LABEL`] for `label`, as the label of `execution_id`.
fn put_label(
    put: &mut rusqlite::CachedStatement<'_>,
    execution_id: i64,
    l: &LabelRecord,
    now: i64,
) -> rusqlite::Result<usize> {
    put.execute(params![
        execution_id,
        l.classifier,
        l.version,
        l.label,
        l.evidence,
        l.rubric,
        l.raw,
        now,
        l.confidence,
        l.uncertain,
        l.doubts
    ])
}

/// Read connections beside the writer.
const READERS: usize = 3;

/// A read-only connection to the store's file.
fn read_connection(path: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .at(path)?;
    conn.busy_timeout(Duration::from_secs(30)).at(path)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Read-only connections for the reads (WAL lets them run beside the writer), so a
    /// server's readers neither wait for nor hold up the runner's writes. Empty for a
    /// read-only store, whose one connection serves.
    readers: Vec<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    /// Test hook: result batches left before the connection turns read-only.
    finishes_before_read_only: AtomicI64,
}

type Result<T> = std::result::Result<T, StoreError>;

trait Ctx<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Backend { store: path.display().to_string(), source: Box::new(source) })
    }
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

impl SqliteStore {
    pub fn open(path: PathBuf, clock: Arc<dyn Clock>, read_only: bool) -> Result<SqliteStore> {
        if read_only {
            return Self::open_read_only(path, clock);
        }
        let mut conn = Connection::open(&path).at(&path)?;
        conn.busy_timeout(Duration::from_secs(30)).at(&path)?;
        // Claims, finishes, heartbeats and reads together use more statements than the default 16.
        conn.set_prepared_statement_cache_capacity(64);
        wal(&conn, &path)?;
        // Foreign keys are off while migrations run (a migration may rebuild a table, the way
        // SQLite documents); `migrate` checks them before it commits.
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;").at(&path)?;
        migrate(&mut conn, &path)?;
        conn.execute_batch("PRAGMA foreign_keys=ON;").at(&path)?;
        let readers = (0..READERS).map(|_| read_connection(&path).map(Mutex::new)).collect::<Result<_>>()?;
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
            readers,
            clock,
            finishes_before_read_only: AtomicI64::new(i64::MAX),
        })
    }

    /// An existing store, read only: nothing created, nothing migrated. A store of another
    /// schema than this build's is refused (an older one: open it read-write once).
    fn open_read_only(path: PathBuf, clock: Arc<dyn Clock>) -> Result<SqliteStore> {
        let conn = read_connection(&path)?;
        let found: Option<i64> = conn
            .query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0))
            .optional()
            .at(&path)?
            .flatten();
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        match found {
            Some(v) if v > known => return Err(StoreError::SchemaTooNew { found: v, known }),
            Some(v) if v == known => {}
            _ => {
                return Err(StoreError::Location(format!(
                    "the store `{}` has schema {} and this parallax reads {known}\n\nhint: open it once read-write (any writing verb, e.g. `parallax run`) to migrate it",
                    path.display(),
                    found.unwrap_or(0)
                )));
            }
        }
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
            readers: Vec::new(),
            clock,
            finishes_before_read_only: AtomicI64::new(i64::MAX),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A connection for a read: a free reader if there is one, else the first to free up
    /// (the writer's, for a read-only store).
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        for r in &self.readers {
            match r.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        match self.readers.first() {
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()),
            None => self.conn(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back
        // the open transaction when it is dropped.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn current_job(&self, base_id: &str) -> Result<Option<JobRecord>> {
        let conn = self.reader();
        latest_generation(&conn, base_id).at(&self.path)
    }

    pub fn enqueue(&self, plan: &Plan, fresh: bool) -> Result<JobRecord> {
        let mut conn = self.conn();
        let p = &self.path;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let latest = latest_generation(&tx, &plan.base_job_id).at(p)?;
        let mut job = match (latest, fresh) {
            (Some(job), false) => job,
            (latest, _) => {
                let generation = latest.map_or(1, |j| j.generation + 1);
                let id = if generation == 1 {
                    plan.base_job_id.clone()
                } else {
                    format!("{}-{generation}", plan.base_job_id)
                };
                let now = self.now_ms();
                tx.execute(
                    "INSERT INTO jobs (id, base_id, generation, name, identity_json, planned, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![id, plan.base_job_id, generation, plan.name, parallax_core::canonical_json(&plan.identity), plan.len() as i64, now],
                )
                .at(p)?;
                JobRecord {
                    id,
                    base_id: plan.base_job_id.clone(),
                    generation,
                    name: plan.name.clone(),
                    planned: plan.len() as i64,
                    created_at_ms: now,
                    inserted: 0,
                }
            }
        };
        if job.planned != plan.len() as i64 {
            return Err(StoreError::Inconsistent {
                job: job.id,
                detail: format!("recorded with {} executions, the plan has {}", job.planned, plan.len()),
            });
        }
        {
            let mut q = tx
                .prepare_cached("INSERT OR IGNORE INTO questions (job_id, question_id, ordinal, text, expect, meta_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .at(p)?;
            for (i, question) in plan.questions().iter().enumerate() {
                let expect =
                    question.expect.map(|e| serde_json::to_value(e).ok().and_then(|v| v.as_str().map(str::to_owned)));
                q.execute(params![
                    job.id,
                    question.id,
                    i as i64,
                    question.text,
                    expect.flatten(),
                    serde_json::Value::Object(question.meta.clone()).to_string()
                ])
                .at(p)?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO executions (job_id, question_id, model_id, region, sample, endpoint, kind, requested_model, model_aliases, request_body, request_sha256, idempotency_key, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending')",
                )
                .at(p)?;
            for item in plan.items() {
                let k = &item.key;
                job.inserted += ins
                    .execute(params![
                        job.id,
                        k.question_id,
                        k.model_id,
                        k.region,
                        k.sample,
                        item.endpoint,
                        item.kind.as_str(),
                        item.requested_model,
                        serde_json::to_string(&item.model_aliases).unwrap_or_default(),
                        item.request_body.as_bytes(),
                        item.request_sha256,
                        idempotency_key(&job.id, k),
                    ])
                    .at(p)? as u64;
            }
        }
        // Enqueue N, see N: the store must hold exactly the plan, whatever was there before.
        let count: i64 =
            tx.query_row("SELECT count(*) FROM executions WHERE job_id = ?1", [&job.id], |r| r.get(0)).at(p)?;
        if count != plan.len() as i64 {
            return Err(StoreError::Inconsistent {
                job: job.id,
                detail: format!("{count} executions stored, the plan has {}", plan.len()),
            });
        }
        tx.commit().at(p)?;
        Ok(job)
    }

    pub fn claim(&self, req: &ClaimRequest) -> Result<ClaimBatch> {
        let mut conn = self.conn();
        let p = &self.path;
        let now = self.now_ms();
        let lease_until = now + req.lease.as_millis() as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let mut batch = ClaimBatch::default();
        let cancelled: bool = tx
            .query_row("SELECT cancelled_at_ms IS NOT NULL FROM jobs WHERE id = ?1", [&req.job_id], |r| r.get(0))
            .optional()
            .at(p)?
            .unwrap_or(false);
        if cancelled {
            return Ok(batch);
        }
        // Limits shared with other processes: live leases count, whoever holds them, except
        // the claimer's own whose call has returned (`?3`, a JSON array of execution ids).
        let returned = format!("[{}]", req.returned.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        let live = |sql: &str, key: &str| -> Result<usize> {
            tx.query_row(sql, params![key, now, returned], |r| r.get::<_, i64>(0)).map(|n| n.max(0) as usize).at(p)
        };
        let mut max_total = req.max_total;
        if let Some(cap) = req.job_cap {
            let held = live(
                "SELECT count(*) FROM executions WHERE job_id = ?1 AND status = 'running' AND lease_until_ms >= ?2
                 AND id NOT IN (SELECT value FROM json_each(?3))",
                &req.job_id,
            )?;
            max_total = max_total.min(cap.saturating_sub(held));
        }
        let mut wants = req.wants.clone();
        for (endpoint, cap) in &req.endpoint_caps {
            let held = live(
                "SELECT count(*) FROM executions WHERE endpoint = ?1 AND status = 'running' AND lease_until_ms >= ?2
                 AND id NOT IN (SELECT value FROM json_each(?3))",
                endpoint,
            )?;
            for (e, n) in wants.iter_mut() {
                if e == endpoint {
                    *n = (*n).min(cap.saturating_sub(held));
                }
            }
        }
        // Shared rates: each endpoint's bucket, refilled to now, bounds what it may claim.
        let mut buckets: Vec<(String, f64)> = Vec::new();
        for (endpoint, rate) in &req.endpoint_rates {
            let stored: Option<(f64, i64)> = tx
                .query_row("SELECT tokens, refilled_at_ms FROM endpoint_rates WHERE endpoint = ?1", [endpoint], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .at(p)?;
            let tokens = refilled(stored, *rate, now);
            for (e, n) in wants.iter_mut() {
                if e == endpoint {
                    *n = (*n).min(tokens.floor().max(0.0) as usize);
                }
            }
            buckets.push((endpoint.clone(), tokens));
        }
        // The job's pacing: one bucket for every process, at most one call's worth in it.
        let mut job_bucket: Option<(String, f64)> = None;
        if let Some(rate) = req.job_rate {
            let key = format!("job/{}", req.job_id);
            let stored: Option<(f64, i64)> = tx
                .query_row("SELECT tokens, refilled_at_ms FROM endpoint_rates WHERE endpoint = ?1", [&key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .at(p)?;
            let tokens = refilled_within(stored, rate, now, 1.0);
            max_total = max_total.min(tokens.floor().max(0.0) as usize);
            job_bucket = Some((key, tokens));
        }
        let req = &ClaimRequest { wants, max_total, ..req.clone() };
        {
            // Expired leases first (their holders are gone), then due pending rows in plan order.
            let mut pick_expired = tx
                .prepare_cached(
                    "SELECT id, status, attempts, attempts_base FROM executions
                     WHERE job_id = ?1 AND status = 'running' AND lease_until_ms < ?3 AND endpoint = ?2 LIMIT ?4",
                )
                .at(p)?;
            let mut pick_pending = tx
                .prepare_cached(
                    "SELECT id, status, attempts, attempts_base FROM executions
                     WHERE job_id = ?1 AND endpoint = ?2 AND status = 'pending' AND (not_before_ms IS NULL OR not_before_ms <= ?3)
                     ORDER BY id LIMIT ?4",
                )
                .at(p)?;
            let mut lose = tx
                .prepare_cached(
                    "UPDATE attempts SET outcome = 'lost', possibly_billed = 1, finished_at_ms = ?2,
                         error = 'lease expired before the attempt was closed (worker stopped or lost the store)'
                     WHERE execution_id = ?1 AND outcome = 'open'",
                )
                .at(p)?;
            let mut settle = tx
                .prepare_cached("UPDATE executions SET status = ?2, lease_token = NULL, lease_until_ms = NULL, worker = NULL, error = ?3 WHERE id = ?1")
                .at(p)?;
            let mut take = tx
                .prepare_cached(
                    "UPDATE executions SET status = 'running', lease_token = ?2, lease_until_ms = ?3, worker = ?4,
                         attempts = attempts + 1, not_before_ms = NULL
                     WHERE id = ?1
                     RETURNING question_id, model_id, region, sample, endpoint, kind, requested_model, model_aliases,
                               request_body, idempotency_key, attempts, attempts_base,
                               (SELECT q.text FROM questions q
                                WHERE q.job_id = executions.job_id AND q.question_id = executions.question_id)",
                )
                .at(p)?;
            let mut open = tx
                .prepare_cached(
                    "INSERT INTO attempts (execution_id, number, lease_token, worker, started_at_ms, outcome) VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
                )
                .at(p)?;
            // Fair shares first, so one endpoint cannot take every free slot; then the rest.
            let share = req.max_total.div_ceil(req.wants.len().max(1));
            let mut taken = vec![0usize; req.wants.len()];
            // Endpoints that came up short in the first pass have nothing more to give.
            let mut exhausted = vec![false; req.wants.len()];
            for pass in 0..2 {
                if pass == 1 && (batch.claims.len() >= req.max_total || exhausted.iter().all(|e| *e)) {
                    break;
                }
                for (w, (endpoint, cap)) in req.wants.iter().enumerate() {
                    if exhausted[w] {
                        continue;
                    }
                    let quota = if pass == 0 { share.min(*cap) } else { *cap };
                    let n = quota.saturating_sub(taken[w]).min(req.max_total.saturating_sub(batch.claims.len()));
                    if n == 0 {
                        continue;
                    }
                    let mut rows: Vec<(i64, String, i64, i64)> = Vec::new();
                    for pick in [&mut pick_expired, &mut pick_pending] {
                        let left = n - rows.len();
                        if left == 0 {
                            break;
                        }
                        let more = pick
                            .query_map(params![req.job_id, endpoint, now, left as i64], |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                            })
                            .at(p)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                            .at(p)?;
                        rows.extend(more);
                    }
                    exhausted[w] = rows.len() < n;
                    taken[w] += rows.len();
                    for (id, status, attempts, base) in rows {
                        if status == "running" {
                            // The previous holder's lease ran out: its open attempt may have been sent.
                            let lost = lose.execute(params![id, now]).at(p)? as u64;
                            batch.lost_attempts += lost;
                            if lost > 0 && req.park_possibly_billed {
                                settle
                                    .execute(params![
                                        id,
                                        "parked",
                                        "parked: an attempt may have been billed (lease expired mid-call)"
                                    ])
                                    .at(p)?;
                                batch.parked += 1;
                                continue;
                            }
                            if attempts - base >= i64::from(req.max_attempts) {
                                settle
                                    .execute(params![
                                        id,
                                        "failed",
                                        format!(
                                            "attempt budget of {} spent; the last attempt was lost",
                                            req.max_attempts
                                        )
                                    ])
                                    .at(p)?;
                                batch.failed += 1;
                                continue;
                            }
                        }
                        let token = new_token();
                        let claim = take
                            .query_row(params![id, token, lease_until, req.worker], |r| {
                                let kind: String = r.get(5)?;
                                let aliases: String = r.get(7)?;
                                let attempts: i64 = r.get(10)?;
                                let base: i64 = r.get(11)?;
                                Ok(Claim {
                                    execution_id: id,
                                    attempt_id: 0,
                                    lease_token: token.clone(),
                                    key: ItemKey {
                                        question_id: r.get(0)?,
                                        model_id: r.get(1)?,
                                        region: r.get(2)?,
                                        sample: r.get(3)?,
                                    },
                                    endpoint: r.get(4)?,
                                    kind: EndpointKind::parse(&kind).unwrap_or(EndpointKind::OpenAiChat),
                                    requested_model: r.get(6)?,
                                    model_aliases: serde_json::from_str(&aliases).unwrap_or_default(),
                                    request_body: r.get(8)?,
                                    idempotency_key: r.get(9)?,
                                    attempt_in_budget: (attempts - base).max(1) as u32,
                                    question_text: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                                })
                            })
                            .at(p)?;
                        let number = i64::from(claim.attempt_in_budget) + base;
                        open.execute(params![id, number, token, req.worker, now]).at(p)?;
                        let attempt_id = tx.last_insert_rowid();
                        batch.claims.push(Claim { attempt_id, ..claim });
                    }
                }
            }
        }
        for (key, left) in crate::model::buckets_after(buckets, job_bucket, &batch.claims) {
            tx.execute(
                "INSERT INTO endpoint_rates (endpoint, tokens, refilled_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (endpoint) DO UPDATE SET tokens = excluded.tokens, refilled_at_ms = excluded.refilled_at_ms",
                params![key, left, now],
            )
            .at(p)?;
        }
        tx.commit().at(p)?;
        Ok(batch)
    }

    pub fn heartbeat(&self, held: &[(i64, String)], lease: Duration) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let p = &self.path;
        let until = self.now_ms() + lease.as_millis() as i64;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let mut stale = Vec::new();
        {
            let mut extend = tx
                .prepare_cached("UPDATE executions SET lease_until_ms = ?3 WHERE id = ?1 AND lease_token = ?2 AND status = 'running'")
                .at(p)?;
            for (id, token) in held {
                if extend.execute(params![id, token, until]).at(p)? == 0 {
                    stale.push(*id);
                }
            }
        }
        tx.commit().at(p)?;
        Ok(stale)
    }

    pub fn read_only_after(&self, finishes: u64) {
        self.finishes_before_read_only.store(finishes as i64, Ordering::SeqCst);
    }

    pub fn finish(&self, outcomes: &[Outcome]) -> Result<Vec<Applied>> {
        let mut conn = self.conn();
        let p = &self.path;
        if self.finishes_before_read_only.fetch_sub(1, Ordering::SeqCst) <= 0 {
            // A real SQLite failure (SQLITE_READONLY) on the write path, for tests.
            conn.execute_batch("PRAGMA query_only = ON").at(p)?;
        }
        let now = self.now_ms();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let mut applied = Vec::with_capacity(outcomes.len());
        {
            let mut close = tx
                .prepare_cached(
                    // An attempt closes once; one the reaper closed as lost may still learn how it ended.
                    "UPDATE attempts SET outcome = ?2, finished_at_ms = ?3, possibly_billed = ?4, http_status = ?5, latency_ms = ?6, error = ?7,
                         raw_response = ?8, response_headers_json = ?9, system_fingerprint = ?10
                     WHERE id = ?1 AND outcome IN ('open', 'lost')",
                )
                .at(p)?;
            let mut settle = tx
                .prepare_cached(
                    // An execution of a cancelled job does not go back to pending: it is settled.
                    "UPDATE executions SET
                         status = CASE WHEN ?3 = 'pending' AND (SELECT cancelled_at_ms FROM jobs WHERE id = executions.job_id) IS NOT NULL
                                       THEN 'cancelled' ELSE ?3 END,
                         lease_token = NULL, lease_until_ms = NULL, worker = NULL, not_before_ms = ?4, error = ?5
                     WHERE id = ?1 AND lease_token = ?2",
                )
                .at(p)?;
            let mut put = tx.prepare_cached(PUT_LABEL).at(p)?;
            let mut unsend = tx.prepare_cached("UPDATE executions SET attempts = attempts - 1 WHERE id = ?1").at(p)?;
            let mut result = tx
                .prepare_cached(
                    "INSERT INTO results (execution_id, attempt_id, reported_model, model_mismatch, response_text, finish_reason, usage_json, latency_ms, created_at_ms, provenance_json, block_code, block_message)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .at(p)?;
            for o in outcomes {
                let (status, attempt_outcome, not_before) = match &o.next {
                    Next::Succeeded(_) => ("succeeded", "succeeded", None),
                    Next::Retry { after } => ("pending", "retryable", Some(now + after.as_millis() as i64)),
                    Next::Failed => ("failed", "failed", None),
                    Next::Parked => ("parked", "parked", None),
                    Next::Aborted => ("pending", "aborted", None),
                    Next::Released => ("pending", "released", None),
                };
                let error = match (&o.next, &o.error) {
                    (Next::Succeeded(_), _) => None,
                    (_, e) => e.clone(),
                };
                let fenced = settle.execute(params![o.execution_id, o.lease_token, status, not_before, error]).at(p)?;
                let attempt_outcome = if fenced == 0 { "stale" } else { attempt_outcome };
                // A refused late answer was paid for and not kept: count it with the possibly billed.
                let billed = o.possibly_billed || (fenced == 0 && !matches!(o.next, Next::Released));
                if fenced == 1 && matches!(o.next, Next::Released) {
                    // Recorded, never sent: `attempts` counts upstream calls only.
                    unsend.execute([o.execution_id]).at(p)?;
                }
                let raw = o.raw.as_deref();
                close
                    .execute(params![
                        o.attempt_id,
                        attempt_outcome,
                        now,
                        billed,
                        o.http_status,
                        o.latency_ms,
                        o.error,
                        raw.map(|r| &r.body_gzip),
                        raw.map(|r| crate::raw::headers_json(&r.headers)),
                        raw.and_then(|r| r.system_fingerprint.as_deref())
                    ])
                    .at(p)?;
                if fenced == 0 {
                    applied.push(Applied::Stale);
                    continue;
                }
                if let Next::Succeeded(r) = &o.next {
                    result
                        .execute(params![
                            o.execution_id,
                            o.attempt_id,
                            r.reported_model,
                            r.model_mismatch,
                            r.response_text,
                            r.finish_reason,
                            r.usage.as_ref().map(|u| u.to_string()),
                            o.latency_ms,
                            now,
                            r.provenance.as_ref().map(|v| v.to_string()),
                            r.block.as_ref().map(|b| &b.code),
                            r.block.as_ref().map(|b| &b.message)
                        ])
                        .at(p)?;
                    if let Some(label) = &r.label {
                        put_label(&mut put, o.execution_id, label, now).at(p)?;
                    }
                }
                applied.push(Applied::Applied);
            }
        }
        tx.commit().at(p)?;
        Ok(applied)
    }

    pub fn rearm(&self, job_id: &str, failed: bool, parked: bool) -> Result<u64> {
        let mut conn = self.conn();
        let p = &self.path;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let n = tx
            .execute(
                "UPDATE executions SET status = 'pending', attempts_base = attempts, not_before_ms = NULL, error = NULL
                 WHERE job_id = ?1 AND ((status = 'failed' AND ?2) OR (status = 'parked' AND ?3))",
                params![job_id, failed, parked],
            )
            .at(p)?;
        tx.commit().at(p)?;
        Ok(n as u64)
    }

    pub fn job(&self, job_id: &str) -> Result<JobRecord> {
        let conn = self.reader();
        conn.query_row(
            "SELECT id, base_id, generation, name, planned, created_at_ms FROM jobs WHERE id = ?1",
            [job_id],
            job_from_row,
        )
        .optional()
        .at(&self.path)?
        .ok_or_else(|| StoreError::NoSuchJob(job_id.to_owned()))
    }

    pub fn job_identity(&self, job_id: &str) -> Result<serde_json::Value> {
        let conn = self.reader();
        let text: Option<String> = conn
            .query_row("SELECT identity_json FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))
            .optional()
            .at(&self.path)?;
        let text = text.ok_or_else(|| StoreError::NoSuchJob(job_id.to_owned()))?;
        serde_json::from_str(&text).map_err(|e| StoreError::Inconsistent {
            job: job_id.to_owned(),
            detail: format!("identity is not JSON: {e}"),
        })
    }

    pub fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>> {
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare("SELECT id, name, planned, created_at_ms FROM jobs ORDER BY created_at_ms DESC, id LIMIT ?1")
            .at(p)?;
        let jobs: Vec<(String, String, i64, i64)> = stmt
            .query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .at(p)?
            .collect::<rusqlite::Result<_>>()
            .at(p)?;
        let mut counts_stmt =
            conn.prepare("SELECT status, count(*) FROM executions WHERE job_id = ?1 GROUP BY status").at(p)?;
        let mut out = Vec::new();
        for (id, name, planned, created_at_ms) in jobs {
            let mut counts = StatusCounts::default();
            let rows = counts_stmt.query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).at(p)?;
            for row in rows {
                let (status, n) = row.at(p)?;
                counts.add(&status, n);
            }
            out.push(JobSummary { id, name, planned, created_at_ms, counts });
        }
        Ok(out)
    }

    pub fn status(&self, job_id: &str) -> Result<JobStatus> {
        let job = self.job(job_id)?;
        let conn = self.reader();
        let p = &self.path;
        let mut cells: BTreeMap<(String, String), CellStatus> = BTreeMap::new();
        let mut stmt = conn
            .prepare(
                "SELECT model_id, region, status, count(*), sum(attempts) FROM executions WHERE job_id = ?1 GROUP BY model_id, region, status",
            )
            .at(p)?;
        let rows = stmt
            .query_map([job_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .at(p)?;
        for row in rows {
            let (model, region, status, n, attempts) = row.at(p)?;
            let cell = cells.entry((model, region)).or_default();
            cell.counts.add(&status, n);
            cell.attempts += attempts;
        }
        let mut stmt = conn
            .prepare(
                "SELECT e.model_id, e.region, count(*) FROM attempts a JOIN executions e ON e.id = a.execution_id
                 WHERE e.job_id = ?1 AND a.possibly_billed = 1 GROUP BY e.model_id, e.region",
            )
            .at(p)?;
        let rows = stmt
            .query_map([job_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .at(p)?;
        for row in rows {
            let (model, region, n) = row.at(p)?;
            cells.entry((model, region)).or_default().possibly_billed += n;
        }
        let mut stmt = conn
            .prepare(
                "SELECT e.model_id, e.region, count(*) FROM results r JOIN executions e ON e.id = r.execution_id
                 WHERE e.job_id = ?1 AND r.model_mismatch = 1 GROUP BY e.model_id, e.region",
            )
            .at(p)?;
        let rows = stmt
            .query_map([job_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .at(p)?;
        for row in rows {
            let (model, region, n) = row.at(p)?;
            cells.entry((model, region)).or_default().model_mismatches += n;
        }
        let mut total = CellStatus::default();
        for c in cells.values() {
            total.counts.pending += c.counts.pending;
            total.counts.running += c.counts.running;
            total.counts.succeeded += c.counts.succeeded;
            total.counts.failed += c.counts.failed;
            total.counts.parked += c.counts.parked;
            total.counts.cancelled += c.counts.cancelled;
            total.attempts += c.attempts;
            total.possibly_billed += c.possibly_billed;
            total.model_mismatches += c.model_mismatches;
        }
        Ok(JobStatus { job, total, cells })
    }

    pub fn results(&self, job_id: &str, f: &ResultFilter) -> Result<Vec<ResultRow>> {
        self.job(job_id)?;
        self.rows(Some(job_id), f, Rows::Plan)
    }

    /// A job's rows in execution order after `after`, at most `limit` (a keyset page).
    pub fn results_page(&self, job_id: &str, f: &ResultFilter, after: i64, limit: usize) -> Result<Vec<ResultRow>> {
        self.job(job_id)?;
        self.rows(Some(job_id), f, Rows::AfterId { after, limit })
    }

    /// A job's rows whose latest event is in `(after, upto]`, in event order.
    pub fn events(&self, job_id: &str, after: i64, upto: i64, limit: usize) -> Result<Vec<ResultRow>> {
        self.job(job_id)?;
        self.rows(Some(job_id), &ResultFilter::default(), Rows::Events { after, upto, limit })
    }

    /// One execution's row, with what came back.
    pub fn execution(&self, id: i64) -> Result<Option<ResultRow>> {
        let f = ResultFilter { raw: true, ..Default::default() };
        Ok(self.rows(None, &f, Rows::One(id))?.pop())
    }

    /// The number of the latest event: one writer commits at a time, so every number up
    /// to it is final.
    pub fn event_horizon(&self) -> Result<i64> {
        let conn = self.reader();
        conn.query_row("SELECT coalesce(max(event_seq), 0) FROM executions", [], |r| r.get(0)).at(&self.path)
    }

    fn rows(&self, job_id: Option<&str>, f: &ResultFilter, which: Rows) -> Result<Vec<ResultRow>> {
        let conn = self.reader();
        let p = &self.path;
        let (key, order) = match which {
            Rows::Plan => ("e.job_id = :job", "ORDER BY q.ordinal, e.model_id, e.region, e.sample"),
            Rows::AfterId { .. } => ("e.job_id = :job AND e.id > :after", "ORDER BY e.id LIMIT :limit"),
            Rows::Events { .. } => (
                "e.job_id = :job AND e.event_seq > :after AND e.event_seq <= :upto",
                "ORDER BY e.event_seq LIMIT :limit",
            ),
            Rows::One(_) => ("e.id = :id", ""),
        };
        let sql = format!(
            "SELECT e.job_id, e.question_id, e.model_id, e.region, e.sample, e.status, e.attempts, e.request_body, e.request_sha256,
                    e.requested_model, r.reported_model, r.model_mismatch, r.response_text, r.finish_reason, r.usage_json, r.latency_ms,
                    e.error, e.endpoint, e.idempotency_key, l.label, l.evidence, l.version, r.provenance_json,
                    l.confidence, l.uncertain, l.doubts,
                    (SELECT json_group_array(json_object('judge', j.classifier, 'rubric_version', j.version, 'label', j.label,
                                                         'rubric', j.rubric, 'raw', j.raw))
                     FROM (SELECT * FROM labels WHERE execution_id = e.id AND classifier != 'builtin' ORDER BY classifier) j),
                    r.block_code, r.block_message,
                    CASE WHEN :raw THEN a.raw_response END, CASE WHEN :raw THEN a.response_headers_json END, a.system_fingerprint,
                    e.id, e.event_seq
             FROM executions e LEFT JOIN results r ON r.execution_id = e.id
             LEFT JOIN labels l ON l.execution_id = e.id AND l.classifier = 'builtin'
             LEFT JOIN questions q ON q.job_id = e.job_id AND q.question_id = e.question_id
             -- What came back: the result's attempt, else the last one.
             LEFT JOIN attempts a ON :raw AND a.id = coalesce(r.attempt_id, (SELECT max(id) FROM attempts WHERE execution_id = e.id))
             WHERE {key} AND (:question IS NULL OR e.question_id = :question) AND (:model IS NULL OR e.model_id = :model)
               AND (:region IS NULL OR e.region = :region) AND (:status IS NULL OR e.status = :status)
               AND (:label IS NULL OR l.label = :label)
             {order}"
        );
        let mut stmt = conn.prepare_cached(&sql).at(p)?;
        let (after, upto, limit, id) = match which {
            Rows::Plan => (0, 0, 0, 0),
            Rows::AfterId { after, limit } => (after, 0, limit, 0),
            Rows::Events { after, upto, limit } => (after, upto, limit, 0),
            Rows::One(id) => (0, 0, 0, id),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let values: [(&str, &dyn rusqlite::ToSql); 11] = [
            (":job", &job_id),
            (":question", &f.question),
            (":model", &f.model),
            (":region", &f.region),
            (":status", &f.status),
            (":label", &f.label),
            (":raw", &f.raw),
            (":after", &after),
            (":upto", &upto),
            (":limit", &limit),
            (":id", &id),
        ];
        // Each shape names only some of them.
        for (name, value) in values {
            if let Some(i) = stmt.parameter_index(name).at(p)? {
                stmt.raw_bind_parameter(i, value).at(p)?;
            }
        }
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().at(p)? {
            out.push(result_row(r, f.raw).at(p)?);
        }
        Ok(out)
    }

    /// One execution's attempts, in order.
    pub fn execution_attempts(&self, id: i64) -> Result<Vec<AttemptRow>> {
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.question_id, e.model_id, e.region, e.sample, a.number, a.worker, a.started_at_ms, a.finished_at_ms, a.outcome,
                        a.possibly_billed, a.http_status, a.latency_ms, a.error
                 FROM attempts a JOIN executions e ON e.id = a.execution_id WHERE e.id = ?1 ORDER BY a.id",
            )
            .at(p)?;
        let rows = stmt.query_map([id], attempt_row).at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn metrics(&self) -> Result<Metrics> {
        let conn = self.reader();
        let p = &self.path;
        let pairs = |sql: &str| -> Result<Vec<(String, i64)>> {
            let mut stmt = conn.prepare_cached(sql).at(p)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).at(p)?;
            rows.collect::<rusqlite::Result<_>>().at(p)
        };
        let executions = pairs("SELECT status, count(*) FROM executions GROUP BY status ORDER BY status")?;
        let attempts = pairs("SELECT outcome, count(*) FROM attempts GROUP BY outcome ORDER BY outcome")?;
        let queue =
            pairs("SELECT region, count(*) FROM executions WHERE status = 'pending' GROUP BY region ORDER BY region")?;
        let possibly_billed =
            conn.query_row("SELECT count(*) FROM attempts WHERE possibly_billed = 1", [], |r| r.get(0)).at(p)?;
        let live_workers = conn
            .query_row(
                "SELECT count(*) FROM workers WHERE stopped_at_ms IS NULL AND last_seen_ms >= ?1",
                [self.now_ms() - LIVE_WORKER_MS],
                |r| r.get(0),
            )
            .at(p)?;
        let sql = format!(
            "SELECT e.endpoint, {} AS bucket, count(*), sum(a.latency_ms) FROM attempts a JOIN executions e ON e.id = a.execution_id
             WHERE a.latency_ms IS NOT NULL GROUP BY e.endpoint, bucket",
            crate::model::latency_bucket_sql()
        );
        let mut stmt = conn.prepare_cached(&sql).at(p)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).at(p)?;
        let latency = crate::model::histograms(rows.collect::<rusqlite::Result<_>>().at(p)?);
        Ok(Metrics { executions, attempts, possibly_billed, queue, latency, live_workers })
    }

    pub fn attempts(&self, job_id: &str, f: &ResultFilter) -> Result<Vec<AttemptRow>> {
        self.job(job_id)?;
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.question_id, e.model_id, e.region, e.sample, a.number, a.worker, a.started_at_ms, a.finished_at_ms, a.outcome,
                        a.possibly_billed, a.http_status, a.latency_ms, a.error
                 FROM attempts a JOIN executions e ON e.id = a.execution_id
                 WHERE e.job_id = ?1 AND (?2 IS NULL OR e.question_id = ?2) AND (?3 IS NULL OR e.model_id = ?3) AND (?4 IS NULL OR e.region = ?4)
                 ORDER BY a.id",
            )
            .at(p)?;
        let rows = stmt.query_map(params![job_id, f.question, f.model, f.region], attempt_row).at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn to_label(
        &self,
        job_id: &str,
        (classifier, version): (&str, &str),
        all: bool,
        after_id: i64,
        limit: usize,
        uncertain_only: bool,
    ) -> Result<Vec<ToLabel>> {
        self.job(job_id)?;
        let conn = self.conn();
        let p = &self.path;
        let mut stmt = conn
            .prepare(
                "SELECT e.id, q.text, r.response_text, r.block_code, r.block_message FROM executions e
                 JOIN results r ON r.execution_id = e.id
                 JOIN questions q ON q.job_id = e.job_id AND q.question_id = e.question_id
                 LEFT JOIN labels l ON l.execution_id = e.id AND l.classifier = ?2
                 WHERE e.job_id = ?1 AND e.status = 'succeeded' AND (?4 OR l.version IS NULL OR l.version != ?3) AND e.id > ?5
                   AND (NOT ?7 OR EXISTS (SELECT 1 FROM labels b WHERE b.execution_id = e.id AND b.classifier = 'builtin' AND b.uncertain = 1))
                 ORDER BY e.id LIMIT ?6",
            )
            .at(p)?;
        let rows = stmt
            .query_map(
                params![
                    job_id,
                    classifier,
                    version,
                    all,
                    after_id,
                    limit.min(i64::MAX as usize) as i64,
                    uncertain_only
                ],
                |r| {
                    Ok(ToLabel {
                        execution_id: r.get(0)?,
                        question_text: r.get(1)?,
                        response_text: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        block: match (r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?) {
                            (Some(code), message) => Some(BlockRecord { code, message: message.unwrap_or_default() }),
                            (None, _) => None,
                        },
                    })
                },
            )
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn put_labels(&self, labels: &[LabelRecord]) -> Result<u64> {
        let mut conn = self.conn();
        let p = &self.path;
        let now = self.now_ms();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let mut n = 0;
        {
            let mut put = tx.prepare_cached(PUT_LABEL).at(p)?;
            for l in labels {
                n += put_label(&mut put, l.execution_id, l, now).at(p)? as u64;
            }
        }
        tx.commit().at(p)?;
        Ok(n)
    }

    pub fn analysis_rows(&self, job_id: &str) -> Result<Vec<AnalysisRow>> {
        self.job(job_id)?;
        let conn = self.reader();
        let p = &self.path;
        let mut judges: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        {
            let mut stmt = conn
                .prepare(
                    "SELECT l.execution_id, l.classifier, l.label FROM labels l JOIN executions e ON e.id = l.execution_id
                     WHERE e.job_id = ?1 AND l.classifier != 'builtin' ORDER BY l.classifier",
                )
                .at(p)?;
            let rows = stmt.query_map([job_id], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))).at(p)?;
            for row in rows {
                let (id, classifier, label) = row.at(p)?;
                judges.entry(id).or_default().push((classifier, label));
            }
        }
        let mut stmt = conn
            .prepare(
                "SELECT e.id, e.question_id, q.text, q.ordinal, q.expect, q.meta_json, e.model_id, e.region, e.sample, e.status,
                        e.endpoint, e.attempts, e.request_body, e.requested_model, r.reported_model, r.model_mismatch,
                        r.response_text, r.latency_ms, r.usage_json, l.label, l.evidence, l.uncertain, l.confidence,
                        a.system_fingerprint, r.block_code
                 FROM executions e
                 JOIN questions q ON q.job_id = e.job_id AND q.question_id = e.question_id
                 LEFT JOIN results r ON r.execution_id = e.id
                 LEFT JOIN attempts a ON a.id = r.attempt_id
                 LEFT JOIN labels l ON l.execution_id = e.id AND l.classifier = 'builtin'
                 WHERE e.job_id = ?1
                 ORDER BY q.ordinal, e.model_id, e.region, e.sample",
            )
            .at(p)?;
        let rows = stmt
            .query_map([job_id], |r| {
                let id: i64 = r.get(0)?;
                let meta: String = r.get(5)?;
                let body: Vec<u8> = r.get(12)?;
                let usage: Option<String> = r.get(18)?;
                Ok(AnalysisRow {
                    question_id: r.get(1)?,
                    question_text: r.get(2)?,
                    question_ordinal: r.get(3)?,
                    expect: r.get(4)?,
                    meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
                    model_id: r.get(6)?,
                    region: r.get(7)?,
                    sample: r.get(8)?,
                    status: r.get(9)?,
                    endpoint: r.get(10)?,
                    attempts: r.get(11)?,
                    request_body: String::from_utf8_lossy(&body).into_owned(),
                    requested_model: r.get(13)?,
                    reported_model: r.get(14)?,
                    model_mismatch: r.get(15)?,
                    response_text: r.get(16)?,
                    latency_ms: r.get(17)?,
                    usage: usage.and_then(|u| serde_json::from_str(&u).ok()),
                    label: r.get(19)?,
                    evidence: r.get(20)?,
                    uncertain: r.get(21)?,
                    confidence: r.get(22)?,
                    judge_labels: judges.remove(&id).unwrap_or_default(),
                    system_fingerprint: r.get(23)?,
                    block_code: r.get(24)?,
                })
            })
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn set_run_policy(&self, job_id: &str, policy: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute("UPDATE jobs SET run_policy_json = ?2 WHERE id = ?1", params![job_id, policy])
            .at(&self.path)?;
        if n == 0 {
            return Err(StoreError::NoSuchJob(job_id.to_owned()));
        }
        Ok(())
    }

    pub fn active_jobs(&self, endpoints: &[String]) -> Result<Vec<ActiveJob>> {
        let conn = self.conn();
        let p = &self.path;
        let endpoints = serde_json::to_string(endpoints).unwrap_or_else(|_| "[]".into());
        let mut stmt = conn
            .prepare_cached(
                // A probe per job and endpoint into the open rows' index, not a scan of them.
                "SELECT j.id, j.run_policy_json, j.cancelled_at_ms IS NOT NULL FROM jobs j
                 WHERE EXISTS (SELECT 1 FROM json_each(?1) w WHERE EXISTS (
                     SELECT 1 FROM executions e
                     WHERE e.endpoint = w.value AND e.job_id = j.id AND e.status IN ('pending', 'running')))
                 ORDER BY j.created_at_ms, j.id",
            )
            .at(p)?;
        let rows = stmt
            .query_map([endpoints], |r| {
                let policy: Option<String> = r.get(1)?;
                Ok(ActiveJob {
                    id: r.get(0)?,
                    run_policy: policy.and_then(|p| serde_json::from_str(&p).ok()),
                    cancelled: r.get(2)?,
                })
            })
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn cancel_job(&self, job_id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let p = &self.path;
        let now = self.now_ms();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let known: Option<Option<i64>> =
            tx.query_row("SELECT cancelled_at_ms FROM jobs WHERE id = ?1", [job_id], |r| r.get(0)).optional().at(p)?;
        let newly = match known {
            None => return Err(StoreError::NoSuchJob(job_id.to_owned())),
            Some(Some(_)) => false,
            Some(None) => {
                tx.execute("UPDATE jobs SET cancelled_at_ms = ?2 WHERE id = ?1", params![job_id, now]).at(p)?;
                true
            }
        };
        tx.commit().at(p)?;
        Ok(newly)
    }

    pub fn settle_cancelled(&self, job_id: &str, endpoints: &[String]) -> Result<Cancelled> {
        let mut conn = self.conn();
        let p = &self.path;
        let now = self.now_ms();
        let endpoints = serde_json::to_string(endpoints).unwrap_or_else(|_| "[]".into());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let cancelled: Option<bool> = tx
            .query_row("SELECT cancelled_at_ms IS NOT NULL FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))
            .optional()
            .at(p)?;
        match cancelled {
            None => return Err(StoreError::NoSuchJob(job_id.to_owned())),
            Some(false) => return Ok(Cancelled::default()),
            Some(true) => {}
        }
        let lost = tx
            .execute(
                "UPDATE attempts SET outcome = 'lost', possibly_billed = 1, finished_at_ms = ?2,
                     error = 'lease expired before the attempt was closed (worker stopped or lost the store)'
                 WHERE outcome = 'open' AND execution_id IN (
                     SELECT id FROM executions WHERE job_id = ?1 AND status = 'running' AND lease_until_ms < ?2
                       AND endpoint IN (SELECT value FROM json_each(?3)))",
                params![job_id, now, endpoints],
            )
            .at(p)? as u64;
        let executions = tx
            .execute(
                "UPDATE executions SET status = 'cancelled', lease_token = NULL, lease_until_ms = NULL, worker = NULL,
                     not_before_ms = NULL, error = 'cancelled before it ran'
                 WHERE job_id = ?1 AND endpoint IN (SELECT value FROM json_each(?3))
                   AND (status = 'pending' OR (status = 'running' AND lease_until_ms < ?2))",
                params![job_id, now, endpoints],
            )
            .at(p)? as u64;
        tx.commit().at(p)?;
        Ok(Cancelled { executions, lost_attempts: lost })
    }

    pub fn job_endpoints(&self, job_id: &str) -> Result<Vec<String>> {
        self.job(job_id)?;
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT endpoint FROM executions WHERE job_id = ?1 ORDER BY endpoint")
            .at(p)?;
        let rows = stmt.query_map([job_id], |r| r.get(0)).at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn register_worker(&self, w: &WorkerRecord) -> Result<()> {
        let conn = self.conn();
        let now = self.now_ms();
        let regions = serde_json::to_string(&w.regions).unwrap_or_else(|_| "[]".into());
        conn.execute(
            "INSERT INTO workers (id, host, pid, regions_json, version, started_at_ms, last_seen_ms, in_flight)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)
             ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, stopped_at_ms = NULL",
            params![w.id, w.host, w.pid, regions, w.version, now],
        )
        .at(&self.path)?;
        Ok(())
    }

    pub fn worker_seen(&self, id: &str, in_flight: i64) -> Result<bool> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE workers SET last_seen_ms = ?2, in_flight = ?3 WHERE id = ?1",
                params![id, self.now_ms(), in_flight],
            )
            .at(&self.path)?;
        Ok(n == 1)
    }

    pub fn worker_stopped(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let now = self.now_ms();
        conn.execute(
            "UPDATE workers SET last_seen_ms = ?2, in_flight = 0, stopped_at_ms = ?2 WHERE id = ?1",
            params![id, now],
        )
        .at(&self.path)?;
        // Its shares go to the others at once, not when they would have run out.
        conn.execute("DELETE FROM limit_shares WHERE worker = ?1", [id]).at(&self.path)?;
        Ok(())
    }

    pub fn share_limits(&self, worker: &str, lease: Duration, asks: &[ShareAsk]) -> Result<Vec<u64>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let p = &self.path;
        let now = self.now_ms();
        let until = now.saturating_add(lease.as_millis().min(i64::MAX as u128) as i64);
        // One writer at a time: the shares read are the shares written against.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(p)?;
        let mut granted = Vec::with_capacity(asks.len());
        {
            let mut live = tx
                .prepare_cached(
                    "SELECT s.slots, s.wanted FROM limit_shares s LEFT JOIN workers w ON w.id = s.worker
                     WHERE s.scope = ?1 AND s.worker <> ?2 AND s.until_ms >= ?3
                       -- A registered worker stopped, or not seen for a while (killed), holds none.
                       AND (w.id IS NULL OR (w.stopped_at_ms IS NULL AND w.last_seen_ms >= ?3 - ?4))",
                )
                .at(p)?;
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO limit_shares (scope, worker, slots, wanted, until_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (scope, worker) DO UPDATE SET slots = excluded.slots, wanted = excluded.wanted,
                         until_ms = excluded.until_ms",
                )
                .at(p)?;
            for ask in asks {
                let others = live
                    .query_map(params![ask.scope, worker, now, LIVE_WORKER_MS], |r| {
                        Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64))
                    })
                    .at(p)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .at(p)?;
                let (grant, recorded) = crate::model::share_of(ask, &others);
                put.execute(params![
                    ask.scope,
                    worker,
                    recorded.min(i64::MAX as u64) as i64,
                    ask.want.min(i64::MAX as u64) as i64,
                    until
                ])
                .at(p)?;
                granted.push(grant);
            }
        }
        // Renewing is being seen: the others void the shares of a worker not seen for a while.
        tx.execute(
            "UPDATE workers SET last_seen_ms = ?2 WHERE id = ?1 AND stopped_at_ms IS NULL",
            params![worker, now],
        )
        .at(p)?;
        tx.commit().at(p)?;
        Ok(granted)
    }

    pub fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRow>> {
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare(
                "SELECT id, host, pid, regions_json, version, started_at_ms, last_seen_ms, in_flight, stopped_at_ms
                 FROM workers WHERE last_seen_ms >= ?1 ORDER BY last_seen_ms DESC, id",
            )
            .at(p)?;
        let rows = stmt
            .query_map([since_ms], |r| {
                let regions: String = r.get(3)?;
                Ok(WorkerRow {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    regions: serde_json::from_str(&regions).unwrap_or_default(),
                    version: r.get(4)?,
                    started_at_ms: r.get(5)?,
                    last_seen_ms: r.get(6)?,
                    in_flight: r.get(7)?,
                    stopped_at_ms: r.get(8)?,
                })
            })
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn endpoint_attempts(&self, job_id: &str) -> Result<Vec<EndpointAttempts>> {
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare(
                "SELECT e.endpoint, count(a.id), coalesce(sum(a.possibly_billed), 0) FROM executions e
                 LEFT JOIN attempts a ON a.execution_id = e.id WHERE e.job_id = ?1 GROUP BY e.endpoint ORDER BY e.endpoint",
            )
            .at(p)?;
        let rows = stmt
            .query_map([job_id], |r| {
                Ok(EndpointAttempts { endpoint: r.get(0)?, attempts: r.get(1)?, possibly_billed: r.get(2)? })
            })
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn put_probe(&self, job_id: &str, model_id: &str, probe_job_id: &str, report: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO job_probes (job_id, model_id, probe_job_id, report_json, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (job_id, model_id) DO UPDATE SET probe_job_id = excluded.probe_job_id,
                 report_json = excluded.report_json, created_at_ms = excluded.created_at_ms",
            params![job_id, model_id, probe_job_id, report, self.now_ms()],
        )
        .at(&self.path)?;
        Ok(())
    }

    pub fn probes(&self, job_id: &str) -> Result<Vec<ProbeRecord>> {
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare_cached(
                "SELECT model_id, probe_job_id, report_json FROM job_probes WHERE job_id = ?1 ORDER BY model_id",
            )
            .at(p)?;
        let rows = stmt
            .query_map([job_id], |r| {
                let report: String = r.get(2)?;
                Ok(ProbeRecord {
                    model_id: r.get(0)?,
                    probe_job_id: r.get(1)?,
                    report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
                })
            })
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn lease_holders(&self, job_id: &str) -> Result<Vec<LeaseHolder>> {
        let conn = self.reader();
        let p = &self.path;
        let mut stmt = conn
            .prepare_cached(
                "SELECT coalesce(worker, ''), count(*), max(lease_until_ms) FROM executions
                 WHERE job_id = ?1 AND status = 'running' AND lease_until_ms >= ?2 GROUP BY worker ORDER BY worker",
            )
            .at(p)?;
        let rows = stmt
            .query_map(params![job_id, self.now_ms()], |r| {
                Ok(LeaseHolder { worker: r.get(0)?, executions: r.get(1)?, until_ms: r.get(2)? })
            })
            .at(p)?;
        rows.collect::<rusqlite::Result<_>>().at(p)
    }

    pub fn expire_leases(&self, job_id: &str, worker: &str) -> Result<u64> {
        let conn = self.conn();
        let now = self.now_ms();
        let n = conn
            .execute(
                "UPDATE executions SET lease_until_ms = ?3 - 1
                 WHERE job_id = ?1 AND status = 'running' AND worker = ?2 AND lease_until_ms >= ?3",
                params![job_id, worker, now],
            )
            .at(&self.path)?;
        Ok(n as u64)
    }

    pub fn next_wakeup(&self, job_id: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        // NULL sorts first: a pending row without backoff is due now (0).
        conn.query_row(
            "SELECT min(t) FROM (
                SELECT coalesce((SELECT not_before_ms FROM executions WHERE job_id = ?1 AND status = 'pending'
                                 ORDER BY not_before_ms LIMIT 1), 0) AS t
                WHERE EXISTS (SELECT 1 FROM executions WHERE job_id = ?1 AND status = 'pending')
                UNION ALL SELECT min(lease_until_ms) FROM executions WHERE job_id = ?1 AND status = 'running')",
            [job_id],
            |r| r.get(0),
        )
        .at(&self.path)
    }
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0)?,
        base_id: r.get(1)?,
        generation: r.get(2)?,
        name: r.get(3)?,
        planned: r.get(4)?,
        created_at_ms: r.get(5)?,
        inserted: 0,
    })
}

fn latest_generation(conn: &Connection, base_id: &str) -> rusqlite::Result<Option<JobRecord>> {
    conn.query_row(
        "SELECT id, base_id, generation, name, planned, created_at_ms FROM jobs WHERE base_id = ?1 ORDER BY generation DESC LIMIT 1",
        [base_id],
        job_from_row,
    )
    .optional()
}

/// Turns a new file to WAL. That needs the file to itself for a moment, and SQLite answers
/// `SQLITE_BUSY` at once instead of calling the busy handler: processes that open a new
/// ledger together retry here, for as long as the busy timeout. (Once in WAL, a file stays so,
/// and the pragma is a no-op.)
fn wal(conn: &Connection, path: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match conn.execute_batch("PRAGMA journal_mode=WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return done.at(path),
        }
    }
}

/// Applies the embedded migrations in order. An applied migration is never edited: its
/// checksum is recorded and compared on every open.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).at(path)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
    )
    .at(path)?;
    let applied: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT version, sha256 FROM schema_migrations ORDER BY version").at(path)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).at(path)?.collect::<rusqlite::Result<_>>().at(path)?
    };
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some((found, _)) = applied.iter().find(|(v, _)| *v > known) {
        return Err(StoreError::SchemaTooNew { found: *found, known });
    }
    for (version, name, sql) in MIGRATIONS {
        let sum = parallax_core::sha256_hex(sql.as_bytes());
        match applied.iter().find(|(v, _)| v == version) {
            Some((_, recorded)) if *recorded == sum => {}
            Some(_) => return Err(StoreError::MigrationChanged { version: *version, name: (*name).to_owned() }),
            None => {
                tx.execute_batch(sql).at(path)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, sha256, applied_at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![version, name, sum, crate::SystemClock.now_ms()],
                )
                .at(path)?;
            }
        }
    }
    let violations: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).at(path)?;
    if violations > 0 {
        return Err(StoreError::Inconsistent {
            job: String::new(),
            detail: format!("{violations} rows break a foreign key after migrating; nothing was changed"),
        });
    }
    tx.commit().at(path)
}

/// A shared rate's bucket refilled to `now`: `rate` tokens a second, holding at most a
/// second's worth (at least one); a new bucket starts with one token, as a local one does.
pub(crate) fn refilled(stored: Option<(f64, i64)>, rate: f64, now: i64) -> f64 {
    refilled_within(stored, rate, now, rate.max(1.0))
}

/// Like [`refilled`], holding at most `capacity` tokens.
pub(crate) fn refilled_within(stored: Option<(f64, i64)>, rate: f64, now: i64, capacity: f64) -> f64 {
    match stored {
        None => capacity.min(1.0),
        Some((tokens, at)) => (tokens + rate * (now - at).max(0) as f64 / 1000.0).min(capacity),
    }
}

/// Doubt names as stored (space-separated) to a list.
pub(crate) fn doubt_names(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

/// Which rows of [`SqliteStore::rows`].
#[derive(Clone, Copy)]
enum Rows {
    /// All of a job's, in plan order.
    Plan,
    /// A keyset page in execution order.
    AfterId {
        after: i64,
        limit: usize,
    },
    /// Rows whose latest event is in `(after, upto]`, in event order.
    Events {
        after: i64,
        upto: i64,
        limit: usize,
    },
    One(i64),
}

fn result_row(r: &rusqlite::Row<'_>, raw: bool) -> rusqlite::Result<ResultRow> {
    let block_code: Option<String> = r.get(27)?;
    let block_reason = match (block_code, r.get::<_, Option<String>>(28)?) {
        (Some(code), message) => Some(BlockRecord { code, message: message.unwrap_or_default() }),
        (None, _) => None,
    };
    let body: Vec<u8> = r.get(7)?;
    let request_body = String::from_utf8_lossy(&body).into_owned();
    let usage: Option<String> = r.get(14)?;
    Ok(ResultRow {
        execution_id: r.get(32)?,
        event_seq: r.get(33)?,
        job_id: r.get(0)?,
        question_id: r.get(1)?,
        model_id: r.get(2)?,
        region: r.get(3)?,
        sample: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        request: serde_json::from_str(&request_body).unwrap_or(serde_json::Value::Null),
        request_body,
        request_sha256: r.get(8)?,
        requested_model: r.get(9)?,
        reported_model: r.get(10)?,
        model_mismatch: r.get(11)?,
        response_text: r.get(12)?,
        finish_reason: r.get(13)?,
        usage: usage.and_then(|u| serde_json::from_str(&u).ok()),
        latency_ms: r.get(15)?,
        error: r.get(16)?,
        endpoint: r.get(17)?,
        idempotency_key: r.get(18)?,
        label: r.get(19)?,
        label_evidence: r.get(20)?,
        classifier: r.get::<_, Option<String>>(21)?.map(|v| format!("builtin@{v}")),
        provenance: r.get::<_, Option<String>>(22)?.and_then(|v| serde_json::from_str(&v).ok()),
        confidence: r.get(23)?,
        uncertain: r.get(24)?,
        doubts: r.get::<_, Option<String>>(25)?.map(|d| doubt_names(&d)),
        judges: r.get::<_, Option<String>>(26)?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default(),
        blocked: block_reason.is_some(),
        block_reason,
        raw: if raw { Some(crate::raw::fields(r.get(29)?, r.get(30)?, r.get(31)?)) } else { None },
    })
}

fn attempt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        question_id: r.get(0)?,
        model_id: r.get(1)?,
        region: r.get(2)?,
        sample: r.get(3)?,
        number: r.get(4)?,
        worker: r.get(5)?,
        started_at_ms: r.get(6)?,
        finished_at_ms: r.get(7)?,
        outcome: r.get(8)?,
        possibly_billed: r.get(9)?,
        http_status: r.get(10)?,
        latency_ms: r.get(11)?,
        error: r.get(12)?,
    })
}
