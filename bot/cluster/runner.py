"""The task runner of one replica among several (PostgreSQL).

It is `bot.runner.TaskRunner` with the paths that must cross processes going through the
database and NOTIFY (`bot.cluster.replica.Replica`):
  * a claim takes a lease (`TaskLeases.claim`), which the replica's heartbeat renews;
    start-up takes back only tasks whose lease ran out, and so does every poll, so the
    tasks of a replica that died are taken over once their leases expire;
  * `wake()` (a task was created, queued, resumed) also wakes the other replicas, any of
    which may claim it; `stop_task()` (a task was cancelled) also stops it on the replica
    that runs it; a reply committed here reaches a task running on another replica;
  * `holding` is what this replica works on under its claims: a task its own job moved on
    (done, waiting for approval, queued again) is let go at once, so the heartbeat does not
    take a later claim of it by another replica for a lost lease and stop this job's tail
    (posting the plan, recording the episode). Its lease is cleared when that job ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from bot import __version__
from bot.base.config import Config
from bot.base.db import Database
from bot.base.db.postgres import PostgresDatabase
from bot.cluster.replica import Replica
from bot.runner import TaskRunner
from bot.tasks import Task, TaskStore

log = logging.getLogger(__name__)

_HELD = ("planning", "running")


class ReplicaRunner(TaskRunner):
    def __init__(
        self,
        db: PostgresDatabase,
        replica: Replica,
        *,
        tasks: TaskStore,
        concurrency: int = 4,
        fanout: int = 3,
        claim_retry: float = 5.0,
    ) -> None:
        super().__init__(
            db, concurrency=concurrency, fanout=fanout, claim_retry=claim_retry, tasks=tasks
        )
        self.replica = replica
        #: jobs whose task moved on (their own doing): they finish, but hold nothing
        self._let_go: set[asyncio.Task[Any]] = set()
        tasks.on_moved = self._moved
        tasks.on_reply = lambda task_id: replica.announce("input", task_id)
        replica.serve(self, tasks.heard_reply)

    @property
    def holding(self) -> set[int]:
        return {task_id for task_id, job in self.active.items() if job not in self._let_go}

    async def claim(self) -> Task | None:
        row = await self.replica.leases.claim(self.fanout)
        if row is None:
            return None
        await self.tasks.moved([row], logged=True)
        return Task.from_row(row)

    async def recover(self) -> int:
        """At start: take back what dead replicas held (this one's previous life too), and
        move on tasks a stop left decided but not yet queued."""
        moved = await self.take_over()
        moved += await self.tasks.recover(interrupted=False)
        if moved:
            log.info("resuming %d interrupted task(s)", moved)
        return moved

    async def take_over(self) -> int:
        moved = await self.tasks.moved(await self.replica.leases.recover_expired())
        if moved:
            self.wake()
        return moved

    def wake(self) -> None:
        self.wake_local()
        self.replica.announce("work")

    def stop_task(self, task_id: int) -> bool:
        stopped = self.stop_local(task_id)
        self.replica.announce("cancel", task_id)
        return stopped

    def _moved(self, task_id: int, status: str) -> None:
        job = self.active.get(task_id)
        if job is not None and status not in _HELD:
            self._let_go.add(job)

    def _spawn(self, task: Task) -> None:
        super()._spawn(task)
        job = self.active[task.id]
        job.add_done_callback(self._let_go.discard)

    async def _run(self, task: Task) -> None:
        try:
            await super()._run(task)
        finally:
            if task.id not in self.holding:
                await self._release(task.id)

    async def _release(self, task_id: int) -> None:
        try:
            await self.replica.leases.release(task_id)
        except (psycopg.Error, OSError) as exc:  # it runs out by itself
            log.warning("task %s: lease not released (%s)", task_id, exc)


def replica_runner(db: Database, config: Config, tasks: TaskStore) -> tuple[Replica, ReplicaRunner]:
    """This process as a replica on PostgreSQL `db`, and its runner."""
    assert isinstance(db, PostgresDatabase), "replicas share a PostgreSQL database"
    replica = Replica(db, config.cluster, version=__version__)
    runner = ReplicaRunner(
        db,
        replica,
        tasks=tasks,
        concurrency=config.runner.concurrency,
        fanout=config.orchestration.fanout_concurrency,
    )
    return replica, runner
