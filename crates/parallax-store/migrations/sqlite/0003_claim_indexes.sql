-- Claims and wake-ups read only pending or running rows; partial indexes over just those
-- keep a claim's cost independent of how many executions are already finished.
DROP INDEX executions_claim;
CREATE INDEX executions_pending ON executions (job_id, endpoint, id) WHERE status = 'pending';
CREATE INDEX executions_pending_due ON executions (job_id, not_before_ms) WHERE status = 'pending';
CREATE INDEX executions_running ON executions (job_id, lease_until_ms) WHERE status = 'running';
