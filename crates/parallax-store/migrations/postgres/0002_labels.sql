-- Labels of results: the built-in classifier's, and any judge's beside it (never over it).
CREATE TABLE labels (
    execution_id  bigint NOT NULL REFERENCES executions(id),
    classifier    text COLLATE "C" NOT NULL,  -- `builtin`, or `judge:<model>@<region>`
    version       text NOT NULL,
    label         text NOT NULL CHECK (label IN ('compliance', 'partial', 'refusal')),
    evidence      text,                       -- the span that decided it
    rubric        text,                       -- a judge's exact prompt template
    raw           text,                       -- a judge's raw answer
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (execution_id, classifier)
);
