"""A small stdio MCP server for end-to-end tests: tickets with every tier of tool.

Every call is appended to the file named by TICKETS_LOG, so a test can count how many times
a tool really ran, across app restarts.
"""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("tickets")


def record(tool: str, args: dict[str, object]) -> None:
    path = os.environ.get("TICKETS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def search(query: str) -> str:
    """Search existing tickets."""
    record("search", {"query": query})
    return f"2 tickets match '{query}': TCK-1 flaky login test, TCK-2 slow deploy"


@server.tool()
def create_ticket(title: str, body: str = "") -> str:
    """Create a ticket (no annotations: block tier by default)."""
    record("create_ticket", {"title": title, "body": body})
    return f"created TCK-99: {title}"


@server.tool(annotations=ToolAnnotations(destructiveHint=False, readOnlyHint=False))
def comment(ticket: str, text: str) -> str:
    """Add a comment to a ticket (not destructive: notify tier)."""
    record("comment", {"ticket": ticket, "text": text})
    return f"commented on {ticket}"


@server.tool()
def delete_tickets(query: str, dry_run: bool = False) -> str:
    """Delete the tickets matching a query (a write: `[policy] dry_run` makes it preview first)."""
    record("delete_tickets", {"query": query, "dry_run": dry_run})
    verb = "would delete" if dry_run else "deleted"
    return f"{verb} 3 tickets matching '{query}': TCK-1, TCK-2, TCK-3"


if __name__ == "__main__":
    server.run("stdio")
