"""Replicas for the cluster tests: separate pools (server sessions) on one migrated database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.base.db.postgres import PostgresDatabase

OpenReplica = Callable[..., Awaitable[PostgresDatabase]]


@pytest.fixture
async def open_replica(pg_db: PostgresDatabase) -> AsyncIterator[OpenReplica]:
    """Open another connection pool on the test's database, as another replica would."""
    opened: list[PostgresDatabase] = []

    async def open_one(max_size: int = 2) -> PostgresDatabase:
        db = await PostgresDatabase.open(pg_db.url, max_size=max_size)
        opened.append(db)
        return db

    yield open_one
    for db in opened:
        await db.close()


async def add_tasks(
    db: PostgresDatabase, n: int, *, parent_id: int | None = None, status: str = "queued"
) -> list[int]:
    """`n` claimable tasks, oldest first."""
    ids = []
    async with db.transaction() as tx:
        for i in range(n):
            ids.append(
                await tx.fetchval(
                    "INSERT INTO tasks (parent_id, status, delegator, channel, thread_ts,"
                    " message_ts, request, created_at, updated_at)"
                    " VALUES (?, ?, 'U1', 'C1', '1', '1', ?, ?, ?) RETURNING id",
                    (parent_id, status, f"task {i}", time.time() + i * 1e-3, time.time()),
                )
            )
    return ids
