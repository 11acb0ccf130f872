"""The records a tool call is made of: who asks (`CallContext`) and what came back (`ToolResult`).

Statuses, as journaled in `tool_calls.status` and returned in `ToolResult.status`:

    ok           the server ran the tool and it succeeded
    error        the server was contacted and the call failed (tool error, crash, timeout)
    denied       the tool is not among the task's tools; no server was contacted
    invalid      the arguments do not match the tool's input schema, or no such tool
    rejected     block tier without a usable approval (or a required dry run missing)
    unavailable  the server is down, its breaker is open, or its limits are exhausted
    unconnected  a per-user server the delegator has no usable connection to (never
                 connected, or its token was refused after a refresh); no tool ran, and
                 the call runs once they connect
    started      (journal only, or returned for a resumed call) it began and nobody knows
                 whether it finished: ask the delegator before running it again
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    """Who is calling, on whose behalf, and what they may call."""

    task_id: int | None
    step: int | None
    coworker: str | None
    delegator: str | None
    idempotency_key: str
    allowed: frozenset[str] | set[str]  # the task's scoped SERVER__TOOL names
    approval_id: int | None = None
    dry_run_ok: bool = False


@dataclass(frozen=True)
class ToolResult:
    """One call's outcome as the agent loop and the model see it."""

    content: str  # for the model; cut to `result_max_chars` with a note saying so
    is_error: bool
    tier: str
    status: str
    duration_ms: float
    truncated: bool = False
    #: A per-user server the delegator must connect (again) before this call can run.
    needs_connection: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a server (or the gateway in its place) answered, before cutting and journaling."""

    status: str
    text: str
    is_error: bool
    needs_connection: str | None = None

    @classmethod
    def ok(cls, text: str, *, is_error: bool) -> Outcome:
        return cls("error" if is_error else "ok", text, is_error)

    @classmethod
    def error(cls, text: str) -> Outcome:
        return cls("error", text, True)

    @classmethod
    def refused(cls, status: str, text: str) -> Outcome:
        return cls(status, text, True)

    @classmethod
    def not_connected(cls, tool: str, server: str, user: str, *, reconnect: bool) -> Outcome:
        """The call cannot run until `user` connects `server` (it reached no tool)."""
        verb = "reconnect" if reconnect else "connect"
        text = f"{tool}: <@{user}> needs to {verb} {server} (a per-user server) first"
        return cls("unconnected", text, True, needs_connection=server)
