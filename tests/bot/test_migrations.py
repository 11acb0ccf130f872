from pathlib import Path

import pytest

from bot.base.db import Database
from bot.base.errors import MigrationError
from bot.base.migrations import MIGRATIONS_DIR, discover, migrate


async def schema(db: Database) -> list[tuple[str, str]]:
    rows = await db.fetchall(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    )
    return [(r[0], r[1]) for r in rows]


async def test_blank_database_gets_full_schema(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "a.db")
    try:
        names = await migrate(db)
        assert names == [m.name for m in discover()]
        tables = {name for kind, name in await schema(db) if kind == "table"}
        assert {
            "tasks",
            "slack_events",
            "approvals",
            "tool_calls",
            "checkpoints",
            "llm_calls",
            "schema_migrations",
        } <= tables
        recorded = [
            r[0] for r in await db.fetchall("SELECT name FROM schema_migrations ORDER BY name")
        ]
        assert recorded == names
    finally:
        await db.close()


async def test_running_again_changes_nothing(db: Database) -> None:
    before = await schema(db)
    assert await migrate(db) == []
    assert await schema(db) == before


async def test_failed_migration_leaves_database_as_it_was(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    directory.mkdir()
    for src in sorted(MIGRATIONS_DIR.glob("*.sql"))[:1]:
        (directory / src.name).write_text(src.read_text())
    (directory / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    db = await Database.open(tmp_path / "b.db")
    try:
        with pytest.raises(MigrationError, match="0900_broken"):
            await migrate(db, directory)
        tables = {name for _, name in await schema(db)}
        assert "half_done" not in tables
        assert "tasks" in tables
        assert (
            await db.fetchval("SELECT COUNT(*) FROM schema_migrations WHERE name = '0900_broken'")
            == 0
        )
    finally:
        await db.close()


async def test_migrates_an_older_schema(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    first = sorted(MIGRATIONS_DIR.glob("*.sql"))[0]
    (old / first.name).write_text(first.read_text())
    db = await Database.open(tmp_path / "c.db")
    try:
        await migrate(db, old)
        await db.execute(
            "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at, updated_at)"
            " VALUES ('U1', 'C1', '1.0', '1.0', 'kept', 0, 0)"
        )
        applied = await migrate(db)
        assert first.stem not in applied and applied
        assert await db.fetchval("SELECT request FROM tasks") == "kept"
    finally:
        await db.close()


def test_duplicate_numbers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="reuses number"):
        discover(tmp_path)


def test_a_missing_migrations_folder_is_an_error_not_up_to_date(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="no migrations in .*incomplete"):
        discover(tmp_path / "migrations")
