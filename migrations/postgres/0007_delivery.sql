-- A finished task whose deliverable Slack has not fully taken yet (refused for a while, or
-- unreachable past the client's retries): the delivery sweep posts the parts after
-- `delivered_parts`, the ones Slack already has.
ALTER TABLE tasks ADD COLUMN delivery_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN delivered_parts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_delivery_pending ON tasks (finished_at) WHERE delivery_pending = 1;
