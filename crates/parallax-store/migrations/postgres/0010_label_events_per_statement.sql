-- A built-in label gives its execution a new event number (migration 0008), once per
-- statement rather than once per row: a row trigger ran a PL/pgSQL call and an UPDATE
-- for each label. The transaction's id is still taken before any number
-- (`Store::event_horizon` relies on it). PostgreSQL allows transition tables on
-- single-event triggers only, hence one trigger per event.
DROP TRIGGER label_event ON labels;
DROP FUNCTION label_event();

CREATE FUNCTION label_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    UPDATE executions e SET event_seq = nextval('execution_event_seq')
    FROM (SELECT DISTINCT execution_id FROM changed WHERE classifier = 'builtin') l
    WHERE e.id = l.execution_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER label_events_insert AFTER INSERT ON labels REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION label_events();
CREATE TRIGGER label_events_update AFTER UPDATE ON labels REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION label_events();
