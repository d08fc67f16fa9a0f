-- What the built-in classifier is sure of: its confidence in [0, 1], whether the evidence
-- conflicts or is missing, and why (doubt names, space-separated). NULL for a judge's label
-- and for labels written before the classifier gave them.
ALTER TABLE labels ADD COLUMN confidence REAL CHECK (confidence BETWEEN 0 AND 1);
ALTER TABLE labels ADD COLUMN uncertain INTEGER CHECK (uncertain IN (0, 1));
ALTER TABLE labels ADD COLUMN doubts TEXT;
