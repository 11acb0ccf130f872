"""Approvals: rows with deadlines, decided once, by the right people.

A decision is a conditional update (`… WHERE status = 'pending'`), so a double click, a
stale button or a click racing the timeout changes state once. A tool approval is bound to
the exact call (tool name and a hash of its arguments) and the gateway consumes it once.
The scheduler only wakes `sweep()`, which escalates overdue approvals and, after a second
timeout, pauses the task.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from bot.base.clock import now
from bot.base.config import Config
from bot.base.db import Database, marks
from bot.base.errors import NotAllowed
from bot.base.redact import redact, redact_text
from bot.notifier import ApprovalView, Notifier, StatusSnapshot
from bot.plans import step_using
from bot.tasks import FINISHED, Task, TaskStatus, TaskStore

log = logging.getLogger(__name__)


class Directory(Protocol):
    """Facts about Slack users the core needs: bots never decide; roles may name groups."""

    async def is_bot(self, user: str) -> bool: ...

    async def groups_of(self, user: str) -> set[str]: ...

    async def in_channel(self, user: str, channel: str) -> bool: ...

    async def tz_of(self, user: str) -> str | None: ...


@dataclass
class Decision:
    changed: bool
    status: str
    task: Task | None = None


@dataclass(frozen=True)
class Approval:
    """An approval row: what was asked, of whom, until when, and what became of it."""

    id: int
    task_id: int
    kind: str  # tool | budget | spend
    status: str  # pending | approved | rejected | expired | used
    requested_at: float
    deadline: float
    idempotency_key: str | None = None
    tool: str | None = None
    args_hash: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)  # redacted
    reason: str | None = None
    tier: str | None = None
    stage: int = 0  # 1 once escalated
    channel: str | None = None
    message_ts: str | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    decision_note: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Approval:
        """From a row of `approvals` (columns of joined tables are left out)."""
        d = {name: row[name] for name in _FIELDS}
        d["arguments"] = json.loads(d["arguments"] or "{}")
        return cls(**d)

    def view(self) -> ApprovalView:
        """What the approval message shows."""
        return ApprovalView(
            approval_id=self.id,
            kind=self.kind,
            tool=self.tool,
            arguments=self.arguments,
            reason=self.reason or "",
            tier=self.tier or "block",
            status=self.status,
            decided_by=self.decided_by,
            decided_at=self.decided_at,
            note=self.decision_note,
            stage=self.stage,
        )


_FIELDS = tuple(f.name for f in fields(Approval))


class ApprovalService:
    def __init__(
        self,
        db: Database,
        tasks: TaskStore,
        config: Config,
        notifier: Notifier,
        directory: Directory,
        wake: Callable[[], Awaitable[None] | None],
        subtask_finished: Callable[[Task], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.tasks = tasks
        self.config = config
        self.notifier = notifier
        self.directory = directory
        self.wake = wake
        #: Tells a subtask's parent it ended (the orchestrator's `child_finished`).
        self.subtask_finished = subtask_finished

    @staticmethod
    def view(task: Task, approval: Approval) -> ApprovalView:
        """What the approval's message shows, again: the plan step it serves included."""
        view = approval.view()
        if approval.tool is not None:
            view.plan_step = step_using(task.plan, approval.tool)
        return view

    async def may_decide(self, task: Task, user: str) -> bool:
        """The delegator, a configured approver, or someone it was escalated to; never a bot."""
        if not user or await self.directory.is_bot(user):
            return False
        cfg = self.config.approvals
        return user == task.delegator or user in cfg.approvers or user in cfg.escalate_to

    async def get(self, approval_id: int) -> Approval | None:
        row = await self.db.fetchone("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return None if row is None else Approval.from_row(row)

    async def for_key(self, key: str) -> Approval | None:
        row = await self.db.fetchone("SELECT * FROM approvals WHERE idempotency_key = ?", (key,))
        return None if row is None else Approval.from_row(row)

    async def current(self, task_id: int, key: str) -> Approval | None:
        """The approval under `key` as a running task sees it: one that timed out is pending
        again (the task runs, so it was resumed), to be asked anew."""
        approval = await self.for_key(key)
        if approval is not None and approval.status == "expired":
            await self.reopen_expired(task_id)
            approval = await self.for_key(key)
        return approval

    async def request(
        self,
        task: Task,
        *,
        kind: str,
        reason: str,
        key: str | None = None,
        tool: str | None = None,
        arguments: dict[str, Any] | None = None,
        args_hash: str | None = None,
        tier: str = "block",
        plan_step: str | None = None,
        preview: str | None = None,
    ) -> int | None:
        """Create a pending approval (once per key) and post it; return its id.

        None when the task has ended meanwhile (a cancel racing the request): nothing is
        asked of anyone for a task that will not go on.
        """
        t = now()
        inserted = await self.db.fetchall(
            "INSERT INTO approvals (task_id, kind, idempotency_key, tool, args_hash,"
            " arguments, reason, tier, channel, requested_at, deadline)"
            " SELECT CAST(? AS BIGINT), ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS DOUBLE PRECISION),"
            " CAST(? AS DOUBLE PRECISION) WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?"
            f" AND status NOT IN ({marks(len(FINISHED))})) ON CONFLICT DO NOTHING RETURNING id",
            (
                task.id,
                kind,
                key,
                tool,
                args_hash,
                json.dumps(redact(arguments or {})),
                redact_text(reason),
                tier,
                task.channel,
                t,
                t + self.config.approvals.timeout,
                task.id,
                *FINISHED,
            ),
        )
        if key:
            approval = await self.for_key(key)
        else:
            approval = await self.get(inserted[0]["id"]) if inserted else None
        if approval is None:
            log.info("task %s ended before its approval was asked for", task.ref)
            return None
        if approval.message_ts is None and approval.status == "pending":
            view = approval.view()
            view.plan_step, view.preview = plan_step, preview
            ts = await self.notifier.approval_requested(task, view)
            await self.db.execute(
                "UPDATE approvals SET message_ts = ? WHERE id = ?", (ts, approval.id)
            )
            await self.tasks.log(
                task.id, "approval_requested", detail={"id": approval.id, "tool": tool}
            )
        return approval.id

    async def decide(
        self, approval_id: int, user: str, *, approve: bool, note: str | None = None
    ) -> Decision:
        """Approve or reject once; raise `NotAllowed` for people who may not decide."""
        asked = await self.get(approval_id)
        if asked is None:
            return Decision(changed=False, status="missing")
        task = await self.tasks.get(asked.task_id)
        if not await self.may_decide(task, user):
            raise NotAllowed(user=user, action=f"decide approval {approval_id}")
        status = "approved" if approve else "rejected"
        changed = await self.db.execute(
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision_note = ?"
            " WHERE id = ? AND status = 'pending'",
            (status, user, now(), note, approval_id),
        )
        decided = await self.get(approval_id)
        assert decided is not None  # approvals are deleted only with their task
        if not changed:
            return Decision(changed=False, status=decided.status, task=task)
        await self.tasks.log(task.id, f"approval_{status}", actor=user, detail={"id": approval_id})
        await self.notifier.approval_updated(task, self.view(task, decided), decided.message_ts)
        await self._after_decision(task, decided, approve)
        return Decision(changed=True, status=status, task=task)

    async def give_reason(self, approval_id: int, user: str, text: str) -> tuple[Task, bool] | None:
        """The reason for a rejection, given afterwards by the person who rejected: kept on
        the approval and its message, and put to the model at the task's next turn unless
        the task has finished. The task and whether it will hear it; None when there was
        nothing to explain (no such rejection, or its reason was given already).

        Raises:
            NotAllowed: `user` is not the person who rejected it.
        """
        approval = await self.get(approval_id)
        if approval is None or approval.status != "rejected":
            return None
        if user != approval.decided_by:
            raise NotAllowed(user=user, action=f"give the reason for rejecting {approval_id}")
        note = redact_text(text)
        changed = await self.db.execute(
            "UPDATE approvals SET decision_note = ? WHERE id = ? AND status = 'rejected'"
            " AND decided_by = ? AND decision_note IS NULL",
            (note, approval_id, user),
        )
        if not changed:
            return None
        task = await self.tasks.get(approval.task_id)
        await self.tasks.log(task.id, "approval_reason", actor=user, detail={"id": approval_id})
        said = f"<@{user}> explained why they rejected `{approval.tool}`: {note}"
        told = await self.tasks.add_input_if_open(task.id, user, said)
        decided = await self.get(approval_id)
        assert decided is not None
        await self.notifier.approval_updated(task, self.view(task, decided), decided.message_ts)
        return task, told

    async def _after_decision(self, task: Task, approval: Approval, approve: bool) -> None:
        if approval.kind == "budget" and approve:
            base = self.config.budget.task_usd
            await self.tasks.update(task.id, budget_usd=task.budget_usd + base)
            # Ran out while planning: plan again.
            to = TaskStatus.QUEUED if task.plan else TaskStatus.RECEIVED
            await self.tasks.transition(task.id, to, from_=TaskStatus.PAUSED)
        elif approval.kind == "budget":
            # What it had was posted when it paused. A subtask is stopped rather than done,
            # so no pipeline stage builds on it and it is not retried as a failure.
            child = task.parent_id is not None
            ended = await self.tasks.transition(
                task.id,
                TaskStatus.CANCELLED if child else TaskStatus.DONE,
                from_=TaskStatus.PAUSED,
                error="budget_declined" if child else None,
            )
            if ended:
                await self.notifier.status(
                    ended, StatusSnapshot.of(ended, "stopped: top-up declined")
                )
                if child and self.subtask_finished is not None:
                    await self.subtask_finished(ended)
        else:
            await self.tasks.transition(
                task.id,
                TaskStatus.QUEUED,
                from_=(TaskStatus.WAITING_APPROVAL, TaskStatus.PAUSED),
            )
        result = self.wake()
        if result is not None:
            await result

    async def sweep(self) -> int:
        """Escalate approvals past their first deadline; pause tasks past the second."""
        acted = 0
        rows = await self.db.fetchall(
            "SELECT a.* FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE a.status ="
            f" 'pending' AND a.deadline <= ? AND t.status NOT IN ({marks(len(FINISHED))})",
            (now(), *FINISHED),
        )
        for approval in map(Approval.from_row, rows):
            task = await self.tasks.get(approval.task_id)
            if approval.stage == 0:
                acted += await self._escalate(task, approval)
            else:
                acted += await self._expire(task, approval)
        return acted

    async def _escalate(self, task: Task, approval: Approval) -> int:
        changed = await self.db.execute(
            "UPDATE approvals SET stage = 1, deadline = ? WHERE id = ? AND status = 'pending'"
            " AND stage = 0",
            (now() + self.config.approvals.timeout, approval.id),
        )
        if changed:
            people = self.config.approvals.escalate_to or [task.delegator]
            await self.notifier.approval_escalated(task, self.view(task, approval), people)
            await self.tasks.log(task.id, "approval_escalated", detail={"id": approval.id})
        return changed

    async def _expire(self, task: Task, approval: Approval) -> int:
        # One transaction: a crash between the two would leave the task waiting on an
        # approval nobody can answer any more.
        expired, paused_now = await self.db.batch(
            (
                "UPDATE approvals SET status = 'expired' WHERE id = ? AND status = 'pending'",
                (approval.id,),
            ),
            self.tasks.move(
                task.id,
                TaskStatus.PAUSED,
                from_=(TaskStatus.WAITING_APPROVAL, TaskStatus.QUEUED, TaskStatus.RUNNING),
                condition=(
                    "EXISTS (SELECT 1 FROM approvals WHERE id = ? AND status = 'expired')",
                    (approval.id,),
                ),
            ),
        )
        changed = int(expired) if isinstance(expired, int) else 0
        if changed and isinstance(paused_now, list) and paused_now:
            await self.tasks.moved(paused_now)
            paused = await self.tasks.get(task.id)
            await self.notifier.status(paused, StatusSnapshot.of(paused, "paused"))
            await self.notifier.paused(
                task, "No one answered the approval request in time, so I paused this task."
            )
        return changed

    async def reopen_expired(self, task_id: int) -> int:
        """On resume: expired approvals of the task become pending again with a new deadline."""
        return await self.db.execute(
            "UPDATE approvals SET status = 'pending', stage = 0, deadline = ?, message_ts = NULL"
            " WHERE task_id = ? AND status = 'expired'",
            (now() + self.config.approvals.timeout, task_id),
        )

    async def pending_count(self, task_id: int) -> int:
        """How many of the task's approvals wait for a decision."""
        count = await self.db.fetchval(
            "SELECT COUNT(*) FROM approvals WHERE task_id = ? AND status = 'pending'", (task_id,)
        )
        return int(count or 0)

    async def expire_pending(self, task_ids: list[int]) -> int:
        """Expire every pending approval of these tasks (they were cancelled)."""
        return await self.db.execute(
            "UPDATE approvals SET status = 'expired' WHERE status = 'pending'"
            f" AND task_id IN ({marks(len(task_ids))})",
            task_ids,
        )

    async def pending_for(self, user: str) -> list[Approval]:
        """Pending approvals this user may decide (App Home)."""
        rows = await self.db.fetchall(
            "SELECT a.*, t.delegator FROM approvals a JOIN tasks t ON t.id = a.task_id"
            f" WHERE a.status = 'pending' AND t.status NOT IN ({marks(len(FINISHED))})"
            " ORDER BY a.requested_at",
            FINISHED,
        )
        cfg = self.config.approvals
        return [
            Approval.from_row(r)
            for r in rows
            if r["delegator"] == user or user in cfg.approvers or user in cfg.escalate_to
        ]
