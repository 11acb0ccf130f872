"""What the runner does with a claimed task: plan it, or act on it, and settle its state.

Planning ends in a plan waiting for approval, clarifying questions, or (with
`plan_approval = "never"`) the queue. Acting runs the agent loop and turns its outcome
into done, waiting for approval, or paused for budget. Errors become a short explanation
in the thread; details go to the log with the task id, never to Slack.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from bot import telemetry
from bot.agent import AgentLoop, Outcome
from bot.approvals import ApprovalService
from bot.base.config import Config
from bot.base.errors import BudgetExhausted, LLMUnavailable
from bot.base.redact import redact_text
from bot.delivery import Delivery
from bot.failures import INTERNAL, model_failure
from bot.intake import budget_note
from bot.notifier import Notifier, StatusSnapshot
from bot.orchestration import Orchestrator
from bot.planner import Planner, PlanRejected
from bot.tasks import Task, TaskStore
from bot.tasks import TaskStatus as S
from bot.toolbox import Toolbox, Wait
from bot.validation import Check, Validator, feedback

log = logging.getLogger(__name__)


class MemoryHooks(Protocol):
    """What the task flow asks of memory (the memory package provides it)."""

    async def context_for(self, task: Task) -> str | None: ...

    async def task_finished(self, task: Task, outcome: str, tools_used: list[str]) -> None: ...


class NoMemory:
    async def context_for(self, task: Task) -> str | None:
        return None

    async def task_finished(self, task: Task, outcome: str, tools_used: list[str]) -> None:
        return None


class TaskWork:
    """The runner's unit of work for one claimed task."""

    def __init__(
        self,
        *,
        tasks: TaskStore,
        planner: Planner,
        agent: AgentLoop,
        toolbox: Toolbox,
        approvals: ApprovalService,
        notifier: Notifier,
        config: Config,
        memory: MemoryHooks | None = None,
        orchestrator: Orchestrator | None = None,
        validator: Validator | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        self.tasks = tasks
        self.delivery = delivery or Delivery(tasks, notifier)
        self.planner = planner
        self.agent = agent
        self.toolbox = toolbox
        self.approvals = approvals
        self.notifier = notifier
        self.config = config
        self.memory: MemoryHooks = memory or NoMemory()
        self.orchestrator = orchestrator
        self.validator = validator

    async def __call__(self, task: Task) -> None:
        with telemetry.task_span(task_id=task.id, coworker=task.coworker, phase=task.status):
            await self._work(task)

    async def _work(self, task: Task) -> None:
        try:
            if task.status == S.PLANNING:
                await self.plan(task)
            else:
                await self.act(task)
        except BudgetExhausted:  # while planning (acting turns it into an outcome)
            await self._out_of_budget(task, None)
        except LLMUnavailable as exc:
            retries = self.config.runner.model_retries
            await self._fail(task, *model_failure(exc, task.ref, retries))
        except Exception:
            log.exception("task %s failed", task.ref)
            await self._fail(task, INTERNAL.format(ref=task.ref), "internal_error")

    async def plan(self, task: Task) -> None:
        inputs = await self.tasks.pending_inputs(task.id)
        if inputs:
            extra = "\n".join(f"<@{i['author']}> added: {i['text']}" for i in inputs)
            task.request = f"{task.request}\n\n{extra}"
            await self.tasks.add_to_request(task.id, task.request, inputs)
        if not task.coworker:
            task.coworker = await self.planner.route(task.request, task)
            await self.tasks.update(task.id, coworker=task.coworker)
        tools = await self.toolbox.for_task(task)
        memory = await self.memory.context_for(task)
        events = await self.tasks.events(task.id)
        asked = sum(1 for e in events if e["kind"] == "questions")
        try:
            plan = await self.planner.plan(
                task, tools, conversation=[{"role": "user", "content": task.request}], memory=memory
            )
        except PlanRejected:
            await self._fail(
                task,
                "I couldn't make a valid plan for this request. Could you rephrase it?",
                "plan_invalid",
            )
            return
        plan = plan.model_copy(update={"budget_note": budget_note(events)})
        if plan.questions and asked < 2:
            await self.tasks.log(task.id, "questions", detail=plan.questions)
            if await self.tasks.transition(task.id, S.WAITING_INPUT, from_=S.PLANNING):
                if await self.notifier.questions(task, plan.questions):
                    await self.tasks.log(task.id, "questions_posted")
            return
        always = self.config.plan_approval == "always"
        to = S.AWAITING_PLAN_APPROVAL if always else S.QUEUED
        if fresh := await self.tasks.transition(
            task.id,
            to,
            from_=S.PLANNING,
            plan=plan.model_dump(),
            estimate_min=plan.estimate_minutes,
        ):
            if fresh.plan_ts:  # planned again (a comment, an edit): the old one goes
                await self.notifier.plan_replaced(fresh, fresh.plan_ts)
            ts = await self.notifier.plan(fresh, plan.model_dump(), needs_approval=always)
            if ts and not await self.tasks.set_plan_ts(
                task.id, ts, plan.model_dump(), was=fresh.plan_ts
            ):
                await self.notifier.plan_replaced(fresh, ts)  # planned again meanwhile

    async def act(self, task: Task) -> None:
        await self._finish_last_delivery(task)
        await self.notifier.status(task, StatusSnapshot.of(task, "running"))
        memory = await self.memory.context_for(task) if task.steps == 0 else None
        try:
            outcome = await self.agent.run(task, memory)
            if outcome.kind == "done" and task.parent_id is None:
                outcome = await self.validate(task, outcome, memory)
            if outcome.kind == "done" and task.high_visibility and self.validator is not None:
                outcome.text = await self.validator.polish(task, outcome.text or "")
        except BudgetExhausted:
            outcome = Outcome("budget", None)
        await self.settle(task, outcome)

    async def _finish_last_delivery(self, task: Task) -> None:
        """A follow-up on an answer Slack did not fully take: the rest of it goes in first
        (the sweep only looks at finished tasks, and this run's answer replaces it)."""
        if not task.delivery_pending:
            return
        got = await self.delivery.finish_pending(task.id)
        if got is not None and got.pending:
            log.warning(
                "task %s: the rest of the last answer could not be posted before the "
                "follow-up; parts %d of %d are in",
                task.ref,
                got.parts,
                got.total,
            )

    async def validate(self, task: Task, outcome: Outcome, style: str | None) -> Outcome:
        """Review or test the deliverable; send it back up to N times; record every check."""
        data: list[str] = []  # query results checked against the plan in this run
        for event in await self.tasks.events(task.id):
            if event["kind"] == "status:done":  # an earlier delivery: its checks were shown
                data = []
            elif event["kind"] == "data_check" and event["detail"]:
                data.append(str(json.loads(event["detail"])["line"]))
        if self.validator is None or (kind := self.validator.kind(task)) == "none":
            if data or task.checks:  # a follow-up does not show the last run's checks
                await self.tasks.update(task.id, checks=data)
            return outcome
        rounds = max(1, self.config.validation.review_rounds)
        checks: list[Check] = []
        for attempt in range(1, rounds + 1):
            if kind == "written":
                checks = [await self.validator.review(task, outcome.text or "", style)]
            else:
                checks = await self.validator.code(task)
            await self.tasks.log(task.id, "check", detail=[c.line() for c in checks])
            if all(c.passed for c in checks) or attempt == rounds:
                break
            revised = await self.agent.run(task, feedback=feedback(checks))
            if revised.kind != "done":
                return revised
            outcome = Outcome("done", revised.text, revised.tools_used)  # every run's tools
        lines = data + [c.line() for c in checks]
        if not all(c.passed for c in checks):
            lines.append(
                f"Still open after {rounds} round(s): posted as is, please check the points above."
            )
        await self.tasks.update(task.id, checks=lines)
        return outcome

    async def settle(self, task: Task, outcome: Outcome) -> None:
        if outcome.kind == "waiting" and outcome.wait is Wait.CHILDREN:
            await self._wait_for_children(task)
        elif outcome.kind == "waiting" and outcome.wait is Wait.CONNECT:
            await self._wait_for_connection(task)
        elif outcome.kind == "waiting":
            await self._wait_for_approval(task)
        elif outcome.kind == "budget":
            await self._out_of_budget(task, outcome.text)
        else:
            await self._deliver(task, outcome)

    async def _wait_for_children(self, task: Task) -> None:
        if not await self.tasks.transition(task.id, S.WAITING_INPUT, from_=S.RUNNING):
            return
        if self.orchestrator is not None:  # they may have finished while we were settling
            await self.orchestrator.wake_if_gathered(task.id)

    async def _deliver(self, task: Task, outcome: Outcome) -> None:
        # The result is kept and shown (thread, App Home, reports): no credential in it.
        text = redact_text(outcome.text or "I finished, but I have nothing to report.")
        if task.parent_id is not None:
            fresh = await self.tasks.transition(task.id, S.DONE, from_=S.RUNNING, result=text)
            if fresh is None:
                return
            await self.notifier.note(
                fresh, f"✓ Subtask {fresh.ref} (`{fresh.coworker}`) done: {text[:300]}"
            )
            await self.memory.task_finished(fresh, "done", outcome.tools_used)
            if self.orchestrator is not None:
                await self.orchestrator.child_finished(fresh)
            return
        fresh = await self.tasks.get(task.id)
        if fresh.status != "running":
            return
        # Post, then record done: a stop in between resumes the task and posts it again,
        # and a post Slack did not take is left for the delivery sweep (bot.delivery).
        got = await self.delivery.send(fresh, text)
        done = await self.tasks.transition(
            task.id,
            S.DONE,
            from_=S.RUNNING,
            result=text,
            delivered_parts=got.parts,
            delivery_pending=int(got.pending),
        )
        if done is None:
            return
        await self.notifier.status(done, StatusSnapshot.of(done, "done", outcome.tools_used))
        await self.memory.task_finished(done, "done", outcome.tools_used)
        await self._follow_up_on_late_replies(task)

    async def _follow_up_on_late_replies(self, task: Task) -> None:
        """A reply that came in after the last turn read the thread is a follow-up: go on.

        (Intake queues a reply to a finished task itself; this is the reply that arrived
        while the task was still running but past its last look at the thread.)
        """
        if not await self.tasks.pending_inputs(task.id):
            return
        if await self.tasks.transition(task.id, S.QUEUED, from_=S.DONE, finished_at=None):
            self.approvals.wake()

    async def _wait_for_connection(self, task: Task) -> None:
        """The delegator was sent a Connect link: wait for the callback to queue the task."""
        connections = self.toolbox.connections
        if connections is None or not await self.tasks.transition(
            task.id, "waiting_input", from_="running"
        ):
            return
        if await connections.settle_wait(task.id):  # connected while we were settling
            return
        servers = ", ".join(await connections.waiting_for(task.id))
        fresh = await self.tasks.get(task.id)
        await self.notifier.status(
            fresh, StatusSnapshot.of(fresh, f"waiting for <@{task.delegator}> to connect {servers}")
        )

    async def _wait_for_approval(self, task: Task) -> None:
        if not await self.tasks.transition(task.id, S.WAITING_APPROVAL, from_=S.RUNNING):
            return
        if not await self.approvals.pending_count(task.id):  # decided meanwhile: go on
            await self.tasks.transition(task.id, S.QUEUED, from_=S.WAITING_APPROVAL)
            self.approvals.wake()
            return
        fresh = await self.tasks.get(task.id)
        await self.notifier.status(fresh, StatusSnapshot.of(fresh, "waiting for approval"))

    async def _out_of_budget(self, task: Task, partial: str | None) -> None:
        if not await self.tasks.transition(task.id, S.PAUSED, from_=(S.PLANNING, S.RUNNING)):
            return
        fresh = await self.tasks.get(task.id)
        await self.notifier.status(fresh, StatusSnapshot.of(fresh, "paused: budget reached"))
        await self.notifier.budget_exhausted(fresh, partial)
        await self.approvals.request(
            fresh,
            kind="budget",
            key=f"t{task.id}:budget:{fresh.budget_usd:.2f}",
            reason=f"Spent ${fresh.spent_usd:.2f} of ${fresh.budget_usd:.2f}. Approve a top-up "
            f"of ${self.config.budget.task_usd:.2f} to continue.",
            tier="block",
        )

    async def _fail(self, task: Task, message: str, code: str) -> None:
        if await self.tasks.transition(
            task.id, S.FAILED, from_=(S.PLANNING, S.RUNNING), error=code
        ):
            fresh = await self.tasks.get(task.id)
            await self.notifier.status(fresh, StatusSnapshot.of(fresh, "failed"))
            await self.notifier.failed(fresh, message)
            await self.memory.task_finished(fresh, "failed", [])
            if fresh.parent_id is not None and self.orchestrator is not None:
                await self.orchestrator.child_finished(fresh)
