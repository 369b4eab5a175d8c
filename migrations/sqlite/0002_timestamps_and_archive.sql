-- RFC 3161 time-stamp tokens of seals; the query index of the admin API; the archive
-- anchor (the hash the oldest record still held links to, once older ones are archived).
ALTER TABLE seals ADD COLUMN timestamp_token TEXT;
CREATE INDEX IF NOT EXISTS exchanges_received ON exchanges(request_in_at);
CREATE INDEX IF NOT EXISTS seals_first ON seals(first_seq);
CREATE TABLE IF NOT EXISTS archives (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    file TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    last_at TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    expired_at TEXT
);
