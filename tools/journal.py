"""The tool journal: one `tool_calls` row per call, written before and after it runs.

The row is keyed by the caller's idempotency key, so it is both the audit and what makes a
resumed task safe: a call whose row says `ok` or `error` reached its server and is never run
again; a row still `started` means the process stopped mid-call and nobody knows whether it
took effect. Rows for calls refused before any server was contacted (`denied`, `invalid`,
`rejected`, `unavailable`) may be evaluated again under the same key, which is how a call
refused for want of an approval runs once the approval is given.

Block-tier approvals are consumed here, in the same transaction that journals the call as
started: a conditional update turns `approved` into `used`, so an approval runs exactly one
call with exactly the arguments a person saw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bot.base import clock
from bot.base.db import Database, marks

#: statuses of calls that reached their server: never run again under the same key
REACHED = frozenset({"ok", "error"})

_COLUMNS = (
    "idempotency_key, task_id, step, coworker, delegator, server, tool, arguments, args_hash, "
    "tier, tier_source, status, result, is_error, approval_id, started_at, finished_at, duration_ms"
)
_INSERT = f"INSERT INTO tool_calls ({_COLUMNS}) VALUES ({marks(18)})"
_CLAIM = f"{_INSERT} ON CONFLICT (idempotency_key) DO NOTHING"
_UPSERT = f"""{_INSERT}
ON CONFLICT (idempotency_key) DO UPDATE SET
    task_id = excluded.task_id, step = excluded.step, coworker = excluded.coworker,
    delegator = excluded.delegator, server = excluded.server, tool = excluded.tool,
    arguments = excluded.arguments, args_hash = excluded.args_hash, tier = excluded.tier,
    tier_source = excluded.tier_source, status = excluded.status, result = excluded.result,
    is_error = excluded.is_error, approval_id = excluded.approval_id,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    duration_ms = excluded.duration_ms
WHERE tool_calls.status NOT IN ('ok', 'error')
"""
_FINISH = """
UPDATE tool_calls SET status = ?, result = ?, is_error = ?, finished_at = ?, duration_ms = ?
WHERE idempotency_key = ? AND status = 'started'
"""
_CONSUME = """
UPDATE approvals SET status = 'used'
WHERE id = ? AND status = 'approved' AND tool = ? AND args_hash = ? AND (? IS NULL OR task_id = ?)
"""


def args_hash(tool: str, args: Any) -> str:
    """sha256 of the canonical JSON of a tool name and its arguments (what an approval signs)."""
    canonical = json.dumps(
        {"tool": tool, "arguments": args}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    """A journaled call as a resumed task needs it."""

    status: str
    content: str  # the result as stored: redacted and cut to `audit_max_chars`
    is_error: bool
    tier: str
    tool: str
    args_hash: str


@dataclass(frozen=True)
class CallRecord:
    """The facts about one call that its row starts with."""

    key: str
    task_id: int | None
    step: int | None
    coworker: str | None
    delegator: str | None
    server: str
    tool: str
    arguments: str  # JSON, redacted
    args_hash: str
    tier: str
    tier_source: str

    def row(
        self,
        status: str,
        result: str | None,
        is_error: bool,
        approval_id: int | None,
        duration_ms: float | None,
    ) -> tuple[Any, ...]:
        now = clock.now()
        finished = None if status == "started" else now
        return (
            self.key,
            self.task_id,
            self.step,
            self.coworker,
            self.delegator,
            self.server,
            self.tool,
            self.arguments,
            self.args_hash,
            self.tier,
            self.tier_source,
            status,
            result,
            int(is_error),
            approval_id,
            now,
            finished,
            duration_ms,
        )


class ToolJournal:
    """Reads and writes `tool_calls`, and consumes approvals."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> JournalEntry | None:
        row = await self._db.fetchone(
            "SELECT status, result, is_error, tier, tool, args_hash FROM tool_calls"
            " WHERE idempotency_key = ?",
            (key,),
        )
        if row is None:
            return None
        return JournalEntry(
            status=row[0],
            content=row[1] or "",
            is_error=bool(row[2]),
            tier=row[3],
            tool=row[4],
            args_hash=row[5],
        )

    async def record(
        self,
        rec: CallRecord,
        status: str,
        result: str,
        *,
        is_error: bool = True,
        approval_id: int | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """Write a call that ends here, without reaching a server."""
        await self._db.execute(_UPSERT, rec.row(status, result, is_error, approval_id, duration_ms))

    async def claim(self, rec: CallRecord) -> bool:
        """Journal a call under a new key as started; False if the key is already journaled."""
        changed = await self._db.execute(_CLAIM, rec.row("started", None, False, None, None))
        return changed == 1

    async def start(self, rec: CallRecord) -> None:
        """Journal a call as started, before its server is contacted."""
        await self._db.execute(_UPSERT, rec.row("started", None, False, None, None))

    async def start_approved(self, rec: CallRecord, approval_id: int) -> bool:
        """Consume the approval and journal the call as started, atomically; False if refused."""
        async with self._db.transaction() as tx:
            cur = await tx.execute(
                _CONSUME, (approval_id, rec.tool, rec.args_hash, rec.task_id, rec.task_id)
            )
            if cur.rowcount != 1:
                return False
            await tx.execute(_UPSERT, rec.row("started", None, False, approval_id, None))
            return True

    async def finish(
        self, key: str, status: str, result: str, *, is_error: bool, duration_ms: float
    ) -> None:
        await self._db.execute(
            _FINISH, (status, result, int(is_error), clock.now(), duration_ms, key)
        )

    async def restore_approval(self, approval_id: int) -> None:
        """Give back an approval whose call never reached its server."""
        await self._db.execute(
            "UPDATE approvals SET status = 'approved' WHERE id = ? AND status = 'used'",
            (approval_id,),
        )

    async def approval_problem(self, approval_id: int | None, rec: CallRecord) -> str:
        """Why `approval_id` does not authorize this call, in words."""
        if approval_id is None:
            return "needs a person's approval first (block tier)"
        row = await self._db.fetchone(
            "SELECT status, tool, args_hash, task_id FROM approvals WHERE id = ?", (approval_id,)
        )
        if row is None:
            return f"approval {approval_id} does not exist"
        status, tool, hashed, task_id = row
        if status == "used":
            return f"approval {approval_id} was already used; an approval runs one call"
        if status != "approved":
            return f"approval {approval_id} is {status}, not approved"
        if tool != rec.tool:
            return f"approval {approval_id} is for another tool ({tool})"
        if rec.task_id is not None and task_id != rec.task_id:
            return f"approval {approval_id} belongs to another task"
        if hashed != rec.args_hash:
            return f"approval {approval_id} was given for different arguments"
        return f"approval {approval_id} could not be used"
