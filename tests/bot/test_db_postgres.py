"""The PostgreSQL implementation of the database contract, against a real server."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from psycopg.conninfo import conninfo_to_dict

from bot.base.db.postgres import PostgresDatabase, driver, server_problem, translate
from bot.base.errors import BackupUnsupported, DatabaseUnavailable, SettingsError
from tests.postgres_server import EmbeddedPostgres

# -- placeholders ---------------------------------------------------------------------------


def test_question_marks_become_positional_placeholders() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b = ?") == (
        "SELECT * FROM t WHERE a = %s AND b = %s",
        "positional",
    )


def test_names_become_named_placeholders_and_casts_stay() -> None:
    assert translate("UPDATE t SET a = :a WHERE id = :id::bigint") == (
        "UPDATE t SET a = %(a)s WHERE id = %(id)s::bigint",
        "named",
    )


def test_quoted_text_and_comments_are_not_placeholders() -> None:
    sql = """SELECT 'is it?', 'it''s :x?', "odd?col" FROM t -- really?
    WHERE a = ? /* :not_me */ AND b = $$ ? :y $$"""
    text, style = translate(sql)
    assert style == "positional"
    assert text.count("%s") == 1
    assert "'is it?'" in text and "'it''s :x?'" in text and '"odd?col"' in text
    assert "-- really?" in text and "/* :not_me */" in text and "$$ ? :y $$" in text


def test_percent_signs_are_doubled_for_psycopg() -> None:
    assert translate("SELECT 5 % 2 WHERE a LIKE 'x%'")[0] == "SELECT 5 %% 2 WHERE a LIKE 'x%%'"


def test_mixing_styles_is_refused() -> None:
    with pytest.raises(ValueError, match="mixes"):
        translate("SELECT ? + :a")


def test_translation_is_cached() -> None:
    translate.cache_clear()
    translate("SELECT ?")
    translate("SELECT ?")
    assert translate.cache_info().hits == 1


# -- statements -----------------------------------------------------------------------------


async def add_task(db: PostgresDatabase, request: str = "r") -> int:
    task_id = await db.fetchval(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at,"
        " updated_at) VALUES ('U1', 'C1', '1.0', '1.0', ?, ?, ?) RETURNING id",
        (request, time.time(), time.time()),
    )
    assert isinstance(task_id, int)
    return task_id


async def test_rows_are_read_by_column_name(pg_db: PostgresDatabase) -> None:
    task_id = await add_task(pg_db, "hello")
    row = await pg_db.fetchone("SELECT id, request, status FROM tasks WHERE id = ?", (task_id,))
    assert row == {"id": task_id, "request": "hello", "status": "received"}
    assert await pg_db.fetchone("SELECT id FROM tasks WHERE id = ?", (task_id + 1,)) is None
    assert await pg_db.fetchval("SELECT request FROM tasks WHERE id = :id", {"id": task_id}) == (
        "hello"
    )


async def test_execute_answers_rows_changed(pg_db: PostgresDatabase) -> None:
    for _ in range(3):
        await add_task(pg_db)
    assert (
        await pg_db.execute("UPDATE tasks SET status = 'queued' WHERE status = ?", ("received",))
        == 3
    )
    assert await pg_db.execute("UPDATE tasks SET status = 'queued' WHERE id = -1") == 0


async def test_times_keep_their_sub_second_precision(pg_db: PostgresDatabase) -> None:
    at = 1_767_225_600.123456
    task_id = await pg_db.fetchval(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at,"
        " updated_at) VALUES ('U1', 'C1', '1', '1', 'r', ?, ?) RETURNING id",
        (at, at),
    )
    assert await pg_db.fetchval("SELECT created_at FROM tasks WHERE id = ?", (task_id,)) == at


async def test_flags_numbers_and_percent_signs(pg_db: PostgresDatabase) -> None:
    task_id = await add_task(pg_db, "100% done")
    await pg_db.execute("UPDATE tasks SET high_visibility = ? WHERE id = ?", (True, task_id))
    row = await pg_db.fetchone(
        "SELECT high_visibility, request LIKE '%\\% done' ESCAPE '\\' AS pct FROM tasks"
        " WHERE id = ?",
        (task_id,),
    )
    assert row == {"high_visibility": 1, "pct": True}
    await add_task(pg_db)
    sums = await pg_db.fetchone("SELECT SUM(id) AS s, AVG(steps) AS a, COUNT(*) AS n FROM tasks")
    assert sums is not None
    assert isinstance(sums["s"], int) and isinstance(sums["n"], int)
    assert sums["a"] == 0 and isinstance(sums["a"], int | float)


async def test_typed_null_parameters(pg_db: PostgresDatabase) -> None:
    task_id = await add_task(pg_db)
    found = await pg_db.fetchval(
        "SELECT COUNT(*) FROM tasks WHERE id = ? AND project IS NOT DISTINCT FROM ?"
        " AND (CAST(? AS TEXT) IS NULL OR channel = ?)",
        (task_id, None, None, None),
    )
    assert found == 1


async def test_on_conflict_do_nothing_and_returning(pg_db: PostgresDatabase) -> None:
    sql = (
        "INSERT INTO slack_events (event_id, received_at) VALUES (?, ?)"
        " ON CONFLICT DO NOTHING RETURNING event_id"
    )
    assert await pg_db.fetchall(sql, ("Ev1", 1.0)) == [{"event_id": "Ev1"}]
    assert await pg_db.fetchall(sql, ("Ev1", 2.0)) == []


async def test_batch_answers_rows_or_counts_in_one_transaction(pg_db: PostgresDatabase) -> None:
    task_id = await add_task(pg_db)
    out = await pg_db.batch(
        ("UPDATE tasks SET steps = steps + 1 WHERE id = ?", (task_id,)),
        ("SELECT steps FROM tasks WHERE id = ?", (task_id,)),
        ("UPDATE tasks SET steps = steps + 1 WHERE id = ? RETURNING steps", (task_id,)),
    )
    assert out == [1, [{"steps": 1}], [{"steps": 2}]]
    with pytest.raises(Exception, match="no_such_table"):
        await pg_db.batch(
            ("UPDATE tasks SET steps = 99 WHERE id = ?", (task_id,)),
            ("SELECT * FROM no_such_table", ()),
        )
    assert await pg_db.fetchval("SELECT steps FROM tasks WHERE id = ?", (task_id,)) == 2


async def test_transaction_commits_or_rolls_back(pg_db: PostgresDatabase) -> None:
    task_id = await add_task(pg_db)
    async with pg_db.transaction() as tx:
        assert await tx.execute("UPDATE tasks SET steps = 5 WHERE id = ?", (task_id,)) == 1
        await tx.executemany(
            "INSERT INTO task_events (task_id, kind, at) VALUES (?, ?, ?)",
            [(task_id, "a", 1.0), (task_id, "b", 2.0)],
        )
        assert await tx.fetchval("SELECT steps FROM tasks WHERE id = ?", (task_id,)) == 5
        assert [
            r["kind"] for r in await tx.fetchall("SELECT kind FROM task_events ORDER BY at")
        ] == [
            "a",
            "b",
        ]
    with pytest.raises(RuntimeError):
        async with pg_db.transaction() as tx:
            await tx.execute("UPDATE tasks SET steps = 6 WHERE id = ?", (task_id,))
            raise RuntimeError("changed my mind")
    assert await pg_db.fetchval("SELECT steps FROM tasks WHERE id = ?", (task_id,)) == 5
    assert await pg_db.fetchval("SELECT COUNT(*) FROM task_events") == 2


async def test_transactions_run_side_by_side(pg_db: PostgresDatabase) -> None:
    """Two transactions hold two connections: one waiting on a row lock does not stop the other."""
    first, second = await add_task(pg_db), await add_task(pg_db)
    locked, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with pg_db.transaction() as tx:
            await tx.fetchone("SELECT id FROM tasks WHERE id = ? FOR UPDATE", (first,))
            locked.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    async with asyncio.timeout(5):
        await locked.wait()
        assert await pg_db.execute("UPDATE tasks SET steps = 1 WHERE id = ?", (second,)) == 1
        release.set()
        await holder


async def test_backup_explains_pg_dump(pg_db: PostgresDatabase, tmp_path) -> None:
    with pytest.raises(BackupUnsupported, match="pg_dump"):
        await pg_db.backup_to(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()


async def test_notify_reaches_a_listener(pg_db: PostgresDatabase) -> None:
    async with pg_db.listen("coworker_test") as notes:
        await pg_db.notify("coworker_test", "T-7")
        async with asyncio.timeout(5):
            assert await anext(notes) == ("coworker_test", "T-7")


# -- start-up -------------------------------------------------------------------------------


async def test_open_creates_the_vector_extension_and_registers_it(postgres_url: str) -> None:
    db = await PostgresDatabase.open(postgres_url)
    try:
        assert await db.fetchval("SELECT extname FROM pg_extension WHERE extname = 'vector'")
        row = await db.fetchone(
            "SELECT '[1,2,3]'::vector <=> '[1,2,3]'::vector AS d, '[1,2]'::vector AS v"
        )
        assert row is not None and row["d"] == 0
        assert list(row["v"].to_list()) == [1.0, 2.0]
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_server_is_retried_then_named(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://coworker:s3cret-pw@127.0.0.1:{free_port()}/coworker"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        await PostgresDatabase.open(url, retry_for=1.0)
    assert time.monotonic() - started >= 1.0
    message = str(caught.value)
    assert message.startswith("cannot reach PostgreSQL at 127.0.0.1:")
    assert "s3cret-pw" not in message and "s3cret-pw" not in caplog.text
    assert "trying again" in caplog.text


@asynccontextmanager
async def proxy_later(port: int, socket_path: str, delay: float) -> AsyncIterator[None]:
    """After `delay` s, forward TCP 127.0.0.1:`port` to the server's Unix socket."""
    handlers: list[asyncio.Task[None]] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.create_task(forward(reader, writer)))

    servers: list[asyncio.Server] = []

    async def start() -> None:
        await asyncio.sleep(delay)
        servers.append(await asyncio.start_server(accept, "127.0.0.1", port))

    starter = asyncio.create_task(start())
    try:
        yield
    finally:
        await starter
        for server in servers:
            server.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*handlers)


async def test_server_that_comes_up_during_the_retries_is_used(
    postgres_server: EmbeddedPostgres, postgres_url: str
) -> None:
    dbname = conninfo_to_dict(postgres_url)["dbname"]
    port = free_port()
    socket_path = str(postgres_server.socket_dir / ".s.PGSQL.5432")
    async with proxy_later(port, socket_path, delay=0.6):
        db = await PostgresDatabase.open(
            f"postgresql://postgres@127.0.0.1:{port}/{dbname}", retry_for=10.0
        )
        try:
            assert await db.fetchval("SELECT 1") == 1
        finally:
            await db.close()


@pytest.fixture(scope="module")
def server_without_vector() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(with_vector=False).start()
    try:
        yield server
    finally:
        server.stop()


async def test_server_without_vector_is_one_clear_line(
    server_without_vector: EmbeddedPostgres,
) -> None:
    with pytest.raises(DatabaseUnavailable, match="no `vector` extension: install pgvector"):
        await PostgresDatabase.open(server_without_vector.url("postgres"), retry_for=0)


async def test_user_who_may_not_create_the_extension_is_told_who_can(
    postgres_server: EmbeddedPostgres,
) -> None:
    postgres_server.admin("DROP ROLE IF EXISTS plain_app")
    postgres_server.admin("CREATE ROLE plain_app LOGIN")
    name = postgres_server.create_database(owner="plain_app")
    try:
        with pytest.raises(DatabaseUnavailable, match="have a superuser run CREATE EXTENSION"):
            await PostgresDatabase.open(postgres_server.url(name, user="plain_app"), retry_for=0)
    finally:
        postgres_server.drop_database(name)
        postgres_server.admin("DROP ROLE plain_app")


def test_old_servers_are_refused_with_the_version() -> None:
    assert server_problem(140011, True) == (
        "PostgreSQL 14 is too old: Coworker needs PostgreSQL 15 or newer"
        " (upgrade the server, or use the pgvector/pgvector:pg17 image)"
    )
    assert server_problem(150000, True) is None
    assert server_problem(180001, False) is not None


def test_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(SettingsError, match=r"pip install 'coworker\[postgres\]'"):
        driver()


async def test_a_locked_key_serializes_read_then_write(pg_db: PostgresDatabase) -> None:
    """Two transactions that read a count and then write by it, under one key: no lost
    update (without the lock both would read 0 and write 1)."""
    task_id = await add_task(pg_db)
    inside, second_done = asyncio.Event(), asyncio.Event()

    async def waiting_on_a_lock() -> bool:
        return bool(
            await pg_db.fetchval(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
        )

    async def bump(first: bool) -> None:
        async with pg_db.transaction() as tx:
            await tx.lock(f"task:{task_id}")
            steps = await tx.fetchval("SELECT steps FROM tasks WHERE id = ?", (task_id,))
            if first:  # hold on until the other transaction is in, or blocked
                inside.set()
                while not second_done.is_set() and not await waiting_on_a_lock():
                    await asyncio.sleep(0.01)
            await tx.execute("UPDATE tasks SET steps = ? WHERE id = ?", (steps + 1, task_id))

    async with asyncio.timeout(5):
        first = asyncio.create_task(bump(first=True))
        await inside.wait()
        await bump(first=False)
        second_done.set()
        await first
    assert await pg_db.fetchval("SELECT steps FROM tasks WHERE id = ?", (task_id,)) == 2


async def test_a_readonly_open_only_looks(postgres_url: str) -> None:
    """What doctor uses: no extension created, no table, no write possible."""
    db = await PostgresDatabase.open(postgres_url, readonly=True)
    try:
        assert await db.tables() == set()
        assert await db.fetchval("SELECT COUNT(*) FROM pg_extension WHERE extname = 'vector'") == 0
        with pytest.raises(db.errors, match="read-only transaction"):
            await db.execute("CREATE TABLE nope (id INTEGER)")
    finally:
        await db.close()


async def test_tables_lists_the_schema(pg_db: PostgresDatabase) -> None:
    assert {"tasks", "memories", "schema_migrations", "replicas"} <= await pg_db.tables()
