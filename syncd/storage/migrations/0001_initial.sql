-- syncd schema, version 1. Ciphertext and routing fields only: no plaintext
-- of any message, form or key ever reaches these tables.

CREATE TABLE server_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    sign_seed   BLOB NOT NULL                -- Ed25519 private seed of this server
);

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    phone       TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    sign_key        BLOB NOT NULL,
    hpke_key        BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    highest_op_id   INTEGER NOT NULL DEFAULT 0,
    joined_seq      INTEGER NOT NULL DEFAULT 0   -- the device sees no content before this
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE invites (
    code_hash   BLOB PRIMARY KEY,            -- SHA-256 of the enrolment code
    phone       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE used_challenges (                -- answered challenges, until they expire
    nonce       BLOB PRIMARY KEY,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX used_challenges_expiry ON used_challenges (expires_at);

CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id        INTEGER NOT NULL REFERENCES devices (id),
    request_key      BLOB NOT NULL,
    response_key     BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    highest_counter  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_device ON sessions (device_id);

CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY,
    conv        BLOB NOT NULL UNIQUE,        -- the 8-byte id on the wire
    broadcast   INTEGER NOT NULL,
    head        BLOB NOT NULL                -- roster hash at the head of the chain
);

CREATE TABLE members (                       -- the current roster
    conv_id     INTEGER NOT NULL REFERENCES conversations (id),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    role        INTEGER NOT NULL,
    PRIMARY KEY (conv_id, user_id)
) WITHOUT ROWID;

CREATE TABLE spans (                         -- when each user could see each conversation
    conv_id     INTEGER NOT NULL REFERENCES conversations (id),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    joined_seq  INTEGER NOT NULL,            -- seq of the op that added the user
    left_seq    INTEGER,                     -- seq of the op that removed them, NULL while in
    PRIMARY KEY (user_id, conv_id, joined_seq)
) WITHOUT ROWID;

CREATE TABLE ops (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    conv_id     INTEGER NOT NULL REFERENCES conversations (id),
    op_type     INTEGER NOT NULL,
    device_id   INTEGER NOT NULL REFERENCES devices (id),
    op_id       INTEGER NOT NULL,
    to_device   INTEGER,                     -- key envelopes only
    fields      BLOB NOT NULL,               -- CBOR of the pull-form fields after the op id
    digest      BLOB NOT NULL,               -- SHA-256 of the pushed bytes, for replays
    UNIQUE (device_id, op_id)
);
-- Pulls: per conversation and type, in seq order ...
CREATE INDEX ops_stream ON ops (conv_id, op_type, seq);
-- ... and each device's key envelopes, in seq order.
CREATE INDEX ops_inbox ON ops (to_device, seq) WHERE to_device IS NOT NULL;
