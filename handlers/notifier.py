"""The Slack `Notifier`: what the core says about a task, as Block Kit messages in its thread.

It puts three parts together: what each message shows (`handlers.blocks`), posting and
delivering in the thread (`handlers.delivery`), and the one throttled status message per
task (`handlers.status`). Failures are logged, never raised into the task.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.base.redact import redact
from bot.notifier import ApprovalView, Delivered, StatusSnapshot
from bot.tasks import Task
from bot.team_memory import Proposal
from handlers import blocks as bk
from handlers.delivery import UNREACHABLE, ThreadPoster
from handlers.status import StatusMessages, StatusTsSink

log = logging.getLogger(__name__)


class SlackNotifier:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        status_interval: float = 3.0,
        on_status_ts: StatusTsSink | None = None,
        reviewers: list[str] | None = None,
    ) -> None:
        self.client = client
        self.reviewers = reviewers or []
        self.poster = ThreadPoster(client)
        self.statuses = StatusMessages(
            self.poster, interval=status_interval, on_status_ts=on_status_ts
        )
        self.poster.on_post = self.statuses.posted

    async def post(
        self, task: Task, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post in the task's thread; the ts, or None when Slack refused it or was unreachable."""
        return await self.poster.post(task, text, blocks)

    async def update(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None
    ) -> bool:
        """Edit a message; False (logged) when Slack refused it or could not be reached."""
        return await self.poster.update(channel, ts, text, blocks)

    # -- lifecycle -------------------------------------------------------------------

    async def acknowledged(self, task: Task) -> str | None:
        try:
            await self.client.reactions_add(
                channel=task.channel, timestamp=task.message_ts, name="eyes"
            )
        except SlackApiError as exc:
            if exc.response.get("error") != "already_reacted":
                log.warning("task %s: reaction failed: %s", task.ref, exc.response.get("error"))
        except UNREACHABLE as exc:
            log.warning("task %s: reaction failed: %s", task.ref, type(exc).__name__)
        return await self.post(task, bk.ack_text(task))

    async def plan(self, task: Task, plan: dict[str, Any], *, needs_approval: bool) -> str | None:
        if task.ack_ts:
            await self.update(task.channel, task.ack_ts, bk.ack_text(task), None)
        blocks = bk.plan_blocks(task.ref, plan, task.budget_usd, needs_approval, task.id)
        return await self.post(task, f"Plan for {task.ref}: {plan.get('summary', '')}", blocks)

    async def plan_decided(self, task: Task, *, decision: str, user: str) -> None:
        if not task.plan_ts or not task.plan:
            return
        blocks = bk.plan_blocks(task.ref, task.plan, task.budget_usd, False, task.id)
        blocks.append(bk.context(f"Plan {decision} by <@{user}>."))
        await self.update(task.channel, task.plan_ts, f"Plan {decision}", blocks)

    async def plan_replaced(self, task: Task, ts: str) -> None:
        text = f"Plan for {task.ref}: replaced by a revised plan (below)."
        await self.update(task.channel, ts, text, [bk.context(text)])

    async def questions(self, task: Task, questions: list[str]) -> str | None:
        lines = "\n".join(f"• {bk.escape(q)}" for q in questions)
        text = f"Before I plan {task.ref}, a few questions (reply in this thread):\n{lines}"
        return await self.post(task, text, [bk.section(text)])

    async def status(self, task: Task, snapshot: StatusSnapshot) -> None:
        """Create or update the task's status message (throttled: `handlers.status`)."""
        await self.statuses.show(task, snapshot)

    async def tool_notice(self, task: Task, tool: str, arguments: dict[str, Any]) -> None:
        text = f"Ran `{tool}` with:\n{bk.code(redact(arguments), 1500)}"
        await self.post(task, f"Ran {tool}", [bk.context(text)])

    # -- approvals -------------------------------------------------------------------

    async def approval_requested(self, task: Task, view: ApprovalView) -> str | None:
        who = f"<@{task.delegator}>"
        blocks = bk.approval_blocks(task, view, buttons=True)
        return await self.post(task, f"{who}: approval needed for {task.ref}", blocks)

    async def approval_updated(
        self, task: Task, view: ApprovalView, message_ts: str | None
    ) -> None:
        if message_ts:
            blocks = bk.approval_blocks(task, view, buttons=False)
            await self.update(task.channel, message_ts, bk.decision_line(view), blocks)

    async def approval_escalated(self, task: Task, view: ApprovalView, people: list[str]) -> None:
        mentions = " ".join(f"<@{p}>" for p in people)
        await self.post(task, f"{mentions}: an approval for {task.ref} is overdue. Please decide.")
        blocks = bk.approval_blocks(task, view, buttons=True)
        for person in people:
            try:
                dm = await self.client.conversations_open(users=person)
                await self.client.chat_postMessage(
                    channel=dm["channel"]["id"],
                    text=f"Overdue approval for {task.ref}",
                    blocks=blocks,
                )
            except SlackApiError as exc:
                log.warning("escalation DM to %s failed: %s", person, exc.response.get("error"))
            except UNREACHABLE as exc:
                log.warning("escalation DM to %s failed: %s", person, type(exc).__name__)

    async def paused(self, task: Task, reason: str) -> None:
        text = f"⏸ {reason} Resume with the button or `/coworker resume {task.ref}`."
        await self.post(task, text, bk.paused_blocks(task, text))

    async def budget_exhausted(self, task: Task, partial: str | None) -> None:
        intro = f"{task.ref} used its budget (${task.spent_usd:.2f} of ${task.budget_usd:.2f})."
        if partial:
            intro = f"{intro} Here is what I have so far:"
            await self.poster.post_parts(task, intro, f"_{intro}_\n\n{partial}")
        else:
            await self.post(task, intro)

    # -- results ---------------------------------------------------------------------

    async def deliver(
        self, task: Task, text: str, *, checks: list[str] | None = None, skip: int = 0
    ) -> Delivered:
        return await self.poster.deliver(task, text, checks=checks, skip=skip)

    async def failed(self, task: Task, message: str) -> None:
        await self._ack_again(task)
        await self.post(task, f"⚠️ {message}", [bk.section(f"⚠️ {message}")])

    async def cancelled(self, task: Task, user: str | None) -> None:
        await self._ack_again(task)
        by = f" by <@{user}>" if user else ""
        await self.post(task, f"🛑 {task.ref} was cancelled{by}.")

    async def _ack_again(self, task: Task) -> None:
        """A task that ended before its plan was shown: the "Got it" reply stops saying
        "routing…" (the plan's post updates it otherwise)."""
        if task.ack_ts and task.plan is None and task.parent_id is None:
            await self.update(task.channel, task.ack_ts, bk.ack_text(task), None)

    async def note(self, task: Task, text: str) -> None:
        await self.post(task, text)

    async def connect_requested(
        self, task: Task | None, user: str, server: str, url: str, *, reconnect: bool = False
    ) -> None:
        """The link goes to the person alone, in a DM (a thread is read by others, and a link
        opened by someone else would connect their account in the person's name)."""
        blocks = bk.connect_blocks(server, url, task, reconnect=reconnect)
        text = f"Connect {server}"
        if task is not None and task.channel.startswith("D"):
            await self.post(task, text, blocks)  # the task's thread is already their DM
            return
        await self._dm(user, text, blocks)
        if task is not None:
            verb = "reconnect" if reconnect else "connect"
            await self.post(
                task,
                f"{task.ref} is waiting for <@{user}> to {verb} `{server}` "
                "(I sent them a Connect link in a DM).",
            )

    async def connect_failed(self, user: str, server: str, reason: str) -> None:
        await self._dm(user, f"⚠️ I can't connect you to {server}: {reason}", None)

    async def _dm(self, user: str, text: str, blocks: list[dict[str, Any]] | None) -> None:
        try:
            dm = await self.client.conversations_open(users=user)
            await self.client.chat_postMessage(
                channel=dm["channel"]["id"], text=text, blocks=blocks
            )
        except SlackApiError as exc:
            log.warning("DM to %s failed: %s", user, exc.response.get("error"))
        except UNREACHABLE as exc:
            log.warning("DM to %s failed: %s", user, type(exc).__name__)

    async def tell(self, channel: str, thread_ts: str, user: str, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            log.info("ephemeral notice to %s failed: %s", user, exc.response.get("error"))
        except UNREACHABLE as exc:
            log.info("ephemeral notice to %s failed: %s", user, type(exc).__name__)

    async def rate_limited(self, channel: str, thread_ts: str, user: str, limit: int) -> None:
        text = (
            f"You've started {limit} tasks in the last minute, so I didn't start this one. "
            "Please ask again in a minute."
        )
        await self.tell(channel, thread_ts, user, text)

    # -- facts -----------------------------------------------------------------------

    async def facts_proposed(self, proposals: list[Proposal]) -> None:
        """Post each proposal to its project's channel, or DM the reviewers."""
        for p in proposals:
            targets = [p.channel] if p.channel else list(self.reviewers)
            for target in targets:
                try:
                    channel = target
                    if target.startswith(("U", "W")):
                        channel = (await self.client.conversations_open(users=target))["channel"][
                            "id"
                        ]
                    await self.client.chat_postMessage(
                        channel=channel,
                        text="Proposed fact to review",
                        blocks=bk.fact_blocks(p.fact.id, p.fact.content),
                    )
                except SlackApiError as exc:
                    log.warning("fact review post failed: %s", exc.response.get("error"))
                except UNREACHABLE as exc:
                    log.warning("fact review post failed: %s", type(exc).__name__)

    async def fact_decided(self, channel: str, ts: str, text: str, line: str) -> None:
        await self.update(channel, ts, line, [bk.section(f">{bk.escape(text)}"), bk.context(line)])

    async def close(self) -> None:
        """Stop the status timers and send the snapshots they held (bounded)."""
        await self.statuses.close()
