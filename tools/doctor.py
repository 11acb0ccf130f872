"""What `python -m bot doctor` prints about MCP servers: up or down and why, tools and tiers."""

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
        lines.append(f"{server.name} ({server.transport}): {state}{count}")
        width = max((len(t.name) for t in server.tools), default=0)
        for tool in server.tools:
            lines.append(f"  {tool.name:<{width}}  {tool.tier:<6}  ({tool.tier_source})")
        if not server.tools:
            lines.append("  no tools known")
    return lines
