"""The built-in `memory` MCP server: the coworker remembers and recalls team knowledge.

The store itself lives in `memory/`; this server only adapts two async callables to MCP,
so the gateway's tiers and audit apply to memory writes like any other tool. `remember`
adds without destroying anything (destructiveHint false → notify tier: it runs and the
thread is told); `recall` is read-only (auto).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

Remember = Callable[[int, str, str], Awaitable[Any]]
Recall = Callable[[int, str, int], Awaitable[Any]]
#: Which task is asking. Coworker's toolbox sets it on every call (whatever the model sent)
#: and hides it from the model, so a task can only read and write within its own scope.
TaskId = Annotated[int, Field(ge=0, description="set by Coworker; do not send")]
Scope = Literal["team", "project", "user"]

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def memory_server(remember: Remember, recall: Recall, *, name: str = "memory") -> MCPServer:
    """An in-process MCP server over `remember(task_id, content, scope)` and
    `recall(task_id, query, limit)`."""
    server = MCPServer(name, instructions="Team memory: facts and past tasks Coworker has learned.")

    @server.tool(
        name="remember",
        annotations=ADDITIVE,
        description="Save a fact worth knowing next time (team-wide, per project or per user).",
    )
    async def remember_fact(
        content: Annotated[str, Field(min_length=1, max_length=4000)],
        scope: Annotated[Scope, Field(description="who the fact is for")] = "project",
        task_id: TaskId = 0,
    ) -> str:
        saved = await remember(task_id, content, scope)
        return "remembered" if saved is None else f"remembered ({saved})"

    @server.tool(
        name="recall",
        annotations=READ_ONLY,
        description="Find remembered facts and past tasks relevant to a query.",
    )
    async def recall_facts(
        query: Annotated[str, Field(min_length=1)],
        limit: Annotated[int, Field(ge=1, le=50)] = 5,
        task_id: TaskId = 0,
    ) -> str:
        found = await recall(task_id, query, limit)
        return (
            found if isinstance(found, str) else json.dumps(found, ensure_ascii=False, default=str)
        )

    return server
