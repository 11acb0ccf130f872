"""What `python -m bot doctor` prints about MCP servers: up or down and why, shared or
per-user (and how many people connected), tools and tiers."""

from __future__ import annotations

from typing import Protocol

from tools.catalog import ServerStatus


class _Gateway(Protocol):
    def servers(self) -> list[ServerStatus]: ...


def describe(gateway: _Gateway) -> list[str]:
    """One line per server, then one indented line per tool with its tier and what set it."""
    lines: list[str] = []
    for server in gateway.servers():
        state = "up" if server.up else f"DOWN: {server.reason}"
        count = f", {len(server.tools)} tools" if server.up or server.tools else ""
        if server.mode == "per-user":
            state = f"per-user, {_people(server.connected or 0)} connected"
            if not server.up:
                state += f"; listing its tools failed: {server.reason}"
            elif not server.connected:
                count = "; its tools are listed once someone connects"
        lines.append(f"{server.name} ({server.transport}): {state}{count}")
        width = max((len(t.name) for t in server.tools), default=0)
        for tool in server.tools:
            lines.append(f"  {tool.name:<{width}}  {tool.tier:<6}  ({tool.tier_source})")
        if not server.tools:
            lines.append("  no tools known")
    return lines


def _people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"
