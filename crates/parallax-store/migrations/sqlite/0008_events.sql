-- Live views (`parallax serve`'s event stream). Each execution carries the number of its
-- latest event: set when it reaches an end (succeeded, failed, parked, cancelled) and when
-- its built-in label is written. A reader that has seen every event up to n asks for the
-- executions whose number is above n, and misses nothing: SQLite has one writer at a time,
-- so numbers are handed out in commit order.
ALTER TABLE executions ADD COLUMN event_seq INTEGER;
UPDATE executions SET event_seq = id WHERE status IN ('succeeded', 'failed', 'parked', 'cancelled');
CREATE INDEX executions_event_seq ON executions (event_seq);
CREATE INDEX executions_job_event_seq ON executions (job_id, event_seq) WHERE event_seq IS NOT NULL;

CREATE TRIGGER execution_event AFTER UPDATE OF status ON executions
WHEN NEW.status IN ('succeeded', 'failed', 'parked', 'cancelled') AND NEW.status IS NOT OLD.status
BEGIN
    UPDATE executions SET event_seq = (SELECT coalesce(max(event_seq), 0) + 1 FROM executions) WHERE id = NEW.id;
END;

CREATE TRIGGER label_event_insert AFTER INSERT ON labels WHEN NEW.classifier = 'builtin'
BEGIN
    UPDATE executions SET event_seq = (SELECT coalesce(max(event_seq), 0) + 1 FROM executions) WHERE id = NEW.execution_id;
END;

CREATE TRIGGER label_event_update AFTER UPDATE ON labels WHEN NEW.classifier = 'builtin'
BEGIN
    UPDATE executions SET event_seq = (SELECT coalesce(max(event_seq), 0) + 1 FROM executions) WHERE id = NEW.execution_id;
END;
