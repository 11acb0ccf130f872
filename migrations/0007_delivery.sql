-- When a finished task's deliverable reached its thread. A task is marked done first and
-- its deliverable posted after; until the post goes through (Slack down, a crash in
-- between) `delivered_at` stays NULL and the delivery sweep posts it again.
ALTER TABLE tasks ADD COLUMN delivered_at REAL;
UPDATE tasks SET delivered_at = finished_at WHERE status = 'done';
CREATE INDEX tasks_undelivered ON tasks (finished_at) WHERE status = 'done' AND delivered_at IS NULL;
