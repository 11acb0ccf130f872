"""Leased claims: racing replicas take each task once, and only expired leases are taken over."""

from __future__ import annotations

import asyncio
from collections import Counter

from bot.base.db.postgres import PostgresDatabase
from bot.cluster.claims import TaskLeases
from tests.bot.cluster.conftest import OpenReplica, add_tasks

WORKERS, TASKS = 8, 400


async def test_eight_connections_claim_400_tasks_each_exactly_once(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    await add_tasks(pg_db, TASKS)
    replicas = [await open_replica(max_size=1) for _ in range(WORKERS)]
    claimed: list[tuple[str, int]] = []
    #: unclaimed tasks seen right after a claim came back empty
    left_at_empty: list[int] = []

    async def work(n: int, db: PostgresDatabase) -> None:
        leases = TaskLeases(db, f"replica-{n}")
        while (task := await leases.claim(fanout=3)) is not None:
            claimed.append((leases.owner, task["id"]))
        left = await pg_db.fetchval(
            "SELECT COUNT(*) FROM tasks WHERE status IN ('received', 'queued')"
        )
        left_at_empty.append(int(left))

    async with asyncio.timeout(120):
        await asyncio.gather(*(work(n, db) for n, db in enumerate(replicas)))

    ids = [task_id for _, task_id in claimed]
    assert len(ids) == TASKS
    assert len(set(ids)) == TASKS, "a task was claimed twice"
    # An empty claim is right only while every unclaimed task is locked by another
    # worker's claim in flight, and each worker has at most one in flight.
    assert max(left_at_empty) <= WORKERS - 1
    rows = await pg_db.fetchall("SELECT id, status, attempts, lease_owner FROM tasks")
    assert {r["status"] for r in rows} == {"running"}
    assert {r["attempts"] for r in rows} == {1}
    owners = dict((task_id, owner) for owner, task_id in claimed)
    assert all(r["lease_owner"] == owners[r["id"]] for r in rows)
    assert len(Counter(owner for owner, _ in claimed)) > 1  # the work was really shared


async def test_claim_order_and_what_a_claim_moves(pg_db: PostgresDatabase) -> None:
    low, high = await add_tasks(pg_db, 2)
    (fresh,) = await add_tasks(pg_db, 1, status="received")
    await pg_db.execute("UPDATE tasks SET priority = 3 WHERE id = ?", (high,))
    leases = TaskLeases(pg_db, "r1", lease=30)
    first = await leases.claim(fanout=3)
    assert first is not None and first["id"] == high and first["status"] == "running"
    assert first["lease_owner"] == "r1"
    lease_left = await pg_db.fetchval(
        "SELECT lease_expires_at - EXTRACT(EPOCH FROM clock_timestamp()) FROM tasks WHERE id = ?",
        (high,),
    )
    assert 25 < lease_left <= 30
    second, third = await leases.claim(fanout=3), await leases.claim(fanout=3)
    assert second is not None and second["id"] == low
    assert third is not None and third["id"] == fresh and third["status"] == "planning"
    assert await leases.claim(fanout=3) is None
    assert "candidate_parent" not in first
    # Each claim wrote its task's status event with it, once.
    events = await pg_db.fetchall("SELECT task_id, kind FROM task_events ORDER BY id")
    assert [(e["task_id"], e["kind"]) for e in events] == [
        (high, "status:running"),
        (low, "status:running"),
        (fresh, "status:planning"),
    ]


async def test_a_parents_fanout_limit_holds_across_replicas(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    (parent,) = await add_tasks(pg_db, 1, status="waiting_input")
    await add_tasks(pg_db, 6, parent_id=parent)
    replicas = [await open_replica(max_size=1) for _ in range(6)]
    async with asyncio.timeout(30):
        got = await asyncio.gather(
            *(TaskLeases(db, f"r{n}").claim(fanout=2) for n, db in enumerate(replicas))
        )
    assert sum(task is not None for task in got) == 2
    running = await pg_db.fetchval(
        "SELECT COUNT(*) FROM tasks WHERE parent_id = ? AND status = 'running'", (parent,)
    )
    assert running == 2
    events = await pg_db.fetchall("SELECT task_id, kind FROM task_events ORDER BY id")
    assert sorted((e["task_id"], e["kind"]) for e in events) == sorted(
        (task["id"], "status:running") for task in got if task is not None
    )


async def test_subtasks_of_a_cancelled_parent_are_not_claimed(pg_db: PostgresDatabase) -> None:
    (parent,) = await add_tasks(pg_db, 1, status="cancelled")
    await add_tasks(pg_db, 2, parent_id=parent)
    assert await TaskLeases(pg_db, "r1").claim(fanout=3) is None


async def test_recovery_takes_only_expired_leases(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    alive, dead = await add_tasks(pg_db, 2)
    await TaskLeases(await open_replica(), "alive", lease=30).claim(fanout=3)
    dying = TaskLeases(await open_replica(), "dead", lease=30)
    assert (await dying.claim(fanout=3) or {})["id"] == dead
    # The dead replica's lease runs out (its heartbeat stopped 30 s ago).
    await pg_db.execute(
        "UPDATE tasks SET lease_expires_at = lease_expires_at - 31 WHERE id = ?", (dead,)
    )
    newcomer = TaskLeases(await open_replica(), "new", lease=30)
    assert [r["id"] for r in await newcomer.recover_expired()] == [dead]
    rows = {r["id"]: r for r in await pg_db.fetchall("SELECT id, status, lease_owner FROM tasks")}
    assert rows[alive]["status"] == "running" and rows[alive]["lease_owner"] == "alive"
    assert rows[dead]["status"] == "queued" and rows[dead]["lease_owner"] is None
    again = await newcomer.claim(fanout=3)
    assert again is not None and again["id"] == dead and again["attempts"] == 2
    assert await newcomer.recover_expired() == []


async def test_renewal_reports_what_is_still_held(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    mine, taken = await add_tasks(pg_db, 2)
    leases = TaskLeases(pg_db, "r1", lease=30)
    await leases.claim(fanout=3)
    await leases.claim(fanout=3)
    await pg_db.execute(
        "UPDATE tasks SET lease_expires_at = 0 WHERE lease_owner = 'r1'"
    )  # about to run out
    await pg_db.execute("UPDATE tasks SET lease_owner = 'r2' WHERE id = ?", (taken,))
    assert await leases.renew() == {mine}
    left = await pg_db.fetchval(
        "SELECT lease_expires_at - EXTRACT(EPOCH FROM clock_timestamp()) FROM tasks WHERE id = ?",
        (mine,),
    )
    assert left > 25


async def test_a_clean_stop_hands_tasks_back_at_once(pg_db: PostgresDatabase) -> None:
    (acting,) = await add_tasks(pg_db, 1)
    (planning,) = await add_tasks(pg_db, 1, status="received")
    leases = TaskLeases(pg_db, "r1")
    await leases.claim(fanout=3)
    await leases.claim(fanout=3)
    assert await leases.hand_back() == sorted([acting, planning])
    rows = {r["id"]: r for r in await pg_db.fetchall("SELECT id, status, lease_owner FROM tasks")}
    assert rows[acting]["status"] == "queued" and rows[planning]["status"] == "received"
    assert rows[acting]["lease_owner"] is None
    other = TaskLeases(pg_db, "r2")
    assert (await other.claim(fanout=3) or {})["id"] in (acting, planning)
