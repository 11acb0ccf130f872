-- What a memory answers or follows (an imported message's predecessor in its conversation,
-- given as `context` to `memory import`). Keyword search reads it with the content, so a
-- short reply is found by the question it answers; the vector is of the content alone.
ALTER TABLE memories ADD COLUMN context TEXT;

DROP TRIGGER memories_fts_insert;
DROP TRIGGER memories_fts_delete;
DROP TRIGGER memories_fts_update;

-- The FTS row's text is the context (when there is one) and the content: the 'delete'
-- commands repeat exactly what was inserted.
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, scope_tag)
    VALUES (new.id, coalesce(new.context || char(10), '') || new.content, new.scope_tag);
END;

CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, scope_tag)
    VALUES ('delete', old.id, coalesce(old.context || char(10), '') || old.content,
            old.scope_tag);
END;

CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, context, scope_tag ON memories
BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, scope_tag)
    VALUES ('delete', old.id, coalesce(old.context || char(10), '') || old.content,
            old.scope_tag);
    INSERT INTO memories_fts (rowid, content, scope_tag)
    VALUES (new.id, coalesce(new.context || char(10), '') || new.content, new.scope_tag);
END;
