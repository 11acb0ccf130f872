"""This process as one replica among several: its parts, wired to the local task runner.

`Replica` owns the cluster parts of one process (registry and heartbeat, task leases,
leader lease, wake-ups, inbox table) and connects them to what runs tasks here:
  * "work" from another replica wakes the local runner to claim;
  * "cancel" stops the task if it runs here; "input" tells a running task a reply came;
  * a task whose lease another replica took over (or whose lease this replica could not
    renew in time) is stopped here, so it runs in one place;
  * the poll (every `[cluster] poll`) takes back tasks whose replica died (their lease ran
    out), wakes the runner, and reads the state of the tasks running here, which catches a
    cancel or a reply whose NOTIFY was lost.
`announce()` is the other direction: what this process committed that others must hear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import psycopg

from bot.base.config import ClusterConfig
from bot.base.db.postgres import PostgresDatabase
from bot.cluster import replica_id
from bot.cluster.claims import TaskLeases
from bot.cluster.inbox import InboxTable
from bot.cluster.leader import LeaderLease
from bot.cluster.replicas import ReplicaRegistry
from bot.cluster.wakeups import Kind, Wakeups

log = logging.getLogger(__name__)


class LocalRunner(Protocol):
    """What a replica needs of the task runner of its own process."""

    @property
    def active(self) -> Mapping[int, Any]:
        """Tasks with a job here (also one finishing after its task moved on)."""
        ...

    @property
    def holding(self) -> set[int]:
        """Tasks a job here works on under this replica's claim (their leases)."""
        ...

    def wake_local(self) -> None: ...

    def stop_local(self, task_id: int) -> bool: ...

    async def take_over(self) -> int:
        """Put tasks whose replica stopped renewing back in the queue; how many."""
        ...


class Replica:
    """Registry, leases, leadership, wake-ups and inbox of this process."""

    def __init__(
        self, db: PostgresDatabase, cluster: ClusterConfig, *, version: str | None = None
    ) -> None:
        self.db = db
        self.id = replica_id()
        self.registry = ReplicaRegistry(db, self.id, lease=cluster.lease, version=version)
        self.leases = TaskLeases(db, self.id, lease=cluster.lease)
        self.leader = LeaderLease(db, self.id, lease=cluster.lease)
        self.wakeups = Wakeups(db, self.id, poll_every=cluster.poll)
        self.inbox = InboxTable(db, self.id)
        self._runner: LocalRunner | None = None
        self._replies: Callable[[], None] = lambda: None
        self._sending: set[asyncio.Task[None]] = set()
        self._work_pending = False

    def serve(self, runner: LocalRunner, replies: Callable[[], None]) -> None:
        """Connect the cluster to the local runner; `replies()` tells running tasks that a
        thread reply came in (they read their inputs at their next turn)."""
        self._runner, self._replies = runner, replies
        self.registry.running = lambda: set(runner.holding)
        self.registry.on_lost = self._stop_all
        self.wakeups.on("work", lambda _: runner.wake_local())
        self.wakeups.on("cancel", self._cancelled)
        self.wakeups.on("input", self._reply)
        self.wakeups.on_poll(self.poll)

    async def start(self) -> None:
        await self.registry.start()
        await self.leader.start()
        await self.wakeups.start()
        log.info("cluster: replica %s started", self.id)

    def announce(self, kind: Kind, task_id: int | None = None) -> None:
        """Tell the other replicas about a change this process committed, without waiting
        for it (a wake-up lost on the way is caught by their poll). Wake-ups for work
        sent in one go are one."""
        if kind == "work":
            if self._work_pending:
                return
            self._work_pending = True
        job = asyncio.get_running_loop().create_task(self._announce(kind, task_id))
        self._sending.add(job)
        job.add_done_callback(self._sending.discard)

    async def _announce(self, kind: Kind, task_id: int | None) -> None:
        if kind == "work":
            self._work_pending = False
        try:
            await self.wakeups.send(kind, task_id)
        except (psycopg.Error, OSError) as exc:
            log.warning("cluster: %s wake-up not sent (%s); the others' poll finds it", kind, exc)

    async def stop(self) -> None:
        """Leave the cluster; tasks still held here go back to the queue for the others."""
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self.wakeups.stop()
        handed = await self.leases.hand_back()
        if handed:
            log.info("cluster: handed task(s) %s back to the queue", handed)
            await self.wakeups.send("work")
        await self.leader.stop()
        await self.registry.stop()

    async def poll(self) -> None:
        """Claim if there is work; stop what was cancelled; tell tasks of replies."""
        runner = self._runner
        if runner is None:
            return
        await runner.take_over()
        runner.wake_local()
        running = list(runner.active)
        if not running:
            return
        rows = await self.db.fetchall(
            "SELECT t.id, t.status, t.cancel_requested, EXISTS (SELECT 1 FROM task_inputs i"
            " WHERE i.task_id = t.id AND i.consumed = 0) AS replied"
            " FROM tasks t WHERE t.id = ANY(?)",
            (running,),
        )
        for row in rows:
            if row["status"] == "cancelled" or row["cancel_requested"]:
                self._cancelled(row["id"])
            elif row["replied"]:
                self._replies()

    def _cancelled(self, task_id: int | None) -> None:
        if task_id is not None and self._runner is not None and self._runner.stop_local(task_id):
            log.info("task %s: stopped here, cancelled on another replica", task_id)

    def _reply(self, task_id: int | None) -> None:
        self._replies()
        if self._runner is not None:
            self._runner.wake_local()

    def _stop_all(self, task_ids: set[int]) -> None:
        for task_id in sorted(task_ids):
            if self._runner is not None:
                self._runner.stop_local(task_id)
