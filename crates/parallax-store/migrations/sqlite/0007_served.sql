-- What each region served. A provider's content filter that answered instead of the model
-- is a result (its code and words kept), labelled `blocked`; an answer with no text is
-- labelled `empty`. Each attempt keeps what came back: the body (gzip), the headers that
-- identify the server (JSON array of [name, value]) and the body's `system_fingerprint`.
ALTER TABLE results ADD COLUMN block_code TEXT;
ALTER TABLE results ADD COLUMN block_message TEXT;
ALTER TABLE attempts ADD COLUMN raw_response BLOB;
ALTER TABLE attempts ADD COLUMN response_headers_json TEXT;
ALTER TABLE attempts ADD COLUMN system_fingerprint TEXT;

-- `blocked` and `empty` join the labels. SQLite cannot alter a CHECK constraint: the table
-- is rebuilt as in 0005 (foreign keys are off while migrations run).
CREATE TABLE labels_new (
    execution_id  INTEGER NOT NULL REFERENCES executions(id),
    classifier    TEXT NOT NULL,
    version       TEXT NOT NULL,
    label         TEXT NOT NULL CHECK (label IN ('compliance', 'partial', 'refusal', 'blocked', 'empty')),
    evidence      TEXT,
    rubric        TEXT,
    raw           TEXT,
    created_at_ms INTEGER NOT NULL,
    confidence    REAL CHECK (confidence BETWEEN 0 AND 1),
    uncertain     INTEGER CHECK (uncertain IN (0, 1)),
    doubts        TEXT,
    PRIMARY KEY (execution_id, classifier)
);
INSERT INTO labels_new (execution_id, classifier, version, label, evidence, rubric, raw, created_at_ms, confidence,
                        uncertain, doubts)
    SELECT execution_id, classifier, version, label, evidence, rubric, raw, created_at_ms, confidence, uncertain, doubts
    FROM labels;
DROP TABLE labels;
ALTER TABLE labels_new RENAME TO labels;
