"""The `Notifier` protocol: how the core tells people what is happening.

The core never speaks Slack. It calls these methods; the Slack implementation (Block Kit,
`chat.update`, splitting at limits, rate-limited posting) lives in `handlers/notifier.py`
and the modules it puts together, and tests or a console can supply their own. Every
method receives the task, whose channel and thread say where the words go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.tasks import Task

if TYPE_CHECKING:  # memory's records are only named here, not needed at run time
    from bot.team_memory import Proposal


@dataclass
class StatusSnapshot:
    """What the one status message of a task shows."""

    state: str
    step: int
    total_steps: int
    tools_used: list[str] = field(default_factory=list)
    spent_usd: float = 0.0
    budget_usd: float = 0.0
    tokens: int = 0
    note: str | None = None

    @classmethod
    def of(cls, task: Task, state: str, tools_used: list[str] | None = None) -> StatusSnapshot:
        """`task` in `state`, as its row has it (steps taken of those planned, spend)."""
        planned = len((task.plan or {}).get("steps", []))
        return cls(
            state=state,
            step=task.steps,
            total_steps=max(planned, task.steps),
            tools_used=sorted(set(tools_used or [])),
            spent_usd=task.spent_usd,
            budget_usd=task.budget_usd,
        )


@dataclass
class Delivered:
    """How far a deliverable got: the first `parts` of its `total` parts are in the thread."""

    parts: int
    total: int
    #: Slack refused the rest for good (a closed channel, invalid blocks): do not retry.
    final: bool = False

    @property
    def complete(self) -> bool:
        return self.parts >= self.total

    @property
    def pending(self) -> bool:
        """Worth another attempt: not all in, and not refused for good."""
        return not (self.complete or self.final)


@dataclass
class ApprovalView:
    """What an approval request shows: the call, why, and who may decide."""

    approval_id: int
    kind: str  # tool | budget | spend
    tool: str | None
    arguments: dict[str, Any]
    reason: str
    tier: str
    plan_step: str | None = None
    preview: str | None = None
    status: str = "pending"
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    stage: int = 0


class Notifier(Protocol):
    async def acknowledged(self, task: Task) -> str | None:
        """React to the request and reply with the task id; return the reply's ts."""

    async def plan(self, task: Task, plan: dict[str, Any], *, needs_approval: bool) -> str | None:
        """Show the plan (with Approve / Edit / Cancel when `needs_approval`)."""

    async def plan_decided(self, task: Task, *, decision: str, user: str) -> None:
        """Mark the plan message as approved or cancelled by `user`."""

    async def plan_replaced(self, task: Task, ts: str) -> None:
        """Mark the plan message `ts` as replaced by a revised plan (its buttons go)."""

    async def questions(self, task: Task, questions: list[str]) -> str | None:
        """Ask clarifying questions in the thread; the message's ts, None if Slack refused."""

    async def status(self, task: Task, snapshot: StatusSnapshot) -> None:
        """Create or update the one status message of the task (throttled)."""

    async def tool_notice(self, task: Task, tool: str, arguments: dict[str, Any]) -> None:
        """Say that a notify-tier tool ran, with what."""

    async def approval_requested(self, task: Task, view: ApprovalView) -> str | None:
        """Post an approval request; return its message ts."""

    async def approval_updated(
        self, task: Task, view: ApprovalView, message_ts: str | None
    ) -> None:
        """Show the decision (who, when) on the approval message."""

    async def approval_escalated(self, task: Task, view: ApprovalView, people: list[str]) -> None:
        """Ask `people` to decide an overdue approval."""

    async def paused(self, task: Task, reason: str) -> None:
        """Say the task is paused and how to resume it."""

    async def budget_exhausted(self, task: Task, partial: str | None) -> None:
        """Post what the task has, say the budget ran out, offer a top-up."""

    async def deliver(
        self, task: Task, text: str, *, checks: list[str] | None = None, skip: int = 0
    ) -> Delivered:
        """Post the deliverable, split at Slack's limits, with feedback buttons.

        Parts before `skip` are already in the thread (an earlier, cut-off delivery of the
        same text) and are not posted again. Says how far it got.
        """

    async def failed(self, task: Task, message: str) -> None:
        """Explain in the thread that the task failed and what the user can do."""

    async def cancelled(self, task: Task, user: str | None) -> None:
        """Say the task was cancelled (and by whom)."""

    async def note(self, task: Task, text: str) -> None:
        """A short line in the thread."""

    async def connect_requested(
        self, task: Task | None, user: str, server: str, url: str, *, reconnect: bool = False
    ) -> None:
        """Send `user` (only them) a Connect `server` link button; for a task, say in its
        thread that it waits for them."""

    async def connect_failed(self, user: str, server: str, reason: str) -> None:
        """Tell `user` (only them) that a Connect link for `server` could not be made."""

    async def tell(self, channel: str, thread_ts: str, user: str, text: str) -> None:
        """Tell only `user`, in the thread of `thread_ts` (a message nobody else sees)."""

    async def rate_limited(self, channel: str, thread_ts: str, user: str, limit: int) -> None:
        """Tell only `user` that a new request was not started: `limit` a minute reached."""

    async def facts_proposed(self, proposals: list[Proposal]) -> None:
        """Ask people to review proposed facts (Approve / Edit / Reject)."""
