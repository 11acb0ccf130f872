"""Tasks: the typed record, the state machine, and the SQL that moves a task through it.

    received → planning → awaiting_plan_approval → queued → running ⇄ waiting_approval
                        ↘ waiting_input ↗                          ⇄ waiting_input
    running → done | failed | cancelled;  paused after a budget stop or an approval timeout;
    a reply reopens a waiting, done or failed task;  any open state → cancelled (final)

`EDGES` lists every allowed move, and this module is the one writer of the status column:
others call `transition()`, or take a statement from `move()` to batch with their own
writes and hand its rows to `moved()`. Moves are conditional updates (`… WHERE status IN
(…)`): the row count says whether this caller won, so a double click or a racing timeout
changes state once. Every move is a `status:<state>` event and one INFO log line (task,
state, coworker, time since it was received, spend; never the request's text).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.base.clock import now
from bot.base.db import Database, Params, Statement, Tx, marks
from bot.base.errors import TaskNotFound

log = logging.getLogger(__name__)


class TaskStatus(StrEnum):
    RECEIVED = "received"
    PLANNING = "planning"
    AWAITING_PLAN_APPROVAL = "awaiting_plan_approval"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    WAITING_INPUT = "waiting_input"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = TaskStatus
OPEN = (
    S.RECEIVED,
    S.PLANNING,
    S.AWAITING_PLAN_APPROVAL,
    S.QUEUED,
    S.RUNNING,
    S.WAITING_APPROVAL,
    S.WAITING_INPUT,
    S.PAUSED,
)
FINISHED = (S.DONE, S.FAILED, S.CANCELLED)

#: Where a task may go from each state, and (in comments) what moves it.
EDGES: dict[TaskStatus, frozenset[TaskStatus]] = {
    # claimed for planning; cancelled
    S.RECEIVED: frozenset({S.PLANNING, S.CANCELLED}),
    # a plan (to approve, or queued), questions, a budget stop, a failure; a restart
    S.PLANNING: frozenset(
        {
            S.AWAITING_PLAN_APPROVAL,
            S.QUEUED,
            S.WAITING_INPUT,
            S.PAUSED,
            S.FAILED,
            S.RECEIVED,
            S.CANCELLED,
        }
    ),
    # approved; edited or commented on (planned again)
    S.AWAITING_PLAN_APPROVAL: frozenset({S.QUEUED, S.RECEIVED, S.CANCELLED}),
    # claimed for acting; paused by an approval timeout
    S.QUEUED: frozenset({S.RUNNING, S.PAUSED, S.CANCELLED}),
    # the agent loop's outcomes; a restart puts it back in the queue
    S.RUNNING: frozenset(
        {
            S.DONE,
            S.WAITING_APPROVAL,
            S.WAITING_INPUT,
            S.PAUSED,
            S.FAILED,
            S.QUEUED,
            S.CANCELLED,
        }
    ),
    # decided; timed out
    S.WAITING_APPROVAL: frozenset({S.QUEUED, S.PAUSED, S.CANCELLED}),
    # answered (planned again if it had no plan yet); its subtasks finished; its delegator
    # connected the per-user server it waited for (bot.connections)
    S.WAITING_INPUT: frozenset({S.RECEIVED, S.QUEUED, S.CANCELLED}),
    # resumed or topped up; a declined top-up ends it
    S.PAUSED: frozenset({S.RECEIVED, S.QUEUED, S.DONE, S.CANCELLED}),
    # a follow-up in the thread
    S.DONE: frozenset({S.RECEIVED, S.QUEUED}),
    # resumed, answered or retried
    S.FAILED: frozenset({S.RECEIVED, S.QUEUED}),
    S.CANCELLED: frozenset(),
}

#: What a move returns of each task it moved: the whole row (its event and log line need
#: a few columns; `transition()` hands the task back, so the caller need not read it again).
MOVED = "RETURNING *"

#: What claiming a task moves it to: planning it, or acting on it.
CLAIMED = {S.RECEIVED: S.PLANNING, S.QUEUED: S.RUNNING}

# The next task to work on, highest priority first, then oldest; a subtask only while its
# parent has fewer than `fanout` subtasks running and is not cancelled.
CLAIM = """
UPDATE tasks
   SET status = CASE status WHEN :received THEN :planning ELSE :running END,
       started_at = COALESCE(started_at, :now), updated_at = :now, attempts = attempts + 1
 WHERE id = (SELECT id FROM tasks q WHERE status IN (:received, :queued)
                AND (q.parent_id IS NULL OR ((SELECT COUNT(*) FROM tasks r
                     WHERE r.parent_id = q.parent_id AND r.status = :running) < :fanout
                   AND (SELECT p.status FROM tasks p WHERE p.id = q.parent_id) != :cancelled))
              ORDER BY priority DESC, created_at, id LIMIT 1)
   AND status IN (:received, :queued)
RETURNING *
"""

#: How long a post Slack did not take (a deliverable, a plan, questions) is retried.
GIVE_UP_SECONDS = 24 * 3600
PRIORITIES = ("low", "normal", "high", "urgent")
_TASK_REF = re.compile(r"^\s*T-?(\d+)\s*$", re.IGNORECASE)


MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: a larger number is no row's id


def parse_id(text: str) -> int | None:
    """A row id written in decimal digits, or None (not a number, or too large for SQLite)."""
    text = text.strip()
    return int(text) if text.isdecimal() and int(text) <= MAX_ID else None


def parse_task_ref(text: str) -> int | None:
    """`T-42`, `t42` or `42` → 42."""
    m = _TASK_REF.match(text) or re.match(r"^\s*(\d+)\s*$", text)
    return parse_id(m.group(1)) if m else None


def edges_from(sources: Iterable[TaskStatus | str], to: TaskStatus | str) -> TaskStatus:
    """`to`, after checking that a task may move there from each of `sources`.

    Raises:
        ValueError: a move the state machine does not have (a mistake in the code).
    """
    to = TaskStatus(to)
    for source in sources:
        if to not in EDGES[TaskStatus(source)]:
            raise ValueError(f"no move from {source} to {to}")
    return to


def log_state(task_id: int, state: str, coworker: str | None, spent: float, since: float) -> None:
    """The operator's line for a task entering `state` (no request text: it may be private)."""
    log.info(
        "task=T-%d state=%s coworker=%s duration=%.1fs cost=$%.4f",
        task_id,
        state,
        coworker or "-",
        max(0.0, now() - since),
        spent,
    )


@dataclass
class Task:
    id: int
    status: TaskStatus
    priority: int
    coworker: str
    delegator: str
    channel: str
    thread_ts: str
    message_ts: str
    request: str
    budget_usd: float
    spent_usd: float = 0.0
    parent_id: int | None = None
    team_id: str | None = None
    project: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    estimate_min: int | None = None
    high_visibility: bool = False
    depth: int = 0
    objective: str | None = None
    ack_ts: str | None = None
    status_ts: str | None = None
    plan_ts: str | None = None
    assistant: bool = False
    result: str | None = None
    error: str | None = None
    feedback: int | None = None
    steps: int = 0
    attempts: int = 0
    cancel_requested: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    spawn_key: str | None = None
    stage: int | None = None
    structured_result: dict[str, Any] | None = None
    checks: list[str] = field(default_factory=list)
    delivery_pending: bool = False
    delivered_parts: int = 0

    @property
    def ref(self) -> str:
        return f"T-{self.id}"

    @property
    def priority_name(self) -> str:
        return PRIORITIES[self.priority]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_row(cls, row: Any) -> Task:
        d = dict(row)
        d["status"] = TaskStatus(d["status"])
        for key in ("files", "links"):
            d[key] = json.loads(d[key] or "[]")
        d["plan"] = json.loads(d["plan"]) if d["plan"] else None
        d["structured_result"] = (
            json.loads(d["structured_result"]) if d.get("structured_result") else None
        )
        d["checks"] = json.loads(d["checks"]) if d.get("checks") else []
        for key in ("high_visibility", "assistant", "cancel_requested", "delivery_pending"):
            d[key] = bool(d[key])
        d.pop("updated_at", None)
        # Which replica holds a running task, and until when (PostgreSQL: bot.cluster.claims).
        d.pop("lease_owner", None)
        d.pop("lease_expires_at", None)
        return cls(**d)


class TaskStore:
    """SQL for tasks, their events and their thread inputs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Thread replies committed so far: each writer (`add_input`, `Intake.receive`)
        #: calls `note_reply()` right after its commit, and a running task re-reads its row
        #: when the count moved. With replicas, replies committed by another replica count
        #: too (`heard_reply()`, from its wake-up).
        self.replies = 0
        #: Called with the task id after each reply this process committed (replicas: tell
        #: the others, whose running task may be the one replied to).
        self.on_reply: Callable[[int], None] | None = None
        #: Called with (task id, new status) after each move this process made (replicas:
        #: a task its own job moved out of planning/running is no longer held by that job).
        self.on_moved: Callable[[int, str], None] | None = None

    def note_reply(self, task_id: int) -> None:
        self.replies += 1
        if self.on_reply is not None:
            self.on_reply(task_id)

    def heard_reply(self) -> None:
        """Another replica committed a reply: running tasks here look at their rows."""
        self.replies += 1

    async def create(self, tx: Tx, **fields: Any) -> int:
        """Insert a task (received, or queued for a subtask) inside the caller's transaction;
        the caller logs it with `created()` once that commits."""
        if fields["status"] not in (S.RECEIVED, S.QUEUED):
            raise ValueError(
                f"a task starts received (or queued, a subtask), not {fields['status']}"
            )
        fields.setdefault("created_at", now())
        fields["updated_at"] = fields["created_at"]
        for key in ("files", "links"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        cols = ", ".join(fields)
        task_id = await tx.fetchval(
            f"INSERT INTO tasks ({cols}) VALUES ({marks(len(fields))}) RETURNING id",
            list(fields.values()),
        )
        return int(task_id)

    async def get(self, task_id: int) -> Task:
        row = await self.db.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise TaskNotFound(task_id=task_id)
        return Task.from_row(row)

    async def find_by_thread(self, channel: str, thread_ts: str) -> Task | None:
        """The newest top-level task started in this thread."""
        row = await self.db.fetchone(
            "SELECT * FROM tasks WHERE channel = ? AND thread_ts = ? AND parent_id IS NULL"
            " ORDER BY id DESC LIMIT 1",
            (channel, thread_ts),
        )
        return Task.from_row(row) if row else None

    @staticmethod
    def created(task: Task) -> None:
        """Log a task that came to be (its first state)."""
        log_state(task.id, task.status, task.coworker, task.spent_usd, task.created_at)

    async def update(self, task_id: int, **fields: Any) -> None:
        """Change fields other than the status (that takes a move: `transition()`)."""
        if "status" in fields:
            raise ValueError("the status changes only through a move (transition)")
        for key in ("plan", "structured_result", "checks"):
            if fields.get(key) is not None:
                fields[key] = json.dumps(fields[key])
        fields["updated_at"] = now()
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.db.execute(f"UPDATE tasks SET {sets} WHERE id = ?", [*fields.values(), task_id])

    async def transition(
        self,
        task_id: int,
        to: TaskStatus | str,
        *,
        from_: Iterable[TaskStatus | str] | TaskStatus | str,
        condition: tuple[str, Sequence[Any]] | None = None,
        **fields: Any,
    ) -> Task | None:
        """Move a task to `to` only if it is in one of `from_` (and meets the SQL
        `condition`, with its parameters); the task as it is now if this call moved it,
        else None."""
        rows = await self.db.fetchall(
            *self.move(task_id, to, from_=from_, condition=condition, **fields)
        )
        await self.moved(rows)
        return Task.from_row(rows[0]) if rows else None

    def move(
        self,
        task_id: int,
        to: TaskStatus | str,
        *,
        from_: Iterable[TaskStatus | str] | TaskStatus | str,
        condition: tuple[str, Sequence[Any]] | None = None,
        **fields: Any,
    ) -> Statement:
        """The statement of `transition()`, for a caller that runs it with other writes (in a
        batch or a transaction); it returns the moved row, which goes to `moved()` after."""
        sources = (from_,) if isinstance(from_, str) else tuple(from_)
        to = edges_from(sources, to)
        if to in FINISHED:
            fields.setdefault("finished_at", now())
        if "plan" in fields and fields["plan"] is not None:
            fields["plan"] = json.dumps(fields["plan"])
        fields["updated_at"] = now()
        sets = ", ".join(f"{k} = ?" for k in fields)
        extra, extra_params = condition or ("1 = 1", ())
        return (
            f"UPDATE tasks SET status = ?, {sets} WHERE id = ? AND status IN ({marks(len(sources))})"
            f" AND ({extra}) {MOVED}",
            [to, *fields.values(), task_id, *sources, *extra_params],
        )

    async def moved(self, rows: Sequence[Any], *, logged: bool = False) -> int:
        """Record the moves a `move()` (or the runner's claim) made: a `status:` event and a
        log line for each task in `rows`; how many there were. `logged`: their events are
        written already (a replica's claim writes its own)."""
        for row in rows:
            log_state(
                row["id"], row["status"], row["coworker"], row["spent_usd"], row["created_at"]
            )
            if self.on_moved is not None:
                self.on_moved(int(row["id"]), str(row["status"]))
        at = now()
        events: list[Statement] = [
            (
                "INSERT INTO task_events (task_id, kind, at) VALUES (?, ?, ?)",
                (row["id"], f"status:{row['status']}", at),
            )
            for row in ([] if logged else rows)
        ]
        if len(events) == 1:
            await self.db.execute(*events[0])
        elif events:
            await self.db.batch(*events)
        return len(rows)

    def move_all(
        self,
        from_: TaskStatus,
        to: TaskStatus,
        condition: tuple[str, Sequence[Any]] = ("1 = 1", ()),
    ) -> Statement:
        """The statement moving every task in `from_` (that meets `condition`) to `to`."""
        to = edges_from((from_,), to)
        sql, params = condition
        return (
            f"UPDATE tasks SET status = ?, updated_at = ? WHERE status = ? AND ({sql}) {MOVED}",
            [to, now(), from_, *params],
        )

    async def claim(self, *, fanout: int) -> Task | None:
        """The next task to work on, moved to planning (received) or running (queued)."""
        params = {"now": now(), "fanout": fanout, "cancelled": S.CANCELLED}
        params.update({str(s): s for s in (*CLAIMED, *CLAIMED.values())})
        rows = await self.db.fetchall(CLAIM, params)
        await self.moved(rows)
        return Task.from_row(rows[0]) if rows else None

    async def recover(self, *, interrupted: bool = True) -> int:
        """Put tasks a stop interrupted back in the queue, to resume from their checkpoint;
        how many moved. `interrupted=False` leaves planning and running tasks alone (with
        replicas, those are another replica's until its lease runs out: bot.cluster.claims)
        and only moves on what a stop left decided but not yet queued."""
        statements = (
            *(
                (self.move_all(S.RUNNING, S.QUEUED), self.move_all(S.PLANNING, S.RECEIVED))
                if interrupted
                else ()
            ),
            # Decided between the approval's update and the task's move: go on.
            self.move_all(
                S.WAITING_APPROVAL,
                S.QUEUED,
                (
                    "NOT EXISTS (SELECT 1 FROM approvals a WHERE a.task_id = tasks.id"
                    " AND a.status IN ('pending', 'expired'))",
                    (),
                ),
            ),
            # A parent whose subtasks all finished just before a crash, before it was woken.
            self.move_all(
                S.WAITING_INPUT,
                S.QUEUED,
                (
                    "EXISTS (SELECT 1 FROM spawns s WHERE s.parent_id = tasks.id)"
                    " AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = tasks.id"
                    f" AND c.status NOT IN ({marks(len(FINISHED))}))",
                    FINISHED,
                ),
            ),
        )
        moved = 0
        for statement in statements:
            moved += await self.moved(await self.db.fetchall(*statement))
        return moved

    async def log(
        self, task_id: int, kind: str, actor: str | None = None, detail: Any = None
    ) -> None:
        await self.db.execute(
            "INSERT INTO task_events (task_id, kind, actor, detail, at) VALUES (?, ?, ?, ?, ?)",
            (task_id, kind, actor, None if detail is None else json.dumps(detail), now()),
        )

    async def log_once(self, task_id: int, kind: str, key: str, **detail: Any) -> bool:
        """Log an event once per `key` (a tool call replayed after a restart logs nothing);
        True when this call logged it."""
        return 1 == await self.db.execute(
            "INSERT INTO task_events (task_id, kind, detail, at, once_key)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (task_id, kind, json.dumps({"key": key, **detail}), now(), key),
        )

    async def events(self, task_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT kind, actor, detail, at FROM task_events WHERE task_id = ? ORDER BY id",
            (task_id,),
        )
        return [dict(r) for r in rows]

    async def add_input(self, task_id: int, author: str, text: str, ts: str | None) -> None:
        await self.db.execute(
            "INSERT INTO task_inputs (task_id, author, text, ts, at) VALUES (?, ?, ?, ?, ?)",
            (task_id, author, text, ts, now()),
        )
        self.note_reply(task_id)

    async def add_input_if_open(self, task_id: int, author: str, text: str) -> bool:
        """Add `text` for the task's next model turn, unless the task has finished; whether
        it was added (one statement: a task finishing meanwhile takes it as a follow-up)."""
        added = await self.db.execute(
            "INSERT INTO task_inputs (task_id, author, text, ts, at)"
            " SELECT CAST(? AS BIGINT), ?, ?, NULL, CAST(? AS DOUBLE PRECISION)"
            f" WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ? AND status IN ({marks(len(OPEN))}))",
            (task_id, author, text, now(), task_id, *OPEN),
        )
        if added:
            self.note_reply(task_id)
        return added == 1

    async def pending_inputs(self, task_id: int) -> list[dict[str, Any]]:
        """Thread replies not yet taken into the task, oldest first.

        They stay pending until the write that keeps them (the agent's checkpoint, the
        planner's request) also runs `inputs_taken(...)`, so a crash in between loses none.
        """
        rows = await self.db.fetchall(
            "SELECT id, author, text, ts FROM task_inputs WHERE task_id = ? AND consumed = 0"
            " ORDER BY id",
            (task_id,),
        )
        return [dict(r) for r in rows]

    @staticmethod
    def inputs_taken(task_id: int, inputs: list[dict[str, Any]]) -> tuple[str, Params]:
        """The statement marking `inputs` taken, for the transaction that keeps them."""
        return (
            "UPDATE task_inputs SET consumed = 1 WHERE task_id = ? AND consumed = 0 AND id <= ?",
            (task_id, max(i["id"] for i in inputs)),
        )

    async def get_for_turn(self, task_id: int) -> tuple[Task, bool]:
        """The task, and whether thread replies are waiting for it: one query per turn."""
        row = await self.db.fetchone(
            "SELECT *, EXISTS(SELECT 1 FROM task_inputs i WHERE i.task_id = tasks.id"
            " AND i.consumed = 0) AS inputs_pending FROM tasks WHERE id = ?",
            (task_id,),
        )
        if row is None:
            raise TaskNotFound(task_id=task_id)
        d = dict(row)
        pending = bool(d.pop("inputs_pending"))
        return Task.from_row(d), pending

    async def add_to_request(
        self, task_id: int, request: str, inputs: list[dict[str, Any]]
    ) -> None:
        """Replace the request with one that includes `inputs`, and mark those taken."""
        await self.db.batch(
            (
                "UPDATE tasks SET request = ?, updated_at = ? WHERE id = ?",
                (request, now(), task_id),
            ),
            self.inputs_taken(task_id, inputs),
        )

    async def undelivered(self, *, since: float) -> list[Task]:
        """Top-level tasks done since `since` whose deliverable Slack has not fully taken."""
        rows = await self.db.fetchall(
            "SELECT * FROM tasks WHERE delivery_pending = 1 AND status = 'done'"
            " AND parent_id IS NULL AND finished_at > ? ORDER BY id",
            (since,),
        )
        return [Task.from_row(r) for r in rows]

    async def give_up_delivery(self, *, finished_before: float) -> list[int]:
        """Stop retrying deliverables of tasks finished before `finished_before`; their ids."""
        rows = await self.db.fetchall(
            "UPDATE tasks SET delivery_pending = 0 WHERE delivery_pending = 1"
            " AND status = 'done' AND finished_at <= ? RETURNING id",
            (finished_before,),
        )
        return sorted(int(r["id"]) for r in rows)

    async def set_plan_ts(
        self, task_id: int, ts: str, plan: dict[str, Any], *, was: str | None
    ) -> bool:
        """Record `ts` as the message of the task's plan, if `plan` is still its plan and no
        other message took its place since the caller read `was`."""
        changed = await self.db.execute(
            "UPDATE tasks SET plan_ts = ?, updated_at = ? WHERE id = ? AND plan = ?"
            " AND plan_ts IS NOT DISTINCT FROM ?",
            (ts, now(), task_id, json.dumps(plan), was),
        )
        return changed == 1

    async def unposted_plans(self, *, before: float) -> list[Task]:
        """Tasks waiting for a plan approval whose plan Slack never took (by `before`)."""
        rows = await self.db.fetchall(
            "SELECT * FROM tasks WHERE status = 'awaiting_plan_approval' AND plan_ts IS NULL"
            " AND plan IS NOT NULL AND updated_at < ? AND updated_at > ? ORDER BY id",
            (before, before - GIVE_UP_SECONDS),
        )
        return [Task.from_row(r) for r in rows]

    async def unasked_questions(self, *, before: float) -> list[tuple[Task, list[str]]]:
        """Tasks waiting for answers to clarifying questions Slack never took, with them."""
        rows = await self.db.fetchall(
            "SELECT t.*, e.detail AS asked FROM tasks t JOIN task_events e ON e.id = (SELECT"
            " MAX(id) FROM task_events WHERE task_id = t.id AND kind IN ('questions',"
            " 'questions_posted')) WHERE t.status = 'waiting_input' AND t.plan IS NULL"
            " AND e.kind = 'questions' AND t.updated_at < ? AND t.updated_at > ? ORDER BY t.id",
            (before, before - GIVE_UP_SECONDS),
        )
        found = []
        for row in rows:
            d = dict(row)
            asked = json.loads(d.pop("asked") or "[]")
            found.append((Task.from_row(d), [str(q) for q in asked]))
        return found

    async def delivery_progress(self, task: Task, parts: int, *, pending: bool) -> None:
        """Record how far `task`'s deliverable got; only for the deliverable and the progress
        the caller read (a newer answer, or a record made meanwhile, is left alone)."""
        await self.db.execute(
            "UPDATE tasks SET delivered_parts = ?, delivery_pending = ? WHERE id = ?"
            " AND delivery_pending = 1 AND delivered_parts = ? AND result IS NOT DISTINCT FROM ?",
            (parts, int(pending), task.id, task.delivered_parts, task.result),
        )

    async def list_for(self, user: str, *, open_only: bool = False, limit: int = 20) -> list[Task]:
        where, params = "delegator = ?", [user]
        if open_only:
            where += f" AND status IN ({marks(len(OPEN))})"
            params += OPEN
        rows = await self.db.fetchall(
            f"SELECT * FROM tasks WHERE {where} AND parent_id IS NULL ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [Task.from_row(r) for r in rows]

    async def list_open(self, limit: int = 20) -> list[Task]:
        rows = await self.db.fetchall(
            f"SELECT * FROM tasks WHERE status IN ({marks(len(OPEN))}) AND parent_id IS NULL"
            " ORDER BY id DESC LIMIT ?",
            (*OPEN, limit),
        )
        return [Task.from_row(r) for r in rows]

    async def descendants(self, task_id: int) -> list[int]:
        """The ids of every subtask under `task_id`, at any depth, in order."""
        rows = await self.db.fetchall(
            "WITH RECURSIVE family(id) AS (SELECT id FROM tasks WHERE parent_id = ?"
            " UNION SELECT t.id FROM tasks t JOIN family f ON t.parent_id = f.id)"
            " SELECT id FROM family ORDER BY id",
            (task_id,),
        )
        return [int(r["id"]) for r in rows]

    async def children(self, task_id: int) -> list[Task]:
        rows = await self.db.fetchall(
            "SELECT * FROM tasks WHERE parent_id = ? ORDER BY id", (task_id,)
        )
        return [Task.from_row(r) for r in rows]
