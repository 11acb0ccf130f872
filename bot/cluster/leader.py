"""The leader lease: one replica at a time runs the jobs that must run once.

The delivery sweep, memory consolidation and decay, re-embedding and index rebuilds are
scheduled on every replica, but `only_on_leader()` lets a job body run only on the replica
that holds the `scheduler` row of `leader_leases`. Taking and renewing the lease is one
conditional upsert: it succeeds for the holder, or for anyone once the holder's lease ran
out (the database's clock decides). A replica that stops cleanly gives it up at once;
one that dies loses it after `lease` seconds. Approval sweeps need no leader: deciding
is already a conditional update.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from bot.base.db.postgres import PostgresDatabase
from bot.cluster import DB_NOW, DEFAULT_LEASE

log = logging.getLogger(__name__)

NAME = "scheduler"

ACQUIRE = f"""
INSERT INTO leader_leases (name, holder, acquired_at, expires_at)
VALUES (?, ?, {DB_NOW}, {DB_NOW} + ?)
ON CONFLICT (name) DO UPDATE
   SET holder = excluded.holder,
       acquired_at = CASE WHEN leader_leases.holder = excluded.holder
                          THEN leader_leases.acquired_at ELSE excluded.acquired_at END,
       expires_at = excluded.expires_at
 WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < excluded.acquired_at
RETURNING holder
"""


class LeaderLease:
    """Whether this replica leads, kept current by renewing (or trying for) the lease."""

    def __init__(
        self,
        db: PostgresDatabase,
        replica_id: str,
        *,
        lease: float = DEFAULT_LEASE,
        name: str = NAME,
    ) -> None:
        self.db = db
        self.id = replica_id
        self.lease = lease
        self.name = name
        self._held_until = 0.0  # time.monotonic() after which this replica may not assume it leads
        self._loop: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        """True while this replica holds a lease that has not run out by its own clock."""
        return time.monotonic() < self._held_until

    async def try_acquire(self) -> bool:
        """Take or renew the lease if free, expired or already ours; whether we lead now."""
        started = time.monotonic()
        row = await self.db.fetchone(ACQUIRE, (self.name, self.id, self.lease))
        was = self.is_leader
        # Counted from before the request: the database's expiry is no earlier than that.
        self._held_until = started + self.lease if row is not None else 0.0
        if self.is_leader != was:
            log.info(
                "cluster: this replica %s the leader",
                "is now" if self.is_leader else "is no longer",
            )
        return self.is_leader

    async def release(self) -> None:
        self._held_until = 0.0
        await self.db.execute(
            "DELETE FROM leader_leases WHERE name = ? AND holder = ?", (self.name, self.id)
        )

    async def holder(self) -> tuple[str, float] | None:
        """(replica id, seconds left) of the current leader, or None if nobody leads."""
        row = await self.db.fetchone(
            f"SELECT holder, expires_at - {DB_NOW} AS left_s FROM leader_leases"
            f" WHERE name = ? AND expires_at > {DB_NOW}",
            (self.name,),
        )
        return None if row is None else (row["holder"], float(row["left_s"]))

    def only_on_leader(
        self, name: str, job: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        """`job`, run only when this replica leads (others skip that run)."""

        async def run() -> None:
            if not self.is_leader:
                log.debug("cluster: %s runs on the leader; skipped here", name)
                return
            await job()

        run.__name__ = name
        return run

    async def start(self) -> None:
        await self.try_acquire()
        self._loop = asyncio.create_task(self._renew(), name="leader-lease")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        await self.release()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.try_acquire()
            except (psycopg.Error, OSError) as exc:
                log.warning("cluster: leader lease not renewed (%s); trying again", exc)
