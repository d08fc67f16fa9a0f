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
