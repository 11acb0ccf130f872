"""One MCP server's connection, kept alive by a supervisor task.

The supervisor connects (bounded by `start_timeout`), lists the tools, then waits until
the connection ends: the server exits, the HTTP transport fails, or the gateway stops.
Then it marks the server down with a reason and reconnects with exponential backoff. A
connection that was up reconnects at once the first time, so one crash costs one restart;
a server that keeps failing is retried ever more slowly, up to `retry_max`. Nothing here
raises into the bot: every failure of a third-party server becomes a reason string.

Tool-list changes arrive as `notifications/tools/list_changed`, either unsolicited (2025
protocol) or on a `subscriptions/listen` stream the supervisor opens when the server
offers it (2026 protocol); both just wake a refresher, which re-lists the tools.

The `anyio` cancel scopes live entirely inside the supervisor task, as the SDK requires:
`stop()` only cancels the scope and the supervisor unwinds its own connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp.types as mt
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from tools.mcp_config import ServerSpec, StdioServer
from tools.transports import (
    StderrTail,
    closed_reason,
    describe_failure,
    open_transport,
    transport_kind,
    watched,
)

log = logging.getLogger(__name__)

CLIENT_INFO = mt.Implementation(name="coworker", version="0.1.0")
MAX_PAGES = 100
STABLE_AFTER = 30.0  # seconds up after which a lost connection is not counted as a failure

ToolsCallback = Callable[[str, list[mt.Tool]], None]


class ServerConnection:
    """A supervised connection to one MCP server."""

    def __init__(
        self,
        name: str,
        spec: ServerSpec | MCPServer,
        *,
        start_timeout: float,
        on_tools: ToolsCallback,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
    ) -> None:
        self.name = name
        self.spec = spec
        self.transport = transport_kind(spec)
        self.state = "starting"  # starting | up | down | stopped
        self.reason: str | None = "starting"
        self.client: Client | None = None
        self._start_timeout = start_timeout
        self._on_tools = on_tools
        self._retry = (retry_initial, retry_max)
        self._retry_at = 0.0
        self._failures = 0
        self._scope = anyio.CancelScope()
        self._settled = asyncio.Event()  # set when the pending connection attempt ends
        self._first = asyncio.Event()  # set when the first attempt ends
        self._changed = asyncio.Event()
        self._ended = asyncio.Event()
        self._stderr: StderrTail | None = None
        self._last_reason: str | None = None

    @property
    def up(self) -> bool:
        return self.state == "up"

    async def run(self) -> None:
        """The supervisor: connect, serve, and reconnect until stopped."""
        with self._scope:
            while True:
                up_for, reason = await self._attempt()
                self._mark_down(reason, self._next_delay(up_for), settle=up_for is None)
                await anyio.sleep(max(0.0, self._retry_at - time.monotonic()))
        self.state, self.reason, self.client = "stopped", "stopped", None
        self._settle()

    def stop(self) -> None:
        self._scope.cancel()

    async def wait_first_attempt(self) -> None:
        await self._first.wait()

    async def ready(self, timeout: float) -> Client | None:
        """The live client, waiting for a pending (re)connection that settles within `timeout`."""
        if self.state == "up":
            return self.client
        if self.state == "stopped" or timeout <= 0:
            return None
        if self.state == "down" and self._retry_at - time.monotonic() > timeout:
            return None
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return None
        return self.client if self.state == "up" else None

    def retry_in(self) -> float:
        return max(0.0, self._retry_at - time.monotonic()) if self.state == "down" else 0.0

    def lost(self) -> None:
        """A call found the connection dead: end it so the supervisor reconnects."""
        self._ended.set()

    async def _attempt(self) -> tuple[float | None, str]:
        """Connect and serve; return how long the connection was up and why it ended."""
        self._ended = asyncio.Event()
        started: list[float] = []
        try:
            if isinstance(self.spec, StdioServer):
                self._stderr = StderrTail(self.name)
            await self._connect_and_serve(started)
            reason = closed_reason(self.spec)
        except TimeoutError:
            reason = f"no answer within {self._start_timeout:g} s of starting"
        except Exception as exc:  # any failure of a third-party server is contained here
            reason = describe_failure(exc, self.spec)
            log.debug("MCP server %s failed", self.name, exc_info=True)
        finally:
            self.client = None
            last = self._close_stderr()
        if last:
            reason = f"{reason} (stderr: {last})"
        up_for = time.monotonic() - started[0] if started else None
        return up_for, reason

    def _close_stderr(self) -> str | None:
        """Stop reading the server's stderr; return its last line."""
        stderr, self._stderr = self._stderr, None
        if stderr is None:
            return None
        last = stderr.last()
        stderr.close()
        return last

    async def _connect_and_serve(self, started: list[float]) -> None:
        with anyio.CancelScope(deadline=anyio.current_time() + self._start_timeout) as limit:
            async with self._client() as client:
                tools = await list_tools(client)
                limit.deadline = math.inf
                started.append(time.monotonic())
                self._mark_up(client, tools)
                await self._serve(client)
        if limit.cancelled_caught and not started:
            raise TimeoutError

    def _client(self) -> Client:
        if isinstance(self.spec, MCPServer):
            return Client(self.spec, cache=None, client_info=CLIENT_INFO)
        transport = watched(open_transport(self.spec, self._stderr), self._ended.set)
        return Client(
            transport, cache=None, client_info=CLIENT_INFO, message_handler=self._on_message
        )

    async def _serve(self, client: Client) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._refresh, client)
                caps = client.server_capabilities.tools
                if caps is not None and caps.list_changed:
                    tasks.start_soon(self._listen, client)
                await self._ended.wait()
                tasks.cancel_scope.cancel()
        finally:
            # New calls wait for the reconnection instead of using a closing client.
            self.client, self.state, self.reason = None, "down", "reconnecting"
            self._retry_at = time.monotonic()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            self._changed.set()
        elif isinstance(message, Exception):
            log.debug("MCP server %s: transport error: %r", self.name, message)

    async def _listen(self, client: Client) -> None:
        try:
            async with client.listen(tools_list_changed=True) as events:
                async for _ in events:
                    self._changed.set()
        except (ListenNotSupportedError, MCPError, SubscriptionLost, TimeoutError) as exc:
            log.debug("MCP server %s: no tool-list subscription: %s", self.name, exc)

    async def _refresh(self, client: Client) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                with anyio.fail_after(self._start_timeout):
                    tools = await list_tools(client)
            except (MCPError, TimeoutError) as exc:
                log.warning("MCP server %s: re-listing tools failed: %s", self.name, exc)
                continue
            self._on_tools(self.name, tools)

    def _mark_up(self, client: Client, tools: list[mt.Tool]) -> None:
        self.client = client
        self.state, self.reason, self._last_reason = "up", None, None
        self._on_tools(self.name, tools)
        log.info("MCP server %s is up with %d tools", self.name, len(tools))
        self._settle()

    def _mark_down(self, reason: str, delay: float, *, settle: bool) -> None:
        # Say it once per reason: a server down for hours must not flood the log.
        level = logging.DEBUG if reason == self._last_reason else logging.WARNING
        self._last_reason = reason
        self.state, self.reason = "down", reason
        self._retry_at = time.monotonic() + delay
        log.log(level, "MCP server %s is down: %s; retrying in %.1f s", self.name, reason, delay)
        if settle:
            self._settle()

    def _settle(self) -> None:
        self._settled.set()
        self._settled = asyncio.Event()
        self._first.set()

    def _next_delay(self, up_for: float | None) -> float:
        if up_for is not None and up_for >= STABLE_AFTER:
            self._failures = 0
            return 0.0
        self._failures += 1
        if up_for is not None and self._failures == 1:
            return 0.0
        initial, cap = self._retry
        return float(min(cap, initial * 2 ** (self._failures - 1)))


async def list_tools(client: Client) -> list[mt.Tool]:
    """Every tool the server lists, following pagination."""
    tools: list[mt.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools
