-- A built-in label is written in its result's transaction (`finish`), where the status
-- change has just given the execution a new event number (migration 0008): a reader that
-- sees that number sees the label with it, so the label need not number the row again,
-- which would write a third version of the execution's row. An execution this
-- transaction has not written (`put_labels`: a label given later) still gets a new number.
CREATE OR REPLACE FUNCTION label_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    UPDATE executions e SET event_seq = nextval('execution_event_seq')
    FROM (SELECT DISTINCT execution_id FROM changed WHERE classifier = 'builtin') l
    WHERE e.id = l.execution_id AND e.xmin <> pg_current_xact_id()::xid;
    RETURN NULL;
END
$$;
