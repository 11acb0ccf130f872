"""Forcing two replicas' transactions to interleave on a real PostgreSQL, for race tests.

A race between a read and the write that depends on it is a matter of timing, so a test
that only runs two replicas side by side passes most of the time whether or not the code
is right. `table_gate` makes the bad timing certain: it holds a table lock that lets reads
through but stops every write to the table. Each replica's transaction then does its
reads and stops at its first write, and only when all of them are waiting (`waiters`) does
the gate open. Code that guards the read (a row lock, `Tx.lock`) makes the second replica
wait before it reads, so it reads what the first one wrote; code that does not writes from
a stale read, and the test sees the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql

from bot.base.db.postgres import PostgresDatabase


@asynccontextmanager
async def table_gate(url: str, *tables: str) -> AsyncIterator[None]:
    """Stop writes to `tables` (reads go on) until the block ends."""
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
        # EXCLUSIVE conflicts with the ROW EXCLUSIVE lock every INSERT/UPDATE/DELETE takes,
        # and not with the ACCESS SHARE of a plain SELECT.
        await conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(names))
        yield


async def waiting(db: PostgresDatabase) -> int:
    """How many sessions of this database wait on a lock (a table's, a row's, a key's)."""
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
    )


async def waiters(db: PostgresDatabase, n: int, *, timeout: float = 10.0) -> None:
    """Return once `n` sessions wait on a lock (bounded: fails after `timeout` seconds)."""
    async with asyncio.timeout(timeout):
        while await waiting(db) < n:
            await asyncio.sleep(0.01)


async def until_done_or_waiting(
    job: asyncio.Future[object], db: PostgresDatabase, n: int, *, timeout: float = 10.0
) -> None:
    """Return once `job` finished or `n` sessions wait on a lock: what a second replica does
    next depends on the code under test (it runs through, or waits for the first)."""
    async with asyncio.timeout(timeout):
        while not job.done() and await waiting(db) < n:
            await asyncio.sleep(0.01)


@asynccontextmanager
async def replica(db: PostgresDatabase) -> AsyncIterator[PostgresDatabase]:
    """Another replica's pool on the same database (its own server sessions)."""
    other = await PostgresDatabase.open(db.url, max_size=2)
    try:
        yield other
    finally:
        await other.close()
