-- Long-term memory: episodes (one per finished task) and facts (curated knowledge), each
-- scoped to the whole team, one project, or one user.
--
-- Three indexes cover `memories`:
--   * memories_fts, an FTS5 external-content index kept in step by the triggers below;
--     'secure-delete' makes a deleted row's tokens leave the index itself, so forgetting is
--     real deletion and not a tombstone. Its second column, scope_tag, holds one token per
--     scope (written by memory/records.py), so a scoped keyword search is an FTS5 AND
--     inside the index rather than a join over every match;
--   * memory_vec, a sqlite-vec vec0 table. Its dimension depends on the embeddings
--     provider, so memory/vector_index.py creates it at start-up (the one CREATE outside
--     migrations) and records the provider in memory_meta;
--   * embedding_cache, vectors by sha256(provider, model, text), so re-indexing or a repeated
--     text does not pay for the same embedding twice.

CREATE TABLE memories (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('episode', 'fact')),
    scope           TEXT    NOT NULL CHECK (scope IN ('team', 'project', 'user')),
    project         TEXT,
    -- the owner of a user-scoped memory; for other scopes, who it came from
    user_id         TEXT,
    content         TEXT    NOT NULL CHECK (length(content) > 0),
    scope_tag       TEXT    NOT NULL,
    source_task     INTEGER REFERENCES tasks(id) ON DELETE SET NULL,
    permalink       TEXT,
    -- facts proposed by consolidation: JSON list of the episode ids they came from
    sources         TEXT    NOT NULL DEFAULT '[]',
    importance      REAL    NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
    status          TEXT    NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'proposed', 'archived')),
    -- episodes
    outcome         TEXT,
    feedback        INTEGER CHECK (feedback IN (-1, 1)),
    correction      TEXT,
    tools_used      TEXT    NOT NULL DEFAULT '[]',
    duration_s      REAL,
    cost_usd        REAL,
    consolidated_at REAL,
    -- facts: who approved or edited it
    decided_by      TEXT,
    -- "provider:model:dim" of the vector in memory_vec; NULL or stale means "embed me"
    embedded_by     TEXT,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    last_used_at    REAL,
    use_count       INTEGER NOT NULL DEFAULT 0,
    archived_at     REAL,
    CHECK (scope != 'project' OR project IS NOT NULL),
    CHECK (scope != 'user' OR user_id IS NOT NULL)
);
CREATE INDEX memories_listing ON memories (kind, status, created_at);
CREATE INDEX memories_archived ON memories (status, archived_at);
CREATE UNIQUE INDEX memories_episode_task ON memories (source_task)
    WHERE kind = 'episode' AND source_task IS NOT NULL;

CREATE VIRTUAL TABLE memories_fts USING fts5(
    content,
    scope_tag,
    content = 'memories',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO memories_fts (memories_fts, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, scope_tag)
    VALUES (new.id, new.content, new.scope_tag);
END;

CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, scope_tag)
    VALUES ('delete', old.id, old.content, old.scope_tag);
END;

CREATE TRIGGER memories_fts_update AFTER UPDATE OF content, scope_tag ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, scope_tag)
    VALUES ('delete', old.id, old.content, old.scope_tag);
    INSERT INTO memories_fts (rowid, content, scope_tag)
    VALUES (new.id, new.content, new.scope_tag);
END;

CREATE TABLE memory_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE embedding_cache (
    hash       TEXT    PRIMARY KEY,
    provider   TEXT    NOT NULL,
    dim        INTEGER NOT NULL,
    vector     BLOB    NOT NULL,
    created_at REAL    NOT NULL
);
CREATE INDEX embedding_cache_provider ON embedding_cache (provider);

-- Hashes (never the text) of rejected fact proposals, so a reviewer is not asked twice.
CREATE TABLE rejected_facts (
    hash        TEXT PRIMARY KEY,
    rejected_at REAL NOT NULL
);
