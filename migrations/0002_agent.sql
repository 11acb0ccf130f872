-- The agent loop's durable state: checkpoints, the tool journal (also the audit), approvals.

CREATE TABLE checkpoints (
    task_id    INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    messages   TEXT    NOT NULL,
    updated_at REAL    NOT NULL
);

-- One row per tool call: journaled before it runs ('started') and after ('ok' / 'error' /
-- 'denied' / 'rejected' / 'invalid'). Arguments are stored redacted of secrets.
CREATE TABLE tool_calls (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT    NOT NULL UNIQUE,
    task_id         INTEGER REFERENCES tasks(id) ON DELETE CASCADE,
    step            INTEGER,
    coworker        TEXT,
    delegator       TEXT,
    server          TEXT    NOT NULL,
    tool            TEXT    NOT NULL,
    arguments       TEXT    NOT NULL,
    args_hash       TEXT    NOT NULL,
    tier            TEXT    NOT NULL,
    tier_source     TEXT,
    status          TEXT    NOT NULL DEFAULT 'started',
    result          TEXT,
    is_error        INTEGER NOT NULL DEFAULT 0,
    approval_id     INTEGER REFERENCES approvals(id),
    started_at      REAL    NOT NULL,
    finished_at     REAL,
    duration_ms     REAL
);
CREATE INDEX tool_calls_task ON tool_calls (task_id, id);

CREATE TABLE approvals (
    id              INTEGER PRIMARY KEY,
    task_id         INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL DEFAULT 'tool' CHECK (kind IN ('tool', 'budget', 'spend')),
    idempotency_key TEXT,
    tool            TEXT,
    args_hash       TEXT,
    arguments       TEXT,
    reason          TEXT,
    tier            TEXT,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'used')),
    stage           INTEGER NOT NULL DEFAULT 0,
    channel         TEXT,
    message_ts      TEXT,
    requested_at    REAL    NOT NULL,
    deadline        REAL    NOT NULL,
    decided_by      TEXT,
    decided_at      REAL,
    decision_note   TEXT
);
CREATE INDEX approvals_pending ON approvals (status, deadline);
CREATE INDEX approvals_task ON approvals (task_id);
CREATE UNIQUE INDEX approvals_call ON approvals (idempotency_key) WHERE idempotency_key IS NOT NULL;
