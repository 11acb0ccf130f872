"""What doctor sees of a PostgreSQL database: it looks and changes nothing."""

from __future__ import annotations

import pytest

from bot.base.db.postgres import PostgresDatabase
from bot.base.errors import DatabaseUnavailable
from bot.base.migrations import discover
from bot.cluster.leader import LeaderLease
from bot.cluster.replicas import ReplicaRegistry
from bot.cluster.status import postgres_status
from tests.postgres_server import PG_MIGRATIONS

NAMES = [m.name for m in discover(PG_MIGRATIONS)]


async def test_a_migrated_database_with_replicas_and_a_leader(pg_db: PostgresDatabase) -> None:
    for n in (1, 2):
        await ReplicaRegistry(pg_db, f"host:{n}:x", lease=30, version="0.1.0").join()
    await ReplicaRegistry(pg_db, "host:3:gone", lease=30).join()
    await pg_db.execute("UPDATE replicas SET expires_at = 0 WHERE id = 'host:3:gone'")
    await LeaderLease(pg_db, "host:2:x", lease=30).try_acquire()
    status = await postgres_status(pg_db.url, [*NAMES, "9999_future"])
    assert status.server_version.startswith("18")
    assert status.vector_available and status.vector_version
    assert status.problem is None
    assert status.pending == ["9999_future"]
    assert [r.id for r in status.replicas] == ["host:1:x", "host:2:x"]
    assert status.replicas[0].version == "0.1.0" and status.replicas[0].heartbeat_s < 5
    assert status.leader == "host:2:x" and 25 < (status.leader_left_s or 0) <= 30


async def test_a_blank_database_is_only_looked_at(postgres_url: str) -> None:
    status = await postgres_status(postgres_url, NAMES)
    assert status.pending == NAMES and status.replicas == [] and status.leader is None
    assert status.vector_available and status.vector_version is None  # not created by looking
    db = await PostgresDatabase.open(postgres_url)  # (this does create it)
    await db.close()
    assert (await postgres_status(postgres_url, NAMES)).vector_version is not None


async def test_an_unreachable_server_is_one_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        await postgres_status("postgresql://u@127.0.0.1:1/db", NAMES, retry_for=0)
