-- Many machines: a job carries the run policy it was submitted with, so any worker can run
-- it; a cancelled job is claimed no more; workers say who they are and when they were seen.
ALTER TABLE jobs ADD COLUMN run_policy_json TEXT;
ALTER TABLE jobs ADD COLUMN cancelled_at_ms INTEGER;

-- `cancelled` joins the execution statuses. SQLite cannot alter a CHECK constraint, so the
-- table is rebuilt the documented way (foreign keys are off while migrations run, and are
-- checked before they commit): a new table, every row copied as it is, the old one dropped,
-- the new one renamed, its indexes made again.
CREATE TABLE executions_new (
    id              INTEGER PRIMARY KEY,
    job_id          TEXT NOT NULL REFERENCES jobs(id),
    question_id     TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    region          TEXT NOT NULL,
    sample          INTEGER NOT NULL,
    endpoint        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model_aliases   TEXT NOT NULL,
    request_body    BLOB NOT NULL,
    request_sha256  TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'parked', 'cancelled')),
    lease_token     TEXT,
    lease_until_ms  INTEGER,
    worker          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempts_base   INTEGER NOT NULL DEFAULT 0,
    not_before_ms   INTEGER,
    error           TEXT,
    UNIQUE (job_id, question_id, model_id, region, sample)
);
INSERT INTO executions_new (id, job_id, question_id, model_id, region, sample, endpoint, kind, requested_model,
                            model_aliases, request_body, request_sha256, idempotency_key, status, lease_token,
                            lease_until_ms, worker, attempts, attempts_base, not_before_ms, error)
    SELECT id, job_id, question_id, model_id, region, sample, endpoint, kind, requested_model, model_aliases,
           request_body, request_sha256, idempotency_key, status, lease_token, lease_until_ms, worker, attempts,
           attempts_base, not_before_ms, error
    FROM executions;
DROP TABLE executions;
ALTER TABLE executions_new RENAME TO executions;
CREATE INDEX executions_pending ON executions (job_id, endpoint, id) WHERE status = 'pending';
CREATE INDEX executions_pending_due ON executions (job_id, not_before_ms) WHERE status = 'pending';
CREATE INDEX executions_running ON executions (job_id, lease_until_ms) WHERE status = 'running';
-- Which jobs have work on an endpoint (a worker's question), without scanning finished rows.
CREATE INDEX executions_open_by_endpoint ON executions (endpoint, job_id) WHERE status IN ('pending', 'running');
-- Live leases per endpoint (a limit shared by workers), without scanning pending rows.
CREATE INDEX executions_running_by_endpoint ON executions (endpoint, lease_until_ms) WHERE status = 'running';

CREATE TABLE workers (
    id            TEXT PRIMARY KEY,          -- <host>:<pid>:<random>
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    regions_json  TEXT NOT NULL,             -- JSON array
    version       TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,          -- the store's clock
    in_flight     INTEGER NOT NULL DEFAULT 0,
    stopped_at_ms INTEGER
);

-- An endpoint's rate, shared by every worker: a token bucket per endpoint, refilled from
-- the store's clock when a claim takes from it (under the claim's lock on PostgreSQL).
CREATE TABLE endpoint_rates (
    endpoint       TEXT PRIMARY KEY,
    tokens         REAL NOT NULL,
    refilled_at_ms INTEGER NOT NULL
);
