-- Per-user OAuth for MCP servers (tools/oauth). Secrets are sealed with COWORKER_SECRET_KEY
-- (bot/base/secretbox.py) before they are written: no column holds a token in the clear.

-- A client registered with a server's authorization server by dynamic registration; one per
-- server, shared by everyone who connects (a client given in .mcp.json is not stored).
CREATE TABLE oauth_clients (
    server        TEXT PRIMARY KEY,
    issuer        TEXT,
    redirect_uri  TEXT NOT NULL,
    sealed        TEXT NOT NULL,
    registered_at REAL NOT NULL
);

-- One person's connection to one per-user server. `version` moves with every refresh, so a
-- refresh is written only over the token it started from; `refreshing_until` is the lease of
-- the one process refreshing it (refresh tokens rotate: two refreshes would lose one).
CREATE TABLE oauth_tokens (
    id               INTEGER PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    server           TEXT    NOT NULL,
    sealed           TEXT    NOT NULL,
    scope            TEXT,
    expires_at       REAL,
    version          INTEGER NOT NULL DEFAULT 1,
    refreshing_until REAL,
    connected_at     REAL    NOT NULL,
    refreshed_at     REAL,
    UNIQUE (user_id, server)
);
CREATE INDEX oauth_tokens_server ON oauth_tokens (server, connected_at);

-- A Connect link: the state (kept as its hash), whom and what it is for, the PKCE verifier
-- and the authorization URL (sealed), the browser that opened it (a cookie's hash). Used once.
CREATE TABLE oauth_states (
    state_hash   TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    server       TEXT    NOT NULL,
    task_id      INTEGER REFERENCES tasks(id) ON DELETE CASCADE,
    sealed       TEXT    NOT NULL,
    binding_hash TEXT,
    created_at   REAL    NOT NULL,
    expires_at   REAL    NOT NULL,
    used_at      REAL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

-- A task waiting for its delegator to connect a server (or told they declined).
CREATE TABLE oauth_waits (
    task_id  INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    server   TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    status   TEXT    NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'declined')),
    asked_at REAL    NOT NULL,
    PRIMARY KEY (task_id, server)
);
CREATE INDEX oauth_waits_user ON oauth_waits (user_id, server);
