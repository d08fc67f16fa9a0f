-- Limits shared by workers (a job's concurrency, an endpoint's) as shares: each worker
-- records how many calls it may have in flight under a limit (`slots`) and how many it
-- could use (`wanted`), until `until_ms` (the database's clock; a share not renewed by then
-- is void). The live shares of a scope never add up to more than its limit, so a worker
-- keeps its calls within its share and may claim ahead of them, as one process does.
CREATE TABLE limit_shares (
    scope    text COLLATE "C" NOT NULL,   -- job/<id> or endpoint/<name>
    worker   text COLLATE "C" NOT NULL,
    slots    bigint NOT NULL,
    wanted   bigint NOT NULL,
    until_ms bigint NOT NULL,
    PRIMARY KEY (scope, worker)
);
