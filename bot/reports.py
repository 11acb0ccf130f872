"""Reports: what tasks cost, how they went, and how often people had to step in.

The figures come from the rows the bot writes as it works (`tasks`, `llm_calls`,
`tool_calls`, `approvals`, `task_events`); nothing is counted twice or kept elsewhere. A
summary covers the top-level tasks created in the last N days, optionally only one
person's; a sub-task's model calls and approvals count toward the task it was spawned for.

Definitions, so that the numbers can be checked by hand:

- success rate: done / (done + failed + cancelled); open tasks are left out.
- time to completion: finished_at - created_at of done tasks.
- cost per task: the dollars of every model call of the task and its sub-tasks, over all
  tasks in the window (open ones too); the total is their sum.
- human intervention: a task with at least one approval row, or a `task_events` row of
  kind approval_requested, plan_edited, approval_rejected or questions (a clarifying
  question). Approving the plan itself is not an intervention.
- approval wait: decided_at - requested_at of decided approvals.
- median and p90 interpolate linearly between the closest ranks (numpy's default).

This module holds the queries and the records they fill; `bot.report_text` renders them
(`python -m bot report` prints `render_summary()`, `--task T-n` prints `render_timeline()`,
and the App Home shows `summary_rows()` of `home_summaries()`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bot.approvals import Directory
from bot.base.clock import now
from bot.base.config import Config
from bot.base.db import Database
from bot.base.errors import TaskNotFound
from bot.visibility import is_admin

DAY = 86_400
INTERVENTION_EVENTS = ("approval_requested", "plan_edited", "approval_rejected", "questions")
#: Named placeholders for the kinds (the queries below take named parameters).
_KINDS = ", ".join(f":kind{i}" for i in range(len(INTERVENTION_EVENTS)))

# The top-level tasks in the window (optionally one delegator's) and every sub-task under
# them, each with the top-level task it counts toward.
TREE = """
WITH RECURSIVE tree(id, root) AS (
    SELECT id, id FROM tasks
     WHERE parent_id IS NULL AND created_at >= :since AND created_at < :until
       AND (:user IS NULL OR delegator = :user)
    UNION ALL
    SELECT t.id, tree.root FROM tasks t JOIN tree ON t.parent_id = tree.id
)
"""

ROOTS = (
    TREE
    + f"""
SELECT t.id, t.status, t.created_at, t.finished_at,
       (SELECT COALESCE(SUM(c.cost_usd), 0) FROM llm_calls c JOIN tree x ON x.id = c.task_id
         WHERE x.root = t.id) AS cost,
       (EXISTS (SELECT 1 FROM approvals a JOIN tree x ON x.id = a.task_id WHERE x.root = t.id)
        OR EXISTS (SELECT 1 FROM task_events e JOIN tree x ON x.id = e.task_id
                    WHERE x.root = t.id AND e.kind IN ({_KINDS}))) AS intervened
  FROM tasks t
 WHERE t.id IN (SELECT root FROM tree)
"""
)

APPROVAL_WAITS = (
    TREE
    + """
SELECT a.decided_at - a.requested_at FROM approvals a JOIN tree x ON x.id = a.task_id
 WHERE a.decided_at IS NOT NULL
"""
)

BY_MODEL = (
    TREE
    + """
SELECT c.model AS name, COUNT(*) AS calls, COUNT(DISTINCT x.root) AS tasks,
       SUM(c.cost_usd) AS cost
  FROM llm_calls c JOIN tree x ON x.id = c.task_id
 GROUP BY c.model ORDER BY cost DESC, name
"""
)

BY_COWORKER = (
    TREE
    + """
SELECT COALESCE(NULLIF(t.coworker, ''), c.coworker, '(unrouted)') AS name, COUNT(*) AS calls,
       COUNT(DISTINCT x.root) AS tasks, SUM(c.cost_usd) AS cost
  FROM llm_calls c JOIN tree x ON x.id = c.task_id JOIN tasks t ON t.id = c.task_id
 GROUP BY name ORDER BY cost DESC, name
"""
)

# One task and every sub-task under it.
TREE_OF_TASK = """
WITH RECURSIVE tree(id) AS (
    SELECT ? UNION ALL SELECT t.id FROM tasks t JOIN tree ON t.parent_id = tree.id
)
"""

UNTASKED = """
SELECT COUNT(*), COALESCE(SUM(cost_usd), 0) FROM llm_calls
 WHERE task_id IS NULL AND created_at >= :since AND created_at < :until
"""


@dataclass(frozen=True)
class Spread:
    """Median and p90 of some values (None when there are none)."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(len(values), percentile(values, 0.5), percentile(values, 0.9))


@dataclass(frozen=True)
class CostLine:
    """Dollars spent under one name (a model id or a coworker)."""

    name: str
    calls: int
    tasks: int
    cost_usd: float


@dataclass(frozen=True)
class Summary:
    days: int
    user: str | None  # None: the whole team
    tasks: int
    done: int
    failed: int
    cancelled: int
    open: int
    intervened: int
    completion_s: Spread
    cost_usd: Spread
    total_usd: float
    approval_wait_s: Spread
    by_model: list[CostLine]
    by_coworker: list[CostLine]
    untasked_calls: int = 0
    untasked_usd: float = 0.0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def success_rate(self) -> float | None:
        return self.done / self.finished if self.finished else None

    @property
    def intervention_rate(self) -> float | None:
        return self.intervened / self.tasks if self.tasks else None


@dataclass(frozen=True)
class Step:
    """One model call, tool call or approval of a task, for the step-by-step view."""

    at: float  # when it started
    task_id: int
    kind: str  # model | tool | approval
    name: str
    detail: str
    outcome: str
    duration_ms: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Timeline:
    task_id: int
    status: str
    coworker: str
    delegator: str
    request: str
    created_at: float
    finished_at: float | None
    budget_usd: float
    steps: list[Step]

    @property
    def model_calls(self) -> int:
        return sum(1 for s in self.steps if s.kind == "model")

    @property
    def tool_calls(self) -> int:
        return sum(1 for s in self.steps if s.kind == "tool")

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd or 0.0 for s in self.steps)


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def summary(
    db: Database, *, days: int = 7, user: str | None = None, until: float | None = None
) -> Summary:
    """The figures for top-level tasks created in the last `days` (one delegator's, or all)."""
    until = now() if until is None else until
    params: dict[str, Any] = {"since": until - days * DAY, "until": until, "user": user}
    params.update({f"kind{i}": kind for i, kind in enumerate(INTERVENTION_EVENTS)})
    roots = await db.fetchall(ROOTS, params)
    count = {s: sum(1 for r in roots if r["status"] == s) for s in ("done", "failed", "cancelled")}
    done_times = [
        r["finished_at"] - r["created_at"]
        for r in roots
        if r["status"] == "done" and r["finished_at"] is not None
    ]
    costs = [float(r["cost"]) for r in roots]
    waits = [float(r[0]) for r in await db.fetchall(APPROVAL_WAITS, params)]
    untasked = await db.fetchone(UNTASKED, params) if user is None else (0, 0.0)
    return Summary(
        days=days,
        user=user,
        tasks=len(roots),
        done=count["done"],
        failed=count["failed"],
        cancelled=count["cancelled"],
        open=len(roots) - sum(count.values()),
        intervened=sum(1 for r in roots if r["intervened"]),
        completion_s=Spread.of(done_times),
        cost_usd=Spread.of(costs),
        total_usd=sum(costs),
        approval_wait_s=Spread.of(waits),
        by_model=await _cost_lines(db, BY_MODEL, params),
        by_coworker=await _cost_lines(db, BY_COWORKER, params),
        untasked_calls=int(untasked[0]),
        untasked_usd=float(untasked[1]),
    )


async def _cost_lines(db: Database, sql: str, params: dict[str, Any]) -> list[CostLine]:
    rows = await db.fetchall(sql, params)
    return [CostLine(r["name"], r["calls"], r["tasks"], float(r["cost"])) for r in rows]


async def timeline(db: Database, task_id: int) -> Timeline:
    """The model calls, tool calls and approvals of a task and its sub-tasks, in time order."""
    row = await db.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        raise TaskNotFound(task_id=task_id)
    steps: list[Step] = []
    for table, to_step in (
        ("llm_calls", _model_step),
        ("tool_calls", _tool_step),
        ("approvals", _approval_step),
    ):
        sql = f"{TREE_OF_TASK} SELECT r.* FROM {table} r JOIN tree x ON x.id = r.task_id"
        steps.extend(map(to_step, await db.fetchall(sql, (task_id,))))
    steps.sort(key=lambda s: s.at)
    return Timeline(
        task_id=task_id,
        status=row["status"],
        coworker=row["coworker"] or "(unrouted)",
        delegator=row["delegator"],
        request=row["request"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        budget_usd=row["budget_usd"],
        steps=steps,
    )


def _model_step(r: Any) -> Step:
    latency = r["latency_ms"]
    tokens = f"in {r['input_tokens']} · out {r['output_tokens']}"
    if r["cache_write_tokens"] or r["cache_read_tokens"]:
        tokens += f" · cache write {r['cache_write_tokens']} read {r['cache_read_tokens']}"
    return Step(
        at=r["created_at"] - (latency or 0) / 1000,
        task_id=r["task_id"],
        kind="model",
        name=f"{r['purpose']} · {r['model']}",
        detail=tokens,
        outcome=f"error: {r['error']}" if r["error"] else (r["stop_reason"] or ""),
        duration_ms=latency,
        cost_usd=float(r["cost_usd"]),
    )


def _tool_step(r: Any) -> Step:
    outcome = r["status"] + (" (error)" if r["is_error"] and r["status"] == "ok" else "")
    return Step(
        at=r["started_at"],
        task_id=r["task_id"],
        kind="tool",
        name=r["tool"],
        detail=f"{r['tier']} · {clip(r['arguments'], 60)}",
        outcome=outcome,
        duration_ms=r["duration_ms"],
    )


def _approval_step(r: Any) -> Step:
    waited = (r["decided_at"] - r["requested_at"]) * 1000 if r["decided_at"] else None
    who = f" by {r['decided_by']}" if r["decided_by"] else ""
    return Step(
        at=r["requested_at"],
        task_id=r["task_id"],
        kind="approval",
        name=r["tool"] or r["kind"],
        detail=clip(r["reason"] or "", 60),
        outcome=r["status"] + who,
        duration_ms=waited,
    )


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- who sees what in the App Home (`bot.visibility` decides) -----------------------------


async def home_summaries(
    db: Database, config: Config, directory: Directory, user: str, *, days: int = 7
) -> list[tuple[str, Summary]]:
    """The viewer's own summary, and the team's for admins, each with a title."""
    summaries = [(f"Your tasks, last {days} days", await summary(db, days=days, user=user))]
    if await is_admin(config, directory, user):
        summaries.append((f"Team, last {days} days", await summary(db, days=days)))
    return summaries
