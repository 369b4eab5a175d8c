-- The embedded journal (one chain per file). IF NOT EXISTS: journals written before the
-- migrations existed already hold these tables.
CREATE TABLE IF NOT EXISTS exchanges (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    client TEXT,
    service TEXT,
    method TEXT NOT NULL,
    operation TEXT,
    purpose TEXT,
    contract_id TEXT,
    peer_fingerprint TEXT,
    status INTEGER NOT NULL,
    error_code TEXT,
    request_in_at TEXT NOT NULL,
    request_out_at TEXT,
    response_in_at TEXT,
    response_out_at TEXT NOT NULL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    request_digest TEXT NOT NULL,
    response_digest TEXT,
    subject_digest TEXT,
    leg TEXT NOT NULL DEFAULT 'local',
    signature_digest TEXT,
    remote_key_id TEXT,
    key_id TEXT,
    chain_version INTEGER,
    prev_hash TEXT,
    record_hash TEXT
);
CREATE TABLE IF NOT EXISTS seals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    merkle_root TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    sealed_at TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature TEXT NOT NULL,
    certificate TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_subject ON exchanges(subject_digest);
CREATE INDEX IF NOT EXISTS exchanges_message ON exchanges(message_id);
