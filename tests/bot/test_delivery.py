"""bot/delivery.py: the rest of a deliverable is posted once, whoever asks for it."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.base.clock import now
from bot.base.db import Database
from bot.delivery import Delivery
from bot.notifier import Delivered
from bot.tasks import Task, TaskStore

#: the tests that use the database run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")


class HeldDeliveries:
    """The part of the Notifier the delivery uses; every deliver waits for `gate`."""

    def __init__(self) -> None:
        self.delivered: list[tuple[int, int]] = []
        self.gate = asyncio.Event()

    async def deliver(
        self, task: Task, text: str, *, checks: Any = None, skip: int = 0
    ) -> Delivered:
        self.delivered.append((task.id, skip))
        await self.gate.wait()
        return Delivered(3, 3)


async def cut_short(db: Database) -> int:
    t = now()
    return await db.fetchval(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, status, result,"
        " delivery_pending, delivered_parts, created_at, updated_at, finished_at)"
        " VALUES ('U1', 'C1', '1.0', '1.0', 'r', 'done', 'the answer', 1, 1, ?, ?, ?) RETURNING id",
        (t, t, t),
    )


async def test_the_sweep_and_a_follow_up_post_the_rest_once(db: Database) -> None:
    tasks, slack = TaskStore(db), HeldDeliveries()
    delivery = Delivery(tasks, slack)  # type: ignore[arg-type]
    task_id = await cut_short(db)
    sweep = asyncio.create_task(delivery.sweep())
    follow_up = asyncio.create_task(delivery.finish_pending(task_id))
    async with asyncio.timeout(5):
        while not slack.delivered:
            await asyncio.sleep(0.01)
    slack.gate.set()
    swept, followed = await sweep, await follow_up
    assert (swept == 1) != (followed is not None)  # one posted; the other found it done
    assert slack.delivered == [(task_id, 1)]
    row = await tasks.get(task_id)
    assert (row.delivered_parts, row.delivery_pending) == (3, False)


async def test_the_sweep_leaves_a_task_a_runner_job_works_on(db: Database) -> None:
    slack = HeldDeliveries()
    slack.gate.set()
    task_id = await cut_short(db)
    delivery = Delivery(TaskStore(db), slack, busy=lambda t: t == task_id)  # type: ignore[arg-type]
    assert await delivery.sweep() == 0 and slack.delivered == []


async def test_the_sweep_asks_an_async_busy_check_too(db: Database) -> None:
    """With replicas, "busy" is a database question: is the task's lease held anywhere."""
    slack = HeldDeliveries()
    slack.gate.set()
    task_id = await cut_short(db)
    held = {task_id}

    async def busy(t: int) -> bool:
        return t in held

    delivery = Delivery(TaskStore(db), slack, busy=busy)  # type: ignore[arg-type]
    assert await delivery.sweep() == 0 and slack.delivered == []
    held.clear()
    assert await delivery.sweep() == 1
