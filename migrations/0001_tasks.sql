-- Tasks and the Slack events that created or continued them.

CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY,
    parent_id       INTEGER REFERENCES tasks(id) ON DELETE CASCADE,
    status          TEXT    NOT NULL DEFAULT 'received' CHECK (status IN (
                        'received', 'planning', 'awaiting_plan_approval', 'queued', 'running',
                        'waiting_approval', 'waiting_input', 'paused',
                        'done', 'failed', 'cancelled')),
    priority        INTEGER NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
    coworker        TEXT    NOT NULL DEFAULT 'coworker',
    delegator       TEXT    NOT NULL,
    team_id         TEXT,
    channel         TEXT    NOT NULL,
    thread_ts       TEXT    NOT NULL,
    message_ts      TEXT    NOT NULL,
    project         TEXT,
    request         TEXT    NOT NULL,
    files           TEXT    NOT NULL DEFAULT '[]',
    links           TEXT    NOT NULL DEFAULT '[]',
    plan            TEXT,
    estimate_min    INTEGER,
    budget_usd      REAL    NOT NULL DEFAULT 2.0,
    spent_usd       REAL    NOT NULL DEFAULT 0,
    high_visibility INTEGER NOT NULL DEFAULT 0,
    depth           INTEGER NOT NULL DEFAULT 0,
    objective       TEXT,
    ack_ts          TEXT,
    status_ts       TEXT,
    plan_ts         TEXT,
    assistant       INTEGER NOT NULL DEFAULT 0,
    result          TEXT,
    error           TEXT,
    feedback        INTEGER,
    steps           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    updated_at      REAL    NOT NULL
);

CREATE INDEX tasks_queue ON tasks (status, priority DESC, created_at);
CREATE INDEX tasks_thread ON tasks (channel, thread_ts);
CREATE INDEX tasks_delegator ON tasks (delegator, status);
CREATE INDEX tasks_parent ON tasks (parent_id);

-- Every Slack event, recorded before any work, so a redelivery creates nothing new.
CREATE TABLE slack_events (
    event_id    TEXT PRIMARY KEY,
    channel     TEXT,
    ts          TEXT,
    task_id     INTEGER REFERENCES tasks(id) ON DELETE SET NULL,
    received_at REAL NOT NULL
);
CREATE UNIQUE INDEX slack_events_message ON slack_events (channel, ts) WHERE ts IS NOT NULL;

-- What happened to a task, in order: the timeline `status T-n` and reports read.
CREATE TABLE task_events (
    id       INTEGER PRIMARY KEY,
    task_id  INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    kind     TEXT    NOT NULL,
    actor    TEXT,
    detail   TEXT,
    at       REAL    NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, at);

-- Thread replies that arrive for a task (answers, follow-ups), consumed by the agent.
CREATE TABLE task_inputs (
    id        INTEGER PRIMARY KEY,
    task_id   INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    user      TEXT    NOT NULL,
    text      TEXT    NOT NULL,
    ts        TEXT,
    consumed  INTEGER NOT NULL DEFAULT 0,
    at        REAL    NOT NULL
);
CREATE INDEX task_inputs_pending ON task_inputs (task_id, consumed);
