-- The twin of SQLite's 0008: the columns callers read instead of looking inside JSON.
-- (task_inputs' author column has that name in PostgreSQL's schema from the start.)
ALTER TABLE task_events ADD COLUMN once_key TEXT;
CREATE UNIQUE INDEX task_events_once ON task_events (task_id, kind, once_key)
    WHERE once_key IS NOT NULL;
ALTER TABLE tool_calls ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
