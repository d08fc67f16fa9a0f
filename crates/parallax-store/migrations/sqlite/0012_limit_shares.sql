-- Limits shared by workers (a job's concurrency, an endpoint's) as shares: each worker
-- records how many calls it may have in flight under a limit (`slots`) and how many it
-- could use (`wanted`), until `until_ms` (the store's clock; a share not renewed by then is
-- void). The live shares of a scope never add up to more than its limit.
CREATE TABLE limit_shares (
    scope    TEXT NOT NULL,   -- job/<id> or endpoint/<name>
    worker   TEXT NOT NULL,
    slots    INTEGER NOT NULL,
    wanted   INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, worker)
) WITHOUT ROWID;
