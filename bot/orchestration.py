"""Coworkers handing work to each other: delegate, fan out, pipeline — as subtasks.

Orchestration is a set of tools the acting model may call (`team__delegate`,
`team__fan_out`, `team__pipeline`; children also get `team__submit_result`). Each call is a
*spawn* keyed by the tool call's idempotency key, whose children are real task rows with a
parent, their own journal, a share of the budget, and status in the parent's thread. The
parent gives up its runner slot while children work and resumes when they are all
finished, receiving their typed results (`AgentResult`), never raw text.

Breakers: a child failing `child_failures` times is escalated to the delegator instead of
retried; delegation depth is limited; a delegation back to a coworker already in the chain
with the same objective is refused and said in the thread.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from bot.base.clock import now
from bot.base.config import Config
from bot.notifier import Notifier
from bot.tasks import FINISHED, Task, TaskStatus, TaskStore, log_state

log = logging.getLogger(__name__)

PREFIX = "team__"
SUBMIT = "team__submit_result"


class Finding(BaseModel):
    severity: Literal["info", "low", "medium", "high", "critical"] = "info"
    text: str = Field(min_length=1, max_length=2000)


class AgentResult(BaseModel):
    """What one coworker hands another: never raw text passed along."""

    summary: str = Field(min_length=1, max_length=8000)
    artifacts: list[str] = Field(default_factory=list, max_length=50)
    findings: list[Finding] = Field(default_factory=list, max_length=50)
    open_questions: list[str] = Field(default_factory=list, max_length=20)


class Stage(BaseModel):
    coworker: str
    objective: str = Field(min_length=1, max_length=4000)
    context: str = Field(default="", max_length=8000)


class SubtaskOutcome(BaseModel):
    task: str
    coworker: str
    status: str
    result: AgentResult | None = None
    error: str | None = None


def _stage_schema(names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "coworker": {"type": "string", "enum": names},
            "objective": {"type": "string", "description": "what the coworker must achieve"},
            "context": {"type": "string", "description": "what it needs to know"},
        },
        "required": ["coworker", "objective"],
    }


def tool_definitions(config: Config, *, child: bool) -> list[dict[str, Any]]:
    """The orchestration tools for a task: hand-offs when coworkers exist; submit for children."""
    names = [c.name for c in config.coworkers]
    tools: list[dict[str, Any]] = []
    if names:
        stage = _stage_schema(names)
        tools += [
            {
                "name": "team__delegate",
                "description": "Hand a piece of work to another coworker "
                "and wait for its structured result.",
                "input_schema": stage,
            },
            {
                "name": "team__fan_out",
                "description": "Run independent subtasks in parallel and gather all results.",
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "subtasks": {"type": "array", "items": stage, "minItems": 1, "maxItems": 10}
                    },
                    "required": ["subtasks"],
                },
            },
            {
                "name": "team__pipeline",
                "description": "Run stages in order; each stage receives "
                "the previous stage's result.",
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "stages": {"type": "array", "items": stage, "minItems": 1, "maxItems": 10}
                    },
                    "required": ["stages"],
                },
            },
        ]
    if child:
        tools.append(
            {
                "name": SUBMIT,
                "description": "Finish this subtask with its structured "
                "result (summary, artifacts, findings with severity, open questions).",
                "input_schema": AgentResult.model_json_schema(),
            }
        )
    return tools


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).strip()


class Refused(Exception):
    """An orchestration call that breaks a rule; the message is safe to show."""


class Orchestrator:
    def __init__(self, tasks: TaskStore, config: Config, notifier: Notifier, wake: Any) -> None:
        self.tasks = tasks
        self.db = tasks.db
        self.config = config
        self.notifier = notifier
        self.wake = wake

    # -- the parent's side -------------------------------------------------------------

    async def handle(
        self, task: Task, key: str, name: str, args: dict[str, Any]
    ) -> tuple[str, bool] | None:
        """(tool result text, is_error), or None while the children work."""
        if name == SUBMIT:
            return await self._submit(task, args)
        spawn = await self.db.fetchone("SELECT * FROM spawns WHERE key = ?", (key,))
        if spawn is None:
            try:
                stages = self._stages(name, args)
                await self._check(task, stages)
            except Refused as exc:
                # A turn replayed after a restart refuses again, but tells the thread once.
                if await self.tasks.log_once(task.id, "delegation_refused", key, reason=str(exc)):
                    await self.notifier.note(task, f"⛔ I refused a hand-off: {exc}")
                return f"Refused: {exc}", True
            await self._spawn(task, key, name.removeprefix(PREFIX), stages)
            return None
        gathered = await self._gather(spawn)
        if gathered is None and spawn["kind"] == "pipeline":
            await self._resume_pipeline(spawn, task)
        return gathered

    async def _resume_pipeline(self, spawn: Any, parent: Task) -> None:
        """A stage finished but the next was never started (a crash in between): start it."""
        children = await self._children(spawn["key"])
        if children and all(c.status == "done" for c in children):
            await self._next_stage(spawn, parent, children[-1])

    def _stages(self, name: str, args: dict[str, Any]) -> list[Stage]:
        try:
            if name == "team__delegate":
                return [Stage.model_validate(args)]
            field = "subtasks" if name == "team__fan_out" else "stages"
            if name not in ("team__fan_out", "team__pipeline"):
                raise Refused(f"unknown orchestration tool {name}")
            return [Stage.model_validate(s) for s in args.get(field) or []] or _empty()
        except ValidationError as exc:
            raise Refused(f"invalid arguments ({exc.errors()[0]['msg']})") from None

    async def _check(self, task: Task, stages: list[Stage]) -> None:
        limit = self.config.orchestration.max_depth
        if task.depth + 1 > limit:
            raise Refused(f"delegation depth would exceed the limit of {limit}")
        chain = await self.ancestry(task)
        for stage in stages:
            if self.config.coworker(stage.coworker) is None:
                raise Refused(f"there is no coworker named {stage.coworker!r}")
            for link in chain:
                same = normalise(link.objective or link.request) == normalise(stage.objective)
                if link.coworker == stage.coworker and same:
                    raise Refused(
                        f"`{stage.coworker}` is already working on that objective in this chain "
                        f"({link.ref}); handing it back would loop"
                    )

    async def ancestry(self, task: Task) -> list[Task]:
        chain, current = [task], task
        while current.parent_id is not None:
            current = await self.tasks.get(current.parent_id)
            chain.append(current)
        return chain

    async def _spawn(self, parent: Task, key: str, kind: str, stages: list[Stage]) -> None:
        remaining = max(parent.budget_usd - await self.family_spend(parent.id), 0.01)
        share = remaining / (len(stages) + 1)
        first = stages[:1] if kind == "pipeline" else stages
        journal = await self.journal_of(parent.id)
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO spawns (key, parent_id, kind, stages, created_at) VALUES (?,?,?,?,?)",
                (key, parent.id, kind, json.dumps([s.model_dump() for s in stages]), now()),
            )
            ids = [
                await self._create_child(tx, parent, key, i, s, share, None, journal)
                for i, s in enumerate(first)
            ]
        for child_id, stage in zip(ids, first, strict=True):
            log_state(child_id, TaskStatus.QUEUED, stage.coworker, 0.0, now())
        refs = ", ".join(f"T-{i}" for i in ids)
        who = ", ".join(sorted({f"`{s.coworker}`" for s in stages}))
        await self.notifier.note(parent, f"↪ {parent.ref} handed work to {who} ({kind}): {refs}")
        await self.tasks.log(parent.id, "spawned", detail={"kind": kind, "children": ids})
        self.wake()

    async def _create_child(
        self,
        tx: Any,
        parent: Task,
        key: str,
        index: int,
        stage: Stage,
        budget: float,
        previous: AgentResult | None,
        journal: str = "",
    ) -> int:
        request = stage.objective
        if stage.context:
            request += f"\n\nContext:\n{stage.context}"
        if previous is not None:
            request += f"\n\nResult of the previous stage:\n{previous.model_dump_json(indent=1)}"
        if journal:
            request += f"\n\nWhat {parent.ref} has done so far (its tool journal):\n{journal}"
        return await self.tasks.create(
            tx,
            status=TaskStatus.QUEUED,
            parent_id=parent.id,
            priority=parent.priority,
            coworker=stage.coworker,
            delegator=parent.delegator,
            team_id=parent.team_id,
            channel=parent.channel,
            thread_ts=parent.thread_ts,
            message_ts=parent.message_ts,
            project=parent.project,
            request=request,
            objective=stage.objective,
            budget_usd=round(budget, 4),
            depth=parent.depth + 1,
            spawn_key=key,
            stage=index,
            plan=json.dumps(
                {
                    "summary": stage.objective,
                    "steps": [],
                    "estimate_minutes": 5,
                    "questions": [],
                    "deliverable": "answer",
                }
            ),
        )

    async def journal_of(self, task_id: int, limit: int = 30) -> str:
        """A hand-off carries the parent's journal: each tool call, its arguments, its result."""
        rows = await self.db.fetchall(
            "SELECT tool, arguments, status, result FROM tool_calls WHERE task_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (task_id, limit),
        )
        return "\n".join(
            f"- {r['tool']}({r['arguments'][:300]}) → {r['status']}: {(r['result'] or '')[:500]}"
            for r in reversed(rows)
        )

    async def family_spend(self, task_id: int) -> float:
        """Dollars spent by a task and all its descendants."""
        value = await self.db.fetchval(
            "WITH RECURSIVE fam(id) AS (SELECT CAST(? AS BIGINT) UNION ALL"
            " SELECT t.id FROM tasks t JOIN fam ON t.parent_id = fam.id)"
            " SELECT COALESCE(SUM(c.cost_usd), 0) FROM llm_calls c WHERE c.task_id IN (SELECT id FROM fam)",
            (task_id,),
        )
        return float(value or 0.0)

    async def _children(self, key: str) -> list[Task]:
        rows = await self.db.fetchall(
            "SELECT * FROM tasks WHERE spawn_key = ? ORDER BY stage, id", (key,)
        )
        return [Task.from_row(r) for r in rows]

    async def _gather(self, spawn: Any) -> tuple[str, bool] | None:
        children = await self._children(spawn["key"])
        stages = json.loads(spawn["stages"])
        pipeline_stopped = any(c.status != "done" for c in children) and spawn["kind"] == "pipeline"
        complete = len(children) == len(stages) or pipeline_stopped
        if not complete or any(c.status not in FINISHED for c in children):
            return None
        outcomes = [self.outcome(c) for c in children]
        failed = any(o.status != "done" for o in outcomes)
        payload = json.dumps([o.model_dump(exclude_none=True) for o in outcomes], indent=1)
        return payload, failed

    @staticmethod
    def outcome(child: Task) -> SubtaskOutcome:
        result = None
        if child.structured_result:
            result = AgentResult.model_validate(child.structured_result)
        elif child.status == "done" and child.result:
            result = AgentResult(summary=child.result[:8000])
        error = None if child.status == "done" else (child.error or child.status)
        return SubtaskOutcome(
            task=child.ref, coworker=child.coworker, status=child.status, result=result, error=error
        )

    # -- the child's side --------------------------------------------------------------

    async def _submit(self, task: Task, args: dict[str, Any]) -> tuple[str, bool]:
        try:
            result = AgentResult.model_validate(args)
        except ValidationError as exc:
            return f"Invalid result: {exc.errors()[:3]}", True
        await self.tasks.update(task.id, structured_result=result.model_dump())
        return "Result recorded.", False

    async def child_finished(self, child: Task) -> None:
        """Retry, escalate, start the next pipeline stage, or wake the parent."""
        if child.spawn_key is None or child.parent_id is None:
            return
        parent = await self.tasks.get(child.parent_id)
        if parent.status == "cancelled":  # no retry, no next stage: nobody waits for them
            return
        if child.status == "failed" and await self._retry(child, parent):
            return
        spawn = await self.db.fetchone("SELECT * FROM spawns WHERE key = ?", (child.spawn_key,))
        assert spawn is not None  # a child's spawn is deleted only with its parent
        if spawn["kind"] == "pipeline" and child.status == "done":
            if await self._next_stage(spawn, parent, child):
                return
        await self.wake_if_gathered(parent.id)

    async def wake_if_gathered(self, parent_id: int) -> bool:
        """Queue a waiting parent once the spawn it waits on (its newest) has every result."""
        spawn = await self.db.fetchone(
            # A run ends at its spawn, so a parent's spawns never share a created_at.
            "SELECT * FROM spawns WHERE parent_id = ? ORDER BY created_at DESC LIMIT 1",
            (parent_id,),
        )
        if spawn is None or await self._gather(spawn) is None:
            return False
        if not await self.tasks.transition(
            parent_id, TaskStatus.QUEUED, from_=TaskStatus.WAITING_INPUT
        ):
            return False
        self.wake()
        return True

    async def _retry(self, child: Task, parent: Task) -> bool:
        failures = sum(1 for e in await self.tasks.events(child.id) if e["kind"] == "status:failed")
        limit = self.config.orchestration.child_failures
        if failures < limit:
            # Not for a parent cancelled meanwhile (its cancel may have passed this child over).
            parent_open = (
                "(SELECT p.status FROM tasks p WHERE p.id = ?) != ?",
                (parent.id, TaskStatus.CANCELLED),
            )
            if await self.tasks.transition(
                child.id,
                TaskStatus.QUEUED,
                from_=TaskStatus.FAILED,
                condition=parent_open,
                error=None,
            ):
                self.wake()
            return True
        await self.notifier.note(
            parent,
            f"<@{parent.delegator}> subtask {child.ref} (`{child.coworker}`) failed {failures} times, "
            f"so I stopped retrying it. {parent.ref} continues without it; "
            f"`/coworker resume {child.ref}` runs it once more on its own ({parent.ref} "
            "does not wait for it).",
        )
        await self.tasks.log(parent.id, "child_escalated", detail={"child": child.id})
        return False

    async def _next_stage(self, spawn: Any, parent: Task, child: Task) -> bool:
        stages = [Stage.model_validate(s) for s in json.loads(spawn["stages"])]
        nxt = (child.stage or 0) + 1
        if nxt >= len(stages):
            return False
        existing = await self.db.fetchval(
            "SELECT id FROM tasks WHERE spawn_key = ? AND stage = ?", (spawn["key"], nxt)
        )
        if existing:
            return True
        previous = self.outcome(child).result or AgentResult(summary="(no result)")
        async with self.db.transaction() as tx:
            # The stage that finished and the parent's own run (resuming the pipeline) may
            # both get here, on different replicas: under the spawn's lock, one starts it.
            await tx.lock(f"spawn:{spawn['key']}")
            if await tx.fetchval(
                "SELECT id FROM tasks WHERE spawn_key = ? AND stage = ?", (spawn["key"], nxt)
            ):
                return True
            status = await tx.fetchval("SELECT status FROM tasks WHERE id = ?", (parent.id,))
            if status == TaskStatus.CANCELLED:  # cancelled meanwhile: no next stage
                return True
            child_id = await self._create_child(
                tx, parent, spawn["key"], nxt, stages[nxt], child.budget_usd, previous
            )
        log_state(child_id, TaskStatus.QUEUED, stages[nxt].coworker, 0.0, now())
        self.wake()
        return True


def _empty() -> list[Stage]:
    raise Refused("no subtasks given")


def is_orchestration(name: str) -> bool:
    return name.startswith(PREFIX)
