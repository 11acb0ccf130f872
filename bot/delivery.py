"""Deliverables reach their thread at least once, and no part of one twice.

The agent's final answer is posted first and the task then recorded as done. If Slack did
not take every part (it refused for a while, or was unreachable past the client's
retries), the task is marked `delivery_pending` with the number of parts Slack has, and the
sweep (at start, then every minute) posts the remaining parts, for up to a day after the
task finished. A part Slack refuses for good (the channel was archived, the bot removed)
ends the attempts, logged. A crash between the post and the record resumes the task, which
posts it again: the one case where a deliverable can appear twice.
"""

from __future__ import annotations

import logging

from bot.clock import now
from bot.notifier import Delivered, Notifier
from bot.tasks import Task, TaskStore

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60
RETRY_FOR_SECONDS = 24 * 3600
NOTHING = "I finished, but I have nothing to report."


class Delivery:
    def __init__(self, tasks: TaskStore, notifier: Notifier) -> None:
        self.tasks = tasks
        self.notifier = notifier

    async def send(self, task: Task, text: str, skip: int = 0) -> Delivered:
        """Post `text` as `task`'s deliverable, from part `skip` on."""
        got = await self.notifier.deliver(
            task, text or NOTHING, checks=task.checks or None, skip=skip
        )
        if got.final and not got.complete:
            log.error("task %s: Slack refused the deliverable for good after part %d of %d",
                      task.ref, got.parts, got.total)  # fmt: skip
        elif not got.complete:
            log.warning("task %s: deliverable posted up to part %d of %d; the sweep retries",
                        task.ref, got.parts, got.total)  # fmt: skip
        return got

    async def sweep(self) -> int:
        """Post the rest of the deliverables Slack did not fully take; how many it now has."""
        finished = 0
        for task in await self.tasks.undelivered(since=now() - RETRY_FOR_SECONDS):
            try:
                got = await self.send(task, task.result or NOTHING, skip=task.delivered_parts)
            except Exception:  # one task's failure must not hold the others back
                log.exception("task %s: delivery sweep failed; next sweep retries", task.ref)
                continue
            await self.tasks.delivery_progress(task, got.parts, pending=got.pending)
            finished += got.complete
        return finished
