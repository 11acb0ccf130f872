"""A replica wired to its local runner: cancels, replies and work reach it from the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.base.config import ClusterConfig
from bot.base.db.postgres import PostgresDatabase
from bot.cluster.replica import Replica
from tests.bot.cluster.conftest import OpenReplica, add_tasks


class Runner:
    """The runner of one replica, as the cluster sees it: what runs here, wake, stop."""

    def __init__(self) -> None:
        self.active: dict[int, Any] = {}
        self.wakes = 0
        self.take_overs = 0
        self.stopped: asyncio.Queue[int] = asyncio.Queue()

    @property
    def holding(self) -> set[int]:
        return set(self.active)

    def wake_local(self) -> None:
        self.wakes += 1

    async def take_over(self) -> int:
        self.take_overs += 1
        return 0

    def stop_local(self, task_id: int) -> bool:
        if self.active.pop(task_id, None) is None:
            return False
        self.stopped.put_nowait(task_id)
        return True


@pytest.fixture
async def pair(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> AsyncIterator[tuple[Replica, Runner, Replica, Runner, list[str]]]:
    """Replica A (whose runner runs tasks) and B, each with its own pool."""
    replies: list[str] = []
    config = ClusterConfig(lease=30, poll=0.2)
    a, b = Replica(await open_replica(), config), Replica(await open_replica(), config)
    runner_a, runner_b = Runner(), Runner()
    a.serve(runner_a, lambda: replies.append("a"))
    b.serve(runner_b, lambda: replies.append("b"))
    await a.start()
    await b.start()
    try:
        async with asyncio.timeout(5):
            await a.wakeups.listening.wait()
            await b.wakeups.listening.wait()
        yield a, runner_a, b, runner_b, replies
    finally:
        await a.stop()
        await b.stop()


async def test_a_cancel_received_by_another_replica_stops_the_task_here(
    pair: tuple[Replica, Runner, Replica, Runner, list[str]],
) -> None:
    a, runner_a, b, _, _ = pair
    runner_a.active[7] = object()
    await b.wakeups.send("cancel", 7)
    async with asyncio.timeout(1):
        assert await runner_a.stopped.get() == 7


async def test_a_lost_notify_is_caught_by_the_poll(
    pg_db: PostgresDatabase, pair: tuple[Replica, Runner, Replica, Runner, list[str]]
) -> None:
    a, runner_a, _, _, replies = pair
    cancelled, answered = await add_tasks(pg_db, 2)
    runner_a.active.update({cancelled: object(), answered: object()})
    # Written by another replica whose NOTIFY a pooler dropped:
    await pg_db.execute("UPDATE tasks SET status = 'cancelled' WHERE id = ?", (cancelled,))
    await pg_db.execute(
        "INSERT INTO task_inputs (task_id, author, text, at) VALUES (?, 'U1', 'also this', 0)",
        (answered,),
    )
    async with asyncio.timeout(3):
        assert await runner_a.stopped.get() == cancelled
        while "a" not in replies:
            await asyncio.sleep(0.02)
    assert answered in runner_a.active


async def test_work_and_replies_wake_the_other_replica(
    pair: tuple[Replica, Runner, Replica, Runner, list[str]],
) -> None:
    a, runner_a, b, runner_b, replies = pair
    before = runner_b.wakes
    await a.wakeups.send("input", 3)
    async with asyncio.timeout(1):
        while "b" not in replies or runner_b.wakes == before:
            await asyncio.sleep(0.01)
    assert "a" not in replies


async def test_a_stop_hands_held_tasks_back_and_leaves(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    (task_id,) = await add_tasks(pg_db, 1)
    replica = Replica(await open_replica(), ClusterConfig(lease=30, poll=1))
    replica.serve(Runner(), lambda: None)
    await replica.start()
    assert await replica.leases.claim(fanout=3) is not None
    assert replica.leader.is_leader
    await replica.stop()
    assert await pg_db.fetchval("SELECT status FROM tasks WHERE id = ?", (task_id,)) == "queued"
    assert await pg_db.fetchval("SELECT COUNT(*) FROM replicas") == 0
    assert await pg_db.fetchval("SELECT COUNT(*) FROM leader_leases") == 0
