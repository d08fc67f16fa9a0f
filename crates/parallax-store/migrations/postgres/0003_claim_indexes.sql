-- Claims and wake-ups read only pending or running rows; partial indexes over just those
-- keep a claim's cost independent of how many executions are already finished.
--
-- Claims take due pending rows in id order, and the primary key yields id order too. The
-- planner, assuming pending rows are spread evenly over the ids, prefers walking the
-- primary key; but finished rows hold the low ids, so that walk reads every one of them
-- before the first pending row. Claims therefore order by `id + 0`, which only this index
-- yields. Expired leases are taken in (lease_until_ms, id) order: SQLite's index order.
-- `NULLS FIRST`: a pending row without backoff is the earliest wake-up (SQLite's order).
DROP INDEX executions_claim;
CREATE INDEX executions_pending ON executions (job_id, endpoint, (id + 0)) WHERE status = 'pending';
CREATE INDEX executions_pending_due ON executions (job_id, not_before_ms NULLS FIRST) WHERE status = 'pending';
CREATE INDEX executions_running ON executions (job_id, lease_until_ms, id) WHERE status = 'running';
