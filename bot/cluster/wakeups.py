"""Wake-ups across replicas: LISTEN/NOTIFY, and a poll for when a NOTIFY is lost.

What happens on one replica often concerns another: a new or resumed task (any replica
may claim it), a thread reply or a cancel for a task that another replica is running, an
approval decided on one replica for a task that another will resume. The replica that
changed the state sends a wake-up; the others' handlers react within milliseconds. A
wake-up carries no state (kind, task id, sender): the database holds the truth, and a
handler re-reads it. So a lost wake-up only delays: every replica also polls every
`poll_every` seconds (a pooler in transaction mode drops LISTEN), and after the listening
connection comes back.

Sent inside the transaction that made the change (`send(…, tx=tx)`), a NOTIFY is delivered
only once that transaction commits, so the receiver never reads the state from before it.
The sender's own handlers are not called back: it acts locally at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal

import psycopg

from bot.base.db.postgres import PostgresDatabase, PostgresTx

log = logging.getLogger(__name__)

CHANNEL = "coworker_wakeups"
Kind = Literal["work", "input", "cancel", "approval"]
KINDS: tuple[Kind, ...] = ("work", "input", "cancel", "approval")
POLL_EVERY = 3.0
_RECONNECT_MAX = 10.0

Handler = Callable[[int | None], Awaitable[None] | None]
Poller = Callable[[], Awaitable[None] | None]


class Wakeups:
    """Sends wake-ups to the other replicas and calls local handlers for theirs."""

    def __init__(
        self, db: PostgresDatabase, replica_id: str, *, poll_every: float = POLL_EVERY
    ) -> None:
        self.db = db
        self.id = replica_id
        self.poll_every = poll_every
        self._handlers: dict[Kind, list[Handler]] = {k: [] for k in KINDS}
        self._pollers: list[Poller] = []
        self._loops: list[asyncio.Task[None]] = []
        self._jobs: set[asyncio.Task[Any]] = set()
        #: the listening connection is up (False: only the poll brings news)
        self.listening = asyncio.Event()

    def on(self, kind: Kind, handler: Handler) -> None:
        """Call `handler(task_id)` when another replica sends a `kind` wake-up."""
        self._handlers[kind].append(handler)

    def on_poll(self, poller: Poller) -> None:
        """Call `poller()` every `poll_every` seconds and after listening resumes."""
        self._pollers.append(poller)

    async def send(
        self, kind: Kind, task_id: int | None = None, *, tx: PostgresTx | None = None
    ) -> None:
        """Tell the other replicas; with `tx`, once that transaction commits."""
        payload = f"{kind}:{'' if task_id is None else task_id}:{self.id}"
        if tx is not None:
            await tx.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))
        else:
            await self.db.notify(CHANNEL, payload)

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._listen(), name="wakeups-listen"),
            asyncio.create_task(self._poll_forever(), name="wakeups-poll"),
        ]

    async def stop(self) -> None:
        for task in [*self._loops, *self._jobs]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._jobs, return_exceptions=True)
        self._loops = []

    def dispatch(self, payload: str) -> None:
        """Run the handlers for one NOTIFY payload (`kind:task_id:sender`)."""
        kind, _, rest = payload.partition(":")
        task, _, sender = rest.partition(":")
        if sender == self.id or kind not in self._handlers:
            return
        task_id = int(task) if task.isdigit() else None
        for handler in self._handlers[kind]:
            self._call(f"{kind} wake-up", handler, task_id)

    async def poll(self) -> None:
        for poller in self._pollers:
            self._call("poll", poller)
        await asyncio.gather(*self._jobs, return_exceptions=True)

    def _call(self, what: str, fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        try:
            result = fn(*args)
        except Exception:  # one handler's bug must not stop the others or the listener
            log.exception("cluster: %s handler failed", what)
            return
        if inspect.isawaitable(result):
            # The handler's coroutine is the job itself: a job stopped before it started
            # closes it (a wrapper stopped first would leave it never awaited).
            job = asyncio.ensure_future(result)
            self._jobs.add(job)
            job.add_done_callback(partial(self._ended, what))

    def _ended(self, what: str, job: asyncio.Future[Any]) -> None:
        self._jobs.discard(job)
        if not job.cancelled() and (exc := job.exception()) is not None:
            log.error("cluster: %s handler failed", what, exc_info=exc)

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.db.listen(CHANNEL) as notes:
                    self.listening.set()
                    delay = 0.5
                    await self.poll()  # what was sent while nobody listened
                    async for _, payload in notes:
                        self.dispatch(payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("cluster: wake-ups not heard (%s); polling until back", exc)
            finally:
                self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_every)
            await self.poll()
