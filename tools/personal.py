"""Per-user MCP servers: one session per person, with that person's token.

An HTTP server is per-user when its `.mcp.json` entry has an `oauth` key, or when a request
without a token gets 401 with `WWW-Authenticate: Bearer` (`find_protected`, at start). It
has no shared connection. A person's calls go through their own MCP session
(`PersonalSession`), opened on their first call and closed after `IDLE_SECONDS` without
one, so the many calls of a task share one handshake while no session outlives its use.
Every HTTP request of a session carries the person's token (`tools.oauth.auth`).

The server's tools are listed with the token of the first person who connected (the list
is the same for everyone; what a person may do with them is the server's business, under
their own token), at start and when the first person connects.

`PersonalServers` is the gateway's part for all of them: the connector, each server, and
what a call needs before and after it runs (a usable token; a refusal means "reconnect").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import anyio
import httpx2
import mcp.types as mt
from mcp import Client
from mcp.shared.exceptions import MCPError

from bot.base.db import Database
from bot.base.errors import ConnectFailed, ConnectionNeeded, SettingsError
from bot.base.secretbox import VARIABLE as SECRET_KEY
from bot.base.secretbox import SecretBox
from tools.calls import Outcome
from tools.catalog import ServerStatus, ToolInfo
from tools.connection import CLIENT_INFO, list_tools
from tools.execute import run_on_server, unavailable
from tools.limits import ServerGuard
from tools.mcp_config import HttpServer
from tools.oauth.auth import PersonalAuth
from tools.oauth.connector import OAuthConnector
from tools.oauth.discovery import challenge
from tools.transports import describe_failure, personal_transport, watched

log = logging.getLogger(__name__)

IDLE_SECONDS = 300.0
_CLOSE_GRACE = 10.0


class PersonalSession:
    """One person's session with one per-user server, opened when a call needs it.

    It answers what the call path (`tools.execute`) asks of a connection: `state`,
    `reason`, `ready()`, `retry_in()` and `lost()`.
    """

    def __init__(
        self,
        name: str,
        spec: HttpServer,
        connector: OAuthConnector,
        user: str,
        *,
        start_timeout: float,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self.name = name
        self.user = user
        self.spec = spec
        self.state = "down"  # starting | up | down
        self.reason: str | None = "not opened yet"
        self.client: Client | None = None
        self._auth = PersonalAuth(connector, user, name)
        self._start_timeout = start_timeout
        self._idle = idle
        self._used = time.monotonic()
        self._busy = 0
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self._ended = asyncio.Event()

    async def ready(self, timeout: float) -> Client | None:
        """The open session, opening it if needed (within `timeout`)."""
        self._used = time.monotonic()
        if self.state == "up":
            return self.client
        if self._task is None or self._task.done():
            self._settled, self._ended = asyncio.Event(), asyncio.Event()
            self.state, self.reason = "starting", "starting"
            self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}:{self.user}")
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return None
        return self.client if self.state == "up" else None

    def hold(self) -> None:
        """A call starts: the session stays open until it ends (`release`)."""
        self._busy += 1
        self._used = time.monotonic()

    def release(self) -> None:
        self._busy -= 1
        self._used = time.monotonic()

    @property
    def refusals(self) -> int:
        """Requests refused for want of a usable token, so far (see `PersonalAuth`)."""
        return self._auth.refusals

    def retry_in(self) -> float:
        return 0.0  # opened again by the next call

    def lost(self) -> None:
        self._ended.set()

    async def close(self) -> None:
        self._ended.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), _CLOSE_GRACE)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._open_and_serve()
        except Exception as exc:  # a failing third-party server is a reason, never a crash
            self.reason = describe_failure(exc, self.spec)
            log.debug("MCP server %s (%s): session ended", self.name, self.user, exc_info=True)
        finally:
            self.client, self.state = None, "down"
            if self.reason in (None, "starting"):
                self.reason = "session closed"
            self._settled.set()

    async def _open_and_serve(self) -> None:
        transport = watched(personal_transport(self.spec, self._auth), self._ended.set)
        with anyio.CancelScope(deadline=anyio.current_time() + self._start_timeout) as limit:
            async with Client(transport, cache=None, client_info=CLIENT_INFO) as client:
                limit.deadline = math.inf
                self.client, self.state, self.reason = client, "up", None
                self._settled.set()
                await self._serve()
        if limit.cancelled_caught and self.state != "up":
            self.reason = f"no answer within {self._start_timeout:g} s of opening"

    async def _serve(self) -> None:
        """Keep the session until it is lost, closed, or idle for `idle` seconds."""
        while True:
            left = self._idle - (time.monotonic() - self._used)
            if self._busy:
                left = self._idle
            elif left <= 0:
                return
            try:
                await asyncio.wait_for(self._ended.wait(), left)
                return
            except TimeoutError:
                continue


ToolsCallback = Callable[[str, list[mt.Tool]], None]


class PersonalServer:
    """A per-user server: its people's sessions, and its tool list."""

    transport = "http"

    def __init__(
        self,
        name: str,
        spec: HttpServer,
        connector: OAuthConnector,
        *,
        start_timeout: float,
        on_tools: ToolsCallback,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self.name = name
        self.spec = spec
        self.connector = connector
        self.connected = 0  # people with a connection, as last counted
        self.listed = False
        self.reason: str | None = None
        self._start_timeout = start_timeout
        self._on_tools = on_tools
        self._idle = idle
        self._sessions: dict[str, PersonalSession] = {}

    def session(self, user: str) -> PersonalSession:
        found = self._sessions.get(user)
        if found is None:
            found = PersonalSession(
                self.name,
                self.spec,
                self.connector,
                user,
                start_timeout=self._start_timeout,
                idle=self._idle,
            )
            self._sessions[user] = found
        return found

    async def start(self) -> None:
        """Count the people connected and list the tools with the first one's token."""
        await self.recount()
        for user in await self.connector.tokens.first_users(self.name):
            if await self.list_with(user):
                return

    async def recount(self) -> int:
        self.connected = await self.connector.tokens.count(self.name)
        return self.connected

    async def list_with(self, user: str) -> bool:
        """List the tools with `user`'s token; False (with a reason) if that failed."""
        client = await self.session(user).ready(self._start_timeout)
        if client is None:
            self.reason = self.session(user).reason
            return False
        try:
            with anyio.fail_after(self._start_timeout):
                tools = await list_tools(client)
        except (MCPError, TimeoutError) as exc:
            self.reason = f"listing tools failed: {exc}"
            return False
        self.listed, self.reason = True, None
        self._on_tools(self.name, tools)
        log.info("MCP server %s (per-user) lists %d tools", self.name, len(tools))
        return True

    async def forget(self, user: str) -> None:
        """Close `user`'s session (they disconnected)."""
        session = self._sessions.pop(user, None)
        if session is not None:
            await session.close()

    async def stop(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions))


async def find_protected(candidates: dict[str, HttpServer], timeout: float) -> set[str]:
    """Which of `candidates` answer a request without a token with 401 and a Bearer
    challenge (a server that cannot be reached is not counted: it stays shared)."""
    if not candidates:
        return set()
    async with httpx2.AsyncClient(timeout=timeout) as http:
        answers = await asyncio.gather(
            *(challenge(http, spec.url) for spec in candidates.values()),
            return_exceptions=True,
        )
    return {
        name
        for name, answer in zip(candidates, answers, strict=True)
        if isinstance(answer, httpx2.Response)
    }


class PersonalServers:
    """Every per-user server of a gateway, and what a call to one needs."""

    def __init__(
        self,
        db: Database,
        box: SecretBox | None,
        public_base: Callable[[], str],
        *,
        start_timeout: float,
        on_tools: ToolsCallback,
    ) -> None:
        self._db, self._box, self._public_base = db, box, public_base
        self._start_timeout = start_timeout
        self._on_tools = on_tools
        self.servers: dict[str, PersonalServer] = {}
        self.connector: OAuthConnector | None = None

    async def start(self, specs: dict[str, HttpServer]) -> None:
        """Start the per-user `specs`: count who connected, list their tools.

        Raises:
            SettingsError: there are some and no `COWORKER_SECRET_KEY`.
        """
        if not specs:
            return
        if self._box is None:
            raise SettingsError(
                f"{SECRET_KEY} is not set: the per-user MCP server(s) {', '.join(sorted(specs))}"
                " keep each person's tokens encrypted with it (see README.md, 'Per-user servers')",
                variable=SECRET_KEY,
            )
        self.connector = OAuthConnector(self._db, self._box, dict(specs), self._public_base)
        for name, spec in sorted(specs.items()):
            self.servers[name] = PersonalServer(
                name,
                spec,
                self.connector,
                start_timeout=self._start_timeout,
                on_tools=self._on_tools,
            )
        if self._box.keys > 1:
            log.info("%s has %d keys: sealing tokens with the first", SECRET_KEY, self._box.keys)
            await self.connector.reseal()
        await asyncio.gather(*(server.start() for server in self.servers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers.values()))
        if self.connector is not None:
            await self.connector.close()

    def statuses(self, tools_of: Callable[[str], list[ToolInfo]]) -> list[ServerStatus]:
        return [
            ServerStatus(
                name=p.name,
                transport=p.transport,
                up=p.listed or not p.connected,
                reason=p.reason,
                tools=tools_of(p.name),
                mode="per-user",
                connected=p.connected,
            )
            for p in self.servers.values()
        ]

    async def connected(self, user: str, server: str) -> float | None:
        """When `user` connected to `server`, or None if they have not."""
        if self.connector is None:
            return None
        return (await self.connector.tokens.connected(user)).get(server)

    async def token_problem(self, info: ToolInfo, session: PersonalSession) -> Outcome | None:
        """Why the delegator's token cannot be used for this call, if it cannot."""
        assert self.connector is not None
        try:
            await self.connector.access_token(session.user, info.server)
        except ConnectionNeeded as exc:
            return Outcome.not_connected(
                info.name, info.server, session.user, reconnect=exc.reconnect
            )
        except ConnectFailed as exc:
            return unavailable(info.name, exc.reason)
        return None

    async def run(
        self,
        session: PersonalSession,
        guard: ServerGuard,
        info: ToolInfo,
        arguments: dict[str, object],
        timeout: float,
    ) -> Outcome:
        """The call in the delegator's session (kept open while it runs)."""
        refusals = session.refusals
        session.hold()
        try:
            outcome = await run_on_server(session, guard, info, arguments, timeout)  # type: ignore[arg-type]
        finally:
            session.release()
        if outcome.is_error and session.refusals > refusals:
            # Refused for want of a usable token (401 after a refresh): the tool did not run.
            return Outcome.not_connected(info.name, info.server, session.user, reconnect=True)
        return outcome
