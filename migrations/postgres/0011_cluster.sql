-- Several replicas on one PostgreSQL (bot/cluster/): who is alive, who leads the once-only
-- jobs, which replica holds which running task until when, and the messages acknowledged
-- to Slack that intake has not finished with. SQLite runs one process and has none of it.

-- The replica working on a planning/running task, and until when its lease holds (the
-- database's clock, epoch seconds); a lease that ran out lets another replica take over.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires_at DOUBLE PRECISION;
CREATE INDEX tasks_leases ON tasks (lease_owner, lease_expires_at)
    WHERE status IN ('planning', 'running');

-- One row per running replica, renewed by its heartbeat.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    expires_at   DOUBLE PRECISION NOT NULL
);

-- Leases only one replica holds at a time ('scheduler': the leader runs the once-only jobs).
CREATE TABLE leader_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL
);

-- The pre-ack inbox: a Slack message written here before Slack is acknowledged, marked
-- handled once intake is done with it; a row whose writer died is replayed by another.
CREATE TABLE inbox (
    event_id    TEXT PRIMARY KEY,
    message     TEXT NOT NULL,
    writer      TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    handled_at  DOUBLE PRECISION
);
CREATE INDEX inbox_unhandled ON inbox (writer, received_at) WHERE handled_at IS NULL;
