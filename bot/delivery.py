"""Deliverables, plans and questions reach their thread, even through a Slack outage.

The agent's final answer is posted first and the task then recorded as done. If Slack did
not take every part (it refused for a while, or was unreachable past the client's
retries), the task is marked `delivery_pending` with the number of parts Slack has, and the
sweep (at start, then every minute) posts the remaining parts, for up to a day after the
task finished. A part Slack refuses for good (the channel was archived, the bot removed)
ends the attempts, logged. A crash between the post and the record resumes the task, which
posts it again: the one case where a deliverable can appear twice.

The same sweep posts a plan waiting for approval, or clarifying questions waiting for
answers, that Slack did not take (after `SETTLE_SECONDS`, so a post under way is not
doubled): otherwise the task would wait for a person who cannot see what to answer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from bot.base.clock import now
from bot.notifier import Delivered, Notifier
from bot.tasks import GIVE_UP_SECONDS, Task, TaskStore

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60
SETTLE_SECONDS = 60.0
RETRY_FOR_SECONDS = GIVE_UP_SECONDS
NOTHING = "I finished, but I have nothing to report."


class Delivery:
    def __init__(
        self,
        tasks: TaskStore,
        notifier: Notifier,
        busy: Callable[[int], bool | Awaitable[bool]] | None = None,
    ) -> None:
        self.tasks = tasks
        self.notifier = notifier
        self.settle = SETTLE_SECONDS
        #: Whether a runner job works on the task now (then its own posts are under way):
        #: in this process, or with replicas, on whichever replica holds the task's lease.
        self.busy = busy or (lambda task_id: False)
        self._locks: dict[int, asyncio.Lock] = {}

    async def send(self, task: Task, text: str, skip: int = 0) -> Delivered:
        """Post `text` as `task`'s deliverable, from part `skip` on."""
        got = await self.notifier.deliver(
            task, text or NOTHING, checks=task.checks or None, skip=skip
        )
        if got.final and not got.complete:
            log.error(
                "task %s: Slack refused the deliverable for good after part %d of %d",
                task.ref,
                got.parts,
                got.total,
            )
        elif not got.complete:
            log.warning(
                "task %s: deliverable posted up to part %d of %d; the sweep retries",
                task.ref,
                got.parts,
                got.total,
            )
        return got

    async def sweep(self) -> int:
        """Post the rest of the deliverables Slack did not fully take; how many it now has."""
        since = now() - RETRY_FOR_SECONDS
        for task_id in await self.tasks.give_up_delivery(finished_before=since):
            log.error(
                "task T-%d: Slack did not take its deliverable within a day; "
                "giving up (the answer is in the task's record)",
                task_id,
            )
        finished = 0
        for task in await self.tasks.undelivered(since=since):
            if await self.is_busy(task.id):  # a follow-up run finishes it itself (finish_pending)
                continue
            try:
                got = await self.finish_pending(task.id)
            except Exception:  # one task's failure must not hold the others back
                log.exception("task %s: delivery sweep failed; next sweep retries", task.ref)
                continue
            finished += bool(got and got.complete)
        await self.post_what_people_wait_on()
        return finished

    async def is_busy(self, task_id: int) -> bool:
        answer = self.busy(task_id)
        return await answer if inspect.isawaitable(answer) else bool(answer)

    async def finish_pending(self, task_id: int) -> Delivered | None:
        """Post the rest of the task's last deliverable that Slack has not taken, if any.

        One at a time per task, from the row as it is then: the sweep and a follow-up run
        both call this, and neither posts what the other already did.
        """
        async with self._locks.setdefault(task_id, asyncio.Lock()):
            task = await self.tasks.get(task_id)
            if not (task.delivery_pending and task.result):
                return None
            got = await self.send(task, task.result, skip=task.delivered_parts)
            await self.tasks.delivery_progress(task, got.parts, pending=got.pending)
            return got

    async def post_what_people_wait_on(self) -> None:
        """Plans and questions a task waits on a person for, that Slack did not take."""
        before = now() - self.settle
        for task in await self.tasks.unposted_plans(before=before):
            if not await self.is_busy(task.id):
                await self._guarded(task, self._post_plan(task))
        for task, questions in await self.tasks.unasked_questions(before=before):
            if not await self.is_busy(task.id):
                await self._guarded(task, self._ask(task, questions))

    async def _post_plan(self, task: Task) -> None:
        plan = task.plan or {}
        ts = await self.notifier.plan(task, plan, needs_approval=True)
        if ts and not await self.tasks.set_plan_ts(task.id, ts, plan, was=None):
            await self.notifier.plan_replaced(task, ts)  # planned again while it was posted

    async def _ask(self, task: Task, questions: list[str]) -> None:
        if await self.notifier.questions(task, questions):
            await self.tasks.log(task.id, "questions_posted")

    @staticmethod
    async def _guarded(task: Task, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:  # one task's failure must not hold the others back
            log.exception("task %s: the sweep could not post for it; next sweep retries", task.ref)
