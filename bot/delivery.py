"""Deliverables reach their thread at least once.

A finished task is recorded as done (with its result) first and its deliverable posted
after; `tasks.delivered_at` is set once Slack took every part. A post Slack refused or could
not take (an outage longer than the client's retries), or a crash between the two steps,
leaves `delivered_at` empty, and the sweep (at start, then every minute) posts it again, for
up to a day after the task finished. Nothing the person asked for is lost to a Slack outage;
the worst case is a part posted twice.
"""

from __future__ import annotations

import logging

from bot.clock import now
from bot.notifier import Notifier
from bot.tasks import Task, TaskStore

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60
RETRY_FOR_SECONDS = 24 * 3600


class Delivery:
    def __init__(self, tasks: TaskStore, notifier: Notifier) -> None:
        self.tasks = tasks
        self.notifier = notifier
        self._posting: set[int] = set()  # a sweep never posts what is being posted

    async def post(self, task: Task) -> bool:
        """Post a done task's result in its thread; True once Slack took all of it."""
        if task.id in self._posting:
            return False
        self._posting.add(task.id)
        try:
            posted = await self.notifier.deliver(
                task, task.result or "I finished, but I have nothing to report.",
                checks=task.checks or None,
            )  # fmt: skip
            if posted:
                await self.tasks.update(task.id, delivered_at=now())
            else:
                log.warning("task %s: deliverable not posted; the delivery sweep retries", task.ref)
            return posted
        finally:
            self._posting.discard(task.id)

    async def sweep(self) -> int:
        """Post the deliverables that did not get through; how many did now."""
        posted = 0
        for task in await self.tasks.undelivered(since=now() - RETRY_FOR_SECONDS):
            posted += await self.post(task)
        return posted
