from pathlib import Path

import pytest

from bot.base.db import Database, open_database
from bot.base.errors import MigrationError
from bot.base.migrations import MIGRATIONS_DIR, discover, migrate
from bot.tasks import TaskStore


async def schema(db: Database) -> list[tuple[str, str]]:
    rows = await db.fetchall(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    )
    return [(r["type"], r["name"]) for r in rows]


async def test_blank_database_gets_full_schema(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'a.db'}")
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
            r["name"] for r in await db.fetchall("SELECT name FROM schema_migrations ORDER BY name")
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
    db = await open_database(f"sqlite:///{tmp_path / 'b.db'}")
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
    db = await open_database(f"sqlite:///{tmp_path / 'c.db'}")
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


async def test_0008_keeps_replies_and_gives_json_inside_values_their_own_columns(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for src in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if src.name < "0008":
            (old / src.name).write_text(src.read_text())
    db = await open_database(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        await migrate(db, old)
        await db.execute(
            "INSERT INTO tasks (id, delegator, channel, thread_ts, message_ts, request,"
            " created_at, updated_at) VALUES (1, 'U1', 'C1', '1.0', '1.0', 'r', 0, 0)"
        )
        await db.execute(
            "INSERT INTO task_inputs (task_id, user, text, at) VALUES (1, 'U2', 'also staging', 0)"
        )
        await db.execute(
            "INSERT INTO task_events (task_id, kind, detail, at) VALUES"
            ' (1, \'data_check\', \'{"key": "t1:toolu_1", "line": "ok"}\', 0),'
            " (1, 'check', '[\"a list\"]', 0), (1, 'created', NULL, 0),"
            ' (1, \'data_check\', \'{"key": "t1:toolu_1", "line": "twice"}\', 0)'
        )
        for key, arguments in (("k1", '{"dry_run": true}'), ("k2", '{"dry_run": false}')):
            await db.execute(
                "INSERT INTO tool_calls (idempotency_key, task_id, server, tool, arguments,"
                " args_hash, tier, status, result, started_at) VALUES"
                " (?, 1, 'db', 'db__execute', ?, 'h', 'block', 'ok', 'preview', 0)",
                (key, arguments),
            )
        assert "0008_engine_neutral" in await migrate(db)
        tasks = TaskStore(db)
        assert await tasks.pending_inputs(1) == [
            {"id": 1, "author": "U2", "text": "also staging", "ts": None}
        ]
        keys = await db.fetchall("SELECT kind, once_key FROM task_events ORDER BY id")
        assert [r["once_key"] for r in keys] == ["t1:toolu_1", None, None, None]
        assert not await tasks.log_once(1, "data_check", "t1:toolu_1", line="again")
        assert await tasks.log_once(1, "data_check", "t1:toolu_2", line="new")
        dry = await db.fetchall("SELECT idempotency_key, dry_run FROM tool_calls ORDER BY id")
        assert [(r["idempotency_key"], r["dry_run"]) for r in dry] == [("k1", 1), ("k2", 0)]
    finally:
        await db.close()
