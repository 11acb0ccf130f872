"""The replica registry: heartbeats keep a replica listed, and tell it which tasks it lost."""

from __future__ import annotations

import asyncio

from bot.base.db.postgres import PostgresDatabase
from bot.cluster.claims import TaskLeases
from bot.cluster.replicas import ReplicaRegistry
from tests.bot.cluster.conftest import OpenReplica, add_tasks


async def test_live_replicas_are_those_whose_heartbeat_is_current(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    a = ReplicaRegistry(await open_replica(), "a", lease=30, version="0.1.0")
    b = ReplicaRegistry(await open_replica(), "b", lease=30)
    await a.join()
    await b.join()
    assert [r.id for r in await a.live()] == ["a", "b"]
    live = {r.id: r for r in await b.live()}
    assert live["a"].version == "0.1.0" and live["a"].pid > 0 and live["a"].host
    # b's heartbeat stops: 31 s later its row has run out.
    await pg_db.execute("UPDATE replicas SET expires_at = expires_at - 31 WHERE id = 'b'")
    assert [r.id for r in await a.live()] == ["a"]
    await b.beat()  # back: the next beat renews it
    assert [r.id for r in await a.live()] == ["a", "b"]
    await a.leave()
    assert [r.id for r in await b.live()] == ["b"]


async def test_a_beat_renews_task_leases_and_reports_tasks_taken_over(
    pg_db: PostgresDatabase,
) -> None:
    mine, taken = await add_tasks(pg_db, 2)
    lost: list[set[int]] = []
    registry = ReplicaRegistry(pg_db, "r1", lease=30, on_lost=lost.append)
    registry.running = lambda: {mine, taken}
    await registry.join()
    leases = TaskLeases(pg_db, "r1", lease=30)
    await leases.claim(fanout=3)
    await leases.claim(fanout=3)
    await pg_db.execute("UPDATE tasks SET lease_expires_at = 0")
    await pg_db.execute("UPDATE tasks SET lease_owner = 'r2' WHERE id = ?", (taken,))
    assert await registry.beat() == {taken}
    assert lost == [{taken}]
    left = await pg_db.fetchval(
        "SELECT lease_expires_at - EXTRACT(EPOCH FROM clock_timestamp()) FROM tasks WHERE id = ?",
        (mine,),
    )
    assert left > 25


async def test_the_heartbeat_runs_on_its_own_and_a_stop_leaves(
    pg_db: PostgresDatabase,
) -> None:
    registry = ReplicaRegistry(pg_db, "r1", lease=0.6)
    await registry.start()
    try:
        first = await pg_db.fetchval("SELECT heartbeat_at FROM replicas WHERE id = 'r1'")
        async with asyncio.timeout(5):
            while await pg_db.fetchval("SELECT heartbeat_at FROM replicas") == first:
                await asyncio.sleep(0.05)
        assert [r.id for r in await registry.live()] == ["r1"]
    finally:
        await registry.stop()
    assert await pg_db.fetchval("SELECT COUNT(*) FROM replicas") == 0
