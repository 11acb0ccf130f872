"""Migration 0004 creates the memory schema, and the vector table is built at start-up."""

from __future__ import annotations

from bot.base.db import Database
from memory.store import MemoryStore


async def names(db: Database, kind: str) -> set[str]:
    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = ?", (kind,))
    return {r["name"] for r in rows}


async def test_migration_creates_tables_and_triggers(db: Database) -> None:
    tables = await names(db, "table")
    assert {
        "memories",
        "memories_fts",
        "memory_meta",
        "embedding_cache",
        "rejected_facts",
    } <= tables
    assert "memory_vec" not in tables  # its dimension is the provider's: built in code
    triggers = await names(db, "trigger")
    assert {"memories_fts_insert", "memories_fts_delete", "memories_fts_update"} <= triggers
    secure = await db.fetchval("SELECT v FROM memories_fts_config WHERE k = 'secure-delete'")
    assert secure == 1


async def test_prepare_builds_vec_table_with_metadata_columns(store: MemoryStore) -> None:
    sql = await store.db.fetchval("SELECT sql FROM sqlite_master WHERE name = 'memory_vec'")
    assert "FLOAT[384]" in sql and "PARTITION KEY" in sql and "scope_id INTEGER" in sql
    meta = await store.db.fetchval("SELECT value FROM memory_meta WHERE key = 'vector_index'")
    assert '"dim": 384' in meta and '"provider": "test"' in meta


async def test_fts_follows_content_updates(store: MemoryStore) -> None:
    memory_id = await store.add("fact", "the staging database is postgres", "team")
    await store.update(memory_id, content="the staging database is mysql")
    rows = await store.db.fetchall(
        "SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'postgres'"
    )
    assert rows == []
    rows = await store.db.fetchall(
        "SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'mysql'"
    )
    assert [r["rowid"] for r in rows] == [memory_id]
