"""The PostgreSQL test server: a used database comes back empty, or not at all."""

from __future__ import annotations

import psycopg

from tests.postgres_server import EmbeddedPostgres


async def test_a_returned_database_is_emptied_for_the_next_test(
    postgres_server: EmbeddedPostgres,
) -> None:
    name = await postgres_server.take_migrated()
    async with await psycopg.AsyncConnection.connect(
        postgres_server.url(name), autocommit=True
    ) as conn:
        await conn.execute(
            "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at,"
            " updated_at) VALUES ('U1', 'C1', '1', '1', 'r', 0, 0)"
        )
        await conn.execute("INSERT INTO task_events (task_id, kind, at) VALUES (1, 'x', 0)")
        await conn.execute("CREATE TABLE made_by_a_test (id INTEGER)")
    await postgres_server.give_back(name)
    assert await postgres_server.take_migrated() == name
    async with await psycopg.AsyncConnection.connect(
        postgres_server.url(name), autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT to_regclass('made_by_a_test'), COUNT(*) FROM tasks")
        assert await cur.fetchone() == (None, 0)
        cur = await conn.execute(
            "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at,"
            " updated_at) VALUES ('U1', 'C1', '1', '1', 'r', 0, 0) RETURNING id"
        )
        assert await cur.fetchone() == (1,)
    await postgres_server.give_back(name)


async def test_a_database_whose_schema_a_test_changed_is_dropped(
    postgres_server: EmbeddedPostgres,
) -> None:
    name = await postgres_server.take_migrated()
    async with await psycopg.AsyncConnection.connect(
        postgres_server.url(name), autocommit=True
    ) as conn:
        await conn.execute("ALTER TABLE tasks ADD COLUMN surprise INTEGER")
    await postgres_server.give_back(name)
    assert await postgres_server.take_migrated() != name
