"""The Slack `Notifier`: Block Kit messages in the task's thread, kept current with `chat.update`.

One status message per task is updated at most once per `status_interval` (Slack allows
about 50 `chat.update` a minute); a newer "running" snapshot inside the interval replaces
the pending one and is sent when the interval ends, while any other state (done, failed,
cancelled, paused, waiting) is shown at once. Only a running task creates the status
message; a failed update keeps it (the next snapshot tries again) unless Slack says the
message is gone. Rate-limit (429) and server errors are retried by slack_sdk's retry
handlers on the client; what still fails is logged, never raised into the task. Arguments
shown in Slack are redacted of secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.base.redact import redact, redact_text
from bot.notifier import ApprovalView, Delivered, StatusSnapshot
from bot.tasks import Task
from handlers import blocks as bk

log = logging.getLogger(__name__)


def slack_error(exc: SlackApiError) -> tuple[str | None, bool]:
    """A Web API failure's error code, and whether a later attempt could get past it.

    A server error (5xx) or an answer without a JSON error code (an HTML or plain-text error
    page from a proxy) is an outage, so worth another attempt.
    """
    data = getattr(exc.response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    status = getattr(exc.response, "status_code", 0) or 0
    return error, error is None or status >= 500 or error in RETRYABLE


#: Slack errors a later attempt can get past; the rest (an archived channel, the bot removed
#: from it, invalid blocks) will not, so a deliverable is not retried after them.
RETRYABLE = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
    }
)

CLOSE_FLUSH_SECONDS = 5.0
#: Slack drops an assistant thread's status after two minutes without a message.
ASSISTANT_REFRESH = 90.0

#: What `chat.postMessage` answers when it will not take a message's blocks (a workspace
#: without the `markdown` block, a limit we did not foresee): the text can still go as text.
BLOCKS_REFUSED = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long"})
#: Slack's limit on a message's `text`; with blocks it is only the notification, so shorter.
TEXT_LIMIT = 40_000

#: What `chat.update` answers when the message cannot be edited any more: post a new one.
GONE = frozenset({"message_not_found", "cant_update_message"})
#: Failures of the connection itself, after slack_sdk's retries.
UNREACHABLE = (SlackClientError, aiohttp.ClientError, TimeoutError)

StatusTsSink = Callable[[int, str], Awaitable[None]]


class Posted(NamedTuple):
    """A `chat.postMessage`: the ts, or on a failure Slack's error code (or "unreachable")
    and whether a later attempt could get past it."""

    ts: str | None
    retryable: bool
    error: str | None = None


def decision_line(view: ApprovalView) -> str:
    icon = {
        "approved": "✅ Approved",
        "rejected": "❌ Rejected",
        "used": "✅ Approved",
        "expired": "⌛ Expired",
    }.get(view.status, view.status)
    who = f" by <@{view.decided_by}>" if view.decided_by else ""
    when = (
        f" at <!date^{int(view.decided_at)}^{{time}}|{time.ctime(view.decided_at)}>"
        if view.decided_at
        else ""
    )
    note = f"\n> {bk.escape(view.note)}" if view.note else ""
    return f"{icon}{who}{when}{note}"


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
        self.status_interval = status_interval
        self.on_status_ts = on_status_ts
        self._status_ts: dict[int, str] = {}
        self._last_status: dict[int, float] = {}
        self._pending: dict[int, tuple[Task, StatusSnapshot]] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}
        self._status_locks: dict[int, asyncio.Lock] = {}
        #: The assistant status each task's thread shows, and when it was set.
        self._assistant_status: dict[int, tuple[str, float]] = {}

    async def post(
        self, task: Task, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post in the task's thread; the ts, or None when Slack refused it or was unreachable.

        slack_sdk's retry handlers have already retried rate limits, server errors and
        dropped connections by the time this gives up.
        """
        return (await self._send(task, text, blocks)).ts

    async def _send(self, task: Task, text: str, blocks: list[dict[str, Any]] | None) -> Posted:
        """`post`, and on a failure Slack's error code and whether a later attempt could pass."""
        if task.assistant:  # Slack clears an assistant thread's status when the app replies
            self._assistant_status.pop(task.id, None)
        try:
            resp = await self.client.chat_postMessage(
                channel=task.channel,
                thread_ts=task.thread_ts,
                text=text[:3000] if blocks else text[:TEXT_LIMIT],
                blocks=blocks,
            )
        except SlackApiError as exc:
            error, retryable = slack_error(exc)
            log.warning("task %s: chat.postMessage failed: %s", task.ref, error)
            return Posted(None, retryable, error)
        except UNREACHABLE as exc:
            log.warning("task %s: Slack unreachable: %s", task.ref, type(exc).__name__)
            return Posted(None, True, "unreachable")
        return Posted(str(resp["ts"]), True)

    async def update(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None
    ) -> bool:
        """Edit a message; False (logged) when Slack refused it or could not be reached."""
        return await self._update(channel, ts, text, blocks) is None

    async def _update(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None
    ) -> str | None:
        """`update`: None when done, else Slack's error code (or "unreachable")."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text[:3000], blocks=blocks)
        except SlackApiError as exc:
            error = slack_error(exc)[0] or "server_error"
            log.warning("chat.update failed: %s", error)
            return error
        except UNREACHABLE as exc:
            log.warning("chat.update: Slack unreachable: %s", type(exc).__name__)
            return "unreachable"
        return None

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
        return await self.post(task, self.ack_text(task))

    @staticmethod
    def ack_text(task: Task) -> str:
        who = f"`{task.coworker}`" if task.coworker else "routing…"
        est = f"est. ~{task.estimate_min} min" if task.estimate_min else "estimate after planning"
        return f"Got it: task {task.ref}, priority {task.priority_name}, assignee {who}, {est}."

    async def plan(self, task: Task, plan: dict[str, Any], *, needs_approval: bool) -> str | None:
        if task.ack_ts:
            await self.update(task.channel, task.ack_ts, self.ack_text(task), None)
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
        """Create or update the status message: running at most once per interval per task,
        any other state at once; the assistant status follows (after any post it clears)."""
        if snapshot.state != "running":
            self._pending.pop(task.id, None)  # older than this one
            await self._send_status(task, snapshot)
            await self._set_assistant_status(task, snapshot)
            return
        wait = self.status_interval - (time.monotonic() - self._last_status.get(task.id, 0.0))
        if wait > 0 and task.id in self._last_status:
            self._pending[task.id] = (task, snapshot)
            if task.id not in self._flushers:
                self._flushers[task.id] = asyncio.create_task(self._flush_later(task.id, wait))
        else:
            await self._send_status(task, snapshot)
        await self._set_assistant_status(task, snapshot)

    async def _flush_later(self, task_id: int, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
        finally:
            self._flushers.pop(task_id, None)
        pending = self._pending.pop(task_id, None)
        if pending:
            await self._send_status(*pending)

    async def _send_status(self, task: Task, snap: StatusSnapshot) -> None:
        lock = self._status_locks.setdefault(task.id, asyncio.Lock())
        async with lock:
            self._last_status[task.id] = time.monotonic()
            text = self.status_text(task, snap)
            ts = self._status_ts.get(task.id) or task.status_ts
            if ts:
                problem = await self._update(task.channel, ts, text, [bk.context(text)])
                if problem is None:
                    self._status_ts[task.id] = ts
                if problem not in GONE:  # kept: the next snapshot tries it again
                    return
            if snap.state != "running":  # only a running task starts a status message
                return
            new_ts = await self.post(task, text, [bk.context(text)])
            if new_ts:
                self._status_ts[task.id] = new_ts
                if self.on_status_ts:
                    await self.on_status_ts(task.id, new_ts)

    @staticmethod
    def status_text(task: Task, s: StatusSnapshot) -> str:
        steps = f"step {s.step}/{s.total_steps}" if s.total_steps else f"step {s.step}"
        tools = f" · tools: {', '.join(f'`{t}`' for t in s.tools_used)}" if s.tools_used else ""
        note = f" · {s.note}" if s.note else ""
        return (
            f"{task.ref} · {s.state} · {steps}{tools} · "
            f"${s.spent_usd:.2f} of ${s.budget_usd:.2f}{note}"
        )

    async def _set_assistant_status(self, task: Task, snap: StatusSnapshot) -> None:
        """Slack's "is working…" in assistant threads: set once per change, again after a
        post of ours (which clears it) and before Slack's two-minute timeout ends it."""
        if not task.assistant:
            return
        status = "is working…" if snap.state == "running" else ""
        shown, at = self._assistant_status.get(task.id, (None, 0.0))
        if shown == status and (not status or time.monotonic() - at < ASSISTANT_REFRESH):
            return
        self._assistant_status[task.id] = (status, time.monotonic())
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=task.channel, thread_ts=task.thread_ts, status=status
            )
        except SlackApiError as exc:
            log.info("assistant status not set: %s", exc.response.get("error"))
        except UNREACHABLE as exc:
            log.info("assistant status not set: %s", type(exc).__name__)

    async def tool_notice(self, task: Task, tool: str, arguments: dict[str, Any]) -> None:
        text = f"Ran `{tool}` with:\n{bk.code(redact(arguments), 1500)}"
        await self.post(task, f"Ran {tool}", [bk.context(text)])

    # -- approvals -------------------------------------------------------------------

    def approval_blocks(
        self, task: Task, view: ApprovalView, *, buttons: bool
    ) -> list[dict[str, Any]]:
        if view.kind == "budget":
            head = f"*Budget reached* for {task.ref}. {bk.escape(view.reason)}"
            blocks = [bk.section(head)]
            approve = "Approve top-up"
        else:
            head = f"*Approval needed* for {task.ref}: `{view.tool}` (tier: {view.tier})"
            why = f"*Why:* {bk.escape(view.reason)}" if view.reason else ""
            if view.plan_step:
                why += f"\n*Plan step:* {bk.escape(view.plan_step)}"
            blocks = [bk.section(head)]
            if why:
                blocks.append(bk.section(why))
            blocks.append(bk.section(f"*Arguments:*\n{bk.code(redact(view.arguments))}"))
            if view.preview:
                blocks.append(bk.section(f"*Dry-run preview:*\n{bk.code(view.preview)}"))
            approve = "Approve"
        if buttons:
            v = str(view.approval_id)
            blocks.append(
                bk.actions(
                    f"approval:{view.approval_id}",
                    bk.button(approve, "approval_approve", v, "primary"),
                    bk.button("Reject", "approval_reject", v, "danger"),
                )
            )
        else:
            blocks.append(bk.context(decision_line(view)))
        return blocks

    async def approval_requested(self, task: Task, view: ApprovalView) -> str | None:
        who = f"<@{task.delegator}>"
        blocks = self.approval_blocks(task, view, buttons=True)
        return await self.post(task, f"{who}: approval needed for {task.ref}", blocks)

    async def approval_updated(
        self, task: Task, view: ApprovalView, message_ts: str | None
    ) -> None:
        if message_ts:
            blocks = self.approval_blocks(task, view, buttons=False)
            await self.update(task.channel, message_ts, decision_line(view), blocks)

    async def approval_escalated(self, task: Task, view: ApprovalView, people: list[str]) -> None:
        mentions = " ".join(f"<@{p}>" for p in people)
        await self.post(task, f"{mentions}: an approval for {task.ref} is overdue. Please decide.")
        blocks = self.approval_blocks(task, view, buttons=True)
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
        await self.post(
            task,
            text,
            [
                bk.section(text),
                bk.actions(f"resume:{task.id}", bk.button("Resume", "task_resume", str(task.id))),
            ],
        )

    async def budget_exhausted(self, task: Task, partial: str | None) -> None:
        intro = f"{task.ref} used its budget (${task.spent_usd:.2f} of ${task.budget_usd:.2f})."
        if partial:
            intro = f"{intro} Here is what I have so far:"
            await self._post_parts(task, intro, f"_{intro}_\n\n{partial}")
        else:
            await self.post(task, intro)

    # -- results ---------------------------------------------------------------------

    async def deliver(
        self, task: Task, text: str, *, checks: list[str] | None = None, skip: int = 0
    ) -> Delivered:
        feedback = bk.actions(
            f"feedback:{task.id}",
            bk.button("👍", "feedback_up", str(task.id)),
            bk.button("👎", "feedback_down", str(task.id)),
        )
        tail = [*([bk.context("\n".join(checks))] if checks else []), feedback]
        if len(text) > bk.FILE_THRESHOLD:
            got = await self._deliver_file(task, text, tail, skip)
            if got is not None:
                return got
            # No files here for good (e.g. no files:write): as messages, in one attempt,
            # since a later one would count its parts as the file's.
            got = await self._post_parts(task, f"Done: {task.ref}", text, tail)
            return Delivered(got.parts, got.total, final=True)
        return await self._post_parts(task, f"Done: {task.ref}", text, tail, skip)

    async def _post_parts(
        self,
        task: Task,
        fallback: str,
        text: str,
        tail: list[dict[str, Any]] | None = None,
        skip: int = 0,
    ) -> Delivered:
        """Post `text` in parts from part `skip` on, stopping at the first Slack does not take.

        Parts leave room for a tail (checks, buttons), so the last one fits with it; the room
        is fixed, so a retry (`skip`) splits the text as the first attempt did.
        """
        parts = bk.split_markdown(text, bk.MARKDOWN_LIMIT - 1000 - bk.TAIL_ROOM)
        for i, part in enumerate(parts):
            if i < skip:
                continue
            last = i == len(parts) - 1
            blocks = [bk.markdown(part), *((tail or []) if last else [])]
            sent = await self._send(task, f"{fallback} {part[:200]}", blocks)
            if sent.ts is None and sent.error in BLOCKS_REFUSED:
                sent = await self._send_as_text(task, part, tail if last else None)
            if sent.ts is None:
                return Delivered(i, len(parts), final=not sent.retryable)
        return Delivered(len(parts), len(parts))

    async def _send_as_text(
        self, task: Task, part: str, tail: list[dict[str, Any]] | None
    ) -> Posted:
        """A part whose blocks Slack refused, as plain text, so the answer still arrives whole
        (Slack shows a message's text only when it has no blocks); then its tail (checks,
        👍/👎) on its own, best effort: the answer is delivered without it."""
        log.warning("task %s: Slack refused the answer's blocks; posting it as text", task.ref)
        sent = await self._send(task, part, None)
        if sent.ts is not None and tail:
            await self._send(task, "Was this useful?", tail)
        return sent

    async def _deliver_file(
        self, task: Task, text: str, tail: list[dict[str, Any]], skip: int
    ) -> Delivered | None:
        """Two parts: the file, then a summary; None when Slack refuses files for good."""
        if skip < 1:
            try:
                await self.client.files_upload_v2(
                    channel=task.channel,
                    thread_ts=task.thread_ts,
                    content=redact_text(text),
                    filename=f"{task.ref}.md",
                    title=f"{task.ref}: full answer",
                )
            except SlackApiError as exc:
                error, retryable = slack_error(exc)
                log.warning("task %s: file upload failed: %s", task.ref, error)
                return Delivered(0, 2) if retryable else None
            except UNREACHABLE as exc:
                log.warning("task %s: Slack unreachable: %s", task.ref, type(exc).__name__)
                return Delivered(0, 2)
        summary = bk.split_markdown(text, 2500)[0]
        note = bk.context("The full answer is attached as a file.")
        blocks = [bk.markdown(summary + "\n\n…"), note, *tail]
        sent = await self._send(task, f"Done: {task.ref}", blocks)
        return Delivered(2, 2) if sent.ts else Delivered(1, 2, final=not sent.retryable)

    async def failed(self, task: Task, message: str) -> None:
        await self.post(task, f"⚠️ {message}", [bk.section(f"⚠️ {message}")])

    async def cancelled(self, task: Task, user: str | None) -> None:
        by = f" by <@{user}>" if user else ""
        await self.post(task, f"🛑 {task.ref} was cancelled{by}.")

    async def note(self, task: Task, text: str) -> None:
        await self.post(task, text)

    async def rate_limited(self, channel: str, thread_ts: str, user: str, limit: int) -> None:
        text = (
            f"You've started {limit} tasks in the last minute, so I didn't start this one. "
            "Please ask again in a minute."
        )
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            log.info("rate-limit notice to %s failed: %s", user, exc.response.get("error"))
        except UNREACHABLE as exc:
            log.info("rate-limit notice to %s failed: %s", user, type(exc).__name__)

    def fact_blocks(self, fact_id: int, text: str) -> list[dict[str, Any]]:
        v = str(fact_id)
        return [
            bk.section(f"*Proposed fact* (from what I learned):\n>{bk.escape(text)}"),
            bk.actions(
                f"fact:{fact_id}",
                bk.button("Approve", "fact_approve", v, "primary"),
                bk.button("Edit", "fact_edit", v),
                bk.button("Reject", "fact_reject", v, "danger"),
            ),
        ]

    async def facts_proposed(self, proposals: list[Any]) -> None:
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
                        blocks=self.fact_blocks(p.fact.id, p.fact.content),
                    )
                except SlackApiError as exc:
                    log.warning("fact review post failed: %s", exc.response.get("error"))
                except UNREACHABLE as exc:
                    log.warning("fact review post failed: %s", type(exc).__name__)

    async def fact_decided(self, channel: str, ts: str, text: str, line: str) -> None:
        await self.update(channel, ts, line, [bk.section(f">{bk.escape(text)}"), bk.context(line)])

    async def close(self) -> None:
        """Stop the timers and send the snapshots they held (bounded: this is a shutdown)."""
        for job in list(self._flushers.values()):
            job.cancel()
        await asyncio.gather(*self._flushers.values(), return_exceptions=True)
        pending, self._pending = list(self._pending.values()), {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                for task, snap in pending:
                    await self._send_status(task, snap)
