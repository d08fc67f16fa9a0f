//! The PostgreSQL ledger: many `parallax` processes, on many hosts, share one database.
//!
//! The same contract as the SQLite store (see `LEDGER.md`), kept with PostgreSQL's tools:
//!
//! - **Time is the database's.** Every lease expiry and time stamp is computed in SQL from
//!   `statement_timestamp()`, never from a worker's clock (hosts disagree about the time).
//!   Each statement takes a `$now` that is NULL in production (`coalesce($now, <db ms>)`);
//!   only a test that injects a [`Clock`] through `Store::open_with_clock` fills it.
//! - **A claim is one transaction**: per endpoint, one statement reaps the expired leases it
//!   meets (closing their open attempt as `lost`), takes due pending rows with
//!   `FOR UPDATE SKIP LOCKED` inside a CTE (PostgreSQL never inlines a locking CTE, so the
//!   LIMIT holds), sets the lease and inserts the attempt rows. The first pass's statements
//!   for every endpoint are pipelined behind `BEGIN`: two round trips per batch (that pipeline,
//!   and `COMMIT`) whatever the number of endpoints, unless the second pass has work.
//! - **A finish, a heartbeat is one statement** over arrays (`unnest`), each row fenced by
//!   `(id, lease_token)`: one round trip and one commit per batch.
//! - **Migrations** run in one transaction under `pg_advisory_xact_lock`, so processes that
//!   open a fresh database at once apply them once; a transaction-scoped lock cannot leak.
//!
//! A small fixed pool (four connections per handle, opened on demand) serves the calls; a
//! connection that saw an error, a cancelled call or an open transaction is closed, never reused.
//! TLS follows libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` (see `pg_tls`).

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::try_join_all;
use parallax_core::{EndpointKind, ItemKey, Plan, idempotency_key};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::model::{LIVE_WORKER_MS, LeaseHolder, Metrics, ProbeRecord, ShareAsk};
use crate::{
    ActiveJob, AnalysisRow, Applied, AttemptRow, BlockRecord, Cancelled, CellStatus, Claim, ClaimBatch, ClaimRequest,
    Clock, EndpointAttempts, JobRecord, JobStatus, JobSummary, LabelRecord, Next, Outcome, ResultFilter, ResultRow,
    StatusCounts, StoreError, SystemClock, ToLabel, WorkerRecord, WorkerRow,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "ledger", include_str!("../migrations/postgres/0001_ledger.sql")),
    (2, "labels", include_str!("../migrations/postgres/0002_labels.sql")),
    (3, "claim_indexes", include_str!("../migrations/postgres/0003_claim_indexes.sql")),
    (4, "provenance", include_str!("../migrations/postgres/0004_provenance.sql")),
    (5, "workers", include_str!("../migrations/postgres/0005_workers.sql")),
    (6, "label_confidence", include_str!("../migrations/postgres/0006_label_confidence.sql")),
    (7, "served", include_str!("../migrations/postgres/0007_served.sql")),
    (8, "events", include_str!("../migrations/postgres/0008_events.sql")),
    (9, "probes", include_str!("../migrations/postgres/0009_probes.sql")),
    (10, "label_events_per_statement", include_str!("../migrations/postgres/0010_label_events_per_statement.sql")),
    (11, "labels_with_results", include_str!("../migrations/postgres/0011_labels_with_results.sql")),
    (12, "limit_shares", include_str!("../migrations/postgres/0012_limit_shares.sql")),
    (13, "no_endpoint_lease_index", include_str!("../migrations/postgres/0013_no_endpoint_lease_index.sql")),
];

/// Connections per store handle. A worker has one claim, one finish and one heartbeat in
/// flight at most, plus the odd read.
const POOL_SIZE: usize = 4;

/// Executions inserted at once after which `enqueue` refreshes the planner's statistics.
const ANALYZE_AFTER: u64 = 1_000;

/// Executions of a prepared statement that PostgreSQL plans for their parameters before it
/// may settle on a generic plan (`plancache.c`); see `Lease::query_custom`.
const CUSTOM_PLANS: u32 = 5;

/// Rows per statement when enqueueing a plan: bounded messages for plans of any size.
const ENQUEUE_CHUNK: usize = 2_000;

/// First keys of the advisory locks (the second is a hash of the schema, and the plan).
const MIGRATE_LOCK: i32 = 0x7078_0001;
const ENQUEUE_LOCK: i32 = 0x7078_0002;
/// Advisory locks (with a key per limit) that serialize claims under a shared limit.
const CLAIM_LOCK: i32 = 0x7078_0003;

/// The locks of a claim's shared limits, `$2` in order (callers sort them: no deadlocks).
const CLAIM_LOCKS: &str = "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || '/' || k.l))
     FROM unnest($2::text[]) WITH ORDINALITY AS k(l, ord) ORDER BY k.ord";

type Result<T> = std::result::Result<T, StoreError>;

/// The columns of a [`ResultRow`] (read by [`result_row`]), for the executions `$key`
/// picks, in `$order`. Parameters: `$1` job, `$2`–`$4` question, model, region, `$5` raw,
/// `$6` status, `$7` label; the key and order may use more.
macro_rules! row_select {
    ($key:literal, $order:literal) => {
        concat!(
            "SELECT e.job_id, e.question_id, e.model_id, e.region, e.sample, e.status, e.attempts, e.request_body,
                    e.request_sha256, e.requested_model, r.reported_model, r.model_mismatch, r.response_text,
                    r.finish_reason, r.usage_json, r.latency_ms, e.error, e.endpoint, e.idempotency_key, l.label,
                    l.evidence, l.version, r.provenance_json, l.confidence, l.uncertain, l.doubts,
                    (SELECT json_agg(json_build_object('judge', j.classifier, 'rubric_version', j.version,
                                                       'label', j.label, 'rubric', j.rubric, 'raw', j.raw)
                                     ORDER BY j.classifier COLLATE \"C\")::text
                     FROM labels j WHERE j.execution_id = e.id AND j.classifier <> 'builtin'),
                    r.block_code, r.block_message, a.raw_response, a.response_headers_json, a.system_fingerprint,
                    e.id, e.event_seq
             FROM executions e LEFT JOIN results r ON r.execution_id = e.id
             LEFT JOIN labels l ON l.execution_id = e.id AND l.classifier = 'builtin'
             LEFT JOIN questions q ON q.job_id = e.job_id AND q.question_id = e.question_id
             -- What came back: the result's attempt, else the last one.
             LEFT JOIN attempts a ON $5 AND a.id = coalesce(r.attempt_id,
                 (SELECT max(x.id) FROM attempts x WHERE x.execution_id = e.id))
             WHERE ",
            $key,
            " AND ($2::text IS NULL OR e.question_id = $2) AND ($3::text IS NULL OR e.model_id = $3)
               AND ($4::text IS NULL OR e.region = $4) AND ($6::text IS NULL OR e.status = $6)
               AND ($7::text IS NULL OR l.label = $7) ",
            $order
        )
    };
}

/// `clock.now`: the injected test clock (`$1`), else the database's, in ms since the epoch.
/// One value per statement: `statement_timestamp()` does not move while it runs.
macro_rules! with_clock {
    ($($sql:literal),* $(,)?) => {
        concat!(
            "WITH clock AS (SELECT coalesce($1::bigint, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint) AS now)",
            $($sql),*
        )
    };
}

/// One endpoint's share of a claim: reap, pick, lease, open attempts. `$2` job, `$3` endpoint,
/// `$4` at most this many rows, `$5` lease ms, `$6` worker, `$7` park possibly billed,
/// `$8` attempt budget, `$9` fresh lease tokens (at least `$4` of them), `$10` the
/// endpoint's concurrency across workers and `$11` the job's (NULL: none), `$12` the
/// claimer's leases whose call has returned (counted by neither; a hashed `NOT IN`, not
/// `<> ALL`, which compares every lease with every id): live leases are counted
/// here, after the claim's lock and the transaction's earlier statements, so no round trip
/// is spent counting them first.
///
/// Expired leases come first (their holders are gone), then due pending rows in plan order,
/// n in all, as in SQLite. Returns one row of counts (`picked`, `lost`, `parked`, `failed`)
/// joined to each claim taken, or to NULLs when none was.
const CLAIM: &str = with_clock!(
    ",
room AS (
    SELECT greatest(least(
        $4::bigint,
        CASE WHEN $10::bigint IS NULL THEN $4::bigint ELSE $10::bigint - (SELECT count(*) FROM executions e, clock c
            WHERE e.endpoint = $3 AND e.status = 'running' AND e.lease_until_ms >= c.now AND e.id NOT IN (SELECT unnest($12::bigint[]))) END,
        CASE WHEN $11::bigint IS NULL THEN $4::bigint ELSE $11::bigint - (SELECT count(*) FROM executions e, clock c
            WHERE e.job_id = $2 AND e.status = 'running' AND e.lease_until_ms >= c.now AND e.id NOT IN (SELECT unnest($12::bigint[]))) END
    ), 0) AS n
),
expired AS (
    SELECT e.id, e.attempts, e.attempts_base, e.lease_until_ms FROM executions e
    WHERE e.job_id = $2 AND e.endpoint = $3 AND e.status = 'running' AND e.lease_until_ms < (SELECT now FROM clock)
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = $2 AND j.cancelled_at_ms IS NOT NULL)
    ORDER BY e.lease_until_ms, e.id LIMIT (SELECT n FROM room) FOR UPDATE SKIP LOCKED
),
due AS (
    SELECT e.id FROM executions e
    WHERE e.job_id = $2 AND e.endpoint = $3 AND e.status = 'pending'
      AND (e.not_before_ms IS NULL OR e.not_before_ms <= (SELECT now FROM clock))
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = $2 AND j.cancelled_at_ms IS NOT NULL)
    -- `id + 0`: the order of the partial index, not of the primary key (see migration 0003).
    ORDER BY e.id + 0 LIMIT greatest((SELECT n FROM room) - (SELECT count(*) FROM expired), 0) FOR UPDATE SKIP LOCKED
),
lost AS (
    UPDATE attempts a SET outcome = 'lost', possibly_billed = true, finished_at_ms = (SELECT now FROM clock),
        error = 'lease expired before the attempt was closed (worker stopped or lost the store)'
    FROM expired x WHERE a.execution_id = x.id AND a.outcome = 'open'
    RETURNING a.execution_id
),
picked AS (
    -- (src, at, id): the order SQLite takes them in; claims, tokens and attempt ids follow it.
    -- The tokens are numbered here, not in a CTE of their own: joining one back to these
    -- rows was planned as a nested loop over it for each row.
    SELECT u.*, CASE WHEN u.status = 'running'
                     THEN ($9::text[])[row_number() OVER (PARTITION BY u.status = 'running' ORDER BY u.src, u.at, u.id)]
                END AS token
    FROM (
        SELECT x.id, 0 AS src, x.lease_until_ms AS at,
            CASE WHEN $7::boolean AND EXISTS (SELECT 1 FROM lost l WHERE l.execution_id = x.id) THEN 'parked'
                 WHEN x.attempts - x.attempts_base >= $8::bigint THEN 'failed'
                 ELSE 'running' END AS status
        FROM expired x
        UNION ALL
        SELECT d.id, 1, 0, 'running' FROM due d
    ) u
),
taken AS (
    UPDATE executions e SET
        status = p.status,
        lease_token = p.token,
        lease_until_ms = CASE WHEN p.status = 'running' THEN c.now + $5::bigint END,
        worker = CASE WHEN p.status = 'running' THEN $6::text END,
        attempts = e.attempts + CASE WHEN p.status = 'running' THEN 1 ELSE 0 END,
        not_before_ms = CASE WHEN p.status = 'running' THEN NULL ELSE e.not_before_ms END,
        error = CASE p.status
            WHEN 'parked' THEN 'parked: an attempt may have been billed (lease expired mid-call)'
            WHEN 'failed' THEN 'attempt budget of ' || $8::bigint || ' spent; the last attempt was lost'
            ELSE e.error END
    FROM picked p, clock c
    WHERE e.id = p.id AND e.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING e.id, e.status, e.lease_token, e.attempts, e.attempts_base, e.question_id, e.model_id, e.region,
        e.sample, e.endpoint, e.kind, e.requested_model, e.model_aliases, e.request_body, e.idempotency_key
),
opened AS (
    INSERT INTO attempts (execution_id, number, lease_token, worker, started_at_ms, outcome)
    SELECT k.id, greatest(k.attempts - k.attempts_base, 1) + k.attempts_base, k.lease_token, $6::text, c.now, 'open'
    FROM taken k JOIN picked p ON p.id = k.id, clock c WHERE k.status = 'running'
    ORDER BY p.src, p.at, k.id -- attempt ids in claim order, as in SQLite
    RETURNING id, execution_id
),
counts AS (
    SELECT (SELECT count(*) FROM picked) AS picked, (SELECT count(*) FROM lost) AS lost,
        (SELECT count(*) FROM taken WHERE status = 'parked') AS parked,
        (SELECT count(*) FROM taken WHERE status = 'failed') AS failed
)
SELECT n.picked, n.lost, n.parked, n.failed, c.id, c.attempt_id, c.lease_token, c.attempts, c.attempts_base,
    c.question_id, c.model_id, c.region, c.sample, c.endpoint, c.kind, c.requested_model, c.model_aliases,
    c.request_body, c.idempotency_key,
    -- The question, for the label written with the answer.
    (SELECT q.text FROM questions q WHERE q.job_id = $2 AND q.question_id = c.question_id)
FROM counts n LEFT JOIN (
    SELECT p.src, p.at, k.*, o.id AS attempt_id FROM taken k JOIN opened o ON o.execution_id = k.id JOIN picked p ON p.id = k.id
) c ON true
ORDER BY c.src, c.at, c.id"
);

/// A batch of outcomes, each execution at most once (`finish` splits a batch that repeats
/// one). Every execution write is fenced by `(id, lease_token)`; the attempt is closed
/// either way (`stale`, and possibly billed, when the fence refused it); a result is kept
/// only behind a fence that held. Returns, in input order, whether each was applied.
const FINISH: &str = with_clock!(
    ",
o AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
        $9::boolean[], $10::bigint[], $11::bigint[], $12::text[], $20::bytea[], $21::text[], $22::text[]) WITH ORDINALITY
        AS o(execution_id, attempt_id, token, status, attempt_outcome, retry_after_ms, execution_error,
             billed, http_status, latency_ms, error, raw_response, response_headers_json, system_fingerprint, ord)
),
settled AS (
    -- An execution of a cancelled job does not go back to pending: it is settled.
    UPDATE executions e SET
        status = CASE WHEN o.status = 'pending'
                       AND (SELECT j.cancelled_at_ms FROM jobs j WHERE j.id = e.job_id) IS NOT NULL
                      THEN 'cancelled' ELSE o.status END,
        lease_token = NULL, lease_until_ms = NULL, worker = NULL,
        not_before_ms = c.now + o.retry_after_ms, error = o.execution_error,
        -- Recorded, never sent: `attempts` counts upstream calls only.
        attempts = e.attempts - CASE WHEN o.attempt_outcome = 'released' THEN 1 ELSE 0 END
    FROM o, clock c
    WHERE e.id = o.execution_id AND e.lease_token = o.token
    RETURNING e.id
),
closed AS (
    -- An attempt closes once; one the reaper closed as lost may still learn how it ended.
    -- A refused late answer was paid for and not kept: it counts with the possibly billed.
    -- `IN (SELECT id FROM settled)` in the assignments is a hashed subplan, built once; a
    -- join to `settled` was planned as a nested loop over it for each attempt (estimated
    -- one row), 8 of 15 ms of a 70-outcome batch. The attempts are found by the primary
    -- key from each outcome (planned for each batch: see `Lease::query_custom`).
    UPDATE attempts a SET outcome = CASE WHEN o.execution_id IN (SELECT id FROM settled) THEN o.attempt_outcome
                                         ELSE 'stale' END,
        finished_at_ms = c.now,
        possibly_billed = o.billed OR (o.execution_id NOT IN (SELECT id FROM settled) AND o.attempt_outcome <> 'released'),
        http_status = o.http_status, latency_ms = o.latency_ms, error = o.error,
        raw_response = o.raw_response, response_headers_json = o.response_headers_json,
        system_fingerprint = o.system_fingerprint
    FROM o, clock c
    WHERE a.id = o.attempt_id AND a.outcome IN ('open', 'lost')
    RETURNING a.id
),
kept AS (
    INSERT INTO results (execution_id, attempt_id, reported_model, model_mismatch, response_text, finish_reason,
        usage_json, latency_ms, created_at_ms, provenance_json, block_code, block_message)
    SELECT o.execution_id, o.attempt_id, r.reported_model, r.model_mismatch, r.response_text, r.finish_reason,
        r.usage_json, o.latency_ms, c.now, r.provenance_json, r.block_code, r.block_message
    FROM unnest($13::bigint[], $14::text[], $15::boolean[], $16::text[], $17::text[], $18::text[], $19::text[],
                $23::text[], $24::text[])
        AS r(execution_id, reported_model, model_mismatch, response_text, finish_reason, usage_json, provenance_json,
             block_code, block_message)
    JOIN o ON o.execution_id = r.execution_id
    JOIN settled s ON s.id = r.execution_id, clock c
    RETURNING execution_id
),
labelled AS (
    -- A result's label, committed with it (behind the same fence); as `put_labels` otherwise.
    INSERT INTO labels (execution_id, classifier, version, label, evidence, rubric, raw, created_at_ms, confidence,
        uncertain, doubts)
    SELECT l.execution_id, l.classifier, l.version, l.label, l.evidence, l.rubric, l.raw, c.now, l.confidence,
        l.uncertain, l.doubts
    FROM unnest($25::bigint[], $26::text[], $27::text[], $28::text[], $29::text[], $30::text[], $31::text[],
                $32::double precision[], $33::boolean[], $34::text[])
        AS l(execution_id, classifier, version, label, evidence, rubric, raw, confidence, uncertain, doubts)
    JOIN settled s ON s.id = l.execution_id, clock c
    ON CONFLICT (execution_id, classifier) DO UPDATE SET version = excluded.version, label = excluded.label,
        evidence = excluded.evidence, rubric = excluded.rubric, raw = excluded.raw, created_at_ms = excluded.created_at_ms,
        confidence = excluded.confidence, uncertain = excluded.uncertain, doubts = excluded.doubts
    RETURNING execution_id
)
SELECT o.ord, s.id IS NOT NULL AS applied FROM o LEFT JOIN settled s ON s.id = o.execution_id ORDER BY o.ord"
);

/// Extends every held lease that is still current; returns the others, in input order.
const HEARTBEAT: &str = with_clock!(
    ",
h AS (SELECT * FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS h(id, token, ord)),
extended AS (
    UPDATE executions e SET lease_until_ms = c.now + $4::bigint FROM h, clock c
    WHERE e.id = h.id AND e.lease_token = h.token AND e.status = 'running'
    RETURNING e.id
)
SELECT h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM extended x WHERE x.id = h.id) ORDER BY h.ord"
);

/// The earliest wake-up (a pending row without backoff is due at once: 0), and the clock's now.
const NEXT_WAKEUP: &str = with_clock!(
    "
SELECT (SELECT min(t) FROM (
    SELECT coalesce(p.not_before_ms, 0) AS t FROM (
        SELECT not_before_ms FROM executions WHERE job_id = $2 AND status = 'pending'
        ORDER BY not_before_ms NULLS FIRST LIMIT 1) p
    UNION ALL
    SELECT min(lease_until_ms) FROM executions WHERE job_id = $2 AND status = 'running') w),
    (SELECT now FROM clock)"
);

const NOW: &str = with_clock!(" SELECT now FROM clock");

const JOB: &str = "SELECT id, base_id, generation, name, planned, created_at_ms FROM jobs WHERE id = $1";
const LATEST_GENERATION: &str = "SELECT id, base_id, generation, name, planned, created_at_ms FROM jobs
    WHERE base_id = $1 ORDER BY generation DESC LIMIT 1";

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Executions of each statement run by `query_custom` since it was last prepared.
    custom_uses: HashMap<&'static str, u32>,
    /// `default_transaction_read_only` was set on it (the `read_only_after` test hook).
    read_only: bool,
}

struct Inner {
    /// Where the store is, password redacted: the only form that appears in errors.
    location: String,
    config: tokio_postgres::Config,
    /// TLS as the connection string's `sslmode` asks (`disable` never uses it).
    tls: MakeRustlsConnect,
    /// A test's clock; `None`: the database's.
    clock: Option<Arc<dyn Clock>>,
    idle: Mutex<Vec<Conn>>,
    slots: Semaphore,
    /// Test hook: result batches left before the store turns read-only, and whether it has.
    finishes_before_read_only: AtomicI64,
    read_only: AtomicBool,
    /// The database clock minus this host's, as last measured (see `now_ms`).
    offset_ms: AtomicI64,
    /// Requests that waited for the server, for measuring batches.
    round_trips: AtomicU64,
    /// How far the event stream may be read (see `event_horizon`).
    horizon: tokio::sync::Mutex<Horizon>,
    /// Held by `heartbeat` and `finish`: both update the rows of this handle's leases, on
    /// two connections, and would otherwise lock them in different orders and deadlock.
    lease_writes: tokio::sync::Mutex<()>,
}

/// Event numbers come from a sequence, in call order rather than commit order. `safe`: every
/// number up to it is final. `barrier`: a number read from the sequence and the
/// transactions that were in progress just after; once they have all ended, it is safe.
#[derive(Default)]
struct Horizon {
    safe: i64,
    barrier: Option<(i64, Vec<String>)>,
}

#[derive(Clone)]
pub(crate) struct PgStore(Arc<Inner>);

/// A pooled connection, held for one call. It goes back to the pool only if its last
/// request was answered without error and no transaction is open; otherwise (an error, a
/// call cancelled mid-request, a transaction left open) it is closed, which also rolls
/// back whatever it had begun. Reconnecting after an error is cheap; reusing a connection
/// in an unknown state is not.
struct Lease<'a> {
    store: &'a Inner,
    conn: Option<Conn>,
    _slot: SemaphorePermit<'a>,
    in_tx: bool,
    healthy: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.in_tx
            && self.healthy
            && !conn.client.is_closed()
        {
            self.store.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
    }
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }

    /// The client, for one request (or one pipeline of them): a round trip, and the
    /// connection is suspect until `settle` sees the answer.
    fn send(&mut self) -> &Client {
        self.healthy = false;
        self.store.trip();
        &self.conn().client
    }

    fn settle<T>(&mut self, answer: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        self.healthy = answer.is_ok();
        answer.map_err(|e| self.store.err(e))
    }

    /// The statement prepared on this connection (one round trip the first time).
    async fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.conn().statements.get(sql) {
            return Ok(statement.clone());
        }
        let answer = self.send().prepare(sql).await;
        let statement = self.settle(answer)?;
        self.conn().statements.insert(sql, statement.clone());
        Ok(statement)
    }

    async fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let statement = self.statement(sql).await?;
        let answer = self.send().query(&statement, params).await;
        self.settle(answer)
    }

    /// Like [`Lease::query`], planned for these parameters every time instead of with the
    /// connection's cached generic plan: for a statement over a table that grows during a
    /// run, whose generic plan would keep the table's size when it was made. PostgreSQL plans
    /// a prepared statement for its parameters on its first [`CUSTOM_PLANS`] executions and
    /// may switch to a generic plan after, so the statement is prepared afresh every
    /// `CUSTOM_PLANS` uses: parsed once per five batches instead of for each (parsing and
    /// analysing `FINISH` afresh took a tenth of the server's CPU). A setting such as
    /// `plan_cache_mode` would not do: it would also replan every foreign-key check.
    async fn query_custom(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let conn = self.conn();
        let uses = conn.custom_uses.entry(sql).or_insert(0);
        if *uses == CUSTOM_PLANS {
            // Dropping the last handle closes the statement on the server.
            conn.statements.remove(sql);
            *uses = 0;
        }
        *uses += 1;
        self.query(sql, params).await
    }

    async fn query_opt(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    async fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.statement(sql).await?;
        let answer = self.send().execute(&statement, params).await;
        self.settle(answer)
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        let answer = self.send().batch_execute(sql).await;
        self.settle(answer)
    }

    async fn begin(&mut self) -> Result<()> {
        self.in_tx = true;
        self.batch("BEGIN").await
    }

    async fn commit(&mut self) -> Result<()> {
        self.batch("COMMIT").await?;
        self.in_tx = false;
        Ok(())
    }
}

/// Reads a `bigint` column into the model's integer types; a value out of the type's range
/// (a row edited behind the store's back) is an inconsistency, never a panic.
fn int<T: TryFrom<i64>>(row: &Row, i: usize) -> Result<T> {
    let v: i64 = row.get(i);
    T::try_from(v).map_err(|_| StoreError::Inconsistent {
        job: String::new(),
        detail: format!("column {i} holds {v}, out of its range"),
    })
}

fn job_from_row(r: &Row) -> JobRecord {
    JobRecord {
        id: r.get(0),
        base_id: r.get(1),
        generation: r.get(2),
        name: r.get(3),
        planned: r.get(4),
        created_at_ms: r.get(5),
        inserted: 0,
    }
}

/// One column of the labels at `keep`, for an array parameter.
fn column<'a>(
    labels: &'a [LabelRecord],
    keep: &[usize],
    f: impl Fn(&'a LabelRecord) -> Option<&'a str>,
) -> Vec<Option<&'a str>> {
    keep.iter().map(|&i| f(&labels[i])).collect()
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// A shared rate bucket as stored (`None` if never used) and the store's clock, in the
/// claim's transaction; `None` when the clock row itself is missing (never, in practice).
async fn bucket(c: &mut Lease<'_>, now: Option<i64>, key: &str) -> Result<Option<(Option<(f64, i64)>, i64)>> {
    let row = c
        .query_opt(
            with_clock!(
                " SELECT r.tokens, r.refilled_at_ms, c.now FROM clock c
                LEFT JOIN endpoint_rates r ON r.endpoint = $2"
            ),
            &[&now, &key],
        )
        .await?;
    Ok(row.map(|row| (row.get::<_, Option<f64>>(0).zip(row.get::<_, Option<i64>>(1)), row.get(2))))
}

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl Inner {
    fn trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// A lost or refused connection is `Unavailable` (worth retrying later); anything the
    /// server refused is `Backend`. Neither carries the connection string.
    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        let unavailable = e.is_closed()
            || match e.code() {
                // connection_exception, admin/crash shutdown, cannot_connect_now, too_many_connections
                Some(code) => {
                    code.code().starts_with("08") || ["57P01", "57P02", "57P03", "53300"].contains(&code.code())
                }
                None => e.source().is_some_and(|s| s.is::<std::io::Error>()),
            };
        let (store, source) = (self.location.clone(), Box::new(e));
        if unavailable { StoreError::Unavailable { store, source } } else { StoreError::Backend { store, source } }
    }

    fn now_param(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| c.now_ms())
    }

    async fn connect(&self) -> Result<Conn> {
        let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(|e| self.err(e))?;
        // The connection's I/O runs beside the client; its errors reach the client's calls.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { client, statements: HashMap::new(), custom_uses: HashMap::new(), read_only: false })
    }

    async fn lease(&self) -> Result<Lease<'_>> {
        let slot = self.slots.acquire().await.map_err(|e| StoreError::Task(e.to_string()))?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => self.connect().await?,
        };
        let mut lease = Lease { store: self, conn: Some(conn), _slot: slot, in_tx: false, healthy: true };
        if self.read_only.load(Ordering::SeqCst) && !lease.conn.as_ref().is_some_and(|c| c.read_only) {
            // Test hook: from now on every write on this connection fails, as on a real
            // database gone read-only (a replica, a full disk's `default_transaction_read_only`).
            lease.batch("SET default_transaction_read_only = on").await?;
            lease.conn().read_only = true;
        }
        Ok(lease)
    }
}

impl PgStore {
    /// Connects and migrates. `location` must already be redacted for errors.
    /// Opens the store at `url`, migrating it; with `read_only`, every session is read
    /// only (`default_transaction_read_only`) and nothing is migrated: a store of another
    /// schema than this build's is refused, as SQLite's read-only open does.
    pub async fn open(url: &str, location: String, clock: Option<Arc<dyn Clock>>, read_only: bool) -> Result<PgStore> {
        let (url, tls) = crate::pg_tls::split(url).map_err(|e| StoreError::Location(format!("{location}: {e}")))?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Backend { store: location.clone(), source: Box::new(e) })?;
        config.ssl_mode(tls.driver_mode());
        let tls = crate::pg_tls::connector(&tls).map_err(|e| StoreError::Location(format!("{location}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            // A host that drops packets would otherwise hold an open for the OS's TCP timeout.
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("parallax");
        }
        if read_only {
            let options = format!("{} -c default_transaction_read_only=on", config.get_options().unwrap_or(""));
            config.options(options.trim_start());
        }
        let inner = Inner {
            location,
            config,
            tls,
            clock,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(POOL_SIZE),
            finishes_before_read_only: AtomicI64::new(i64::MAX),
            read_only: AtomicBool::new(false),
            horizon: tokio::sync::Mutex::new(Horizon::default()),
            lease_writes: tokio::sync::Mutex::new(()),
            offset_ms: AtomicI64::new(0),
            round_trips: AtomicU64::new(0),
        };
        let mut conn = inner.connect().await?;
        if read_only {
            check_schema(&inner, &mut conn).await?;
        } else {
            migrate(&inner, &mut conn).await?;
        }
        inner.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        let store = PgStore(Arc::new(inner));
        store.db_now_ms().await?;
        Ok(store)
    }

    pub fn round_trips(&self) -> u64 {
        self.0.round_trips.load(Ordering::Relaxed)
    }

    /// The store's clock without a round trip: the injected one, or this host's clock
    /// corrected by the offset to the database's measured at open and at every
    /// `next_wakeup` (to within a round trip), so `next_wakeup() - now_ms()` is a wait.
    pub fn now_ms(&self) -> i64 {
        match &self.0.clock {
            Some(clock) => clock.now_ms(),
            None => SystemClock.now_ms() + self.0.offset_ms.load(Ordering::Relaxed),
        }
    }

    fn observe_db_now(&self, db_now: i64) {
        if self.0.clock.is_none() {
            self.0.offset_ms.store(db_now - SystemClock.now_ms(), Ordering::Relaxed);
        }
    }

    /// The store's clock, asked of the database (or the injected clock).
    pub async fn db_now_ms(&self) -> Result<i64> {
        let mut c = self.0.lease().await?;
        let now: i64 = c.query(NOW, &[&self.0.now_param()]).await?[0].get(0);
        self.observe_db_now(now);
        Ok(now)
    }

    pub fn read_only_after(&self, finishes: u64) {
        self.0.finishes_before_read_only.store(finishes.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    pub async fn current_job(&self, base_id: &str) -> Result<Option<JobRecord>> {
        let mut c = self.0.lease().await?;
        Ok(c.query_opt(LATEST_GENERATION, &[&base_id]).await?.as_ref().map(job_from_row))
    }

    pub async fn enqueue(&self, plan: &Plan, fresh: bool) -> Result<JobRecord> {
        let mut c = self.0.lease().await?;
        c.begin().await?;
        // Processes that enqueue the same plan at once queue here, so one creates the job
        // and the others continue it (SQLite gets this from `BEGIN IMMEDIATE`).
        c.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || '/' || $2::text))",
            &[&ENQUEUE_LOCK, &plan.base_job_id],
        )
        .await?;
        let latest = c.query_opt(LATEST_GENERATION, &[&plan.base_job_id]).await?.as_ref().map(job_from_row);
        // A job made by this transaction has no executions yet: they are copied in whole.
        let new_job = fresh || latest.is_none();
        let mut job = match (latest, fresh) {
            (Some(job), false) => job,
            (latest, _) => {
                let generation = latest.map_or(1, |j| j.generation + 1);
                let id = if generation == 1 {
                    plan.base_job_id.clone()
                } else {
                    format!("{}-{generation}", plan.base_job_id)
                };
                let row = c
                    .query(
                        with_clock!(
                            " INSERT INTO jobs (id, base_id, generation, name, identity_json, planned, created_at_ms)
                             SELECT $2::text, $3::text, $4::bigint, $5::text, $6::text, $7::bigint, now FROM clock
                             RETURNING created_at_ms"
                        ),
                        &[
                            &self.0.now_param(),
                            &id,
                            &plan.base_job_id,
                            &generation,
                            &plan.name,
                            &parallax_core::canonical_json(&plan.identity),
                            &(plan.len() as i64),
                        ],
                    )
                    .await?;
                JobRecord {
                    id,
                    base_id: plan.base_job_id.clone(),
                    generation,
                    name: plan.name.clone(),
                    planned: plan.len() as i64,
                    created_at_ms: row[0].get(0),
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
        let questions = plan.questions();
        let ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
        let ordinals: Vec<i64> = (0..questions.len() as i64).collect();
        let texts: Vec<&str> = questions.iter().map(|q| q.text.as_str()).collect();
        let expects: Vec<Option<String>> = questions
            .iter()
            .map(|q| q.expect.and_then(|e| serde_json::to_value(e).ok().and_then(|v| v.as_str().map(str::to_owned))))
            .collect();
        let metas: Vec<String> =
            questions.iter().map(|q| serde_json::Value::Object(q.meta.clone()).to_string()).collect();
        c.execute(
            "INSERT INTO questions (job_id, question_id, ordinal, text, expect, meta_json)
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
             ON CONFLICT DO NOTHING",
            &[&job.id, &ids, &ordinals, &texts, &expects, &metas],
        )
        .await?;
        let items: Vec<_> = plan.items().collect();
        if new_job {
            job.inserted += copy_executions(&mut c, &job.id, &items).await?;
        }
        for chunk in items.chunks(ENQUEUE_CHUNK).filter(|_| !new_job) {
            let questions: Vec<&str> = chunk.iter().map(|i| i.key.question_id.as_str()).collect();
            let models: Vec<&str> = chunk.iter().map(|i| i.key.model_id.as_str()).collect();
            let regions: Vec<&str> = chunk.iter().map(|i| i.key.region.as_str()).collect();
            let samples: Vec<i64> = chunk.iter().map(|i| i64::from(i.key.sample)).collect();
            let endpoints: Vec<&str> = chunk.iter().map(|i| i.endpoint.as_str()).collect();
            let kinds: Vec<&str> = chunk.iter().map(|i| i.kind.as_str()).collect();
            let requested: Vec<&str> = chunk.iter().map(|i| i.requested_model.as_str()).collect();
            let aliases: Vec<String> =
                chunk.iter().map(|i| serde_json::to_string(&i.model_aliases).unwrap_or_default()).collect();
            let bodies: Vec<&[u8]> = chunk.iter().map(|i| i.request_body.as_bytes()).collect();
            let shas: Vec<&str> = chunk.iter().map(|i| i.request_sha256.as_str()).collect();
            let keys: Vec<String> = chunk.iter().map(|i| idempotency_key(&job.id, &i.key)).collect();
            job.inserted += c
                .execute(
                    "INSERT INTO executions (job_id, question_id, model_id, region, sample, endpoint, kind,
                         requested_model, model_aliases, request_body, request_sha256, idempotency_key, status)
                     SELECT $1, i.*, 'pending' FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[], $12::text[])
                         AS i(question_id, model_id, region, sample, endpoint, kind, requested_model, model_aliases,
                              request_body, request_sha256, idempotency_key)
                     -- Only what is missing: a conflict would still draw an id (SQLite's ids have no gaps).
                     WHERE NOT EXISTS (SELECT 1 FROM executions x WHERE x.job_id = $1 AND x.question_id = i.question_id
                         AND x.model_id = i.model_id AND x.region = i.region AND x.sample = i.sample)
                     ON CONFLICT DO NOTHING",
                    &[
                        &job.id, &questions, &models, &regions, &samples, &endpoints, &kinds, &requested, &aliases,
                        &bodies, &shas, &keys,
                    ],
                )
                .await?;
        }
        // Enqueue N, see N: the store must hold exactly the plan, whatever was there before.
        let count: i64 = c.query("SELECT count(*) FROM executions WHERE job_id = $1", &[&job.id]).await?[0].get(0);
        if count != plan.len() as i64 {
            return Err(StoreError::Inconsistent {
                job: job.id,
                detail: format!("{count} executions stored, the plan has {}", plan.len()),
            });
        }
        if job.inserted > 0 {
            // Idle workers wake on LISTEN; the notice goes out when this commits.
            c.execute("SELECT pg_notify('parallax_work', $1)", &[&job.id]).await?;
        }
        c.commit().await?;
        // A large plan changes the table's shape at once: fresh statistics keep claims and
        // keyset pages on their indexes before autovacuum gets round to it. Best effort: a
        // role that may not analyze only gets a warning.
        if job.inserted >= ANALYZE_AFTER {
            let _ = c.batch("ANALYZE executions").await;
        }
        Ok(job)
    }

    /// See `SqliteStore::claim`: the same fair shares and passes. Each endpoint's share is
    /// one `CLAIM` statement; the first pass's statements go out together behind `BEGIN`.
    /// Its shares are capped up front so that together they stay within `max_total` (SQLite
    /// caps each by what the endpoints before it actually took: the same unless one came up
    /// short in the first pass, and then the second pass tops up as in SQLite).
    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimBatch> {
        let mut batch = ClaimBatch::default();
        if req.wants.is_empty() || req.max_total == 0 {
            return Ok(batch);
        }
        let now = self.0.now_param();
        let lease_ms = req.lease.as_millis().min(i64::MAX as u128) as i64;
        let max_attempts = i64::from(req.max_attempts);
        let mut c = self.0.lease().await?;
        let claim = c.statement(CLAIM).await?;
        // Limits shared with other workers: take each limit's lock (in a fixed order, so
        // claims never deadlock); each claim statement then counts the live leases against
        // them in the claim's transaction: two workers cannot both see room for the same slot.
        let capped = req.job_cap.is_some() || !req.endpoint_caps.is_empty();
        let rated = !req.endpoint_rates.is_empty() || req.job_rate.is_some();
        let mut locks: Vec<String> = req
            .endpoint_caps
            .iter()
            .map(|(e, _)| e)
            .chain(req.endpoint_rates.iter().map(|(e, _)| e))
            .map(|e| format!("endpoint/{e}"))
            .collect();
        if req.job_cap.is_some() || req.job_rate.is_some() {
            locks.push(format!("job/{}", req.job_id));
        }
        locks.sort();
        locks.dedup();
        let mut buckets: Vec<(String, f64)> = Vec::new();
        let mut job_bucket: Option<(String, f64)> = None;
        let mut req = std::borrow::Cow::Borrowed(req);
        let lock = c.statement(CLAIM_LOCKS).await?;
        if rated {
            // Rates are read before claiming (they bound what each endpoint may ask for):
            // the transaction and its locks come first, one round trip each.
            c.begin().await?;
            let answer = c.send().query(&lock, &[&CLAIM_LOCK, &locks]).await;
            c.settle(answer)?;
            let mut adjusted = req.as_ref().clone();
            // Shared rates: each endpoint's bucket, refilled to now, bounds what it may claim.
            for (endpoint, rate) in &req.endpoint_rates {
                let Some((stored, db_now)) = bucket(&mut c, now, endpoint).await? else { continue };
                let tokens = crate::sqlite::refilled(stored, *rate, db_now);
                for (e, n) in adjusted.wants.iter_mut() {
                    if e == endpoint {
                        *n = (*n).min(tokens.floor().max(0.0) as usize);
                    }
                }
                buckets.push((endpoint.clone(), tokens));
            }
            // The job's pacing: one bucket for every process, at most one call's worth in it.
            if let Some(rate) = req.job_rate {
                let key = format!("job/{}", req.job_id);
                if let Some((stored, db_now)) = bucket(&mut c, now, &key).await? {
                    let tokens = crate::sqlite::refilled_within(stored, rate, db_now, 1.0);
                    adjusted.max_total = adjusted.max_total.min(tokens.floor().max(0.0) as usize);
                    job_bucket = Some((key, tokens));
                }
            }
            req = std::borrow::Cow::Owned(adjusted);
        }
        let job_cap = req.job_cap.map(|c| c as i64);
        let endpoint_cap =
            |endpoint: &str| req.endpoint_caps.iter().find(|(e, _)| e == endpoint).map(|(_, c)| *c as i64);
        let req = req.as_ref();
        let share = req.max_total.div_ceil(req.wants.len());
        let mut taken = vec![0usize; req.wants.len()];
        let mut exhausted = vec![false; req.wants.len()];

        // First pass: every endpoint's fair share, the statements pipelined behind BEGIN.
        let mut left = req.max_total;
        let mut first: Vec<(usize, usize, i64, Vec<String>)> = Vec::new();
        for (w, (_, cap)) in req.wants.iter().enumerate() {
            let n = share.min(*cap).min(left);
            left -= n;
            if n > 0 {
                first.push((w, n, n as i64, (0..n).map(|_| new_token()).collect()));
            }
        }
        // One round trip: BEGIN, the limits' locks and every endpoint's claim go out together
        // (a pipeline runs in order on the connection; each statement is prepared already).
        c.in_tx = true;
        let client = c.send();
        let (begun, locked, rows) = tokio::join!(
            async {
                match rated {
                    true => Ok(()),
                    false => client.batch_execute("BEGIN").await,
                }
            },
            async {
                // A rated claim took its locks above, before reading its buckets.
                match capped && !rated {
                    true => client.query(&lock, &[&CLAIM_LOCK, &locks]).await.map(drop),
                    false => Ok(()),
                }
            },
            try_join_all(first.iter().map(|(w, _, n, tokens)| {
                let (endpoint, claim) = (&req.wants[*w].0, &claim);
                let cap = endpoint_cap(endpoint);
                async move {
                    client
                        .query(
                            claim,
                            &[
                                &now,
                                &req.job_id,
                                endpoint,
                                n,
                                &lease_ms,
                                &req.worker,
                                &req.park_possibly_billed,
                                &max_attempts,
                                tokens,
                                &cap,
                                &job_cap,
                                &req.returned,
                            ],
                        )
                        .await
                }
            }))
        );
        c.settle(begun)?;
        c.settle(locked)?;
        let rows = c.settle(rows)?;
        for ((w, n, _, _), rows) in first.iter().zip(rows) {
            let picked = take_rows(rows, &mut batch)?;
            exhausted[*w] = picked < *n;
            taken[*w] += picked;
        }

        if batch.claims.len() < req.max_total && !exhausted.iter().all(|e| *e) {
            for (w, (endpoint, cap)) in req.wants.iter().enumerate() {
                let n = cap.saturating_sub(taken[w]).min(req.max_total.saturating_sub(batch.claims.len()));
                if exhausted[w] || n == 0 {
                    continue;
                }
                let tokens: Vec<String> = (0..n).map(|_| new_token()).collect();
                let cap = endpoint_cap(endpoint);
                let rows = c
                    .query(
                        CLAIM,
                        &[
                            &now,
                            &req.job_id,
                            endpoint,
                            &(n as i64),
                            &lease_ms,
                            &req.worker,
                            &req.park_possibly_billed,
                            &max_attempts,
                            &tokens,
                            &cap,
                            &job_cap,
                            &req.returned,
                        ],
                    )
                    .await?;
                let picked = take_rows(rows, &mut batch)?;
                exhausted[w] = picked < n;
                taken[w] += picked;
            }
        }
        for (key, left) in crate::model::buckets_after(buckets, job_bucket, &batch.claims) {
            c.execute(
                with_clock!(
                    " INSERT INTO endpoint_rates (endpoint, tokens, refilled_at_ms) SELECT $2, $3, c.now FROM clock c
                    ON CONFLICT (endpoint) DO UPDATE SET tokens = excluded.tokens, refilled_at_ms = excluded.refilled_at_ms"
                ),
                &[&now, &key, &left],
            )
            .await?;
        }
        c.commit().await?;
        Ok(batch)
    }

    pub async fn heartbeat(&self, held: &[(i64, String)], lease: Duration) -> Result<Vec<i64>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
        let tokens: Vec<&str> = held.iter().map(|h| h.1.as_str()).collect();
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let _writing = self.0.lease_writes.lock().await;
        let mut c = self.0.lease().await?;
        let rows = c.query(HEARTBEAT, &[&self.0.now_param(), &ids, &tokens, &lease_ms]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn finish(&self, outcomes: &[Outcome]) -> Result<Vec<Applied>> {
        if self.0.finishes_before_read_only.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.0.read_only.store(true, Ordering::SeqCst);
        }
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // A batch that names an execution twice is applied in rounds, each naming it once,
        // so that the later outcome meets the earlier one's effect, as in SQLite's loop.
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for (i, o) in outcomes.iter().enumerate() {
            let round = seen.entry(o.execution_id).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(i);
            *round += 1;
        }
        let now = self.0.now_param();
        let mut applied = vec![Applied::Stale; outcomes.len()];
        let _writing = self.0.lease_writes.lock().await;
        let mut c = self.0.lease().await?;
        if rounds.len() > 1 {
            c.begin().await?;
        }
        for round in &rounds {
            let rows = self.finish_round(&mut c, now, round.iter().map(|&i| &outcomes[i])).await?;
            for row in rows {
                let ord: i64 = row.get(0);
                if row.get::<_, bool>(1) {
                    applied[round[(ord - 1) as usize]] = Applied::Applied;
                }
            }
        }
        if rounds.len() > 1 {
            c.commit().await?;
        }
        Ok(applied)
    }

    async fn finish_round(
        &self,
        c: &mut Lease<'_>,
        now: Option<i64>,
        outcomes: impl Iterator<Item = &Outcome> + Clone,
    ) -> Result<Vec<Row>> {
        let mut ids = Vec::new();
        let mut attempt_ids = Vec::new();
        let mut tokens = Vec::new();
        let mut statuses = Vec::new();
        let mut attempt_outcomes = Vec::new();
        let mut retry_after = Vec::new();
        let mut execution_errors = Vec::new();
        let mut billed = Vec::new();
        let mut http_statuses = Vec::new();
        let mut latencies = Vec::new();
        let mut errors = Vec::new();
        let (mut r_ids, mut r_models, mut r_mismatch, mut r_texts, mut r_finish, mut r_usage, mut r_provenance) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut raw_bodies, mut raw_headers, mut fingerprints) = (Vec::new(), Vec::new(), Vec::new());
        let (mut block_codes, mut block_messages) = (Vec::new(), Vec::new());
        let mut labels: Vec<(i64, &LabelRecord)> = Vec::new();
        for o in outcomes {
            let (status, attempt_outcome, after) = match &o.next {
                Next::Succeeded(_) => ("succeeded", "succeeded", None),
                Next::Retry { after } => ("pending", "retryable", Some(after.as_millis().min(i64::MAX as u128) as i64)),
                Next::Failed => ("failed", "failed", None),
                Next::Parked => ("parked", "parked", None),
                Next::Aborted => ("pending", "aborted", None),
                Next::Released => ("pending", "released", None),
            };
            ids.push(o.execution_id);
            attempt_ids.push(o.attempt_id);
            tokens.push(o.lease_token.as_str());
            statuses.push(status);
            attempt_outcomes.push(attempt_outcome);
            retry_after.push(after);
            execution_errors.push(match &o.next {
                Next::Succeeded(_) => None,
                _ => o.error.as_deref(),
            });
            billed.push(o.possibly_billed);
            http_statuses.push(o.http_status.map(i64::from));
            latencies.push(o.latency_ms);
            errors.push(o.error.as_deref());
            let raw = o.raw.as_deref();
            raw_bodies.push(raw.map(|r| r.body_gzip.as_slice()));
            raw_headers.push(raw.map(|r| crate::raw::headers_json(&r.headers)));
            fingerprints.push(raw.and_then(|r| r.system_fingerprint.as_deref()));
            if let Next::Succeeded(r) = &o.next {
                block_codes.push(r.block.as_ref().map(|b| b.code.as_str()));
                block_messages.push(r.block.as_ref().map(|b| b.message.as_str()));
                r_ids.push(o.execution_id);
                r_models.push(r.reported_model.as_deref());
                r_mismatch.push(r.model_mismatch);
                r_texts.push(r.response_text.as_deref());
                r_finish.push(r.finish_reason.as_deref());
                r_usage.push(r.usage.as_ref().map(|u| u.to_string()));
                r_provenance.push(r.provenance.as_ref().map(|v| v.to_string()));
                if let Some(label) = &r.label {
                    labels.push((o.execution_id, label));
                }
            }
        }
        let l_ids: Vec<i64> = labels.iter().map(|(id, _)| *id).collect();
        let text = |f: fn(&LabelRecord) -> Option<&str>| labels.iter().map(|(_, l)| f(l)).collect::<Vec<_>>();
        let (l_classifiers, l_versions, l_names) =
            (text(|l| Some(&l.classifier)), text(|l| Some(&l.version)), text(|l| Some(&l.label)));
        let (l_evidence, l_rubrics, l_raws, l_doubts) = (
            text(|l| l.evidence.as_deref()),
            text(|l| l.rubric.as_deref()),
            text(|l| l.raw.as_deref()),
            text(|l| l.doubts.as_deref()),
        );
        let l_confidences: Vec<Option<f64>> = labels.iter().map(|(_, l)| l.confidence).collect();
        let l_uncertain: Vec<Option<bool>> = labels.iter().map(|(_, l)| l.uncertain).collect();
        // Planned each time: a cached plan made while `attempts` was small scans the whole
        // table to close each batch's attempts (6 of 14 ms of a batch at 12,000 attempts).
        c.query_custom(
            FINISH,
            &[
                &now,
                &ids,
                &attempt_ids,
                &tokens,
                &statuses,
                &attempt_outcomes,
                &retry_after,
                &execution_errors,
                &billed,
                &http_statuses,
                &latencies,
                &errors,
                &r_ids,
                &r_models,
                &r_mismatch,
                &r_texts,
                &r_finish,
                &r_usage,
                &r_provenance,
                &raw_bodies,
                &raw_headers,
                &fingerprints,
                &block_codes,
                &block_messages,
                &l_ids,
                &l_classifiers,
                &l_versions,
                &l_names,
                &l_evidence,
                &l_rubrics,
                &l_raws,
                &l_confidences,
                &l_uncertain,
                &l_doubts,
            ],
        )
        .await
    }

    pub async fn rearm(&self, job_id: &str, failed: bool, parked: bool) -> Result<u64> {
        let mut c = self.0.lease().await?;
        c.execute(
            "UPDATE executions SET status = 'pending', attempts_base = attempts, not_before_ms = NULL, error = NULL
             WHERE job_id = $1 AND ((status = 'failed' AND $2) OR (status = 'parked' AND $3))",
            &[&job_id, &failed, &parked],
        )
        .await
    }

    pub async fn job(&self, job_id: &str) -> Result<JobRecord> {
        let mut c = self.0.lease().await?;
        c.query_opt(JOB, &[&job_id])
            .await?
            .as_ref()
            .map(job_from_row)
            .ok_or_else(|| StoreError::NoSuchJob(job_id.to_owned()))
    }

    pub async fn job_identity(&self, job_id: &str) -> Result<serde_json::Value> {
        let mut c = self.0.lease().await?;
        let row = c.query_opt("SELECT identity_json FROM jobs WHERE id = $1", &[&job_id]).await?;
        let text: String = row.ok_or_else(|| StoreError::NoSuchJob(job_id.to_owned()))?.get(0);
        serde_json::from_str(&text).map_err(|e| StoreError::Inconsistent {
            job: job_id.to_owned(),
            detail: format!("identity is not JSON: {e}"),
        })
    }

    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>> {
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                "SELECT j.id, j.name, j.planned, j.created_at_ms, e.status, count(e.id)
                 FROM (SELECT id, name, planned, created_at_ms FROM jobs ORDER BY created_at_ms DESC, id LIMIT $1) j
                 LEFT JOIN executions e ON e.job_id = j.id
                 GROUP BY j.id, j.name, j.planned, j.created_at_ms, e.status
                 ORDER BY j.created_at_ms DESC, j.id",
                &[&(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
        let mut out: Vec<JobSummary> = Vec::new();
        for r in rows {
            let id: String = r.get(0);
            if out.last().is_none_or(|j| j.id != id) {
                out.push(JobSummary {
                    id,
                    name: r.get(1),
                    planned: r.get(2),
                    created_at_ms: r.get(3),
                    counts: StatusCounts::default(),
                });
            }
            if let (Some(job), Some(status)) = (out.last_mut(), r.get::<_, Option<String>>(4)) {
                job.counts.add(&status, r.get(5));
            }
        }
        Ok(out)
    }

    pub async fn status(&self, job_id: &str) -> Result<JobStatus> {
        let mut c = self.0.lease().await?;
        let sql = [
            JOB,
            "SELECT model_id, region, status, count(*), sum(attempts)::bigint FROM executions WHERE job_id = $1
             GROUP BY model_id, region, status",
            "SELECT e.model_id, e.region, count(*) FROM attempts a JOIN executions e ON e.id = a.execution_id
             WHERE e.job_id = $1 AND a.possibly_billed GROUP BY e.model_id, e.region",
            "SELECT e.model_id, e.region, count(*) FROM results r JOIN executions e ON e.id = r.execution_id
             WHERE e.job_id = $1 AND r.model_mismatch GROUP BY e.model_id, e.region",
        ];
        let mut statements = Vec::new();
        for s in sql {
            statements.push(c.statement(s).await?);
        }
        // Four independent reads, pipelined: one round trip.
        let client = c.send();
        let params: [&(dyn ToSql + Sync); 1] = [&job_id];
        let answer = try_join_all(statements.iter().map(|s| client.query(s, &params))).await;
        let mut results = c.settle(answer)?.into_iter();
        let job = results.next().and_then(|rows| rows.first().map(job_from_row));
        let job = job.ok_or_else(|| StoreError::NoSuchJob(job_id.to_owned()))?;
        let (counts, billed, mismatches) = (
            results.next().unwrap_or_default(),
            results.next().unwrap_or_default(),
            results.next().unwrap_or_default(),
        );
        let mut cells: BTreeMap<(String, String), CellStatus> = BTreeMap::new();
        for r in counts {
            let cell = cells.entry((r.get(0), r.get(1))).or_default();
            cell.counts.add(r.get(2), r.get(3));
            cell.attempts += r.get::<_, i64>(4);
        }
        for r in billed {
            cells.entry((r.get(0), r.get(1))).or_default().possibly_billed += r.get::<_, i64>(2);
        }
        for r in mismatches {
            cells.entry((r.get(0), r.get(1))).or_default().model_mismatches += r.get::<_, i64>(2);
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

    /// Runs `sql` with `params` after checking, in the same round trip, that the job exists.
    async fn rows_of_job(&self, job_id: &str, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let mut c = self.0.lease().await?;
        let (job, rows) = (c.statement(JOB).await?, c.statement(sql).await?);
        let client = c.send();
        let job_params: [&(dyn ToSql + Sync); 1] = [&job_id];
        let answer = tokio::try_join!(client.query(&job, &job_params), client.query(&rows, params));
        let (job, rows) = c.settle(answer)?;
        if job.is_empty() {
            return Err(StoreError::NoSuchJob(job_id.to_owned()));
        }
        Ok(rows)
    }

    pub async fn results(&self, job_id: &str, f: &ResultFilter) -> Result<Vec<ResultRow>> {
        const SQL: &str =
            row_select!("e.job_id = $1", "ORDER BY q.ordinal NULLS FIRST, e.model_id, e.region, e.sample");
        let rows = self
            .rows_of_job(job_id, SQL, &[&job_id, &f.question, &f.model, &f.region, &f.raw, &f.status, &f.label])
            .await?;
        Ok(rows.iter().map(|r| result_row(r, f.raw)).collect())
    }

    /// A job's rows in execution order after `after`, at most `limit` (a keyset page).
    pub async fn results_page(
        &self,
        job_id: &str,
        f: &ResultFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ResultRow>> {
        const SQL: &str = row_select!("e.job_id = $1 AND e.id > $8", "ORDER BY e.id LIMIT $9");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 9] =
            [&job_id, &f.question, &f.model, &f.region, &f.raw, &f.status, &f.label, &after, &limit];
        let rows = self.rows_of_job(job_id, SQL, &params).await?;
        Ok(rows.iter().map(|r| result_row(r, f.raw)).collect())
    }

    /// A job's rows whose latest event is in `(after, upto]`, in event order.
    pub async fn events(&self, job_id: &str, after: i64, upto: i64, limit: usize) -> Result<Vec<ResultRow>> {
        const SQL: &str =
            row_select!("e.job_id = $1 AND e.event_seq > $8 AND e.event_seq <= $9", "ORDER BY e.event_seq LIMIT $10");
        let f = ResultFilter::default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 10] =
            [&job_id, &f.question, &f.model, &f.region, &f.raw, &f.status, &f.label, &after, &upto, &limit];
        let rows = self.rows_of_job(job_id, SQL, &params).await?;
        Ok(rows.iter().map(|r| result_row(r, false)).collect())
    }

    /// One execution's row, with what came back.
    pub async fn execution(&self, id: i64) -> Result<Option<ResultRow>> {
        const SQL: &str = row_select!("e.id = $8 AND $1::text IS NULL", "");
        let f = ResultFilter { raw: true, ..Default::default() };
        let job: Option<String> = None;
        let params: [&(dyn ToSql + Sync); 8] =
            [&job, &f.question, &f.model, &f.region, &f.raw, &f.status, &f.label, &id];
        let mut c = self.0.lease().await?;
        let rows = c.query(SQL, &params).await?;
        Ok(rows.first().map(|r| result_row(r, true)))
    }

    /// How far the event stream may be read: every event number up to it is final. A
    /// number read from the sequence becomes final once the transactions in progress just
    /// after the read have ended (each took its transaction id before its number), so each
    /// call either starts such a barrier or finds the last one passed.
    pub async fn event_horizon(&self) -> Result<i64> {
        let mut horizon = self.0.horizon.lock().await;
        let mut c = self.0.lease().await?;
        if let Some((seq, open)) = &horizon.barrier {
            let still = c
                .query_opt(
                    "SELECT count(*) FROM unnest($1::text[]) x WHERE pg_xact_status(x::xid8) = 'in progress'",
                    &[open],
                )
                .await?
                .map_or(0, |r| r.get::<_, i64>(0));
            if still > 0 {
                return Ok(horizon.safe);
            }
            horizon.safe = horizon.safe.max(*seq);
            horizon.barrier = None;
        }
        // Read the sequence first, then who is in progress: a transaction that took a number
        // up to `seq` had its id before, so it has ended or is in the list.
        let seq: i64 = c
            .query_opt(
                "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM execution_event_seq",
                &[],
            )
            .await?
            .map_or(0, |r| r.get(0));
        let open: Vec<String> = c
            .query("SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) x", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if open.is_empty() {
            horizon.safe = horizon.safe.max(seq);
        } else {
            horizon.barrier = Some((seq, open));
        }
        Ok(horizon.safe)
    }

    /// One execution's attempts, in order.
    pub async fn execution_attempts(&self, id: i64) -> Result<Vec<AttemptRow>> {
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                "SELECT e.question_id, e.model_id, e.region, e.sample, a.number, a.worker, a.started_at_ms,
                        a.finished_at_ms, a.outcome, a.possibly_billed, a.http_status, a.latency_ms, a.error
                 FROM attempts a JOIN executions e ON e.id = a.execution_id WHERE e.id = $1 ORDER BY a.id",
                &[&id],
            )
            .await?;
        Ok(rows.iter().map(attempt_row).collect())
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        static LATENCY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT e.endpoint, {} AS bucket, count(*), coalesce(sum(a.latency_ms), 0)::bigint
                 FROM attempts a JOIN executions e ON e.id = a.execution_id
                 WHERE a.latency_ms IS NOT NULL GROUP BY 1, 2",
                crate::model::latency_bucket_sql()
            )
        });
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        let pairs =
            |rows: Vec<Row>| rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect::<Vec<_>>();
        let executions =
            pairs(c.query("SELECT status, count(*) FROM executions GROUP BY status ORDER BY status", &[]).await?);
        let attempts =
            pairs(c.query("SELECT outcome, count(*) FROM attempts GROUP BY outcome ORDER BY outcome", &[]).await?);
        let queue = pairs(
            c.query(
                "SELECT region, count(*) FROM executions WHERE status = 'pending' GROUP BY region ORDER BY region",
                &[],
            )
            .await?,
        );
        let possibly_billed: i64 =
            c.query_opt("SELECT count(*) FROM attempts WHERE possibly_billed", &[]).await?.map_or(0, |r| r.get(0));
        let live_workers: i64 = c
            .query_opt(
                with_clock!(" SELECT count(*) FROM workers, clock WHERE stopped_at_ms IS NULL AND last_seen_ms >= clock.now - $2"),
                &[&now, &LIVE_WORKER_MS],
            )
            .await?
            .map_or(0, |r| r.get(0));
        let latency = crate::model::histograms(
            c.query(LATENCY.as_str(), &[])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1), r.get(2), r.get(3)))
                .collect(),
        );
        Ok(Metrics { executions, attempts, possibly_billed, queue, latency, live_workers })
    }

    pub async fn attempts(&self, job_id: &str, f: &ResultFilter) -> Result<Vec<AttemptRow>> {
        let rows = self
            .rows_of_job(
                job_id,
                "SELECT e.question_id, e.model_id, e.region, e.sample, a.number, a.worker, a.started_at_ms,
                        a.finished_at_ms, a.outcome, a.possibly_billed, a.http_status, a.latency_ms, a.error
                 FROM attempts a JOIN executions e ON e.id = a.execution_id
                 WHERE e.job_id = $1 AND ($2::text IS NULL OR e.question_id = $2) AND ($3::text IS NULL OR e.model_id = $3)
                   AND ($4::text IS NULL OR e.region = $4)
                 ORDER BY a.id",
                &[&job_id, &f.question, &f.model, &f.region],
            )
            .await?;
        Ok(rows.iter().map(attempt_row).collect())
    }

    pub async fn to_label(
        &self,
        job_id: &str,
        (classifier, version): (&str, &str),
        all: bool,
        after_id: i64,
        limit: usize,
        uncertain_only: bool,
    ) -> Result<Vec<ToLabel>> {
        // Window by window: the next executions of the job by id (an index range whatever
        // the statistics say), then those of them that need a label. A run changes every row
        // of its job within seconds, long before autovacuum looks, and one query over the
        // whole rest of the job got plans that read all of it once per page (130 ms a page
        // of 2,000 with the statistics of before the run; 1.5 s with fresh ones).
        const WINDOW_END: &str = "SELECT max(id) FROM (
            SELECT id FROM executions WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3) w";
        const IN_WINDOW: &str = "SELECT e.id, q.text, r.response_text, r.block_code, r.block_message FROM executions e
             JOIN results r ON r.execution_id = e.id
             JOIN questions q ON q.job_id = e.job_id AND q.question_id = e.question_id
             WHERE e.job_id = $1 AND e.id > $5 AND e.id <= $6 AND e.status = 'succeeded'
               AND ($4::boolean OR NOT EXISTS (SELECT 1 FROM labels l
                    WHERE l.execution_id = e.id AND l.classifier = $2 AND l.version = $3))
               AND (NOT $7::boolean OR EXISTS (SELECT 1 FROM labels b
                    WHERE b.execution_id = e.id AND b.classifier = 'builtin' AND b.uncertain))
             ORDER BY e.id LIMIT $8";
        // Answers labelled with their results leave nothing to do: two counts say so at
        // once, where the windows would read the whole job to find nothing.
        const UNLABELLED: &str =
            "SELECT (SELECT count(*) FROM executions e WHERE e.job_id = $1 AND e.status = 'succeeded')
            - (SELECT count(*) FROM labels l JOIN executions e ON e.id = l.execution_id
               WHERE e.job_id = $1 AND e.status = 'succeeded' AND l.classifier = $2 AND l.version = $3)";
        let mut c = self.0.lease().await?;
        if c.query_opt(JOB, &[&job_id]).await?.is_none() {
            return Err(StoreError::NoSuchJob(job_id.to_owned()));
        }
        // The built-in classifier's own question (`run`, `worker`, `serve`); a judge's or an
        // uncertain-only question seldom finds nothing, and would pay the counts for naught.
        if !all && after_id == 0 && !uncertain_only && classifier == "builtin" {
            let left = c.query_custom(UNLABELLED, &[&job_id, &classifier, &version]).await?;
            if left.first().is_some_and(|r| r.get::<_, i64>(0) == 0) {
                return Ok(Vec::new());
            }
        }
        // Windows of a whole page each, however few rows the page still lacks: a job whose
        // tail needs no labels is crossed in a few round trips, not one per missing row.
        let window = limit.min(i64::MAX as usize) as i64;
        let mut rows: Vec<Row> = Vec::new();
        let mut after = after_id;
        while rows.len() < limit {
            let wanted = (limit - rows.len()).min(i64::MAX as usize) as i64;
            let end = c.query_custom(WINDOW_END, &[&job_id, &after, &window]).await?;
            let Some(end) = end.first().and_then(|r| r.get::<_, Option<i64>>(0)) else { break };
            let params: [&(dyn ToSql + Sync); 8] =
                [&job_id, &classifier, &version, &all, &after, &end, &uncertain_only, &wanted];
            let found = c.query_custom(IN_WINDOW, &params).await?;
            // A window that filled the page may hold more: the next page starts after its last.
            after = match found.last() {
                Some(last) if found.len() as i64 == wanted => last.get(0),
                _ => end,
            };
            rows.extend(found);
        }
        Ok(rows
            .iter()
            .map(|r| ToLabel {
                execution_id: r.get(0),
                question_text: r.get(1),
                response_text: r.get::<_, Option<String>>(2).unwrap_or_default(),
                block: r
                    .get::<_, Option<String>>(3)
                    .map(|code| BlockRecord { code, message: r.get::<_, Option<String>>(4).unwrap_or_default() }),
            })
            .collect())
    }

    pub async fn put_labels(&self, labels: &[LabelRecord]) -> Result<u64> {
        if labels.is_empty() {
            return Ok(0);
        }
        // One statement cannot upsert a row twice: the last label for a result wins, as it
        // would written one by one. Each label given counts as stored, as in SQLite.
        let mut last: HashMap<(i64, &str), usize> = HashMap::new();
        for (i, l) in labels.iter().enumerate() {
            last.insert((l.execution_id, l.classifier.as_str()), i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        let ids: Vec<i64> = keep.iter().map(|&i| labels[i].execution_id).collect();
        let classifiers = column(labels, &keep, |l| Some(l.classifier.as_str()));
        let versions = column(labels, &keep, |l| Some(l.version.as_str()));
        let names = column(labels, &keep, |l| Some(l.label.as_str()));
        let evidence = column(labels, &keep, |l| l.evidence.as_deref());
        let rubrics = column(labels, &keep, |l| l.rubric.as_deref());
        let raws = column(labels, &keep, |l| l.raw.as_deref());
        let confidences: Vec<Option<f64>> = keep.iter().map(|&i| labels[i].confidence).collect();
        let uncertain: Vec<Option<bool>> = keep.iter().map(|&i| labels[i].uncertain).collect();
        let doubts = column(labels, &keep, |l| l.doubts.as_deref());
        let mut c = self.0.lease().await?;
        c.execute(
            with_clock!(
                "
INSERT INTO labels (execution_id, classifier, version, label, evidence, rubric, raw, created_at_ms, confidence, uncertain, doubts)
SELECT l.execution_id, l.classifier, l.version, l.label, l.evidence, l.rubric, l.raw, c.now, l.confidence, l.uncertain, l.doubts
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::double precision[], $10::boolean[], $11::text[])
     AS l(execution_id, classifier, version, label, evidence, rubric, raw, confidence, uncertain, doubts), clock c
ON CONFLICT (execution_id, classifier) DO UPDATE SET version = excluded.version, label = excluded.label,
    evidence = excluded.evidence, rubric = excluded.rubric, raw = excluded.raw, created_at_ms = excluded.created_at_ms,
    confidence = excluded.confidence, uncertain = excluded.uncertain, doubts = excluded.doubts
-- The same label again (two workers labelling one job as they exit) rewrites nothing: no
-- new row version, no event for live views.
WHERE (labels.version, labels.label, labels.evidence, labels.rubric, labels.raw, labels.confidence,
       labels.uncertain, labels.doubts)
  IS DISTINCT FROM (excluded.version, excluded.label, excluded.evidence, excluded.rubric, excluded.raw,
       excluded.confidence, excluded.uncertain, excluded.doubts)"
            ),
            &[
                &self.0.now_param(),
                &ids,
                &classifiers,
                &versions,
                &names,
                &evidence,
                &rubrics,
                &raws,
                &confidences,
                &uncertain,
                &doubts,
            ],
        )
        .await?;
        Ok(labels.len() as u64)
    }

    pub async fn analysis_rows(&self, job_id: &str) -> Result<Vec<AnalysisRow>> {
        let mut c = self.0.lease().await?;
        let job = c.statement(JOB).await?;
        let judges = c
            .statement(
                "SELECT l.execution_id, l.classifier, l.label FROM labels l JOIN executions e ON e.id = l.execution_id
                 WHERE e.job_id = $1 AND l.classifier <> 'builtin' ORDER BY l.classifier",
            )
            .await?;
        let main = c
            .statement(
                "SELECT e.id, e.question_id, q.text, q.ordinal, q.expect, q.meta_json, e.model_id, e.region, e.sample,
                        e.status, e.endpoint, e.attempts, e.request_body, e.requested_model, r.reported_model,
                        r.model_mismatch, r.response_text, r.latency_ms, r.usage_json, l.label, l.evidence, l.uncertain, l.confidence,
                        a.system_fingerprint, r.block_code
                 FROM executions e
                 JOIN questions q ON q.job_id = e.job_id AND q.question_id = e.question_id
                 LEFT JOIN results r ON r.execution_id = e.id
                 LEFT JOIN attempts a ON a.id = r.attempt_id
                 LEFT JOIN labels l ON l.execution_id = e.id AND l.classifier = 'builtin'
                 WHERE e.job_id = $1
                 ORDER BY q.ordinal, e.model_id, e.region, e.sample",
            )
            .await?;
        let client = c.send();
        let params: [&(dyn ToSql + Sync); 1] = [&job_id];
        let answer =
            tokio::try_join!(client.query(&job, &params), client.query(&judges, &params), client.query(&main, &params));
        let (job, judge_rows, rows) = c.settle(answer)?;
        if job.is_empty() {
            return Err(StoreError::NoSuchJob(job_id.to_owned()));
        }
        let mut judges: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        for r in judge_rows {
            judges.entry(r.get(0)).or_default().push((r.get(1), r.get(2)));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let id: i64 = r.get(0);
                AnalysisRow {
                    question_id: r.get(1),
                    question_text: r.get(2),
                    question_ordinal: r.get(3),
                    expect: r.get(4),
                    meta: serde_json::from_str(r.get(5)).unwrap_or(serde_json::Value::Null),
                    model_id: r.get(6),
                    region: r.get(7),
                    sample: r.get(8),
                    status: r.get(9),
                    endpoint: r.get(10),
                    attempts: r.get(11),
                    request_body: String::from_utf8_lossy(r.get::<_, &[u8]>(12)).into_owned(),
                    requested_model: r.get(13),
                    reported_model: r.get(14),
                    model_mismatch: r.get(15),
                    response_text: r.get(16),
                    latency_ms: r.get(17),
                    usage: json(r.get(18)),
                    label: r.get(19),
                    evidence: r.get(20),
                    uncertain: r.get(21),
                    confidence: r.get(22),
                    judge_labels: judges.remove(&id).unwrap_or_default(),
                    system_fingerprint: r.get(23),
                    block_code: r.get(24),
                }
            })
            .collect())
    }

    /// How to connect, for a connection of one's own (`LISTEN`).
    pub fn config(&self) -> tokio_postgres::Config {
        self.0.config.clone()
    }

    pub async fn set_run_policy(&self, job_id: &str, policy: &str) -> Result<()> {
        let mut c = self.0.lease().await?;
        let n = c.execute("UPDATE jobs SET run_policy_json = $2 WHERE id = $1", &[&job_id, &policy]).await?;
        if n == 0 {
            return Err(StoreError::NoSuchJob(job_id.to_owned()));
        }
        Ok(())
    }

    pub async fn active_jobs(&self, endpoints: &[String]) -> Result<Vec<ActiveJob>> {
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                // A probe per job and endpoint into the open rows' index, not a scan of them.
                "SELECT j.id, j.run_policy_json, j.cancelled_at_ms IS NOT NULL FROM jobs j
                 WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS w(endpoint) WHERE EXISTS (
                     SELECT 1 FROM executions e
                     WHERE e.endpoint = w.endpoint AND e.job_id = j.id AND e.status IN ('pending', 'running')))
                 ORDER BY j.created_at_ms, j.id",
                &[&endpoints],
            )
            .await?;
        Ok(rows.iter().map(|r| ActiveJob { id: r.get(0), run_policy: json(r.get(1)), cancelled: r.get(2) }).collect())
    }

    pub async fn cancel_job(&self, job_id: &str) -> Result<bool> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        c.begin().await?;
        let row = c
            .query_opt(
                with_clock!(
                    ", before AS (SELECT cancelled_at_ms FROM jobs WHERE id = $2 FOR UPDATE),
                    marked AS (UPDATE jobs SET cancelled_at_ms = (SELECT now FROM clock)
                               WHERE id = $2 AND cancelled_at_ms IS NULL RETURNING id)
                    SELECT (SELECT count(*) FROM marked) FROM before"
                ),
                &[&now, &job_id],
            )
            .await?;
        let Some(row) = row else {
            c.commit().await?;
            return Err(StoreError::NoSuchJob(job_id.to_owned()));
        };
        // Workers idle on LISTEN settle the job's rest at once; the notice goes out on commit.
        c.execute("SELECT pg_notify('parallax_work', $1)", &[&job_id]).await?;
        c.commit().await?;
        Ok(row.get::<_, i64>(0) == 1)
    }

    pub async fn settle_cancelled(&self, job_id: &str, endpoints: &[String]) -> Result<Cancelled> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        let row = c
            .query_opt(
                with_clock!(
                    ", job AS (SELECT cancelled_at_ms IS NOT NULL AS cancelled FROM jobs WHERE id = $2),
                    gone AS (
                        SELECT e.id, e.status FROM executions e, clock c
                        WHERE (SELECT cancelled FROM job) AND e.job_id = $2 AND e.endpoint = ANY ($3::text[])
                          AND (e.status = 'pending' OR (e.status = 'running' AND e.lease_until_ms < c.now))
                        FOR UPDATE SKIP LOCKED
                    ),
                    lost AS (
                        UPDATE attempts a SET outcome = 'lost', possibly_billed = true, finished_at_ms = (SELECT now FROM clock),
                            error = 'lease expired before the attempt was closed (worker stopped or lost the store)'
                        FROM gone g WHERE a.execution_id = g.id AND g.status = 'running' AND a.outcome = 'open'
                        RETURNING a.id
                    ),
                    settled AS (
                        UPDATE executions e SET status = 'cancelled', lease_token = NULL, lease_until_ms = NULL,
                            worker = NULL, not_before_ms = NULL, error = 'cancelled before it ran'
                        FROM gone g WHERE e.id = g.id RETURNING e.id
                    )
                    SELECT (SELECT count(*) FROM settled), (SELECT count(*) FROM lost) FROM job"
                ),
                &[&now, &job_id, &endpoints],
            )
            .await?;
        let Some(row) = row else { return Err(StoreError::NoSuchJob(job_id.to_owned())) };
        Ok(Cancelled { executions: row.get::<_, i64>(0) as u64, lost_attempts: row.get::<_, i64>(1) as u64 })
    }

    pub async fn job_endpoints(&self, job_id: &str) -> Result<Vec<String>> {
        let rows = self
            .rows_of_job(
                job_id,
                "SELECT DISTINCT endpoint FROM executions WHERE job_id = $1 ORDER BY endpoint",
                &[&job_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn register_worker(&self, w: &WorkerRecord) -> Result<()> {
        let now = self.0.now_param();
        let regions = serde_json::to_string(&w.regions).unwrap_or_else(|_| "[]".into());
        let mut c = self.0.lease().await?;
        c.execute(
            with_clock!(
                " INSERT INTO workers (id, host, pid, regions_json, version, started_at_ms, last_seen_ms, in_flight)
                SELECT $2, $3, $4, $5, $6, c.now, c.now, 0 FROM clock c
                ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms, stopped_at_ms = NULL"
            ),
            &[&now, &w.id, &w.host, &w.pid, &regions, &w.version],
        )
        .await?;
        Ok(())
    }

    pub async fn worker_seen(&self, id: &str, in_flight: i64) -> Result<bool> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        let n = c
            .execute(
                with_clock!(" UPDATE workers SET last_seen_ms = (SELECT now FROM clock), in_flight = $3 WHERE id = $2"),
                &[&now, &id, &in_flight],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn worker_stopped(&self, id: &str) -> Result<()> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        c.execute(
            with_clock!(
                " UPDATE workers SET last_seen_ms = (SELECT now FROM clock), stopped_at_ms = (SELECT now FROM clock),
                in_flight = 0 WHERE id = $2"
            ),
            &[&now, &id],
        )
        .await?;
        // Its shares go to the others at once, not when they would have run out.
        c.execute("DELETE FROM limit_shares WHERE worker = $1", &[&id]).await?;
        Ok(())
    }

    pub async fn share_limits(&self, worker: &str, lease: Duration, asks: &[ShareAsk]) -> Result<Vec<u64>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.0.now_param();
        let lease_ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let mut scopes: Vec<String> = asks.iter().map(|a| a.scope.clone()).collect();
        scopes.sort();
        scopes.dedup();
        let mut c = self.0.lease().await?;
        c.begin().await?;
        // The same locks as claims counting leases take: one share of a scope at a time.
        c.query(CLAIM_LOCKS, &[&CLAIM_LOCK, &scopes]).await?;
        let live = c
            .query(
                with_clock!(
                    " SELECT s.scope, s.slots, s.wanted FROM clock c, limit_shares s LEFT JOIN workers w ON w.id = s.worker
                    WHERE s.scope = ANY ($2) AND s.worker <> $3 AND s.until_ms >= c.now
                      -- A registered worker stopped, or not seen for a while (killed), holds none.
                      AND (w.id IS NULL OR (w.stopped_at_ms IS NULL AND w.last_seen_ms >= c.now - $4))"
                ),
                &[&now, &scopes, &worker, &LIVE_WORKER_MS],
            )
            .await?;
        let mut granted = Vec::with_capacity(asks.len());
        let (mut ask_scopes, mut slots, mut wanted) = (Vec::new(), Vec::new(), Vec::new());
        for ask in asks {
            let others: Vec<(u64, u64)> = live
                .iter()
                .filter(|r| r.get::<_, &str>(0) == ask.scope)
                .map(|r| (r.get::<_, i64>(1).max(0) as u64, r.get::<_, i64>(2).max(0) as u64))
                .collect();
            let (grant, recorded) = crate::model::share_of(ask, &others);
            granted.push(grant);
            ask_scopes.push(ask.scope.as_str());
            slots.push(recorded.min(i64::MAX as u64) as i64);
            wanted.push(ask.want.min(i64::MAX as u64) as i64);
        }
        c.execute(
            with_clock!(
                " INSERT INTO limit_shares (scope, worker, slots, wanted, until_ms)
                SELECT a.scope, $2, a.slots, a.wanted, c.now + $6 FROM unnest($3::text[], $4::bigint[], $5::bigint[])
                    AS a(scope, slots, wanted), clock c
                ON CONFLICT (scope, worker) DO UPDATE SET slots = excluded.slots, wanted = excluded.wanted,
                    until_ms = excluded.until_ms"
            ),
            &[&now, &worker, &ask_scopes, &slots, &wanted, &lease_ms],
        )
        .await?;
        // Renewing is being seen: the others void the shares of a worker not seen for a while.
        c.execute(
            with_clock!(
                " UPDATE workers SET last_seen_ms = c.now FROM clock c WHERE id = $2 AND stopped_at_ms IS NULL"
            ),
            &[&now, &worker],
        )
        .await?;
        c.commit().await?;
        Ok(granted)
    }

    pub async fn workers(&self, since_ms: i64) -> Result<Vec<WorkerRow>> {
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                "SELECT id, host, pid, regions_json, version, started_at_ms, last_seen_ms, in_flight, stopped_at_ms
                 FROM workers WHERE last_seen_ms >= $1 ORDER BY last_seen_ms DESC, id",
                &[&since_ms],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| WorkerRow {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                regions: json(r.get(3)).and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
                version: r.get(4),
                started_at_ms: r.get(5),
                last_seen_ms: r.get(6),
                in_flight: r.get(7),
                stopped_at_ms: r.get(8),
            })
            .collect())
    }

    pub async fn endpoint_attempts(&self, job_id: &str) -> Result<Vec<EndpointAttempts>> {
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                "SELECT e.endpoint, count(a.id), coalesce(sum(a.possibly_billed::int), 0)::bigint FROM executions e
                 LEFT JOIN attempts a ON a.execution_id = e.id WHERE e.job_id = $1 GROUP BY e.endpoint ORDER BY e.endpoint",
                &[&job_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| EndpointAttempts { endpoint: r.get(0), attempts: r.get(1), possibly_billed: r.get(2) })
            .collect())
    }

    pub async fn put_probe(&self, job_id: &str, model_id: &str, probe_job_id: &str, report: &str) -> Result<()> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        c.execute(
            with_clock!(
                " INSERT INTO job_probes (job_id, model_id, probe_job_id, report_json, created_at_ms)
                SELECT $2, $3, $4, $5, now FROM clock
                ON CONFLICT (job_id, model_id) DO UPDATE SET probe_job_id = excluded.probe_job_id,
                    report_json = excluded.report_json, created_at_ms = excluded.created_at_ms"
            ),
            &[&now, &job_id, &model_id, &probe_job_id, &report],
        )
        .await?;
        Ok(())
    }

    pub async fn probes(&self, job_id: &str) -> Result<Vec<ProbeRecord>> {
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                "SELECT model_id, probe_job_id, report_json FROM job_probes WHERE job_id = $1 ORDER BY model_id COLLATE \"C\"",
                &[&job_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ProbeRecord {
                model_id: r.get(0),
                probe_job_id: r.get(1),
                report: json(r.get(2)).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    pub async fn lease_holders(&self, job_id: &str) -> Result<Vec<LeaseHolder>> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        let rows = c
            .query(
                with_clock!(
                    " SELECT coalesce(e.worker, ''), count(*), max(e.lease_until_ms) FROM executions e, clock
                    WHERE e.job_id = $2 AND e.status = 'running' AND e.lease_until_ms >= clock.now
                    GROUP BY e.worker ORDER BY 1"
                ),
                &[&now, &job_id],
            )
            .await?;
        Ok(rows.iter().map(|r| LeaseHolder { worker: r.get(0), executions: r.get(1), until_ms: r.get(2) }).collect())
    }

    pub async fn expire_leases(&self, job_id: &str, worker: &str) -> Result<u64> {
        let now = self.0.now_param();
        let mut c = self.0.lease().await?;
        c.execute(
            with_clock!(
                " UPDATE executions e SET lease_until_ms = clock.now - 1 FROM clock
                WHERE e.job_id = $2 AND e.status = 'running' AND e.worker = $3 AND e.lease_until_ms >= clock.now"
            ),
            &[&now, &job_id, &worker],
        )
        .await
    }

    pub async fn next_wakeup(&self, job_id: &str) -> Result<Option<i64>> {
        let mut c = self.0.lease().await?;
        let rows = c.query(NEXT_WAKEUP, &[&self.0.now_param(), &job_id]).await?;
        // The caller subtracts `now_ms()` from this: measure the clocks' offset now.
        self.observe_db_now(rows[0].get(1));
        Ok(rows[0].get(0))
    }
}

/// Adds one `CLAIM` statement's rows to the batch; returns how many rows it picked.
/// A new job's executions, pending, by `COPY ... BINARY`: a third of the time of the
/// `INSERT ... unnest` that continuing a job needs (which checks each key against the rows
/// already there), and no statement to parse per chunk.
async fn copy_executions(c: &mut Lease<'_>, job_id: &str, items: &[parallax_core::PlanItem]) -> Result<u64> {
    const TYPES: [Type; 13] = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::BYTEA,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    let client = c.send();
    let copied = async {
        let sink = client
            .copy_in(
                "COPY executions (job_id, question_id, model_id, region, sample, endpoint, kind, requested_model,
                     model_aliases, request_body, request_sha256, idempotency_key, status) FROM STDIN BINARY",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        futures_util::pin_mut!(writer);
        for i in items {
            let aliases = serde_json::to_string(&i.model_aliases).unwrap_or_default();
            writer
                .as_mut()
                .write(&[
                    &job_id,
                    &i.key.question_id,
                    &i.key.model_id,
                    &i.key.region,
                    &i64::from(i.key.sample),
                    &i.endpoint,
                    &i.kind.as_str(),
                    &i.requested_model,
                    &aliases,
                    &i.request_body.as_bytes(),
                    &i.request_sha256,
                    &idempotency_key(job_id, &i.key),
                    &"pending",
                ])
                .await?;
        }
        writer.finish().await
    }
    .await;
    c.settle(copied)
}

fn take_rows(rows: Vec<Row>, batch: &mut ClaimBatch) -> Result<usize> {
    let Some(first) = rows.first() else {
        return Err(StoreError::Task("a claim statement returned no row of counts".into()));
    };
    let picked: i64 = first.get(0);
    batch.lost_attempts += int::<u64>(first, 1)?;
    batch.parked += int::<u64>(first, 2)?;
    batch.failed += int::<u64>(first, 3)?;
    for r in &rows {
        let Some(execution_id) = r.get::<_, Option<i64>>(4) else { continue };
        let attempts: i64 = r.get(7);
        let base: i64 = r.get(8);
        let kind: String = r.get(14);
        let aliases: String = r.get(16);
        batch.claims.push(Claim {
            execution_id,
            attempt_id: r.get(5),
            lease_token: r.get(6),
            key: ItemKey { question_id: r.get(9), model_id: r.get(10), region: r.get(11), sample: int(r, 12)? },
            endpoint: r.get(13),
            kind: EndpointKind::parse(&kind).unwrap_or(EndpointKind::OpenAiChat),
            requested_model: r.get(15),
            model_aliases: serde_json::from_str(&aliases).unwrap_or_default(),
            request_body: r.get(17),
            idempotency_key: r.get(18),
            attempt_in_budget: (attempts - base).max(1) as u32,
            question_text: r.get::<_, Option<String>>(19).unwrap_or_default(),
        });
    }
    Ok(picked as usize)
}

/// Applies the embedded migrations in order, in one transaction that first takes a lock
/// scoped to the schema: concurrent opens queue, and the first applies what is missing. An
/// applied migration is never edited: its checksum is recorded and compared on every open.
/// A read-only open: the store must have this build's schema exactly.
async fn check_schema(store: &Inner, conn: &mut Conn) -> Result<()> {
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    let found: Option<i64> = match conn.client.query_one("SELECT max(version) FROM schema_migrations", &[]).await {
        Ok(row) => row.get(0),
        // No ledger in this database (or schema) at all.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
        Err(e) => return Err(store.err(e)),
    };
    match found {
        Some(v) if v > known => Err(StoreError::SchemaTooNew { found: v, known }),
        Some(v) if v == known => Ok(()),
        None => Err(StoreError::Location(format!(
            "the store `{}` holds no parallax ledger yet: nothing was run or submitted to it",
            store.location
        ))),
        _ => Err(StoreError::Location(format!(
            "the store `{}` has schema {} and this parallax reads {known}\n\nhint: open it once read-write (any writing verb, e.g. `parallax run` or `parallax worker`) to migrate it",
            store.location,
            found.unwrap_or(0)
        ))),
    }
}

async fn migrate(store: &Inner, conn: &mut Conn) -> Result<()> {
    let err = |e| store.err(e);
    let client = &mut conn.client;
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", &[&MIGRATE_LOCK]).await.map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, name text NOT NULL,
             sha256 text NOT NULL, applied_at_ms bigint NOT NULL)",
    )
    .await
    .map_err(err)?;
    let applied: Vec<(i64, String)> = tx
        .query("SELECT version, sha256 FROM schema_migrations ORDER BY version", &[])
        .await
        .map_err(err)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
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
                tx.batch_execute(sql).await.map_err(err)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, sha256, applied_at_ms)
                     VALUES ($1, $2, $3, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint)",
                    &[version, name, &sum],
                )
                .await
                .map_err(err)?;
            }
        }
    }
    tx.commit().await.map_err(err)
}

fn result_row(r: &Row, raw: bool) -> ResultRow {
    let request_body = String::from_utf8_lossy(r.get::<_, &[u8]>(7)).into_owned();
    let block_reason = r
        .get::<_, Option<String>>(27)
        .map(|code| BlockRecord { code, message: r.get::<_, Option<String>>(28).unwrap_or_default() });
    ResultRow {
        execution_id: r.get(32),
        event_seq: r.get(33),
        job_id: r.get(0),
        question_id: r.get(1),
        model_id: r.get(2),
        region: r.get(3),
        sample: r.get(4),
        status: r.get(5),
        attempts: r.get(6),
        request: serde_json::from_str(&request_body).unwrap_or(serde_json::Value::Null),
        request_body,
        request_sha256: r.get(8),
        requested_model: r.get(9),
        reported_model: r.get(10),
        model_mismatch: r.get(11),
        response_text: r.get(12),
        finish_reason: r.get(13),
        usage: json(r.get(14)),
        latency_ms: r.get(15),
        error: r.get(16),
        endpoint: r.get(17),
        idempotency_key: r.get(18),
        label: r.get(19),
        label_evidence: r.get(20),
        classifier: r.get::<_, Option<String>>(21).map(|v| format!("builtin@{v}")),
        provenance: json(r.get(22)),
        confidence: r.get(23),
        uncertain: r.get(24),
        doubts: r.get::<_, Option<String>>(25).map(|d| crate::sqlite::doubt_names(&d)),
        judges: json(r.get(26)).and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        blocked: block_reason.is_some(),
        block_reason,
        raw: raw.then(|| crate::raw::fields(r.get(29), r.get(30), r.get(31))),
    }
}

fn attempt_row(r: &Row) -> AttemptRow {
    AttemptRow {
        question_id: r.get(0),
        model_id: r.get(1),
        region: r.get(2),
        sample: r.get(3),
        number: r.get(4),
        worker: r.get(5),
        started_at_ms: r.get(6),
        finished_at_ms: r.get(7),
        outcome: r.get(8),
        possibly_billed: r.get(9),
        http_status: r.get(10),
        latency_ms: r.get(11),
        error: r.get(12),
    }
}
