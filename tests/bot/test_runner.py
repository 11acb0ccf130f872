"""bot/runner.py: the durable queue and its pool."""

from __future__ import annotations

import asyncio

import pytest

from bot.base.clock import now
from bot.base.db import Database
from bot.runner import TaskRunner
from bot.tasks import Task


async def queued_task(db: Database) -> int:
    t = now()
    return await db.fetchval(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, status,"
        " created_at, updated_at) VALUES ('U1', 'C1', '1.0', '1.0', 'r', 'queued', ?, ?) RETURNING id",
        (t, t),
    )


async def test_a_failed_claim_does_not_stop_the_queue(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []
    done = asyncio.Event()

    async def work(task: Task) -> None:
        ran.append(task.id)
        done.set()

    task_id = await queued_task(db)
    runner = TaskRunner(db, work, claim_retry=0.05)
    await runner.start()
    try:
        # Queued before the dispatcher's first claim: every claim fails (read-only database).
        await db.execute("PRAGMA query_only = ON")
        async with asyncio.timeout(5):
            while caplog.text.count("claiming work failed") < 2:
                await asyncio.sleep(0.01)
        assert ran == []
        await db.execute("PRAGMA query_only = OFF")
        await asyncio.wait_for(done.wait(), 5)
        assert ran == [task_id]
    finally:
        await runner.stop()
