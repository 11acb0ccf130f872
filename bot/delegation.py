"""The service the Slack handlers call: delegate, decide, cancel, resume, give feedback.

Handlers parse Slack input and call these methods; each checks who may do what, changes
state with a conditional update, tells the thread through the `Notifier`, and wakes the
runner. Refusals raise `NotAllowed`, which handlers turn into an ephemeral message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.approvals import Approval, ApprovalService, Decision, Directory
from bot.base.clock import now
from bot.base.config import Config
from bot.base.errors import NotAllowed, StalePlan, TaskNotFound
from bot.inbox import Inbox
from bot.inflight import InFlight
from bot.intake import IncomingMessage, Intake, IntakeResult
from bot.notifier import Notifier, StatusSnapshot
from bot.orchestration import Orchestrator
from bot.reports import Summary, Timeline, home_summaries, timeline
from bot.runner import TaskRunner
from bot.tasks import OPEN, Task, TaskStore
from bot.tasks import TaskStatus as S
from bot.visibility import Visibility

if TYPE_CHECKING:  # PostgreSQL only (psycopg)
    from bot.cluster.inbox import InboxTable

log = logging.getLogger(__name__)

CLOSED = (
    "{ref} was cancelled, so I won't pick it up again. To start a new task, mention me in a "
    "new message outside this thread."
)


class Delegation:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        intake: Intake,
        approvals: ApprovalService,
        runner: TaskRunner,
        notifier: Notifier,
        directory: Directory,
        config: Config,
        memory: Any = None,
        inbox: Inbox | InboxTable | None = None,
        orchestrator: Orchestrator | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.inbox = inbox
        self.tasks = tasks
        self.intake = intake
        self.approvals = approvals
        self.runner = runner
        self.notifier = notifier
        self.directory = directory
        self.config = config
        self.inflight = InFlight()
        self.visibility = Visibility(config, directory)
        self.memory = memory

    async def keep(self, msg: IncomingMessage) -> None:
        """Write a message intake may act on down before Slack is acknowledged: to the
        inbox file (`bot.inbox`), or with replicas to the inbox table (`bot.cluster.inbox`)."""
        if self.inbox is not None and (msg.mention or msg.is_dm or msg.thread_ts):
            await self.inbox.keep(msg)

    async def on_message(self, msg: IncomingMessage) -> IntakeResult:
        """A mention, DM or thread reply: create or continue a task, once per event."""
        async with self.inflight:
            result = await self._on_message(msg)
            if self.inbox is not None:
                await self.inbox.handled(msg.event_id)
            return result

    async def replay_inbox(self) -> int:
        """Handle the messages a stop cut off between acknowledgement and intake (with
        replicas: also those of a replica that died, taken over by this one)."""
        if self.inbox is None:
            return 0
        left = await self.inbox.left_over()
        for msg in left:
            log.info("inbox: handling Slack event %s left from before the restart", msg.event_id)
            try:
                await self.on_message(msg)
            except Exception:  # one bad message must not keep the bot from starting
                log.exception("inbox: Slack event %s could not be handled", msg.event_id)
        await self.inbox.prune()
        return len(left)

    async def _on_message(self, msg: IncomingMessage) -> IntakeResult:
        result = await self.intake.receive(msg)
        if result.kind == "created" and result.task is not None:
            if self.memory is not None and (est := await self.memory.estimate_minutes(result.task)):
                result.task.estimate_min = est
            ts = await self.notifier.acknowledged(result.task)
            await self.tasks.update(result.task.id, ack_ts=ts)
            await self.tasks.log(result.task.id, "created", actor=msg.user)
            for note in result.notes:
                await self.notifier.note(result.task, note)
        elif result.kind == "continued" and result.task is not None:
            await self.tasks.log(result.task.id, "reply", actor=msg.user)
            for note in result.notes:
                await self.notifier.note(result.task, note)
        elif result.kind == "empty":
            await self.notifier.tell(msg.channel, msg.thread_ts or msg.ts, msg.user, self.hello())
        elif result.kind == "closed" and result.task is not None:
            await self._say_closed(result.task, msg.user)
        elif result.kind == "rate_limited":
            limit = self.config.runner.max_new_tasks_per_minute
            await self.notifier.rate_limited(msg.channel, msg.thread_ts or msg.ts, msg.user, limit)
        if result.kind in ("created", "continued"):
            self.runner.wake()
        return result

    def hello(self) -> str:
        """The short help a bare mention gets."""
        names = [f"`{c.name}`" for c in self.config.coworkers]
        team = f" Coworkers here: {', '.join(names)}." if names else ""
        return (
            "Hi! Tell me what to do in the same message, for example `@coworker summarize "
            "yesterday's failed CI runs`, or send it to me as a DM. Add `!high` or `!urgent` "
            f"for priority and `!budget 5` for a budget in dollars.{team} `/coworker help` "
            "lists the commands."
        )

    async def _say_closed(self, task: Task, user: str) -> None:
        """Tell the person who could steer it, once, that a cancelled task stays so."""
        if user != task.delegator and user not in self.config.approvals.approvers:
            return  # others talking in the thread need no word from the bot
        if await self.tasks.log_once(task.id, "closed_said", key="closed"):
            await self.notifier.note(task, CLOSED.format(ref=task.ref))

    async def may_manage(self, task: Task, user: str) -> bool:
        """The delegator or a configured approver; never a bot."""
        if await self.directory.is_bot(user):
            return False
        return user == task.delegator or user in self.config.approvals.approvers

    async def _require(self, task: Task, user: str, action: str) -> None:
        if not await self.may_manage(task, user):
            raise NotAllowed(user=user, action=f"{action} {task.ref}")

    async def approve_plan(self, task_id: int, user: str, plan_ts: str | None = None) -> bool:
        """Approve the plan; from a plan message (`plan_ts`), only if it is the current one.

        Raises:
            StalePlan: the button is on a plan that a revised one replaced.
        """
        task = await self.tasks.get(task_id)
        await self._require(task, user, "approve the plan of")
        if plan_ts is not None and task.plan_ts is not None and plan_ts != task.plan_ts:
            raise StalePlan(task_id=task_id)
        # The plan message Slack took but whose ts we never heard of is the one clicked, and
        # so is the clicked message once its ts is recorded (between our read and now); a
        # revision in between (its plan_ts changes) makes this approval change nothing.
        current = (
            "plan_ts IS NULL OR plan_ts IS NOT DISTINCT FROM ? OR plan_ts IS NOT DISTINCT FROM ?",
            (task.plan_ts, plan_ts),
        )
        if not await self.tasks.transition(
            task_id, S.QUEUED, from_=S.AWAITING_PLAN_APPROVAL, condition=current
        ):
            return False
        await self.tasks.log(task_id, "plan_approved", actor=user)
        await self.notifier.plan_decided(task, decision="approved", user=user)
        self.runner.wake()
        return True

    async def edit_plan(self, task_id: int, user: str, text: str) -> bool:
        """Plan again from the person's edited plan."""
        task = await self.tasks.get(task_id)
        await self._require(task, user, "edit the plan of")
        if task.status != S.AWAITING_PLAN_APPROVAL:
            return False
        await self.tasks.add_input(task_id, user, f"Revise the plan as follows:\n{text}", None)
        if not await self.tasks.transition(
            task_id, S.RECEIVED, from_=S.AWAITING_PLAN_APPROVAL, plan=None
        ):
            return False
        await self.tasks.log(task_id, "plan_edited", actor=user)
        await self.notifier.plan_decided(task, decision="edited", user=user)
        self.runner.wake()
        return True

    async def cancel(self, task_id: int, user: str) -> bool:
        """Stop a task at any point, with the subtasks working for it; the running step is
        interrupted, its approvals expire, and a subtask's parent goes on without it."""
        task = await self.tasks.get(task_id)
        await self._require(task, user, "cancel")
        if not await self.tasks.transition(task_id, S.CANCELLED, from_=OPEN, cancel_requested=1):
            return False
        self.runner.stop_task(task_id)  # at once: no later step of it starts
        family = [task_id, *await self._cancel_subtasks(task_id)]
        await self.approvals.expire_pending(family)
        await self.tasks.log(task_id, "cancelled", actor=user)
        for member in family:
            ended = await self.tasks.get(member)
            await self.notifier.status(ended, StatusSnapshot.of(ended, "cancelled"))
        fresh = await self.tasks.get(task_id)
        await self.notifier.cancelled(fresh, user)
        if fresh.parent_id is not None and self.orchestrator is not None:
            await self.orchestrator.child_finished(fresh)
        return True

    async def _cancel_subtasks(self, task_id: int) -> list[int]:
        """Cancel and stop every open subtask under `task_id`, at any depth; their ids."""
        cancelled = []
        for child in await self.tasks.descendants(task_id):
            if await self.tasks.transition(child, S.CANCELLED, from_=OPEN, cancel_requested=1):
                self.runner.stop_task(child)
                cancelled.append(child)
        return cancelled

    async def resume(self, task_id: int, user: str) -> bool:
        """Continue a paused or failed task from its checkpoint."""
        task = await self.tasks.get(task_id)
        await self._require(task, user, "resume")
        to = S.RECEIVED if task.plan is None else S.QUEUED
        if not await self.tasks.transition(task_id, to, from_=(S.PAUSED, S.FAILED), error=None):
            return False
        # Only once it is resumed: expired approvals are asked again (the run asks again for
        # one it reaches first: Toolbox.approval_for).
        await self.approvals.reopen_expired(task_id)
        await self.tasks.log(task_id, "resumed", actor=user)
        await self.notifier.note(task, f"Resumed by <@{user}>.")
        self.runner.wake()
        return True

    async def plan_to_edit(self, task_id: int, user: str) -> Task:
        """The task whose plan `user` wants to edit.

        Raises:
            NotAllowed: not the delegator or an approver.
        """
        task = await self.tasks.get(task_id)
        if not await self.may_manage(task, user):
            raise NotAllowed(user=user, action="edit the plan")
        return task

    async def may_give_reason(self, approval_id: int, user: str) -> bool:
        """Whether `user` may explain this rejection now (asked before its modal opens).

        Raises:
            NotAllowed: someone other than the person who rejected it.
        """
        approval = await self.approvals.get(approval_id)
        if approval is None or approval.status != "rejected" or approval.decision_note:
            return False
        if user != approval.decided_by:
            raise NotAllowed(user=user, action="give the reason")
        return True

    async def give_reason(self, approval_id: int, user: str, text: str) -> bool:
        """Explain a rejection after the click; True when the task will hear it (its next
        turn), else the person is told that it had already finished."""
        given = await self.approvals.give_reason(approval_id, user, text)
        if given is None:
            return False
        task, heard = given
        if heard:
            self.runner.wake()
            return True
        await self.notifier.tell(
            task.channel,
            task.thread_ts,
            user,
            f"{task.ref} had already finished, so the coworker won't see your reason; it is "
            "kept on the approval request.",
        )
        return False

    async def decide(
        self, approval_id: int, user: str, *, approve: bool, note: str | None = None
    ) -> Decision:
        """Approve or reject an approval: the one way a person's decision reaches it."""
        return await self.approvals.decide(approval_id, user, approve=approve, note=note)

    async def approvals_for(self, user: str) -> list[Approval]:
        """Pending approvals `user` may decide (App Home)."""
        return await self.approvals.pending_for(user)

    async def spend_for(self, user: str) -> list[tuple[str, Summary]]:
        """The viewer's spend and outcomes, and the team's for admins, each with a title."""
        return await home_summaries(self.tasks.db, self.config, self.directory, user)

    async def feedback(self, task_id: int, user: str, value: int) -> None:
        """👍 / 👎 from the delegator (others' votes are ignored); it updates the episode too."""
        task = await self.tasks.get(task_id)
        if user != task.delegator:
            raise NotAllowed(user=user, action=f"rate {task.ref}")
        await self.tasks.update(task_id, feedback=value)
        await self.tasks.log(task_id, "feedback", actor=user, detail={"value": value, "at": now()})
        if self.memory is not None:
            await self.memory.feedback(task_id, value)

    async def visible_task(self, task_id: int, user: str) -> Task:
        """A task `user` may see (`bot.visibility`).

        Raises:
            TaskNotFound: there is no such task, or not one `user` may see: the same
                answer, so asking gives away nothing about other people's tasks.
        """
        task = await self.tasks.get(task_id)
        if not await self.visibility.may_see(task, user):
            raise TaskNotFound(task_id=task_id)
        return task

    async def status_of(self, task_id: int, user: str) -> tuple[Task, list[dict[str, Any]]]:
        """A task and its event log, for someone who may see it."""
        task = await self.visible_task(task_id, user)
        return task, await self.tasks.events(task_id)

    async def timeline_of(self, task_id: int, user: str) -> Timeline:
        """A task's model calls, tool calls and approvals, for someone who may see it."""
        await self.visible_task(task_id, user)
        return await timeline(self.tasks.db, task_id)

    async def my_tasks(self, user: str) -> list[Task]:
        """This user's recent tasks, newest first."""
        return await self.tasks.list_for(user)

    async def tasks_for(self, user: str, *, limit: int = 10) -> tuple[list[Task], list[Task]]:
        """(this user's recent tasks, other people's open tasks this user may see)."""
        mine = await self.my_tasks(user)
        others = [t for t in await self.tasks.list_open(limit=100) if t.delegator != user]
        return mine, await self.visibility.visible(others, user, limit=limit)
