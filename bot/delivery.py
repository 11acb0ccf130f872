"""Deliverables reach their thread at least once.

The agent's final answer is posted first and the task then recorded as done, with its
result and, when Slack took every part, `tasks.delivered_at`. A post that Slack refused or
could not take (an outage longer than the client's retries) leaves `delivered_at` empty,
and the sweep (at start, then every minute) posts it again from the row, for up to a day
after the task finished. A crash between the post and the record resumes the task, which
posts it again. Nothing the person asked for is lost to a Slack outage; the worst case is a
part posted twice.
"""

from __future__ import annotations

import logging

from bot.clock import now
from bot.notifier import Notifier
from bot.tasks import Task, TaskStore

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60
RETRY_FOR_SECONDS = 24 * 3600
NOTHING = "I finished, but I have nothing to report."


class Delivery:
    def __init__(self, tasks: TaskStore, notifier: Notifier) -> None:
        self.tasks = tasks
        self.notifier = notifier

    async def send(self, task: Task, text: str) -> bool:
        """Post `text` as `task`'s deliverable; True once Slack took all of it."""
        posted = await self.notifier.deliver(task, text or NOTHING, checks=task.checks or None)
        if not posted:
            log.warning("task %s: deliverable not posted; the delivery sweep retries", task.ref)
        return posted

    async def sweep(self) -> int:
        """Post the deliverables of done tasks that did not get through; how many did now."""
        posted = 0
        for task in await self.tasks.undelivered(since=now() - RETRY_FOR_SECONDS):
            if await self.send(task, task.result or NOTHING):
                await self.tasks.mark_delivered(task.id)
                posted += 1
        return posted
