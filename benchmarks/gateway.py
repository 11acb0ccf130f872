"""MCP gateway figures: per-call overhead and concurrent start-up.

    python benchmarks/gateway.py [--calls 300]

1. Overhead per call. One stdio echo server, one connection. Each round makes one call
   straight through the connection's `ClientSession.call_tool` and one through
   `McpGateway.call` (scope check, schema validation, tier, redaction, the journal rows in a
   real SQLite file), interleaved so both see the same machine. Target: the gateway adds at
   most 2 ms (median).
2. Start-up. Five stdio servers started by one gateway, against the slowest of the five
   started alone. Target: at most 1.5x. A Python MCP server spends most of its start-up
   importing (CPU), so on a machine with fewer cores than servers the processes queue for
   CPU whatever the gateway does (the gateway process itself uses ~30 ms of CPU to start
   five). The second line repeats the test with small stdlib-only MCP servers whose
   start-up waits 0.2-1.0 s on I/O (like `npx` fetching a package), which isolates the
   gateway's own concurrency.

The script is also the benchmark's servers: `gateway.py --serve` (the Python SDK) and
`gateway.py --serve-light --delay S` (a stdlib JSON-RPC loop speaking the 2025 protocol).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.base.db import Database
    from tools.mcp_config import ServerSpec, StdioServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OVERHEAD_TARGET_MS = 2.0
START_TARGET_RATIO = 1.5


def serve(delay: float) -> None:
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    time.sleep(delay)
    server = MCPServer("bench")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str, count: int = 1) -> str:
        return text * count

    server.run()


def serve_light(delay: float) -> None:
    """A minimal MCP server: no SDK, so its start-up is the `delay` and little else."""
    import json

    time.sleep(delay)
    tool = {
        "name": "echo",
        "inputSchema": {"type": "object"},
        "annotations": {"readOnlyHint": True},
    }
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue
        method, params = message["method"], message.get("params") or {}
        answer: dict[str, object] = {"jsonrpc": "2.0", "id": message["id"]}
        if method == "initialize":
            answer["result"] = {
                "protocolVersion": params.get("protocolVersion"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "light", "version": "1"},
            }
        elif method == "tools/list":
            answer["result"] = {"tools": [tool]}
        else:
            answer["error"] = {"code": -32601, "message": f"no method {method}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def spec(delay: float = 0.0, light: bool = False) -> StdioServer:
    from tools.mcp_config import StdioServer

    mode = "--serve-light" if light else "--serve"
    args = [str(Path(__file__).resolve()), mode, "--delay", str(delay)]
    return StdioServer(command=sys.executable, args=args)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


async def overhead(db: Database, calls: int) -> None:
    from bot.base.config import Config
    from tools.calls import CallContext
    from tools.gateway import McpGateway

    gateway = McpGateway({"bench": spec()}, Config(), db)
    await gateway.start()
    try:
        # The gateway's own live connection: the same server process, the same pipe.
        client = gateway._connections["bench"].client
        assert client is not None, "the benchmark server did not start"
        session = client.session
        allowed = {t.name for t in gateway.tools()}
        args = {"text": "ping", "count": 2}

        async def direct() -> object:
            return await session.call_tool("echo", args)

        async def through_gateway() -> object:
            ctx = CallContext(
                task_id=None,
                step=1,
                coworker="bench",
                delegator="U0",
                idempotency_key=uuid.uuid4().hex,
                allowed=allowed,
            )
            result = await gateway.call("bench__echo", args, ctx)
            assert result.status == "ok", result
            return result

        for _ in range(20):  # warm up both paths
            await direct()
            await through_gateway()
        plain: list[float] = []
        gated: list[float] = []
        for _ in range(calls):
            plain.append(await timed(direct))
            gated.append(await timed(through_gateway))
    finally:
        await gateway.stop()
    added = statistics.median(gated) - statistics.median(plain)
    print(f"per-call, {calls} calls each over one stdio connection (ms):")
    print(
        f"  direct ClientSession.call_tool   median {statistics.median(plain):6.3f}   p95 {percentile(plain, 95):6.3f}"
    )
    print(
        f"  McpGateway.call                  median {statistics.median(gated):6.3f}   p95 {percentile(gated, 95):6.3f}"
    )
    verdict = "ok" if added <= OVERHEAD_TARGET_MS else "MISSED"
    print(
        f"  added by the gateway             median {added:6.3f}   p95 {percentile(gated, 95) - percentile(plain, 95):6.3f}"
        f"   target <= {OVERHEAD_TARGET_MS:.1f} ms median: {verdict}"
    )


async def start_time(db: Database, specs: dict[str, ServerSpec]) -> float:
    from bot.base.config import Config
    from tools.gateway import McpGateway

    gateway = McpGateway(specs, Config(), db)
    started = time.perf_counter()
    await gateway.start()
    elapsed = time.perf_counter() - started
    down = [s.name for s in gateway.servers() if not s.up]
    await gateway.stop()
    if down:
        raise SystemExit(f"servers failed to start: {down}")
    return elapsed


async def startup(db: Database, label: str, delays: list[float], light: bool) -> None:
    singles = [await start_time(db, {"s": spec(d, light)}) for d in delays]
    together = await start_time(db, {f"s{i}": spec(d, light) for i, d in enumerate(delays)})
    ratio = together / max(singles)
    verdict = "ok" if ratio <= START_TARGET_RATIO else "MISSED"
    print(
        f"  {label}: slowest alone {max(singles):.2f} s, five together {together:.2f} s,"
        f" ratio {ratio:.2f}   target <= {START_TARGET_RATIO}x: {verdict}"
    )


async def main(calls: int) -> None:
    from bot.base.db import open_database
    from bot.base.migrations import migrate

    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await migrate(db)
        try:
            await overhead(db, calls)
            print(f"start-up, 5 stdio servers ({os.cpu_count()} CPU cores):")
            await startup(db, "Python SDK servers (CPU-bound start) ", [0.0] * 5, light=False)
            await startup(
                db, "servers waiting 0.2-1.0 s on I/O     ", [0.2, 0.4, 0.6, 0.8, 1.0], light=True
            )
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-light", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.delay)
    elif options.serve_light:
        serve_light(options.delay)
    else:
        asyncio.run(main(options.calls))
