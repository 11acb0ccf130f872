-- One row per model call: what it was for, what it cost, how long it took.

CREATE TABLE llm_calls (
    id                 INTEGER PRIMARY KEY,
    task_id            INTEGER REFERENCES tasks(id) ON DELETE CASCADE,
    coworker           TEXT,
    purpose            TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    latency_ms         REAL,
    stop_reason        TEXT,
    error              TEXT,
    created_at         REAL    NOT NULL
);
CREATE INDEX llm_calls_task ON llm_calls (task_id);
CREATE INDEX llm_calls_time ON llm_calls (created_at);
