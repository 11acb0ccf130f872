"""Fixtures for gateway tests: real MCP servers in-process, over stdio and over HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer

from bot.base import clock
from bot.base.config import Config, parse_config
from bot.base.db import Database
from tests.tools.servers.recording import build_server
from tools.calls import CallContext
from tools.gateway import McpGateway
from tools.mcp_config import ServerSpec, StdioServer

RECORDING_SCRIPT = Path(__file__).parent / "servers" / "recording.py"


class Recorder:
    """What an in-process recording server received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, tool: str, args: dict[str, Any]) -> None:
        self.calls.append((tool, args))

    def tools(self) -> list[str]:
        return [tool for tool, _ in self.calls]


def recorded_lines(path: Path) -> list[dict[str, Any]]:
    """What a stdio recording server received (it appends JSON lines to `path`)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def stdio_recording(record: Path, **env: str) -> StdioServer:
    return StdioServer(
        command=sys.executable,
        args=[str(RECORDING_SCRIPT)],
        env={"RECORD_FILE": str(record), **env},
    )


def config(**sections: Any) -> Config:
    return parse_config(sections)


def ctx_for(gateway: McpGateway, **overrides: Any) -> CallContext:
    """A call context allowed every tool the gateway knows, with a fresh idempotency key."""
    fields: dict[str, Any] = {
        "task_id": None,
        "step": 1,
        "coworker": "coworker",
        "delegator": "U1",
        "idempotency_key": uuid.uuid4().hex,
        "allowed": {t.name for t in gateway.tools()},
    }
    fields.update(overrides)
    return CallContext(**fields)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds, polling briefly; fail after `timeout` seconds."""

    async def poll() -> None:
        # The condition belongs to another component (a server, the gateway's catalog) that
        # offers no event to wait on; a short poll under a hard bound is the honest wait.
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


GatewayFactory = Callable[..., Awaitable[McpGateway]]


@pytest.fixture
async def make_gateway(db: Database) -> AsyncIterator[GatewayFactory]:
    """Build and start gateways; every one is stopped (bounded) when the test ends."""
    started: list[McpGateway] = []

    async def make(
        servers: dict[str, ServerSpec] | None = None,
        builtin: dict[str, MCPServer] | None = None,
        cfg: Config | None = None,
        **kwargs: Any,
    ) -> McpGateway:
        gateway = McpGateway(servers or {}, cfg or Config(), db, builtin=builtin, **kwargs)
        started.append(gateway)
        await asyncio.wait_for(gateway.start(), 20)
        return gateway

    yield make
    for gateway in started:
        await asyncio.wait_for(gateway.stop(), 20)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def rec_gateway(make_gateway: GatewayFactory, recorder: Recorder) -> McpGateway:
    """A gateway over one in-process recording server named `rec`."""
    return await make_gateway(builtin={"rec": build_server(recorder)})


@pytest.fixture
async def task_id(db: Database) -> int:
    now = clock.now()
    return await db.fetchval(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at,"
        " updated_at) VALUES ('U1', 'C1', '1.0', '1.0', 'test', ?, ?) RETURNING id",
        (now, now),
    )


async def add_approval(
    db: Database, task_id: int, tool: str, args_hash: str, status: str = "approved"
) -> int:
    now = clock.now()
    return await db.fetchval(
        "INSERT INTO approvals (task_id, kind, tool, args_hash, arguments, tier, status,"
        " requested_at, deadline) VALUES (?, 'tool', ?, ?, '{}', 'block', ?, ?, ?) RETURNING id",
        (task_id, tool, args_hash, status, now, now + 3600),
    )


async def audit_text(db: Database) -> str:
    """Every value of every tool_calls row, as one string to search."""
    rows = await db.fetchall("SELECT * FROM tool_calls")
    return "\n".join(" | ".join(str(v) for v in row.values()) for row in rows)


@asynccontextmanager
async def serve_http(server: MCPServer, port: int = 0) -> AsyncIterator[str]:
    """Serve `server` over streamable HTTP on 127.0.0.1 (a free port by default); yield its URL."""
    app = server.streamable_http_app()
    web = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(web.serve())
    try:
        await eventually(lambda: web.started or task.done())
        port = web.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        # Like a server that goes away: do not wait for clients' open streams to end.
        web.should_exit = web.force_exit = True
        await asyncio.wait_for(task, 10)


def names(items: Iterable[Any]) -> list[str]:
    return sorted(item.name for item in items)
