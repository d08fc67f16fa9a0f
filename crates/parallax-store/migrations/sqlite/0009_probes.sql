-- `run.probe`: the probe verdicts a job's report shows beside its rates, per model: the
-- probe job they come from and the report `parallax probe --format json` prints.
CREATE TABLE job_probes (
    job_id        TEXT NOT NULL REFERENCES jobs(id),
    model_id      TEXT NOT NULL,
    probe_job_id  TEXT NOT NULL REFERENCES jobs(id),
    report_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, model_id)
);

-- Keyset pages of a job's executions (`GET /jobs/{id}/executions`) walk this index in
-- order and stop at the page's end, instead of sorting every later row of the job.
CREATE INDEX executions_job_id_id ON executions (job_id, id);
