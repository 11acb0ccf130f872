"""Running one admitted call on its server, through the server's limits.

In order: the calls-per-minute window (wait for a slot if one frees within the call's
timeout, else refuse at once), the concurrency slots, a live connection (waiting for a
reconnection already under way), the circuit breaker, then the call itself under what is
left of `call_timeout`. Everything before the call itself answers "unavailable" and never
contacts the server; from the call on, the outcome is "ok" or "error".
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import anyio
import httpx2
import mcp.types as mt
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from bot.base.errors import ToolUnavailable
from bot.base.redact import redact_text
from tools.calls import Outcome
from tools.catalog import ToolInfo
from tools.connection import ServerConnection
from tools.limits import ServerGuard
from tools.results import result_text

log = logging.getLogger(__name__)

Health = Literal["healthy", "failed", "lost"]
_TRANSPORT_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    httpx2.TransportError,
    OSError,
)
_LOST = "the connection to the server broke during the call; it may or may not have run"


def unavailable(tool: str, reason: str) -> Outcome:
    return Outcome.refused("unavailable", str(ToolUnavailable(tool=tool, reason=reason)))


def precheck(
    info: ToolInfo, conn: ServerConnection, guard: ServerGuard, timeout: float
) -> Outcome | None:
    """Refuse now, before an approval is spent, if the server certainly cannot take the call."""
    if not guard.breaker.would_admit():
        return unavailable(info.name, _breaker_reason(info.server, guard))
    if conn.state == "stopped" or (conn.state == "down" and conn.retry_in() > timeout):
        return unavailable(info.name, _down_reason(conn))
    return None


async def run_on_server(
    conn: ServerConnection,
    guard: ServerGuard,
    info: ToolInfo,
    arguments: dict[str, object],
    timeout: float,
) -> Outcome:
    """Call `info` on its server within `timeout` seconds, through the server's limits."""
    deadline = time.monotonic() + timeout
    wait = guard.rate.reserve(timeout)
    if wait is None:
        reason = (
            f"rate limit of {guard.per_minute} calls a minute reached; "
            f"next call possible in {guard.rate.next_slot_in():.0f} s"
        )
        return unavailable(info.name, reason)
    if wait:
        await asyncio.sleep(wait)
    if not await take_slot(guard, deadline):
        reason = f"busy: {guard.max_concurrency} calls already running on {info.server}"
        return unavailable(info.name, reason)
    try:
        return await _admitted(conn, guard, info, arguments, deadline, timeout)
    finally:
        guard.slots.release()


async def take_slot(guard: ServerGuard, deadline: float) -> bool:
    """One of the server's concurrency slots, waiting until `deadline` if all are taken."""
    left = deadline - time.monotonic()
    if left <= 0:  # the rate limit's wait used the call's time up
        return False
    if not guard.slots.locked():  # the common case: taken at once, no timer task
        return await guard.slots.acquire()
    try:
        return await asyncio.wait_for(guard.slots.acquire(), left)
    except TimeoutError:
        return False


async def _admitted(
    conn: ServerConnection,
    guard: ServerGuard,
    info: ToolInfo,
    arguments: dict[str, object],
    deadline: float,
    timeout: float,
) -> Outcome:
    client = await conn.ready(deadline - time.monotonic())
    if client is None:
        return unavailable(info.name, _down_reason(conn))
    if not guard.breaker.admit():
        return unavailable(info.name, _breaker_reason(info.server, guard))
    try:
        outcome, health = await _invoke(client, info, arguments, deadline, timeout)
    except BaseException:
        guard.breaker.release()
        raise
    if health == "healthy":
        guard.breaker.success()
        return outcome
    guard.breaker.failure()
    if guard.breaker.state == "open":
        log.warning("MCP server %s: circuit breaker open", info.server)
    if health == "lost":
        conn.lost()
    return outcome


async def _invoke(
    client: Client, info: ToolInfo, arguments: dict[str, object], deadline: float, timeout: float
) -> tuple[Outcome, Health]:
    """The call itself: its outcome, and how the server behaved (for the breaker)."""
    try:
        with anyio.fail_after(max(0.0, deadline - time.monotonic())):
            result = await client.call_tool(info.tool, dict(arguments))
    except TimeoutError:
        return Outcome.error(
            f"{info.name}: timed out after {timeout:g} s; it may still have run"
        ), "failed"
    except MCPError as exc:
        if exc.code == CONNECTION_CLOSED:
            return Outcome.error(f"{info.name}: {_LOST}"), "lost"
        text = f"{info.name}: the server refused the call: {redact_text(exc.message)}"
        return Outcome.error(text), "healthy"
    except _TRANSPORT_ERRORS as exc:
        log.warning("MCP server %s: connection failed during %s: %r", info.server, info.tool, exc)
        return Outcome.error(f"{info.name}: {_LOST} ({type(exc).__name__})"), "lost"
    except Exception as exc:  # a misbehaving third-party server must not take the bot down
        log.warning("MCP server %s: unreadable answer to %s: %r", info.server, info.tool, exc)
        text = f"{info.name}: the server's answer could not be used ({type(exc).__name__})"
        return Outcome.error(text), "failed"
    return _answer(result), "healthy"


def _answer(result: mt.CallToolResult) -> Outcome:
    return Outcome.ok(result_text(result), is_error=bool(result.is_error))


def _down_reason(conn: ServerConnection) -> str:
    reason = conn.reason or "not connected"
    retry = conn.retry_in()
    return f"server {conn.name} is down: {reason}" + (
        f"; retrying in {retry:.0f} s" if retry >= 1 else ""
    )


def _breaker_reason(server: str, guard: ServerGuard) -> str:
    return (
        f"server {server} failed repeatedly; calls paused for another "
        f"{guard.breaker.retry_in():.0f} s"
    )
