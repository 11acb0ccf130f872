"""Leased task claims: replicas take work from one queue, each task from exactly one.

A claim picks the next claimable task (highest priority, then oldest) with `FOR UPDATE
SKIP LOCKED`, so replicas claiming at the same moment lock different rows instead of
waiting on or double-taking the same one, and a row that another replica claimed just
before is re-checked and skipped, not returned. The claimed task gets a lease:
`lease_owner` (the replica) and `lease_expires_at` (the database's clock), which the
replica's heartbeat renews. Its `status:` event is written with it.

A top-level task is claimed in one statement (one round trip: pick, take, log). A subtask
takes a short transaction instead: an advisory lock on its parent before counting the
parent's running subtasks, so two replicas cannot both start the parent's last allowed one
(the `fanout_concurrency` limit holds across replicas).

Recovery takes only what nobody holds: a planning or running task whose lease ran out goes
back to the queue and resumes from its checkpoint on whichever replica claims it next; a
task another replica is working on is left alone. A clean stop hands its tasks back at once.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.base.clock import now
from bot.base.db.postgres import PostgresDatabase, PostgresTx
from bot.cluster import DB_NOW, DEFAULT_LEASE
from bot.tasks import MOVED

log = logging.getLogger(__name__)

#: high 32 bits of the advisory lock key taken on a parent while claiming its subtask
FANOUT_LOCK = 0x63776661
_CLAIMABLE = ("received", "queued")
_HELD = "('planning', 'running')"
#: statuses a claimed task moves to, and back when its lease is given up
_BACK = "CASE status WHEN 'planning' THEN 'received' ELSE 'queued' END"

CANDIDATE = """
SELECT id, parent_id FROM tasks q
 WHERE status IN ('received', 'queued')
   AND (q.parent_id IS NULL OR (
        NOT (q.parent_id = ANY(:skip))
        AND (SELECT COUNT(*) FROM tasks r
              WHERE r.parent_id = q.parent_id AND r.status = 'running') < :fanout
        AND (SELECT p.status FROM tasks p WHERE p.id = q.parent_id) != 'cancelled'))
 ORDER BY priority DESC, created_at, id
 LIMIT 1
 FOR UPDATE OF q SKIP LOCKED
"""

_SET = f"""
   SET status = CASE status WHEN 'received' THEN 'planning' ELSE 'running' END,
       started_at = COALESCE(started_at, :now), updated_at = :now, attempts = attempts + 1,
       lease_owner = :owner, lease_expires_at = {DB_NOW} + :lease"""

#: the `status:` event of what `t` took (`bot.tasks.TaskStore.moved` writes it for other moves)
_LOG = (
    "e AS (INSERT INTO task_events (task_id, kind, at) SELECT id, 'status:' || status, :now FROM t)"
)

# One task by id, taken and logged.
TAKE = f"""
WITH t AS (
  UPDATE tasks {_SET}
   WHERE id = :id AND status IN ('received', 'queued')
  RETURNING *),
{_LOG}
SELECT * FROM t
"""

# The candidate, taken and logged in one statement if it is a top-level task; a subtask
# comes back untaken (`candidate_parent` set), for the transaction that counts under a lock.
TAKE_TOP = f"""
WITH c AS ({CANDIDATE}),
t AS (
  UPDATE tasks {_SET}
    FROM c
   WHERE tasks.id = c.id AND c.parent_id IS NULL AND tasks.status IN ('received', 'queued')
  RETURNING tasks.*),
{_LOG}
SELECT c.parent_id AS candidate_parent, t.* FROM c LEFT JOIN t ON t.id = c.id
"""


def fanout_key(parent_id: int) -> int:
    """The signed 64-bit advisory lock key for claims of `parent_id`'s subtasks."""
    key = (FANOUT_LOCK << 32) | (parent_id & 0xFFFF_FFFF)
    return key - (1 << 64) if key >= 1 << 63 else key


class TaskLeases:
    """Claiming, renewing, handing back and recovering tasks under one replica's name."""

    def __init__(self, db: PostgresDatabase, owner: str, *, lease: float = DEFAULT_LEASE) -> None:
        self.db = db
        self.owner = owner
        self.lease = lease

    async def claim(self, fanout: int) -> dict[str, Any] | None:
        """The next task to work on, now held by this replica (its `status:` event written);
        None if none is claimable."""
        params = {"skip": [-1], "fanout": fanout, "now": now(), "owner": self.owner}
        row = await self.db.fetchone(TAKE_TOP, {**params, "lease": self.lease})
        if row is None:
            return None
        if row["candidate_parent"] is None and row["id"] is not None:
            del row["candidate_parent"]
            return row
        return await self._claim_subtask(fanout)

    async def _claim_subtask(self, fanout: int) -> dict[str, Any] | None:
        """The claim when the next task is a subtask, in a transaction: each parent's
        running subtasks are counted under its lock, and a parent with no room is skipped."""
        async with self.db.transaction() as tx:
            full: list[int] = [-1]  # parents whose subtasks may not start more now
            while True:
                row = await tx.fetchone(CANDIDATE, {"skip": full, "fanout": fanout})
                if row is None:
                    return None
                parent = row["parent_id"]
                if parent is not None and not await self._room_under(tx, parent, fanout):
                    full.append(parent)
                    continue
                return await tx.fetchone(
                    TAKE, {"now": now(), "owner": self.owner, "lease": self.lease, "id": row["id"]}
                )

    async def _room_under(self, tx: PostgresTx, parent: int, fanout: int) -> bool:
        """Whether `parent` may start one more subtask, counted under its claim lock."""
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (fanout_key(parent),))
        running = await tx.fetchval(
            "SELECT COUNT(*) FROM tasks WHERE parent_id = ? AND status = 'running'", (parent,)
        )
        return int(running) < fanout

    async def renew(self) -> set[int]:
        """Extend the leases of the tasks this replica holds; their ids."""
        rows = await self.db.fetchall(
            f"UPDATE tasks SET lease_expires_at = {DB_NOW} + ?"
            f" WHERE lease_owner = ? AND status IN {_HELD} RETURNING id",
            (self.lease, self.owner),
        )
        return {int(r["id"]) for r in rows}

    async def hand_back(self, task_ids: list[int] | None = None) -> list[int]:
        """Put this replica's planning/running tasks (or just `task_ids`) back in the queue
        for any replica, e.g. on a clean stop; the ids handed back."""
        sql = (
            f"UPDATE tasks SET status = {_BACK}, lease_owner = NULL, lease_expires_at = NULL,"
            f" updated_at = ? WHERE lease_owner = ? AND status IN {_HELD}"
        )
        params: list[Any] = [now(), self.owner]
        if task_ids is not None:
            sql += " AND id = ANY(?)"
            params.append(task_ids)
        rows = await self.db.fetchall(sql + " RETURNING id", params)
        return sorted(int(r["id"]) for r in rows)

    async def recover_expired(self) -> list[dict[str, Any]]:
        """Put tasks whose lease ran out (their replica died) back in the queue; the moved
        rows (`bot.tasks.MOVED`'s columns, for `TaskStore.moved`), by id."""
        rows = await self.db.fetchall(
            f"UPDATE tasks SET status = {_BACK}, lease_owner = NULL, lease_expires_at = NULL,"
            f" updated_at = ? WHERE status IN {_HELD}"
            f" AND (lease_expires_at IS NULL OR lease_expires_at < {DB_NOW}) {MOVED}",
            (now(),),
        )
        rows.sort(key=lambda r: int(r["id"]))
        if rows:
            log.info(
                "cluster: took back task(s) %s whose replica stopped renewing",
                [int(r["id"]) for r in rows],
            )
        return rows

    async def release(self, task_id: int) -> None:
        """Let go of a task this replica's job has moved out of planning/running (done,
        waiting, queued again), so nobody takes it as still being worked on here."""
        await self.db.execute(
            "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL"
            f" WHERE id = ? AND lease_owner = ? AND status NOT IN {_HELD}",
            (task_id, self.owner),
        )

    async def held(self, task_id: int) -> bool:
        """Whether some replica holds the task's lease now (it is working on it)."""
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM tasks WHERE id = ? AND lease_owner IS NOT NULL"
                f" AND lease_expires_at > {DB_NOW}",
                (task_id,),
            )
        )
