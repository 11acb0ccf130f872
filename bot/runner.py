"""The task runner: a durable queue in the database worked by a bounded pool of coroutines.

Work is claimed by a conditional update (`TaskStore.claim`: the row count says who won),
highest priority first, then oldest. `received` tasks are claimed for planning, `queued`
ones for acting. On start, tasks left `planning` or `running` by a crash go back to the
queue and resume from their checkpoint, as do tasks whose approval was decided just before
a crash (`TaskStore.recover`).
A graceful stop (`stop(grace)`) claims nothing more and lets running tasks reach their
next checkpoint (`at_checkpoint()`, which the agent loop calls between steps) before it
interrupts what is left; they too resume at the next start.

This is the one-process runner (SQLite). With replicas on PostgreSQL,
`bot.cluster.runner.ReplicaRunner` claims under a lease and makes `wake()` and
`stop_task()` reach every replica; `wake_local()` and `stop_local()` act on this process only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.base.db import Database
from bot.tasks import Task, TaskStore

log = logging.getLogger(__name__)


class TaskRunner:
    def __init__(
        self,
        db: Database,
        work: Callable[[Task], Awaitable[None]] | None = None,
        concurrency: int = 4,
        fanout: int = 3,
        claim_retry: float = 5.0,
        tasks: TaskStore | None = None,
    ) -> None:
        self.db = db
        self.tasks = tasks or TaskStore(db)
        self.claim_retry = claim_retry
        self.fanout = fanout
        self.work = work
        self.concurrency = concurrency
        self.active: dict[int, asyncio.Task[None]] = {}
        # Every job, also one still finishing a task that another job has claimed again
        # (planning posts its plan after queueing the task): stop() waits for all of them.
        self._jobs: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self.stopping = False
        self.peak = 0

    async def recover(self) -> int:
        """Put tasks interrupted by a crash back in the queue."""
        moved = await self.tasks.recover()
        if moved:
            log.info("resuming %d interrupted task(s)", moved)
        return moved

    async def start(self) -> None:
        await self.recover()
        self._loop = asyncio.create_task(self._dispatch(), name="task-runner")
        self.wake()

    def wake(self) -> None:
        """There is new work (a task created, queued or resumed): claim it."""
        self.wake_local()

    def wake_local(self) -> None:
        """Look for work in this process (a job ended, or another replica said so)."""
        self._wake.set()

    async def claim(self) -> Task | None:
        return await self.tasks.claim(fanout=self.fanout)

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._fill()
            except Exception:  # e.g. a full disk: the queue must outlive it
                log.exception(
                    "task runner: claiming work failed; trying again in %g s", self.claim_retry
                )
                await asyncio.sleep(self.claim_retry)
                self.wake_local()

    async def _fill(self) -> None:
        """Claim queued tasks until the pool is full or the queue is empty."""
        while len(self.active) < self.concurrency:
            task = await self.claim()
            if task is None:
                return
            self._spawn(task)

    def _spawn(self, task: Task) -> None:
        job = asyncio.create_task(self._run(task), name=f"task-{task.id}")
        self.active[task.id] = job
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        self.peak = max(self.peak, len(self.active))

    async def _run(self, task: Task) -> None:
        assert self.work is not None, "TaskRunner.work is not set"
        try:
            await self.work(task)
        except asyncio.CancelledError:
            log.info("task %s: run stopped%s", task.id, " for shutdown" if self.stopping else "")
        except Exception:
            log.exception("task %s: unexpected error in the runner", task.id)
        finally:
            if self.active.get(task.id) is asyncio.current_task():
                del self.active[task.id]
            self.wake_local()

    def stop_task(self, task_id: int) -> bool:
        """Stop the work on a cancelled task at once; True if it was running here."""
        return self.stop_local(task_id)

    def stop_local(self, task_id: int) -> bool:
        """Stop the coroutine working on a task here (cancel); True if one was running."""
        job = self.active.get(task_id)
        if job is None:
            return False
        job.cancel()
        return True

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is running (tests, graceful shutdown)."""
        async with asyncio.timeout(timeout):
            while self.active:
                await asyncio.gather(*self.active.values(), return_exceptions=True)

    async def at_checkpoint(self) -> None:
        """Between two steps of a task (all before it saved): end the run here if stopping."""
        if self.stopping:
            # The run ends as a cancel would; the task stays `running` and resumes at start.
            raise asyncio.CancelledError("shutting down")

    async def stop(self, grace: float = 0.0) -> None:
        """Stop claiming; give running work `grace` seconds to reach a checkpoint, then
        interrupt what is left. Either way it resumes from its checkpoint at the next start.
        """
        self.stopping = True
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        jobs = list(self._jobs)
        if jobs and grace > 0:
            log.info(
                "waiting up to %g s for %d running task(s) to reach a checkpoint", grace, len(jobs)
            )
            _, late = await asyncio.wait(jobs, timeout=grace)
            if late:
                log.info(
                    "interrupting %d task(s) mid-step; they resume at the next start", len(late)
                )
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
