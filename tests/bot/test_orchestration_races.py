"""A pipeline's next stage on replicas: the finished stage and the parent's run both try to
start it, and exactly one does (PostgreSQL; one SQLite process runs one at a time)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.base.config import parse_config
from bot.base.db.postgres import PostgresDatabase
from bot.orchestration import Orchestrator
from bot.tasks import Task, TaskStatus, TaskStore
from tests.postgres_races import replica, table_gate, until_done_or_waiting, waiters

CONFIG = parse_config({"coworkers": [{"name": "writer"}, {"name": "editor"}]})
STAGES = [
    {"coworker": "writer", "objective": "draft it"},
    {"coworker": "editor", "objective": "edit it"},
]


async def pipeline_with_first_stage_done(tasks: TaskStore) -> tuple[Task, Task, dict[str, Any]]:
    """A parent waiting on a two-stage pipeline whose first stage is done."""
    common = {"delegator": "U1", "channel": "C1", "thread_ts": "1.0", "message_ts": "1.0"}
    async with tasks.db.transaction() as tx:
        parent_id = await tasks.create(tx, status=TaskStatus.QUEUED, request="go", **common)
        await tx.execute(
            "INSERT INTO spawns (key, parent_id, kind, stages, created_at) VALUES (?,?,?,?,?)",
            ("k1", parent_id, "pipeline", json.dumps(STAGES), 1.0),
        )
        child_id = await tasks.create(
            tx,
            status=TaskStatus.QUEUED,
            request="draft it",
            parent_id=parent_id,
            coworker="writer",
            spawn_key="k1",
            stage=0,
            **common,
        )
        await tx.execute("UPDATE tasks SET status = 'waiting_input' WHERE id = ?", (parent_id,))
        await tx.execute(
            "UPDATE tasks SET status = 'done', result = 'a draft' WHERE id = ?", (child_id,)
        )
    spawn = await tasks.db.fetchone("SELECT * FROM spawns WHERE key = 'k1'")
    assert spawn is not None
    return await tasks.get(parent_id), await tasks.get(child_id), spawn


async def test_the_next_stage_starts_once_when_two_replicas_reach_it(
    pg_db: PostgresDatabase,
) -> None:
    tasks = TaskStore(pg_db)
    parent, child, spawn = await pipeline_with_first_stage_done(tasks)
    async with replica(pg_db) as other:
        here = Orchestrator(tasks, CONFIG, notifier=None, wake=lambda: None)  # type: ignore[arg-type]
        there = Orchestrator(TaskStore(other), CONFIG, notifier=None, wake=lambda: None)  # type: ignore[arg-type]
        async with table_gate(pg_db.url, "tasks"):
            # Both have seen no second stage when the first of them gets to insert it.
            finishing = asyncio.create_task(here.child_finished(child))
            await waiters(pg_db, 1)
            resuming = asyncio.create_task(there.handle(parent, "k1", "team__pipeline", {}))
            await until_done_or_waiting(resuming, pg_db, 2)
        async with asyncio.timeout(10):
            await finishing
            assert await resuming is None  # the parent goes on waiting for its stages

    stages = await pg_db.fetchall(
        "SELECT stage, coworker FROM tasks WHERE spawn_key = 'k1' ORDER BY id"
    )
    assert [(s["stage"], s["coworker"]) for s in stages] == [(0, "writer"), (1, "editor")]
