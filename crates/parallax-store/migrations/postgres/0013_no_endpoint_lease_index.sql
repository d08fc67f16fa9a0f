-- `executions_running_by_endpoint` counted an endpoint's live leases for claims that pass
-- endpoint caps. Workers keep shared limits through their shares (migration 12) and claim
-- without caps, so every claim wrote an entry to an index that no claim read. A claim that
-- still passes caps counts through `executions_open_by_endpoint`.
DROP INDEX executions_running_by_endpoint;
