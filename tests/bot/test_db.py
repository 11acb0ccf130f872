import asyncio
from pathlib import Path

import pytest

from bot.base.db import Database, open_database
from bot.base.db.sqlite import sqlite_module
from bot.base.errors import SettingsError


async def test_sqlite_vec_and_fts5_through_the_apps_connection(db: Database) -> None:
    assert str(await db.fetchval("SELECT vec_version()")).startswith("v")
    await db.execute("CREATE VIRTUAL TABLE t_fts USING fts5(body)")
    await db.execute("INSERT INTO t_fts (body) VALUES ('flaky test in CI'), ('deploy notes')")
    rows = await db.fetchall("SELECT body FROM t_fts WHERE t_fts MATCH 'flaky'")
    assert [r["body"] for r in rows] == ["flaky test in CI"]
    dist = await db.fetchval("SELECT vec_distance_l2('[1,0]', '[0,0]')")
    assert dist == pytest.approx(1.0)


async def test_pragmas(db: Database) -> None:
    assert await db.fetchval("PRAGMA journal_mode") == "wal"
    assert await db.fetchval("PRAGMA foreign_keys") == 1
    assert await db.fetchval("PRAGMA busy_timeout") == 30000


def test_module_can_load_extensions() -> None:
    conn = sqlite_module().connect(":memory:")
    assert hasattr(conn, "enable_load_extension")
    conn.close()


async def test_transaction_rolls_back_and_serializes(db: Database) -> None:
    await db.execute("CREATE TABLE counter (n INTEGER)")
    await db.execute("INSERT INTO counter VALUES (0)")

    async def bump() -> None:
        async with db.transaction() as tx:
            n = await tx.fetchone("SELECT n FROM counter")
            await asyncio.sleep(0)
            await tx.execute("UPDATE counter SET n = ?", (n["n"] + 1,))

    await asyncio.gather(*(bump() for _ in range(20)))
    assert await db.fetchval("SELECT n FROM counter") == 20
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("UPDATE counter SET n = 99")
            raise RuntimeError("boom")
    assert await db.fetchval("SELECT n FROM counter") == 20


async def test_batch_is_one_transaction_and_answers_each_statement(db: Database) -> None:
    await db.execute("CREATE TABLE spend (task INTEGER PRIMARY KEY, usd REAL NOT NULL)")
    await db.execute("INSERT INTO spend VALUES (1, 0.5)")
    changed, returned = await db.batch(
        ("INSERT INTO spend VALUES (?, ?)", (2, 1.0)),
        ("UPDATE spend SET usd = usd + ? WHERE task = ? RETURNING usd", (0.25, 1)),
    )
    assert changed == 1 and [tuple(r.values()) for r in returned] == [(0.75,)]
    with pytest.raises(sqlite_module().IntegrityError):
        await db.batch(
            ("UPDATE spend SET usd = 9 WHERE task = 1", ()),
            ("INSERT INTO spend VALUES (2, 3.0)", ()),  # duplicate key: all or nothing
        )
    rows = await db.fetchall("SELECT task, usd FROM spend ORDER BY task")
    assert [tuple(r.values()) for r in rows] == [(1, 0.75), (2, 1.0)]
    async with db.transaction() as tx:  # the connection is usable again, outside a transaction
        await tx.execute("DELETE FROM spend WHERE task = 2")
    assert await db.fetchval("SELECT COUNT(*) FROM spend") == 1


async def test_rows_are_read_by_column_name(db: Database) -> None:
    await db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, at REAL)")
    new_id = await db.fetchval(
        "INSERT INTO notes (body, at) VALUES (?, ?) RETURNING id", ("a", 1.5)
    )
    assert await db.fetchone("SELECT body, at FROM notes WHERE id = ?", (new_id,)) == {
        "body": "a",
        "at": 1.5,
    }
    async with db.transaction() as tx:
        assert await tx.execute("UPDATE notes SET body = :body", {"body": "b"}) == 1
        assert await tx.fetchval("SELECT body FROM notes") == "b"
        await tx.lock(f"note:{new_id}")  # SQLite's writing transactions are serialized already
    [counted, rows] = await db.batch(
        ("UPDATE notes SET at = 2.0 WHERE id = ?", (new_id,)),
        ("SELECT id, at FROM notes", ()),
    )
    assert counted == 1 and rows == [{"id": new_id, "at": 2.0}]
    assert {"notes"} <= await db.tables()


async def test_a_database_url_names_its_engine(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert db.engine == "sqlite" and db.path == str(tmp_path / "x.db")
    finally:
        await db.close()
    with pytest.raises(SettingsError, match="PostgreSQL is not available"):
        await open_database("postgresql://coworker@localhost/coworker")
    with pytest.raises(SettingsError, match="must start with sqlite:///"):
        await open_database("mysql://localhost/coworker")
