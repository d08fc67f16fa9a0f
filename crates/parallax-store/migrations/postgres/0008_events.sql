-- Live views (`parallax serve`'s event stream). Each execution carries the number of its
-- latest event, from one sequence: set when it reaches an end (succeeded, failed, parked,
-- cancelled) and when its built-in label is written.
--
-- Numbers are handed out in call order, not commit order: a reader must not pass a number
-- whose transaction may still commit. Each trigger takes its transaction's id before its
-- number, so a reader that reads the sequence, then a snapshot, knows every transaction
-- that may still commit a number up to what it read: the snapshot's in-progress list.
-- Once those have ended, every number up to it is final (`Store::event_horizon`).
ALTER TABLE executions ADD COLUMN event_seq bigint;
CREATE SEQUENCE execution_event_seq;
UPDATE executions SET event_seq = id WHERE status IN ('succeeded', 'failed', 'parked', 'cancelled');
SELECT setval('execution_event_seq', coalesce((SELECT max(event_seq) FROM executions), 0) + 1, false);
CREATE INDEX executions_job_event_seq ON executions (job_id, event_seq) WHERE event_seq IS NOT NULL;

CREATE FUNCTION execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    NEW.event_seq := nextval('execution_event_seq');
    RETURN NEW;
END
$$;

CREATE TRIGGER execution_event BEFORE UPDATE OF status ON executions FOR EACH ROW
WHEN (NEW.status IN ('succeeded', 'failed', 'parked', 'cancelled') AND NEW.status IS DISTINCT FROM OLD.status)
EXECUTE FUNCTION execution_event();

CREATE FUNCTION label_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    UPDATE executions SET event_seq = nextval('execution_event_seq') WHERE id = NEW.execution_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER label_event AFTER INSERT OR UPDATE ON labels FOR EACH ROW
WHEN (NEW.classifier = 'builtin')
EXECUTE FUNCTION label_event();
