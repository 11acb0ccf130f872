"""Opening one MCP connection (stdio, streamable HTTP, in-process) and explaining failures.

Every transport is wrapped so the gateway learns when the peer goes away (a stdio server
exiting ends its stdout) without polling. A stdio server's stderr is read through a pipe:
each line is logged at debug level and the last few are kept, because "exited: No module
named 'foo'" is the reason an operator needs to see in `doctor`.

Reasons are built for people and never carry secrets: a command is named without its
arguments (which may hold tokens after `${VAR}` expansion), a URL without its path, query
or credentials, and any text from the server passes through `redact_text`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED

if TYPE_CHECKING:  # the streams' type; not exported publicly by mcp
    from mcp.client._transport import TransportStreams

from bot.base.redact import redact_text
from tools.mcp_config import HttpServer, ServerSpec, StdioServer

log = logging.getLogger(__name__)

Transport: TypeAlias = "AbstractAsyncContextManager[TransportStreams]"
_REASON_MAX = 300
# As the mcp SDK's own HTTP transports: a server may hold a response stream open for minutes.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


class StderrTail:
    """A stdio server's stderr: logged line by line, the last lines kept for failure reasons."""

    def __init__(self, server: str, keep: int = 20) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._fd = read_fd
        self.file = os.fdopen(write_fd, "w")  # handed to the child as its stderr
        self._log = logging.getLogger(f"tools.servers.{server}")
        self._lines: deque[str] = deque(maxlen=keep)
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(read_fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._loop.remove_reader(self._fd)
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            line = redact_text(raw.decode(errors="replace").rstrip())
            if line:
                self._lines.append(line)
                self._log.debug("%s", line)

    def last(self) -> str | None:
        """The last line the server wrote to stderr, if any."""
        if self._fd >= 0:
            self._read()
        return self._lines[-1] if self._lines else None

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        self.file.close()
        os.close(self._fd)
        self._fd = -1


class _EofWatch:
    """A read stream that reports its end: the peer closed the connection or exited."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    def __getattr__(self, name: str) -> Any:  # `last_context` and friends
        return getattr(self._inner, name)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> _EofWatch:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _EofWatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@asynccontextmanager
async def watched(
    transport: Transport, on_end: Callable[[], None]
) -> AsyncIterator[TransportStreams]:
    """`transport` whose read side calls `on_end` when the peer goes away."""
    async with transport as (read, write):
        yield _EofWatch(read, on_end), write


@asynccontextmanager
async def _http(
    spec: HttpServer, auth: httpx2.Auth | None = None
) -> AsyncIterator[TransportStreams]:
    async with (
        httpx2.AsyncClient(headers=dict(spec.headers), timeout=_HTTP_TIMEOUT, auth=auth) as http,
        streamable_http_client(spec.url, http_client=http) as streams,
    ):
        yield streams


def personal_transport(spec: HttpServer, auth: httpx2.Auth) -> Transport:
    """Streamable HTTP to a per-user server, every request authenticated by `auth`."""
    return _http(spec, auth)


def open_transport(spec: ServerSpec, stderr: StderrTail | None = None) -> Transport:
    """The transport for an external server: a subprocess or an HTTP endpoint."""
    if isinstance(spec, HttpServer):
        return _http(spec)
    params = StdioServerParameters(
        command=spec.command, args=list(spec.args), env=dict(spec.env) or None, cwd=spec.cwd
    )
    if stderr is None:
        return stdio_client(params)
    return stdio_client(params, errlog=stderr.file)


def transport_kind(spec: ServerSpec | MCPServer) -> str:
    return "builtin" if isinstance(spec, MCPServer) else spec.type


def where(spec: ServerSpec | MCPServer) -> str:
    """What to call the server in a reason: a command name or a URL's origin, nothing secret."""
    if isinstance(spec, MCPServer):
        return "in-process server"
    if isinstance(spec, StdioServer):
        return Path(spec.command).name
    return origin(spec.url)


def origin(url: str) -> str:
    """`scheme://host[:port]` of `url`: no path, query or credentials."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def closed_reason(spec: ServerSpec | MCPServer) -> str:
    """Why a connection ended when the peer simply went away."""
    if isinstance(spec, StdioServer):
        return "the server process exited"
    return "the server closed the connection"


def describe_failure(exc: BaseException, spec: ServerSpec | MCPServer) -> str:
    """A short, secret-free sentence saying why a server is not usable."""
    leaf = _leaf(exc)
    text = _sentence(leaf, spec)
    return redact_text(text)[:_REASON_MAX]


def _leaf(exc: BaseException) -> BaseException:
    """The most telling exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = inner[0] if inner else exc.exceptions[0]
    return exc


def _sentence(exc: BaseException, spec: ServerSpec | MCPServer) -> str:
    name = where(spec)
    if isinstance(exc, FileNotFoundError):
        return f"cannot start: command not found: {name}"
    if isinstance(exc, PermissionError):
        return f"cannot start {name}: permission denied"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect to {name}"
    if isinstance(exc, httpx2.TimeoutException):
        return f"timed out talking to {name}"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"{name} answered HTTP {exc.response.status_code}"
    if isinstance(exc, MCPError):
        if exc.code == CONNECTION_CLOSED:
            return closed_reason(spec)
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot start {name}: {exc.strerror}"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
