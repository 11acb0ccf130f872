"""A small stdio MCP server for data checks: a read-only query tool that answers JSON rows."""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("warehouse")

ORDERS = [
    {"id": 1, "region": "emea", "total": 120.5},
    {"id": 2, "region": "emea", "total": 80.0},
    {"id": 3, "region": "apac", "total": "n/a"},
]


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def query(region: str) -> str:
    """Orders of one region, as JSON rows."""
    return json.dumps({"rows": [o for o in ORDERS if o["region"] == region]})


if __name__ == "__main__":
    server.run("stdio")
