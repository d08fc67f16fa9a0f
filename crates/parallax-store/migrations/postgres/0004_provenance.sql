-- What a provider can vouch for beyond the answer: for a local model, the SHA-256 of the
-- token ids fed to it, of its GGUF file and its template, the build and thread count.
ALTER TABLE results ADD COLUMN provenance_json text;
