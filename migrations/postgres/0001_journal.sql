-- The shared journal: one table for every chain of the node's replicas; each process
-- writes its own chain under an advisory lock (one writer per chain).
CREATE TABLE chains (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE exchanges (
    chain TEXT NOT NULL REFERENCES chains(name),
    seq BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    client TEXT,
    service TEXT,
    method TEXT NOT NULL,
    operation TEXT,
    purpose TEXT,
    contract_id TEXT,
    peer_fingerprint TEXT,
    status BIGINT NOT NULL,
    error_code TEXT,
    request_in_at TEXT NOT NULL,
    request_out_at TEXT,
    response_in_at TEXT,
    response_out_at TEXT NOT NULL,
    request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    request_digest TEXT NOT NULL,
    response_digest TEXT,
    subject_digest TEXT,
    leg TEXT NOT NULL,
    signature_digest TEXT,
    remote_key_id TEXT,
    key_id TEXT,
    chain_version BIGINT,
    prev_hash TEXT,
    record_hash TEXT,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX exchanges_subject ON exchanges(subject_digest);
CREATE INDEX exchanges_message ON exchanges(message_id);
CREATE INDEX exchanges_received ON exchanges(request_in_at);
CREATE TABLE seals (
    chain TEXT NOT NULL REFERENCES chains(name),
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    merkle_root TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    sealed_at TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature TEXT NOT NULL,
    certificate TEXT NOT NULL,
    timestamp_token TEXT,
    PRIMARY KEY (chain, first_seq)
);
CREATE TABLE archives (
    chain TEXT NOT NULL REFERENCES chains(name),
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    file TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    last_at TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    expired_at TEXT,
    PRIMARY KEY (chain, first_seq)
);
