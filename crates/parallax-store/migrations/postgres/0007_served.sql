-- What each region served. A provider's content filter that answered instead of the model
-- is a result (its code and words kept), labelled `blocked`; an answer with no text is
-- labelled `empty`. Each attempt keeps what came back: the body (gzip), the headers that
-- identify the server (JSON array of [name, value]) and the body's `system_fingerprint`.
ALTER TABLE results ADD COLUMN block_code text;
ALTER TABLE results ADD COLUMN block_message text;
ALTER TABLE attempts ADD COLUMN raw_response bytea;
ALTER TABLE attempts ADD COLUMN response_headers_json text;
ALTER TABLE attempts ADD COLUMN system_fingerprint text;

ALTER TABLE labels DROP CONSTRAINT labels_label_check;
ALTER TABLE labels ADD CONSTRAINT labels_label_check
    CHECK (label IN ('compliance', 'partial', 'refusal', 'blocked', 'empty'));
