"""Posting into a task's thread: a message, an edit, and a deliverable in parts or as a file.

Rate-limit (429) and server errors are retried by slack_sdk's retry handlers on the client;
what still fails is logged, never raised into the task, and comes back as Slack's error
code with whether a later attempt could get past it (the delivery sweep in `bot.delivery`
retries only those).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.base.redact import redact_text
from bot.notifier import Delivered
from bot.tasks import Task
from handlers import blocks as bk
from handlers.splitting import split_markdown

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

#: What `chat.postMessage` answers when it will not take a message's blocks (a workspace
#: without the `markdown` block, a limit we did not foresee): the text can still go as text.
BLOCKS_REFUSED = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long"})
#: Slack's limit on a message's `text`; with blocks it is only the notification, so shorter.
TEXT_LIMIT = 40_000

#: What `chat.update` answers when the message cannot be edited any more: post a new one.
GONE = frozenset({"message_not_found", "cant_update_message"})
#: Failures of the connection itself, after slack_sdk's retries.
UNREACHABLE = (SlackClientError, aiohttp.ClientError, TimeoutError)


class Posted(NamedTuple):
    """A `chat.postMessage`: the ts, or on a failure Slack's error code (or "unreachable")
    and whether a later attempt could get past it."""

    ts: str | None
    retryable: bool
    error: str | None = None


class ThreadPoster:
    """Posts and edits messages in tasks' threads, and delivers answers there."""

    def __init__(
        self, client: AsyncWebClient, on_post: Callable[[Task], None] | None = None
    ) -> None:
        self.client = client
        #: Told before each post to a task's thread (Slack clears an assistant status then).
        self.on_post = on_post

    async def post(
        self, task: Task, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post in the task's thread; the ts, or None when Slack refused it or was unreachable.

        slack_sdk's retry handlers have already retried rate limits, server errors and
        dropped connections by the time this gives up.
        """
        return (await self.send(task, text, blocks)).ts

    async def send(self, task: Task, text: str, blocks: list[dict[str, Any]] | None) -> Posted:
        """`post`, and on a failure Slack's error code and whether a later attempt could pass."""
        if self.on_post is not None:
            self.on_post(task)
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
        return await self.edit(channel, ts, text, blocks) is None

    async def edit(
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

    async def deliver(
        self, task: Task, text: str, *, checks: list[str] | None = None, skip: int = 0
    ) -> Delivered:
        """The deliverable, from part `skip` on; long text as a file with a summary."""
        tail = bk.deliverable_tail(task, checks)
        if len(text) > bk.FILE_THRESHOLD:
            got = await self._deliver_file(task, text, tail, skip)
            if got is not None:
                return got
            # No files here for good (e.g. no files:write): as messages, in one attempt,
            # since a later one would count its parts as the file's.
            got = await self.post_parts(task, f"Done: {task.ref}", text, tail)
            return Delivered(got.parts, got.total, final=True)
        return await self.post_parts(task, f"Done: {task.ref}", text, tail, skip)

    async def post_parts(
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
        parts = split_markdown(text, bk.MARKDOWN_LIMIT - 1000 - bk.TAIL_ROOM)
        for i, part in enumerate(parts):
            if i < skip:
                continue
            last = i == len(parts) - 1
            blocks = [bk.markdown(part), *((tail or []) if last else [])]
            sent = await self.send(task, f"{fallback} {bk.notification_text(part)}", blocks)
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
        sent = await self.send(task, part, None)
        if sent.ts is not None and tail:
            await self.send(task, "Was this useful?", tail)
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
        summary = split_markdown(text, 2500)[0]
        note = bk.context("The full answer is attached as a file.")
        blocks = [bk.markdown(summary + "\n\n…"), note, *tail]
        sent = await self.send(task, f"Done: {task.ref}", blocks)
        return Delivered(2, 2) if sent.ts else Delivered(1, 2, final=not sent.retryable)
