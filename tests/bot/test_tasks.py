"""bot/tasks.py: the state machine's one writer, its edge table, events and log lines."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bot.base.db import Database
from bot.base.db.postgres import PostgresDatabase
from bot.tasks import EDGES, FINISHED, OPEN, TaskStatus, TaskStore
from tests.postgres_races import replica, table_gate, waiters

#: the tests that use the database run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")

REQUEST = "the confidential figures for the board"


async def new_task(tasks: TaskStore, **fields: object) -> int:
    async with tasks.db.transaction() as tx:
        return await tasks.create(
            tx,
            status=fields.pop("status", TaskStatus.RECEIVED),
            priority=1,
            coworker=fields.pop("coworker", "dev"),
            delegator="U1",
            channel="C1",
            thread_ts="1.0",
            message_ts="1.0",
            request=REQUEST,
            budget_usd=2.0,
            **fields,
        )


def states(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.tasks"]
    return [
        part.removeprefix("state=") for line in lines for part in line.split() if "state=" in part
    ]


def test_every_state_has_its_edges_and_every_open_one_can_be_cancelled() -> None:
    assert set(EDGES) == set(TaskStatus)
    assert set(OPEN) | set(FINISHED) == set(TaskStatus)
    assert EDGES[TaskStatus.CANCELLED] == frozenset()  # a cancel is final
    for state in OPEN:
        assert TaskStatus.CANCELLED in EDGES[state]


async def test_a_move_the_state_machine_does_not_have_is_refused(db: Database) -> None:
    tasks = TaskStore(db)
    task_id = await new_task(tasks)
    with pytest.raises(ValueError, match="no move from received to done"):
        await tasks.transition(task_id, TaskStatus.DONE, from_=TaskStatus.RECEIVED)
    with pytest.raises(ValueError, match="through a move"):
        await tasks.update(task_id, status="done")
    assert (await tasks.get(task_id)).status == TaskStatus.RECEIVED


async def test_claims_and_recovery_are_moves_with_status_events(db: Database) -> None:
    tasks = TaskStore(db)
    task_id = await new_task(tasks)
    claimed = await tasks.claim(fanout=3)
    assert claimed is not None and claimed.status == TaskStatus.PLANNING
    assert await tasks.recover() == 1  # a stop while planning: planned again
    assert await tasks.transition(task_id, TaskStatus.PLANNING, from_=TaskStatus.RECEIVED)
    assert await tasks.transition(task_id, TaskStatus.QUEUED, from_=TaskStatus.PLANNING)
    running = await tasks.claim(fanout=3)
    assert running is not None and running.status == TaskStatus.RUNNING
    assert await tasks.recover() == 1  # a stop while running: back in the queue

    kinds = [e["kind"] for e in await tasks.events(task_id)]
    assert kinds == [
        "status:planning",
        "status:received",
        "status:planning",
        "status:queued",
        "status:running",
        "status:queued",
    ]


async def test_each_state_change_is_one_info_line_without_the_request(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tasks = TaskStore(db)
    task_id = await new_task(tasks)
    tasks.created(await tasks.get(task_id))
    await tasks.claim(fanout=3)
    await db.execute("UPDATE tasks SET spent_usd = 0.0123 WHERE id = ?", (task_id,))
    assert await tasks.transition(task_id, TaskStatus.FAILED, from_=TaskStatus.PLANNING)
    assert not await tasks.transition(task_id, TaskStatus.QUEUED, from_=TaskStatus.PLANNING)

    assert states(caplog) == ["received", "planning", "failed"]
    last = [r.getMessage() for r in caplog.records if r.name == "bot.tasks"][-1]
    assert last.startswith(f"task=T-{task_id} state=failed coworker=dev duration=")
    assert last.endswith("s cost=$0.0123")
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "bot.tasks")
    assert "confidential" not in caplog.text


async def test_two_replicas_posting_one_plan_keep_one_message(pg_db: PostgresDatabase) -> None:
    """Two replicas' sweeps post the same unposted plan at once: `set_plan_ts` is one
    compare-and-set, so one message is recorded and the other replica is told to replace
    (delete) its own, however the two updates interleave."""
    tasks = TaskStore(pg_db)
    plan = {"summary": "rotate the keys", "steps": []}
    task_id = await new_task(tasks)
    await pg_db.execute("UPDATE tasks SET plan = ? WHERE id = ?", (json.dumps(plan), task_id))
    async with replica(pg_db) as other:
        theirs = TaskStore(other)
        async with table_gate(pg_db.url, "tasks"):
            both = asyncio.gather(
                tasks.set_plan_ts(task_id, "100.1", plan, was=None),
                theirs.set_plan_ts(task_id, "100.2", plan, was=None),
            )
            await waiters(pg_db, 2)  # both wait to write, neither has
        async with asyncio.timeout(10):
            kept = await both
    assert sorted(kept) == [False, True]
    recorded = await pg_db.fetchval("SELECT plan_ts FROM tasks WHERE id = ?", (task_id,))
    assert recorded == ("100.1" if kept[0] else "100.2")
