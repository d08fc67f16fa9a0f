-- Many machines: a job carries the run policy it was submitted with, so any worker can run
-- it; a cancelled job is claimed no more; workers say who they are and when they were seen.
ALTER TABLE jobs ADD COLUMN run_policy_json text;
ALTER TABLE jobs ADD COLUMN cancelled_at_ms bigint;

ALTER TABLE executions DROP CONSTRAINT executions_status_check;
ALTER TABLE executions ADD CONSTRAINT executions_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'parked', 'cancelled'));
-- Which jobs have work on an endpoint (a worker's question), without scanning finished rows.
CREATE INDEX executions_open_by_endpoint ON executions (endpoint, job_id) WHERE status IN ('pending', 'running');
-- Live leases per endpoint (a limit shared by workers), without scanning pending rows.
CREATE INDEX executions_running_by_endpoint ON executions (endpoint, lease_until_ms) WHERE status = 'running';

CREATE TABLE workers (
    id            text COLLATE "C" PRIMARY KEY,  -- <host>:<pid>:<random>
    host          text NOT NULL,
    pid           bigint NOT NULL,
    regions_json  text NOT NULL,                 -- JSON array
    version       text NOT NULL,
    started_at_ms bigint NOT NULL,
    last_seen_ms  bigint NOT NULL,               -- the database's clock
    in_flight     bigint NOT NULL DEFAULT 0,
    stopped_at_ms bigint
);

-- An endpoint's rate, shared by every worker: a token bucket per endpoint, refilled from
-- the store's clock when a claim takes from it (under the claim's lock on PostgreSQL).
CREATE TABLE endpoint_rates (
    endpoint       text COLLATE "C" PRIMARY KEY,
    tokens         double precision NOT NULL,
    refilled_at_ms bigint NOT NULL
);
