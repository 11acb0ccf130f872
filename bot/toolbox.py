"""A task's view of the tools: scoped to what it may use, run with its tier enforced.

The gateway (`tools/`) owns connections, validation, audit and the block-tier check; this
module decides, per task, which tools exist (coworker globs ∩ the delegator's role) and
what a call needs before it runs: nothing (auto), a notice (notify), or an approval that
pauses the task until a person decides (block). The tier comes from the policy on the
tool, never from anything the model or a tool result says.

A tool of a per-user server runs with the delegator's own account: until the delegator
has connected it, the tool is shown as needing them to connect, and a call to it makes the
task wait for the connection (`Wait.CONNECT`, see `bot.connections`) instead of running.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from enum import Enum
from typing import Any, NamedTuple

from bot import telemetry
from bot.approvals import ApprovalService, Directory
from bot.base.config import Config
from bot.connections import Connections
from bot.notifier import Notifier
from bot.orchestration import SUBMIT, Orchestrator, is_orchestration, tool_definitions
from bot.planner import coworker_for
from bot.plans import Expect, step_using
from bot.tasks import Task, TaskStore
from bot.validation import check_result
from tools.gateway import CallContext, McpGateway, ToolInfo, args_hash
from tools.scope import allowed_globs, matches, scope_tools

log = logging.getLogger(__name__)

FINAL = ("ok", "error", "denied", "invalid", "unavailable", "rejected")
DEFAULT_REASON = "Needed for the current step of the plan."
NOT_IN_SCOPE = "not among this task's tools (the coworker's tools exclude it); nothing was done"
RERUN_REASON = "This call was started before a restart and may or may not have run. Run it again?"


class Wait(Enum):
    """Why a turn's tool calls cannot finish now."""

    APPROVAL = "approval"
    CHILDREN = "children"
    CONNECT = "connect"


#: Journal statuses of a call that reached its server (ran, whether or not it succeeded).
RAN = ("ok", "error")


class Called(NamedTuple):
    """One call's result for the model, and whether the tool actually ran."""

    result: dict[str, Any]
    ran: bool


class Turn(NamedTuple):
    """The results of one model turn's calls, and the tools that actually ran (a rejected,
    refused or out-of-scope call did not)."""

    results: list[dict[str, Any]]
    ran: list[str]


#: Arguments Coworker fills in itself for built-in tools; hidden from the model.
INJECTED = {"memory__": "task_id"}


def api_tools(tools: list[ToolInfo]) -> list[dict[str, Any]] | None:
    """Tool definitions for the Messages API."""
    return [
        {
            "name": t.name,
            "description": (t.description or "")[:1024],
            "input_schema": model_schema(t),
        }
        for t in tools
    ] or None


def model_schema(tool: ToolInfo) -> dict[str, Any]:
    schema = dict(tool.input_schema or {"type": "object"})
    hidden = next((arg for prefix, arg in INJECTED.items() if tool.name.startswith(prefix)), None)
    if hidden and hidden in schema.get("properties", {}):
        schema["properties"] = {k: v for k, v in schema["properties"].items() if k != hidden}
        schema["required"] = [r for r in schema.get("required", []) if r != hidden]
    return schema


def inject(task: Task, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Set the arguments only Coworker may set (whatever the model sent)."""
    hidden = next((arg for prefix, arg in INJECTED.items() if name.startswith(prefix)), None)
    return {**args, hidden: task.id} if hidden else args


def tool_result(tool_use_id: str, content: str, is_error: bool) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": content,
        "is_error": is_error,
    }


class Toolbox:
    def __init__(
        self,
        gateway: McpGateway,
        approvals: ApprovalService,
        notifier: Notifier,
        directory: Directory,
        config: Config,
        orchestrator: Orchestrator | None = None,
        tasks: TaskStore | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.tasks = tasks  # where data checks are recorded
        self.connections = connections
        self.gateway = gateway
        self.approvals = approvals
        self.notifier = notifier
        self.directory = directory
        self.config = config
        self.orchestrator = orchestrator

    def definitions(self, task: Task, tools: list[ToolInfo]) -> list[dict[str, Any]] | None:
        """Tool definitions for the model: the task's MCP tools plus orchestration tools."""
        return (api_tools(tools) or []) + self.team_tools(task) or None

    def team_tools(self, task: Task) -> list[dict[str, Any]]:
        """The orchestration tools of this task: the hand-offs its coworker's `tools` globs
        allow, like any other tool, and a subtask's way to hand its result back."""
        if self.orchestrator is None:
            return []
        globs = coworker_for(self.config, task.coworker).tools
        return [
            d
            for d in tool_definitions(self.config, child=task.parent_id is not None)
            if d["name"] == SUBMIT or matches(d["name"], globs)
        ]

    async def for_task(self, task: Task) -> list[ToolInfo]:
        """Coworker scope ∩ delegator scope: never more than the delegator may use."""
        coworker = coworker_for(self.config, task.coworker)
        groups = await self.directory.groups_of(task.delegator) if self.config.roles else set()
        delegator = allowed_globs(self.config, task.delegator, groups)
        tools = scope_tools(self.gateway.tools(), coworker.tools, delegator)
        return await self.marked_unconnected(task, tools)

    async def marked_unconnected(self, task: Task, tools: list[ToolInfo]) -> list[ToolInfo]:
        """`tools`, those of per-user servers the delegator has not connected saying so."""
        if self.connections is None:
            return tools
        missing = await self.connections.unmet(task, {t.server for t in tools})
        return [
            dataclasses.replace(
                t,
                description=f"(needs <@{task.delegator}> to connect {t.server}) {t.description}",
            )
            if t.server in missing
            else t
            for t in tools
        ]

    async def unmet_connections(self, task: Task) -> Wait | None:
        """Before a run: ask for the per-user servers the plan names and the delegator has
        not connected; `Wait.CONNECT` if it asked for any."""
        if self.connections is None or not self.connections.personal():
            return None
        named = {
            name.split("__", 1)[0]
            for step in (task.plan or {}).get("steps", [])
            for name in step.get("tools", [])
        }
        missing = await self.connections.unmet(task, named)
        for server in missing:
            await self.connections.ask(task, server)
        return Wait.CONNECT if missing else None

    async def run_calls(
        self,
        task: Task,
        step: int,
        calls: list[dict[str, Any]],
        reason: str = "",
        *,
        tools: list[ToolInfo] | None = None,
        fresh: bool = False,
    ) -> Turn | Wait:
        """Results for every call of one model turn, or why they must wait.

        `tools` is the task's scope if the caller has it; `fresh` says the turn came from
        the model just now, so no call of it can be journaled yet (the gateway's journal
        insert still refuses a key used before).
        """
        scope = {t.name: t for t in (tools if tools is not None else await self.for_task(task))}
        turn = Turn([], [])
        for call in calls:
            called = await self.run_call(task, step, call, scope, reason, fresh=fresh)
            if isinstance(called, Wait):
                return called
            turn.results.append(called.result)
            if called.ran:
                turn.ran.append(call["name"])
        return turn

    async def run_call(
        self,
        task: Task,
        step: int,
        call: dict[str, Any],
        tools: dict[str, ToolInfo],
        reason: str = "",
        *,
        fresh: bool = False,
    ) -> Called | Wait:
        key = f"t{task.id}:{call['id']}"
        name = call["name"]
        args = inject(task, name, call.get("input") or {})
        if (refusal := await self.beyond_delegator(task, name, args)) is not None:
            return Called(tool_result(call["id"], refusal, True), ran=False)
        if is_orchestration(name) and self.orchestrator is not None:
            if name not in {d["name"] for d in self.team_tools(task)}:
                return Called(tool_result(call["id"], f"{name}: {NOT_IN_SCOPE}", True), False)
            handled = await self.orchestrator.handle(task, key, name, args)
            if handled is None:
                return Wait.CHILDREN
            return Called(tool_result(call["id"], *handled), ran=not handled[1])
        journal = None if fresh else await self.gateway.journaled(key)
        if journal is not None and journal.status in FINAL:
            replayed = self.gateway.replay(journal)
            content = replayed.content
            if not replayed.is_error:
                content = await self.checked(task, key, name, content, replayed.truncated)
            return Called(
                tool_result(call["id"], content, replayed.is_error), journal.status in RAN
            )
        info = tools.get(name)
        if (waiting := await self.connection_for(task, call, name, info)) is not None:
            return waiting
        tier = self.gateway.effective_tier(name, args) if info else "block"
        interrupted = journal is not None and journal.status == "started"
        approval_id = None
        preview = await self.dry_run_preview(task, name, args)
        flag = self.gateway.dry_run_flag(name)
        dry_run_missing = flag is not None and not args.get(flag) and preview is None
        if (
            info is not None
            and not dry_run_missing
            and (tier == "block" or (interrupted and tier != "auto"))
        ):
            why = RERUN_REASON if interrupted else (reason or DEFAULT_REASON)
            decided = await self.approval_for(
                task, key, info, args, call, why, interrupted, preview
            )
            if decided is None:
                return Wait.APPROVAL
            if isinstance(decided, dict):
                return Called(decided, ran=False)
            approval_id = decided
        ctx = CallContext(
            task_id=task.id,
            step=step,
            coworker=task.coworker,
            delegator=task.delegator,
            idempotency_key=key,
            allowed=set(tools),
            approval_id=approval_id,
            dry_run_ok=preview is not None,
        )
        with telemetry.tool_span(tool=name, call_id=call["id"], task_id=task.id) as span:
            result = await self.gateway.call(name, args, ctx)
            if result.is_error:
                span.fail("tool_error")
        if result.needs_connection is not None and self.connections is not None:
            await self.connections.ask(task, result.needs_connection, reconnect=True)
            return Wait.CONNECT
        if tier == "notify" and not result.is_error:
            await self.notifier.tool_notice(task, name, args)
        content = result.content
        if not result.is_error:
            content = await self.checked(task, key, name, content, result.truncated)
        return Called(tool_result(call["id"], content, result.is_error), result.status in RAN)

    async def connection_for(
        self, task: Task, call: dict[str, Any], name: str, info: ToolInfo | None
    ) -> Called | Wait | None:
        """For a tool of a per-user server: wait for the delegator to connect it (asking
        them), or the answer that they declined; None when the call may go ahead."""
        if self.connections is None:
            return None
        server = info.server if info is not None else name.split("__", 1)[0]
        if not self.connections.is_personal(server):
            return None
        if server in await self.connections.declined(task):
            text = (
                f"{name}: <@{task.delegator}> declined to connect {server}, so its tools "
                "cannot be used for this task. Go on without them."
            )
            return Called(tool_result(call["id"], text, True), ran=False)
        if not await self.connections.unmet(task, [server]):
            return None
        await self.connections.ask(task, server)
        return Wait.CONNECT

    async def checked(self, task: Task, key: str, tool: str, content: str, cut: bool) -> str:
        """`content`, with a note for the model if it is not what the plan expected.

        The check is recorded once per call (a result replayed after a restart is checked
        again, so the model sees the same note, but not recorded twice).
        """
        expect = self.expectation(task, tool)
        if expect is None:
            return content
        check = check_result(tool, expect, content, cut=cut)
        if self.tasks is not None:
            await self.tasks.log_once(task.id, "data_check", key, line=check.line())
        if not check.failed:
            return content
        return (
            f"{content}\n\n[Coworker check] This result does not match what the plan "
            f"expected: {check.detail}. Take it into account, and say so in your answer "
            "if it stands."
        )

    @staticmethod
    def expectation(task: Task, tool: str) -> Expect | None:
        """What the plan expects of this tool's results: only when the steps using it agree."""
        stated = {
            json.dumps(step.get("expect"), sort_keys=True)
            for step in (task.plan or {}).get("steps", [])
            if tool in step.get("tools", [])
        }
        if len(stated) != 1 or (only := json.loads(stated.pop())) is None:
            return None
        try:
            expect = Expect.model_validate(only)
        except ValueError:
            return None
        return None if expect.empty else expect

    async def approval_for(
        self,
        task: Task,
        key: str,
        info: ToolInfo,
        args: dict[str, Any],
        call: dict[str, Any],
        reason: str,
        interrupted: bool,
        preview: str | None = None,
    ) -> int | dict[str, Any] | None:
        """The approved approval id, a rejection result, or None while it is pending."""
        akey = f"{key}:rerun" if interrupted else key
        approval = await self.approvals.current(task.id, akey)
        rerun = 1
        while interrupted and approval is not None and approval.status == "used":
            # The approved re-run was interrupted too: it needs a new decision.
            rerun += 1
            akey = f"{key}:rerun{rerun}"
            approval = await self.approvals.for_key(akey)
        if approval is None or (approval.status == "pending" and approval.message_ts is None):
            await self.approvals.request(
                task,
                kind="tool",
                key=akey,
                tool=info.name,
                arguments=args,
                args_hash=args_hash(info.name, args),
                tier=info.tier,
                reason=reason,
                plan_step=step_using(task.plan, info.name),
                preview=preview,
            )
            return None
        if approval.status == "rejected":
            who = approval.decided_by or "a person"
            why = f" Reason: {approval.decision_note}" if approval.decision_note else ""
            return tool_result(
                call["id"],
                f"Rejected by <@{who}>: this call was not made.{why} Do not retry it; "
                "continue without it or wrap up.",
                True,
            )
        if approval.status == "approved":
            return approval.id
        if approval.status == "used" and not interrupted:
            return await self.approval_for(task, key, info, args, call, RERUN_REASON, True)
        return None

    async def beyond_delegator(self, task: Task, name: str, args: dict[str, Any]) -> str | None:
        """Built-in Slack reads stay within what the delegator can see; why not, if not."""
        if not name.startswith("slack__"):
            return None
        channel = args.get("channel")
        if isinstance(channel, str) and channel != task.channel:
            if not await self.directory.in_channel(task.delegator, channel):
                return f"{name}: <@{task.delegator}> is not a member of {channel}, so this task may not read it."
        file_id = args.get("file_id")
        if isinstance(file_id, str) and file_id not in {f.get("id") for f in task.files}:
            return f"{name}: only files shared with the request can be read."
        return None

    async def dry_run_preview(self, task: Task, name: str, args: dict[str, Any]) -> str | None:
        """For the real call of a write tool: the result of this task's dry run of it, if any."""
        flag = self.gateway.dry_run_flag(name)
        if flag is None or args.get(flag):
            return None
        return await self.gateway.last_preview(task.id, name)
