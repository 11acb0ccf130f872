"""A stdio MCP server with side effects, latency and faults, for the reliability suite.

Every call that takes effect is appended (one JSON line) to the file named by EFFECTS_LOG,
after its delay, so the log is the truth about what really happened, across bot crashes.
EFFECTS_DELAY="lo,hi" adds a random delay (seconds) to every call. While the file named by
EFFECTS_HOLD exists, the side-effecting tools wait before taking effect (a call a test can
catch in flight).

Tools, by tier under the MCP defaults:
- search (readOnlyHint: auto), create_ticket (no annotations: block),
  comment (destructiveHint false: notify): the side-effecting task of the crash test;
- stall (auto): sleeps `seconds`, like a server that hangs;
- crash (auto): the process exits mid-call, like a server that dies;
- garbage (auto): writes a line that is not JSON-RPC to stdout, then answers nothing;
- echo (auto): returns its text (a tool output that may carry secrets or injections).
"""

from __future__ import annotations

import json
import os
import random
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("effects")
READ_ONLY = ToolAnnotations(readOnlyHint=True)


async def pause() -> None:
    raw = os.environ.get("EFFECTS_DELAY")
    if raw:
        lo, hi = (float(x) for x in raw.split(","))
        await anyio.sleep(random.uniform(lo, hi))


async def hold() -> None:
    path = os.environ.get("EFFECTS_HOLD")
    while path and await anyio.Path(path).exists():
        await anyio.sleep(0.02)


def record(tool: str, args: dict[str, object]) -> None:
    path = os.environ.get("EFFECTS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": tool, "args": args, "pid": os.getpid()}) + "\n")


@server.tool(annotations=READ_ONLY)
async def search(query: str) -> str:
    """Search existing tickets."""
    await pause()
    record("search", {"query": query})
    return f"2 tickets match '{query}': TCK-1 flaky login test, TCK-2 slow deploy"


@server.tool()
async def create_ticket(title: str, body: str = "", api_token: str = "") -> str:
    """Create a ticket (no annotations: block tier by default), as `api_token`'s owner."""
    await pause()
    await hold()
    record("create_ticket", {"title": title, "body": body})
    return f"created TCK-99: {title}"


@server.tool(annotations=ToolAnnotations(destructiveHint=False, readOnlyHint=False))
async def comment(ticket: str, text: str) -> str:
    """Add a comment to a ticket (not destructive: notify tier)."""
    await pause()
    await hold()
    record("comment", {"ticket": ticket, "text": text})
    return f"commented on {ticket}"


@server.tool(annotations=READ_ONLY)
async def stall(seconds: float) -> str:
    """Take `seconds` to answer."""
    await anyio.sleep(seconds)
    return "finally"


@server.tool(annotations=READ_ONLY)
def crash() -> str:
    """Exit the server process in the middle of the call."""
    record("crash", {})
    os._exit(3)


@server.tool(annotations=READ_ONLY)
async def garbage() -> str:
    """Answer with bytes that are not JSON-RPC, then nothing."""
    record("garbage", {})
    sys.stdout.write("\x00\x7fthis is not json {{{\n")
    sys.stdout.flush()
    await anyio.sleep(3600)
    return "unreachable"


@server.tool(annotations=READ_ONLY)
async def echo(text: str) -> str:
    """Return `text` as the tool's output."""
    return text


if __name__ == "__main__":
    server.run("stdio")
