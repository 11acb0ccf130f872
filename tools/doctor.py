"""What `python -m bot doctor` says about an MCP server: up or down and why, tools and tiers."""

from __future__ import annotations

from tools.catalog import ServerStatus

TRANSPORTS = {"builtin": "built in"}


def describe(server: ServerStatus) -> tuple[str, list[str]]:
    """A headline for the server, and one line per tool with its tier and what set it."""
    transport = TRANSPORTS.get(server.transport, server.transport)
    state = "up" if server.up else f"down: {server.reason}"
    count = f", {len(server.tools)} tools" if server.up or server.tools else ""
    headline = f"MCP {server.name} ({transport}): {state}{count}"
    width = max((len(t.name) for t in server.tools), default=0)
    details = [f"{t.name:<{width}}  {t.tier:<6}  ({t.tier_source})" for t in server.tools]
    return headline, details or (["no tools listed"] if server.up else [])
