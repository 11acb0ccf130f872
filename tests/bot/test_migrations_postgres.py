"""PostgreSQL migrations: the whole schema from blank, once under concurrency, all or nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.base.db import Database
from bot.base.db.postgres import PostgresDatabase
from bot.base.errors import MigrationError
from bot.base.migrations import MIGRATIONS_DIR, discover
from tests.postgres_server import PG_MIGRATIONS


async def columns(db: PostgresDatabase) -> dict[str, dict[str, str]]:
    rows = await db.fetchall(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    )
    tables: dict[str, dict[str, str]] = {}
    for r in rows:
        tables.setdefault(r["table_name"], {})[r["column_name"]] = r["data_type"]
    return tables


async def test_blank_database_gets_the_whole_schema(postgres_url: str) -> None:
    db = await PostgresDatabase.open(postgres_url)
    try:
        names = await db.apply_migrations(discover(PG_MIGRATIONS))
        assert names == [m.name for m in discover(PG_MIGRATIONS)]
        recorded = await db.fetchall("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in recorded] == names
        tables = await columns(db)
        assert {
            "tasks",
            "slack_events",
            "task_events",
            "task_inputs",
            "checkpoints",
            "approvals",
            "tool_calls",
            "llm_calls",
            "memories",
            "memory_meta",
            "embedding_cache",
            "rejected_facts",
            "spawns",
            "schema_migrations",
        } <= set(tables)
        assert await db.fetchval("SELECT extname FROM pg_extension WHERE extname = 'vector'")
        identity = await db.fetchall(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name = 'id' AND is_identity = 'YES'"
        )
        assert {r["table_name"] for r in identity} >= {"tasks", "memories", "tool_calls"}
    finally:
        await db.close()


async def test_no_reserved_names_and_no_four_byte_times(pg_db: PostgresDatabase) -> None:
    """A REAL (float4) would round epoch seconds to 128 s; `user` is a reserved word."""
    tables = await columns(pg_db)
    for table, cols in tables.items():
        assert "user" not in cols, table
        assert "real" not in cols.values(), (table, cols)
        for name, kind in cols.items():
            if name.endswith("_at") or name in {"at", "deadline"}:
                assert kind == "double precision", (table, name)
    assert "author" in tables["task_inputs"]


async def test_every_sqlite_column_has_a_postgres_column(
    db: Database, pg_db: PostgresDatabase
) -> None:
    """The two schemas describe the same data: a SQLite migration needs its PostgreSQL twin."""
    pg_tables = await columns(pg_db)
    renamed = {("task_inputs", "user"): "author"}
    sqlite_tables = await db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name NOT LIKE 'memories_fts%' AND name NOT LIKE 'memory_vec%'"
    )
    missing = []
    for table in [r["name"] for r in sqlite_tables]:
        for col in await db.fetchall(f"PRAGMA table_info({table})"):
            name = renamed.get((table, col["name"]), col["name"])
            if name not in pg_tables.get(table, {}):
                missing.append(f"{table}.{name}")
    assert missing == []


async def test_running_again_changes_nothing(pg_db: PostgresDatabase) -> None:
    before = await columns(pg_db)
    assert await pg_db.apply_migrations(discover(PG_MIGRATIONS)) == []
    assert await columns(pg_db) == before


async def test_replicas_migrating_together_apply_each_migration_once(postgres_url: str) -> None:
    """Four pools (separate server sessions) migrate the same blank database at once."""
    replicas = [await PostgresDatabase.open(postgres_url, max_size=1) for _ in range(4)]
    try:
        async with asyncio.timeout(60):
            applied = await asyncio.gather(
                *(r.apply_migrations(discover(PG_MIGRATIONS)) for r in replicas)
            )
        everything = [m.name for m in discover(PG_MIGRATIONS)]
        assert sorted(name for names in applied for name in names) == sorted(everything)
        count = await replicas[0].fetchval("SELECT COUNT(*) FROM schema_migrations")
        assert count == len(everything)
    finally:
        for r in replicas:
            await r.close()


async def test_failed_migration_leaves_nothing_half_applied(
    postgres_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    first = sorted(PG_MIGRATIONS.glob("*.sql"))[0]
    (directory / first.name).write_text(first.read_text())
    (directory / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id INTEGER);\n"
        "ALTER TABLE tasks ADD COLUMN half_col INTEGER;\n"
        "INSERT INTO no_such_table VALUES (1);\n"
    )
    db = await PostgresDatabase.open(postgres_url)
    try:
        with pytest.raises(MigrationError, match="0900_broken.*no_such_table") as caught:
            await db.apply_migrations(discover(directory))
        assert caught.value.migration == "0900_broken"
        tables = await columns(db)
        assert "half_done" not in tables
        assert "half_col" not in tables["tasks"]
        recorded = await db.fetchall("SELECT name FROM schema_migrations")
        assert [r["name"] for r in recorded] == [first.stem]
    finally:
        await db.close()


def test_postgres_migrations_follow_the_numbering_of_the_sqlite_ones() -> None:
    """Same scheme, and a PostgreSQL file named like a SQLite one makes the same change."""
    sqlite = {m.number: m.name for m in discover(MIGRATIONS_DIR)}
    for mig in discover(PG_MIGRATIONS):
        if mig.number in sqlite:
            assert mig.name == sqlite[mig.number]
