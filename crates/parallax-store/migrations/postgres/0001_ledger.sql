-- The execution ledger (PostgreSQL). Rows of `executions` and `attempts` are never deleted.
-- The same schema as migrations/sqlite at the same version, in PostgreSQL's types: ids are
-- identities, request bodies bytea, flags boolean. JSON stays text, byte for byte what was
-- written (a job's identity is canonical JSON; jsonb would reorder it). Times stay `*_ms`
-- bigints, stamped from the database's clock. Names that are sorted are `COLLATE "C"`:
-- byte order, as SQLite sorts, whatever the database's default collation.

CREATE TABLE jobs (
    id            text COLLATE "C" PRIMARY KEY,  -- <name>-<12 hex>[-<generation>]
    base_id       text COLLATE "C" NOT NULL,     -- <name>-<12 hex>
    generation    bigint NOT NULL,               -- 1, 2, ... (--fresh)
    name          text COLLATE "C" NOT NULL,
    identity_json text NOT NULL,                 -- canonical JSON of what shapes the requests
    planned       bigint NOT NULL,               -- number of executions in the plan
    created_at_ms bigint NOT NULL,
    UNIQUE (base_id, generation)
);

CREATE TABLE questions (
    job_id      text COLLATE "C" NOT NULL REFERENCES jobs(id),
    question_id text COLLATE "C" NOT NULL,
    ordinal     bigint NOT NULL,
    text        text NOT NULL,
    expect      text,
    meta_json   text NOT NULL,
    PRIMARY KEY (job_id, question_id)
);

CREATE TABLE executions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          text COLLATE "C" NOT NULL REFERENCES jobs(id),
    question_id     text COLLATE "C" NOT NULL,
    model_id        text COLLATE "C" NOT NULL,
    region          text COLLATE "C" NOT NULL,
    sample          bigint NOT NULL,
    endpoint        text COLLATE "C" NOT NULL,
    kind            text NOT NULL,
    requested_model text NOT NULL,
    model_aliases   text NOT NULL,               -- JSON array
    request_body    bytea NOT NULL,              -- the exact bytes sent
    request_sha256  text NOT NULL,
    idempotency_key text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'parked')),
    lease_token     text,
    lease_until_ms  bigint,
    worker          text,
    attempts        bigint NOT NULL DEFAULT 0,   -- upstream attempts so far
    attempts_base   bigint NOT NULL DEFAULT 0,   -- attempts when last re-armed (--retry-failed)
    not_before_ms   bigint,                      -- backoff
    error           text,
    UNIQUE (job_id, question_id, model_id, region, sample)
);

CREATE INDEX executions_claim ON executions (job_id, endpoint, status, not_before_ms);

CREATE TABLE attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id    bigint NOT NULL REFERENCES executions(id),
    number          bigint NOT NULL,
    lease_token     text NOT NULL,
    worker          text NOT NULL,
    started_at_ms   bigint NOT NULL,
    finished_at_ms  bigint,
    -- open | succeeded | retryable | failed | parked | lost | stale | aborted | released
    outcome         text NOT NULL,
    possibly_billed boolean NOT NULL DEFAULT false,
    http_status     bigint,
    latency_ms      bigint,
    error           text
);

CREATE INDEX attempts_execution ON attempts (execution_id);

-- At most one result per execution: the schema says so, not the code.
CREATE TABLE results (
    execution_id    bigint PRIMARY KEY REFERENCES executions(id),
    attempt_id      bigint NOT NULL REFERENCES attempts(id),
    reported_model  text,
    model_mismatch  boolean NOT NULL,
    response_text   text,
    finish_reason   text,
    usage_json      text,
    latency_ms      bigint NOT NULL,
    created_at_ms   bigint NOT NULL
);
