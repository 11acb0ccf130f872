"""People's connections to per-user MCP servers, as tasks and Slack surfaces need them.

    a task needs a per-user server its delegator has not connected (its plan names one
    of its tools, or a model turn calls one)
      → ask(): the delegator gets a Connect link in a DM, the task waits (`waiting_input`,
        "waiting for <@U1> to connect docs" on its status line, a row in `oauth_waits`)
    the browser comes back to /oauth/callback (on any replica)
      → finish(): connected: every task waiting for that person and server is queued again
        and the runner woken, with no new delegation; declined: the task goes on without
        the server; any other failure: the page and the task's thread say why
    /coworker connections and the App Home
      → listing(), link(), disconnect() (revokes where the server can, then deletes)

A task always uses its delegator's token: subtasks have the same delegator, and an
approver's click decides a call without lending the approver's account.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from bot.base.clock import now
from bot.base.db import Database
from bot.base.errors import ConnectFailed
from bot.notifier import Notifier
from bot.tasks import Task, TaskStore
from tools.gateway import McpGateway
from tools.oauth.clients import metadata_document
from tools.oauth.connector import Completion, OAuthConnector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionView:
    """One per-user server as a person sees it: connected since when, or not."""

    server: str
    connected_at: float | None

    @property
    def connected(self) -> bool:
        return self.connected_at is not None


class Connections:
    def __init__(
        self,
        db: Database,
        tasks: TaskStore,
        gateway: McpGateway,
        notifier: Notifier,
        wake: Callable[[], Awaitable[None] | None],
    ) -> None:
        self.db = db
        self.tasks = tasks
        self.gateway = gateway
        self.notifier = notifier
        self.wake = wake

    @property
    def connector(self) -> OAuthConnector | None:
        return self.gateway.connector

    def public_base(self) -> str:
        """The URL people's browsers reach the bot's listener at."""
        return self.gateway.public_base()

    def metadata_document(self) -> dict[str, object]:
        """The Client ID Metadata Document this bot serves (its URL is its client id)."""
        return metadata_document(self.public_base())

    def personal(self) -> list[str]:
        """The per-user servers, by name."""
        return sorted(self.gateway.personal)

    def is_personal(self, server: str) -> bool:
        return server in self.gateway.personal

    async def connected(self, user: str) -> set[str]:
        if self.connector is None:
            return set()
        return set(await self.connector.tokens.connected(user))

    # -- tasks -------------------------------------------------------------------------

    async def unmet(self, task: Task, servers: Iterable[str]) -> list[str]:
        """Of `servers`, the per-user ones `task`'s delegator has neither connected nor
        declined for this task."""
        wanted = sorted({s for s in servers if self.is_personal(s)})
        if not wanted:
            return []
        have = await self.connected(task.delegator)
        declined = await self.declined(task)
        return [s for s in wanted if s not in have and s not in declined]

    async def declined(self, task: Task) -> set[str]:
        rows = await self.db.fetchall(
            "SELECT server FROM oauth_waits WHERE task_id = ? AND status = 'declined'", (task.id,)
        )
        return {row["server"] for row in rows}

    async def waiting_for(self, task_id: int) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT server FROM oauth_waits WHERE task_id = ? AND status = 'waiting'"
            " ORDER BY server",
            (task_id,),
        )
        return [row["server"] for row in rows]

    async def ask(self, task: Task, server: str, *, reconnect: bool = False) -> None:
        """`task` waits for its delegator to connect `server`: record it, send a Connect link
        (worded "reconnect" when the task already used the server: the connection went)."""
        reconnect = reconnect or await self._used(task, server)
        await self.db.execute(
            "INSERT INTO oauth_waits (task_id, server, user_id, status, asked_at)"
            " VALUES (?, ?, ?, 'waiting', ?) ON CONFLICT (task_id, server) DO UPDATE"
            " SET status = 'waiting', asked_at = excluded.asked_at",
            (task.id, server, task.delegator, now()),
        )
        await self.tasks.log(task.id, "connect_requested", detail={"server": server})
        assert self.connector is not None
        try:
            url = await self.connector.begin(task.delegator, server, task.id)
        except ConnectFailed as exc:
            await self.notifier.note(task, f"⚠️ I can't connect you to `{server}`: {exc.reason}")
            return
        await self.notifier.connect_requested(
            task, task.delegator, server, url, reconnect=reconnect
        )

    async def _used(self, task: Task, server: str) -> bool:
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM tool_calls WHERE task_id = ? AND server = ? AND status = 'ok'"
                " LIMIT 1",
                (task.id, server),
            )
        )

    async def settle_wait(self, task_id: int) -> bool:
        """After `task_id` went to waiting: queue it again if nothing is left to wait for
        (the connection was made while it was settling); True if it was queued."""
        if await self.waiting_for(task_id):
            return False
        if await self.tasks.transition(task_id, "queued", from_="waiting_input"):
            await self._wake()
            return True
        return False

    # -- the callback ------------------------------------------------------------------

    async def open_link(self, state: str, browser: str) -> str:
        """Where a Connect link sends the browser (`ConnectFailed` says why not)."""
        if self.connector is None:
            raise ConnectFailed("no per-user servers", server="", reason=_NO_SERVERS)
        return await self.connector.open_link(state, browser)

    async def finish(
        self,
        state: str,
        *,
        browser: str | None,
        code: str | None,
        error: str | None,
        iss: str | None = None,
    ) -> Completion:
        """Complete a callback; go on with the tasks it was for, or tell them why not."""
        if self.connector is None:
            return Completion("unknown", _NO_SERVERS)
        done = await self.connector.finish(state, browser=browser, code=code, error=error, iss=iss)
        if done.server is None or done.user is None:
            return done
        if done.connected:
            await self._connected(done.user, done.server)
        elif done.problem == "denied":
            await self._declined(done.user, done.server, done.task_id)
        elif done.task_id is not None:
            task = await self.tasks.get(done.task_id)
            await self.notifier.note(task, f"⚠️ Connecting `{done.server}`: {done.reason}")
        return done

    async def _connected(self, user: str, server: str) -> None:
        personal = self.gateway.personal[server]
        await personal.recount()
        if not personal.listed:
            await personal.list_with(user)
        rows = await self.db.fetchall(
            "DELETE FROM oauth_waits WHERE user_id = ? AND server = ? AND status = 'waiting'"
            " RETURNING task_id",
            (user, server),
        )
        for task_id in sorted({int(row["task_id"]) for row in rows}):
            if await self.settle_wait(task_id):
                task = await self.tasks.get(task_id)
                await self.tasks.log(task_id, "connected", actor=user, detail={"server": server})
                await self.notifier.note(task, f"🔗 <@{user}> connected `{server}`: going on.")

    async def _declined(self, user: str, server: str, task_id: int | None) -> None:
        if task_id is None:
            return
        await self.db.execute(
            "UPDATE oauth_waits SET status = 'declined' WHERE task_id = ? AND server = ?",
            (task_id, server),
        )
        task = await self.tasks.get(task_id)
        await self.notifier.note(
            task, f"<@{user}> declined to connect `{server}`: {task.ref} goes on without it."
        )
        await self.settle_wait(task_id)

    async def _wake(self) -> None:
        result = self.wake()
        if result is not None:
            await result

    # -- people's own view -------------------------------------------------------------

    async def listing(self, user: str) -> list[ConnectionView]:
        """Every per-user server, with whether (and since when) `user` is connected."""
        if self.connector is None:
            return []
        have = await self.connector.tokens.connected(user)
        return [ConnectionView(server, have.get(server)) for server in self.personal()]

    async def link(self, user: str, server: str) -> str:
        """A Connect link for `user` to `server`, outside any task."""
        if self.connector is None or not self.is_personal(server):
            raise ConnectFailed("not a per-user server", server=server, reason=_NO_SERVERS)
        return await self.connector.begin(user, server, None)

    async def disconnect(self, user: str, server: str) -> bool:
        """Revoke (where the server supports it) and delete `user`'s tokens for `server`."""
        if self.connector is None or not self.is_personal(server):
            return False
        gone = await self.connector.disconnect(user, server)
        personal = self.gateway.personal[server]
        await personal.forget(user)
        await personal.recount()
        if gone:
            log.info("%s disconnected from MCP server %s", user, server)
        return gone


_NO_SERVERS = "There is no per-user server by that name here."
