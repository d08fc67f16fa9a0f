-- The execution ledger. Rows of `executions` and `attempts` are never deleted.

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,          -- <name>-<12 hex>[-<generation>]
    base_id       TEXT NOT NULL,             -- <name>-<12 hex>
    generation    INTEGER NOT NULL,          -- 1, 2, ... (--fresh)
    name          TEXT NOT NULL,
    identity_json TEXT NOT NULL,             -- canonical JSON of what shapes the requests
    planned       INTEGER NOT NULL,          -- number of executions in the plan
    created_at_ms INTEGER NOT NULL,
    UNIQUE (base_id, generation)
);

CREATE TABLE questions (
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    question_id TEXT NOT NULL,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    expect      TEXT,
    meta_json   TEXT NOT NULL,
    PRIMARY KEY (job_id, question_id)
);

CREATE TABLE executions (
    id              INTEGER PRIMARY KEY,
    job_id          TEXT NOT NULL REFERENCES jobs(id),
    question_id     TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    region          TEXT NOT NULL,
    sample          INTEGER NOT NULL,
    endpoint        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model_aliases   TEXT NOT NULL,           -- JSON array
    request_body    BLOB NOT NULL,           -- the exact bytes sent
    request_sha256  TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'parked')),
    lease_token     TEXT,
    lease_until_ms  INTEGER,
    worker          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,  -- upstream attempts so far
    attempts_base   INTEGER NOT NULL DEFAULT 0,  -- attempts when last re-armed (--retry-failed)
    not_before_ms   INTEGER,                     -- backoff
    error           TEXT,
    UNIQUE (job_id, question_id, model_id, region, sample)
);

CREATE INDEX executions_claim ON executions (job_id, endpoint, status, not_before_ms);

CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY,
    execution_id    INTEGER NOT NULL REFERENCES executions(id),
    number          INTEGER NOT NULL,
    lease_token     TEXT NOT NULL,
    worker          TEXT NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    -- open | succeeded | retryable | failed | parked | lost | stale | aborted
    outcome         TEXT NOT NULL,
    possibly_billed INTEGER NOT NULL DEFAULT 0,
    http_status     INTEGER,
    latency_ms      INTEGER,
    error           TEXT
);

CREATE INDEX attempts_execution ON attempts (execution_id);

-- At most one result per execution: the schema says so, not the code.
CREATE TABLE results (
    execution_id    INTEGER PRIMARY KEY REFERENCES executions(id),
    attempt_id      INTEGER NOT NULL REFERENCES attempts(id),
    reported_model  TEXT,
    model_mismatch  INTEGER NOT NULL,
    response_text   TEXT,
    finish_reason   TEXT,
    usage_json      TEXT,
    latency_ms      INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL
);
