-- Subtasks: a parent's orchestration call (delegate, fan out, pipeline) is a spawn; its
-- children are task rows that point back at it, so a restart never creates them twice.

CREATE TABLE spawns (
    key        TEXT    PRIMARY KEY,
    parent_id  BIGINT  NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('delegate', 'fan_out', 'pipeline')),
    stages     TEXT    NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX spawns_parent ON spawns (parent_id);

ALTER TABLE tasks ADD COLUMN spawn_key TEXT REFERENCES spawns(key) ON DELETE SET NULL;
ALTER TABLE tasks ADD COLUMN stage INTEGER;
ALTER TABLE tasks ADD COLUMN structured_result TEXT;
ALTER TABLE tasks ADD COLUMN checks TEXT;
CREATE INDEX tasks_spawn ON tasks (spawn_key, stage);
