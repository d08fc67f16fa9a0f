-- Labels of results: the built-in classifier's, and any judge's beside it (never over it).
CREATE TABLE labels (
    execution_id  INTEGER NOT NULL REFERENCES executions(id),
    classifier    TEXT NOT NULL,              -- `builtin`, or `judge:<model>@<region>`
    version       TEXT NOT NULL,
    label         TEXT NOT NULL CHECK (label IN ('compliance', 'partial', 'refusal')),
    evidence      TEXT,                       -- the span that decided it
    rubric        TEXT,                       -- a judge's exact prompt template
    raw           TEXT,                       -- a judge's raw answer
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (execution_id, classifier)
);
