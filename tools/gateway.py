"""The MCP gateway: every tool call the agent makes goes through here.

    McpGateway.call(name, arguments, ctx)
      ├─ journal: a call that already reached its server is answered from `tool_calls`
      ├─ scope: `name` must be among the task's tools                      → denied
      ├─ schema: arguments checked against the tool's inputSchema           → invalid
      ├─ tier: from `[policy]` and the tool's annotations (tools/policy.py)
      ├─ block tier: an approval for exactly this tool and these arguments,
      │  consumed in the transaction that journals the call as started     → rejected
      ├─ limits: rate window, concurrency, live connection, breaker         → unavailable
      └─ the server, under `call_timeout`                                   → ok | error

Servers come from `.mcp.json` (stdio and streamable HTTP) and from in-process `MCPServer`s
(the built-in slack and memory servers). Each has a supervisor (tools/connection.py); a
server that fails to start or dies is marked down with a reason and retried in the
background, and never stops the bot or the other servers.

A per-user HTTP server (an `oauth` key, or a 401 with `WWW-Authenticate` to a request
without a token, found at start) has no shared connection: a call runs in its delegator's
own session with the delegator's token (tools/personal.py), and a delegator without a
usable connection gets `needs_connection` instead of a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import mcp.types as mt
from mcp.server.mcpserver import MCPServer

from bot.base.config import Config
from bot.base.db import Database
from bot.base.errors import ConfigError, ToolDenied
from bot.base.redact import redact, redact_text, secrets_in
from bot.base.secretbox import SecretBox
from tools.calls import CallContext, Outcome, ToolResult
from tools.catalog import CatalogEntry, ServerStatus, ToolInfo, build_catalog
from tools.connection import ServerConnection
from tools.execute import precheck, run_on_server, unavailable
from tools.journal import REACHED, CallRecord, JournalEntry, ToolJournal, args_hash
from tools.limits import ServerGuard
from tools.mcp_config import HttpServer, ServerSpec
from tools.oauth.connector import OAuthConnector
from tools.personal import PersonalServer, PersonalServers, PersonalSession, find_protected
from tools.policy import ApprovalPolicy
from tools.results import cut
from tools.validation import problems

__all__ = [
    "CallContext",
    "JournalEntry",
    "McpGateway",
    "ServerStatus",
    "ToolInfo",
    "ToolResult",
    "args_hash",
]

log = logging.getLogger(__name__)

_STOP_GRACE = 15.0  # seconds; stdio shutdown is bounded by the SDK (about 6 s worst case)


class McpGateway:
    """Connections to every MCP server, the tool catalog, and the guarded call path."""

    args_hash = staticmethod(args_hash)

    def __init__(
        self,
        servers: dict[str, ServerSpec],
        config: Config,
        db: Database,
        builtin: dict[str, MCPServer] | None = None,
        *,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
        box: SecretBox | None = None,
        public_base: Callable[[], str] | None = None,
    ) -> None:
        clash = set(servers) & set(builtin or {})
        if clash:
            name = sorted(clash)[0]
            raise ConfigError(
                f"MCP server name {name!r} is both built in and in .mcp.json",
                path=".mcp.json",
                key=f"mcpServers.{name}",
            )
        unknown = sorted(set(config.gateway.servers) - set(servers) - set(builtin or {}))
        if unknown:
            known = ", ".join(sorted({*servers, *(builtin or {})})) or "none"
            raise ConfigError(
                f"coworker.toml: gateway.servers.{unknown[0]}: there is no MCP server named "
                f"{unknown[0]!r} (servers: {known})",
                path="coworker.toml",
                key=f"gateway.servers.{unknown[0]}",
            )
        self._config = config.gateway
        self._limit = config.gateway.result_max_chars
        self._policy = ApprovalPolicy(config.policy)
        self._dry_run = dict(config.policy.dry_run)
        self._journal = ToolJournal(db)
        #: The URL people's browsers reach the bot's listener at (Connect links, callbacks).
        self.public_base = public_base or (lambda: "http://127.0.0.1:3000")
        self._people = PersonalServers(
            db,
            box,
            self.public_base,
            start_timeout=self._config.start_timeout,
            on_tools=self._on_tools,
        )
        self._declared = {
            name: spec
            for name, spec in servers.items()
            if isinstance(spec, HttpServer) and spec.oauth is not None
        }
        specs: dict[str, ServerSpec | MCPServer] = {**servers, **(builtin or {})}
        self._connections = {
            name: ServerConnection(
                name,
                spec,
                start_timeout=self._config.start_timeout,
                on_tools=self._on_tools,
                retry_initial=retry_initial,
                retry_max=retry_max,
            )
            for name, spec in sorted(specs.items())
            if name not in self._declared
        }
        self._guards = {name: ServerGuard.for_server(name, self._config) for name in specs}
        self._listings: dict[str, list[mt.Tool]] = {}
        self._catalog: dict[str, CatalogEntry] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every server concurrently; return once each is up or has failed once.

        Raises:
            SettingsError: there are per-user servers and no `COWORKER_SECRET_KEY`.
        """
        if self._tasks:
            raise RuntimeError("the MCP gateway is already started")
        await self._people.start({**self._declared, **await self._protected()})
        for conn in self._connections.values():
            self._tasks.append(asyncio.create_task(conn.run(), name=f"mcp:{conn.name}"))
        await asyncio.gather(*(c.wait_first_attempt() for c in self._connections.values()))
        down = [c.name for c in self._connections.values() if not c.up]
        log.info(
            "MCP gateway: %d servers up, %d down %s",
            len(self._connections) - len(down),
            len(down),
            down or "",
        )

    async def _protected(self) -> dict[str, HttpServer]:
        """The HTTP servers without static headers that ask for a person's token; they are
        never started as shared connections."""
        candidates = {
            name: conn.spec
            for name, conn in self._connections.items()
            if isinstance(conn.spec, HttpServer) and not conn.spec.headers
        }
        found = await find_protected(candidates, self._config.start_timeout)
        for name in found:
            del self._connections[name]
        return {name: candidates[name] for name in found}

    @property
    def personal(self) -> dict[str, PersonalServer]:
        """The per-user servers (known from `oauth` keys, or found by `start()`)."""
        return self._people.servers

    @property
    def connector(self) -> OAuthConnector | None:
        """People's connections to the per-user servers (None when there are none)."""
        return self._people.connector

    async def stop(self) -> None:
        """Close every connection and wait for the supervisors to finish."""
        await self._people.stop()
        for conn in self._connections.values():
            conn.stop()
        tasks, self._tasks = self._tasks, []
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=_STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error(
                        "MCP supervisor %s failed", task.get_name(), exc_info=task.exception()
                    )

    # -- catalog -----------------------------------------------------------------------

    def tools(self) -> list[ToolInfo]:
        """Every known tool, by name (a down server's tools stay listed and answer unavailable)."""
        return [entry.info for entry in self._catalog.values()]

    def tool(self, name: str) -> ToolInfo | None:
        entry = self._catalog.get(name)
        return entry.info if entry else None

    def servers(self) -> list[ServerStatus]:
        """Every server: up or down and why, and its tools (per-user ones: who connected)."""
        shared = [
            ServerStatus(
                name=c.name,
                transport=c.transport,
                up=c.up,
                reason=c.reason,
                tools=self._tools_of(c.name),
            )
            for c in self._connections.values()
        ]
        personal = self._people.statuses(self._tools_of)
        return sorted(shared + personal, key=lambda s: s.name)

    def _tools_of(self, server: str) -> list[ToolInfo]:
        return [e.info for e in self._catalog.values() if e.info.server == server]

    def _on_tools(self, server: str, tools: list[mt.Tool]) -> None:
        self._listings[server] = tools
        before = {n: e.info.tier for n, e in self._catalog.items() if e.info.server == server}
        self._catalog = dict(sorted(build_catalog(self._listings, self._policy).items()))
        after = {n: e.info.tier for n, e in self._catalog.items() if e.info.server == server}
        if before and before != after:
            changed = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
            log.info("MCP server %s: tools added, removed or re-tiered: %s", server, changed)

    # -- calls -------------------------------------------------------------------------

    async def journaled(self, idempotency_key: str) -> JournalEntry | None:
        """The journaled call under this key, if any (for an agent loop resuming a task)."""
        return await self._journal.get(idempotency_key)

    async def last_preview(self, task_id: int, tool: str) -> str | None:
        """The result of the task's last successful dry run of `tool`, if any."""
        return await self._journal.last_dry_run(task_id, tool)

    def replay(self, entry: JournalEntry) -> ToolResult:
        """A journaled result as the model gets it: cut to the same limit as a live one."""
        return _replay(entry, self._limit)

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, ctx: CallContext
    ) -> ToolResult:
        """Run one tool call through scope, schema, tier, approval, limits and the journal."""
        t0 = time.perf_counter()
        key = ctx.idempotency_key
        if key in self._running:
            outcome = Outcome.refused("started", f"{name}: this call is already running")
            return _result(outcome, self._tier_of(name), t0, self._limit)
        self._running.add(key)
        try:
            return await self._call(name, dict(arguments or {}), ctx, t0)
        finally:
            self._running.discard(key)

    async def _call(
        self, name: str, arguments: dict[str, Any], ctx: CallContext, t0: float
    ) -> ToolResult:
        entry = self._catalog.get(name)
        rec = self._record(name, entry, arguments, ctx)
        refusal = self._refusal(name, entry, arguments, ctx)
        if refusal is None and entry is None and rec.server in self.personal and ctx.delegator:
            # Tools of a per-user server nobody could list yet: connecting comes first.
            if await self.connected(ctx.delegator, rec.server) is None:
                refusal = Outcome.not_connected(name, rec.server, ctx.delegator, reconnect=False)
        # The common case, a new key for a call that needs no approval, costs one insert.
        if entry and not refusal and rec.tier != "block" and await self._journal.claim(rec):
            return await self._run(entry.info, rec, arguments, ctx, t0, claimed=True)
        prior = await self._journal.get(ctx.idempotency_key)
        if prior is not None and prior.args_hash != rec.args_hash:
            text = f"{name}: idempotency key {ctx.idempotency_key!r} was used for another call"
            return _result(Outcome.refused("invalid", text), prior.tier, t0, self._limit)
        if prior is not None and prior.status in REACHED:
            return _replay(prior, self._limit)
        # A call that started before an interruption keeps its 'started' row until it runs
        # again, so "it may have run" is never overwritten by a later refusal.
        in_doubt = prior is not None and prior.status == "started"
        if refusal is not None or entry is None:
            outcome = refusal or Outcome.refused("invalid", f"{name}: no such tool")
            return await self._end_early(rec, outcome, arguments, t0, journal=not in_doubt)
        rerun_needs_approval = in_doubt and not (prior and prior.tier == rec.tier == "auto")
        if rerun_needs_approval and ctx.approval_id is None:
            return _result(_in_doubt(name), rec.tier, t0, self._limit)
        approval = rec.tier == "block" or rerun_needs_approval
        return await self._run(
            entry.info, rec, arguments, ctx, t0, approval=approval, in_doubt=in_doubt
        )

    def _refusal(
        self, name: str, entry: CatalogEntry | None, arguments: dict[str, Any], ctx: CallContext
    ) -> Outcome | None:
        """Why the call must stop before any server or approval is involved, if it must."""
        if name not in ctx.allowed:
            reason = "not among this task's tools (the coworker's tools or the delegator's role exclude it)"
            return Outcome.refused("denied", str(ToolDenied(tool=name, reason=reason)))
        if entry is None:
            server = self._connections.get(name.split("__", 1)[0])
            if server is not None and not server.up:
                return unavailable(name, f"server {server.name} is down: {server.reason}")
            return None
        found = problems(entry.validator, arguments)
        if found:
            listed = "\n".join(f"- {p}" for p in found)
            return Outcome.refused("invalid", f"{name}: invalid arguments, not sent:\n{listed}")
        return self._dry_run_refusal(name, arguments, ctx)

    def dry_run_flag(self, name: str) -> str | None:
        """The argument that makes `name` a dry run, if `[policy] dry_run` marks it a write."""
        return next((arg for glob, arg in self._dry_run.items() if fnmatchcase(name, glob)), None)

    def is_dry_run(self, name: str, arguments: Mapping[str, Any]) -> bool:
        flag = self.dry_run_flag(name)
        return flag is not None and bool(arguments.get(flag))

    def previews(self, name: str, arguments: Mapping[str, Any]) -> bool:
        """Whether this call is the dry run whose result the real call's approval shows (its
        dry-run argument is `true`)."""
        flag = self.dry_run_flag(name)
        return flag is not None and arguments.get(flag) in (True, "true")

    def effective_tier(self, name: str, arguments: Mapping[str, Any]) -> str:
        """The tier this exact call runs under: a write tool's dry run needs no approval."""
        tier = self._tier_of(name)
        return "notify" if tier == "block" and self.is_dry_run(name, arguments) else tier

    def _dry_run_refusal(
        self, name: str, arguments: dict[str, Any], ctx: CallContext
    ) -> Outcome | None:
        flag = self.dry_run_flag(name)
        if flag is None or ctx.dry_run_ok or arguments.get(flag):
            return None
        reason = f"must be run with {flag}=true first, and its result shown, before the real call"
        return Outcome.refused("rejected", str(ToolDenied(tool=name, reason=reason)))

    async def _run(
        self,
        info: ToolInfo,
        rec: CallRecord,
        arguments: dict[str, Any],
        ctx: CallContext,
        t0: float,
        *,
        claimed: bool = False,
        approval: bool = False,
        in_doubt: bool = False,
    ) -> ToolResult:
        """Journal the call as started (consuming its approval), then run it on its server."""
        conn = self._connection(info.server, ctx)
        guard = self._guards[info.server]
        blocked = precheck(info, conn, guard, self._config.call_timeout)  # type: ignore[arg-type]
        if blocked is None and isinstance(conn, PersonalSession):
            blocked = await self._people.token_problem(info, conn)
        if blocked is not None:
            return await self._end_early(rec, blocked, arguments, t0, journal=not in_doubt)
        approval_id = ctx.approval_id if approval else None
        if approval and (
            approval_id is None or not await self._journal.start_approved(rec, approval_id)
        ):
            reason = await self._journal.approval_problem(approval_id, rec)
            outcome = Outcome.refused("rejected", str(ToolDenied(tool=info.name, reason=reason)))
            return await self._end_early(rec, outcome, arguments, t0, journal=not in_doubt)
        if not approval and not claimed:
            await self._journal.start(rec)
        outcome = await self._on_server(conn, guard, info, arguments)
        if outcome.status in ("unavailable", "unconnected") and approval_id is not None:
            await self._journal.restore_approval(approval_id)
        return await self._finish(rec, outcome, arguments, t0)

    def _connection(self, server: str, ctx: CallContext) -> ServerConnection | PersonalSession:
        """The shared connection, or for a per-user server the delegator's own session."""
        personal = self.personal.get(server)
        if personal is None:
            return self._connections[server]
        return personal.session(ctx.delegator or "")

    async def _on_server(
        self,
        conn: ServerConnection | PersonalSession,
        guard: ServerGuard,
        info: ToolInfo,
        arguments: dict[str, Any],
    ) -> Outcome:
        timeout = self._config.call_timeout
        if isinstance(conn, PersonalSession):
            return await self._people.run(conn, guard, info, arguments, timeout)
        return await run_on_server(conn, guard, info, arguments, timeout)

    async def connected(self, user: str, server: str) -> float | None:
        """When `user` connected to the per-user `server`, or None if they have not."""
        return await self._people.connected(user, server)

    def _tier_of(self, name: str) -> str:
        entry = self._catalog.get(name)
        return entry.info.tier if entry else self._policy.resolve(name, None)[0]

    def _record(
        self, name: str, entry: CatalogEntry | None, arguments: dict[str, Any], ctx: CallContext
    ) -> CallRecord:
        if entry is not None:
            server, tier, source = entry.info.server, entry.info.tier, entry.info.tier_source
        else:
            server = name.split("__", 1)[0] if "__" in name else ""
            tier, source = self._policy.resolve(name, None)
        if tier == "block" and self.is_dry_run(name, arguments):
            tier, source = "notify", f"{source}; a dry run (preview) needs no approval"
        return CallRecord(
            key=ctx.idempotency_key,
            task_id=ctx.task_id,
            step=ctx.step,
            coworker=ctx.coworker,
            delegator=ctx.delegator,
            server=server,
            tool=name,
            arguments=json.dumps(redact(arguments), ensure_ascii=False, default=str),
            args_hash=args_hash(name, arguments),
            tier=tier,
            tier_source=source,
            dry_run=self.previews(name, arguments),
        )

    async def _end_early(
        self,
        rec: CallRecord,
        outcome: Outcome,
        arguments: dict[str, Any],
        t0: float,
        *,
        journal: bool = True,
    ) -> ToolResult:
        stored, _ = cut(
            redact_text(outcome.text, secrets_in(arguments)), self._config.audit_max_chars
        )
        result = _result(outcome, rec.tier, t0, self._limit)
        if journal:
            await self._journal.record(rec, outcome.status, stored, duration_ms=result.duration_ms)
        return result

    async def _finish(
        self, rec: CallRecord, outcome: Outcome, arguments: dict[str, Any], t0: float
    ) -> ToolResult:
        stored, _ = cut(
            redact_text(outcome.text, secrets_in(arguments)), self._config.audit_max_chars
        )
        result = _result(outcome, rec.tier, t0, self._limit)
        await self._journal.finish(
            rec.key,
            outcome.status,
            stored,
            is_error=outcome.is_error,
            duration_ms=result.duration_ms,
        )
        return result


def _result(outcome: Outcome, tier: str, t0: float, limit: int) -> ToolResult:
    content, truncated = cut(outcome.text, limit)
    duration_ms = (time.perf_counter() - t0) * 1000
    return ToolResult(
        content=content,
        is_error=outcome.is_error,
        tier=tier,
        status=outcome.status,
        duration_ms=round(duration_ms, 3),
        truncated=truncated,
        needs_connection=outcome.needs_connection,
    )


def _replay(prior: JournalEntry, limit: int) -> ToolResult:
    """A call that already reached its server: its recorded result, never a second run."""
    content, truncated = cut(prior.content, limit)
    return ToolResult(
        content=content,
        is_error=prior.is_error,
        tier=prior.tier,
        status=prior.status,
        duration_ms=0.0,
        truncated=truncated,
    )


def _in_doubt(name: str) -> Outcome:
    text = (
        f"{name}: this call started before an interruption and may or may not have run; "
        "it is not read-only, so ask the delegator before running it again"
    )
    return Outcome.refused("started", text)
