"""What `python -m bot doctor` says about an MCP server: up or down and why, shared or
per-user (and how many people connected), tools and tiers."""

from __future__ import annotations

from tools.catalog import ServerStatus

TRANSPORTS = {"builtin": "built in"}


def describe(server: ServerStatus) -> tuple[str, list[str]]:
    """A headline for the server, and one line per tool with its tier and what set it."""
    transport = TRANSPORTS.get(server.transport, server.transport)
    state = "up" if server.up else f"down: {server.reason}"
    count = f", {len(server.tools)} tools" if server.up or server.tools else ""
    if server.mode == "per-user":
        state = f"per-user, {_people(server.connected)}"
        if not server.up:
            state += f"; listing its tools failed: {server.reason}"
        elif not server.tools:
            count = "; its tools are listed with the first connected person's token"
    elif server.transport != "builtin":
        transport += ", shared"
    headline = f"MCP {server.name} ({transport}): {state}{count}"
    width = max((len(t.name) for t in server.tools), default=0)
    details = [f"{t.name:<{width}}  {t.tier:<6}  ({t.tier_source})" for t in server.tools]
    return headline, details or (
        ["no tools listed"] if server.up and server.mode == "shared" else []
    )


def _people(count: int | None) -> str:
    if count is None:
        return "who connected is not known (no database yet)"
    if count == 0:
        return "nobody connected yet"
    return "1 person connected" if count == 1 else f"{count} people connected"
