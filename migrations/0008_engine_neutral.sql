-- Names and values both database engines read the same way (one database interface).

-- `user` is a reserved word in PostgreSQL.
ALTER TABLE task_inputs RENAME COLUMN user TO author;

-- The key `TaskStore.log_once` logs an event once per, until now read out of the JSON detail
-- (kept on the first event of a task, kind and key only, so the unique index always holds).
ALTER TABLE task_events ADD COLUMN once_key TEXT;
UPDATE task_events SET once_key = json_extract(detail, '$.key')
 WHERE json_valid(detail) AND json_type(detail, '$.key') = 'text'
   AND NOT EXISTS (
       SELECT 1 FROM task_events AS e
        WHERE e.task_id = task_events.task_id AND e.kind = task_events.kind
          AND e.id < task_events.id AND json_valid(e.detail)
          AND json_extract(e.detail, '$.key') = json_extract(task_events.detail, '$.key'));
CREATE UNIQUE INDEX task_events_once ON task_events (task_id, kind, once_key)
    WHERE once_key IS NOT NULL;

-- Whether a call was its tool's dry run (the `[policy.dry_run]` argument set), until now read
-- out of the arguments' JSON; the real call's approval shows the dry run's result. Calls made
-- before this migration count when an argument named like "dry…" was true.
ALTER TABLE tool_calls ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
UPDATE tool_calls SET dry_run = 1
 WHERE json_valid(arguments) AND json_type(arguments) = 'object' AND EXISTS (
       SELECT 1 FROM json_each(tool_calls.arguments) AS a
        WHERE lower(a.key) LIKE '%dry%' AND a.value IN (1, 'true'));
