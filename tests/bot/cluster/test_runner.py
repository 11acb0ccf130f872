"""The runner of one replica among several: leased claims, wake-ups and stops across replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from bot.app import busy_check
from bot.base.config import ClusterConfig
from bot.base.db.postgres import PostgresDatabase
from bot.cluster.replica import Replica
from bot.cluster.runner import ReplicaRunner
from bot.tasks import Task, TaskStore
from tests.bot.cluster.conftest import OpenReplica, add_tasks


@dataclass
class Node:
    """One replica: its runner, and the tasks its jobs started and saw stopped."""

    replica: Replica
    runner: ReplicaRunner
    started: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    stopped: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)


Start = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(open_replica: OpenReplica) -> AsyncIterator[Start]:
    """Start replicas whose jobs hold their task until `release` is set."""
    nodes: list[Node] = []

    async def start(*, lease: float = 30, poll: float = 60, concurrency: int = 4) -> Node:
        db = await open_replica(max_size=4)
        replica = Replica(db, ClusterConfig(lease=lease, poll=poll))
        runner = ReplicaRunner(db, replica, tasks=TaskStore(db), concurrency=concurrency)
        node = Node(replica, runner)

        async def work(task: Task) -> None:
            node.started.put_nowait(task.id)
            try:
                await node.release.wait()
                await runner.tasks.transition(task.id, "done", from_="running")
            except asyncio.CancelledError:
                node.stopped.put_nowait(task.id)
                raise

        runner.work = work
        await replica.start()
        async with asyncio.timeout(5):
            await replica.wakeups.listening.wait()
        await runner.start()
        nodes.append(node)
        return node

    yield start
    async with asyncio.timeout(15):
        for node in nodes:
            node.release.set()
            await node.runner.stop()
            await node.replica.stop()


async def running_elsewhere(db: PostgresDatabase, start: Start) -> tuple[int, Node, Node]:
    """A task running on one replica, and another replica that runs nothing."""
    (task_id,) = await add_tasks(db, 1)
    runner = await start()
    async with asyncio.timeout(5):
        await runner.started.get()
    return task_id, runner, await start(concurrency=0)


async def held_by(db: PostgresDatabase, task_id: int) -> str | None:
    owner = await db.fetchval("SELECT lease_owner FROM tasks WHERE id = ?", (task_id,))
    return None if owner is None else str(owner)


async def test_a_claim_takes_a_lease_that_ends_with_the_run(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    (task_id,) = await add_tasks(pg_db, 1)
    node = await start_node()
    async with asyncio.timeout(5):
        assert await node.started.get() == task_id
    assert await held_by(pg_db, task_id) == node.replica.id
    assert node.runner.holding == {task_id}
    node.release.set()
    async with asyncio.timeout(5):
        while await held_by(pg_db, task_id) is not None:
            await asyncio.sleep(0.02)
    assert await pg_db.fetchval("SELECT status FROM tasks WHERE id = ?", (task_id,)) == "done"


async def test_new_work_announced_by_one_replica_is_claimed_by_another(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    idle = await start_node(concurrency=0)  # claims nothing itself, polls rarely
    worker = await start_node()
    (task_id,) = await add_tasks(pg_db, 1)  # committed by `idle`'s process
    idle.runner.wake()
    async with asyncio.timeout(1):
        assert await worker.started.get() == task_id


async def test_a_cancel_on_one_replica_stops_the_task_on_another_within_a_second(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    task_id, runner, other = await running_elsewhere(pg_db, start_node)
    await other.runner.tasks.transition(task_id, "cancelled", from_="running", cancel_requested=1)
    assert other.runner.stop_task(task_id) is False  # not running there
    async with asyncio.timeout(1):
        assert await runner.stopped.get() == task_id


async def test_a_reply_committed_on_another_replica_reaches_the_running_task(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    task_id, runner, other = await running_elsewhere(pg_db, start_node)
    seen = runner.runner.tasks.replies
    await other.runner.tasks.add_input(task_id, "U1", "also this", None)
    async with asyncio.timeout(1):
        while runner.runner.tasks.replies == seen:
            await asyncio.sleep(0.01)


async def test_start_takes_over_only_expired_leases(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    dead, alive = await add_tasks(pg_db, 2, status="running")
    await pg_db.execute(
        "UPDATE tasks SET lease_owner = 'dead', lease_expires_at = 1 WHERE id = ?", (dead,)
    )
    await pg_db.execute(
        "UPDATE tasks SET lease_owner = 'alive', lease_expires_at = 1e12 WHERE id = ?", (alive,)
    )
    node = await start_node()
    async with asyncio.timeout(5):
        assert await node.started.get() == dead
    assert await held_by(pg_db, dead) == node.replica.id
    assert await held_by(pg_db, alive) == "alive"
    assert node.started.empty()


async def test_the_poll_takes_over_a_task_whose_replica_died(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    node = await start_node(poll=0.2)
    (task_id,) = await add_tasks(pg_db, 1, status="running")
    await pg_db.execute(
        "UPDATE tasks SET lease_owner = 'gone', lease_expires_at = 1 WHERE id = ?", (task_id,)
    )
    async with asyncio.timeout(2):
        assert await node.started.get() == task_id


async def test_a_task_whose_lease_was_lost_stops_here(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    (task_id,) = await add_tasks(pg_db, 1)
    node = await start_node()
    async with asyncio.timeout(5):
        await node.started.get()
    await pg_db.execute("UPDATE tasks SET lease_owner = 'newer' WHERE id = ?", (task_id,))
    assert await node.replica.registry.beat() == {task_id}
    async with asyncio.timeout(1):
        assert await node.stopped.get() == task_id


async def test_the_delivery_sweep_counts_a_task_held_on_any_replica_as_busy(
    pg_db: PostgresDatabase, start_node: Start
) -> None:
    task_id, runner, other = await running_elsewhere(pg_db, start_node)
    busy = busy_check(other.runner, other.replica)
    assert await busy(task_id) is True  # type: ignore[misc]
    runner.release.set()
    async with asyncio.timeout(5):
        while await busy(task_id):  # type: ignore[misc]
            await asyncio.sleep(0.02)
