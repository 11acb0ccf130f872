"""The one status message of each task, kept current and throttled; and the assistant status.

One status message per task is updated at most once per `interval` (Slack allows about 50
`chat.update` a minute); a newer "running" snapshot inside the interval replaces the
pending one and is sent when the interval ends, while any other state (done, failed,
cancelled, paused, waiting) is shown at once. Only a running task creates the status
message; a failed update keeps it (the next snapshot tries again) unless Slack says the
message is gone. In assistant threads, Slack's "is working…" follows the same snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from slack_sdk.errors import SlackApiError

from bot.notifier import StatusSnapshot
from bot.tasks import Task
from handlers import blocks as bk
from handlers.delivery import GONE, UNREACHABLE, ThreadPoster

log = logging.getLogger(__name__)

CLOSE_FLUSH_SECONDS = 5.0
#: Slack drops an assistant thread's status after two minutes without a message.
ASSISTANT_REFRESH = 90.0

StatusTsSink = Callable[[int, str], Awaitable[None]]


class StatusMessages:
    """Status messages of running tasks, throttled per task."""

    def __init__(
        self,
        poster: ThreadPoster,
        *,
        interval: float = 3.0,
        on_status_ts: StatusTsSink | None = None,
    ) -> None:
        self.poster = poster
        self.client = poster.client
        self.interval = interval
        self.on_status_ts = on_status_ts
        self._status_ts: dict[int, str] = {}
        self._last_status: dict[int, float] = {}
        self._pending: dict[int, tuple[Task, StatusSnapshot]] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}
        self._status_locks: dict[int, asyncio.Lock] = {}
        #: The assistant status each task's thread shows, and when it was set.
        self._assistant_status: dict[int, tuple[str, float]] = {}

    def posted(self, task: Task) -> None:
        """A message of ours went to the task's thread: Slack cleared its assistant status."""
        if task.assistant:
            self._assistant_status.pop(task.id, None)

    async def show(self, task: Task, snapshot: StatusSnapshot) -> None:
        """Create or update the status message: running at most once per interval per task,
        any other state at once; the assistant status follows (after any post it clears)."""
        if snapshot.state != "running":
            self._pending.pop(task.id, None)  # older than this one
            await self._send_status(task, snapshot)
            await self._set_assistant_status(task, snapshot)
            return
        wait = self.interval - (time.monotonic() - self._last_status.get(task.id, 0.0))
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
            text = bk.status_text(task, snap)
            ts = self._status_ts.get(task.id) or task.status_ts
            if ts:
                problem = await self.poster.edit(task.channel, ts, text, [bk.context(text)])
                if problem is None:
                    self._status_ts[task.id] = ts
                if problem not in GONE:  # kept: the next snapshot tries it again
                    return
            if snap.state != "running":  # only a running task starts a status message
                return
            new_ts = await self.poster.post(task, text, [bk.context(text)])
            if new_ts:
                self._status_ts[task.id] = new_ts
                if self.on_status_ts:
                    await self.on_status_ts(task.id, new_ts)

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
