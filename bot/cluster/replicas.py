"""The replica registry: each replica's row, kept alive by a heartbeat.

A replica joins at start, renews its row every `lease / 3` seconds, and leaves (deletes
it) on a clean stop. A row whose `expires_at` passed belongs to a replica that died or lost
the database: `live()` leaves it out, its inbox rows are replayed by others, and the
tasks it held are taken over once their own leases (renewed by the same heartbeat) run out.
Each beat also renews this replica's task leases and reports which tasks it still holds,
so the runner can stop work that another replica has taken over meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from bot.base.db.postgres import PostgresDatabase
from bot.cluster import DB_NOW, DEFAULT_LEASE
from bot.cluster.claims import TaskLeases

log = logging.getLogger(__name__)

#: How long the row of a replica that vanished is kept for `doctor` to show.
FORGET_AFTER = 86_400.0


@dataclass(frozen=True)
class ReplicaInfo:
    id: str
    host: str
    pid: int
    version: str | None
    started_at: float
    heartbeat_at: float
    expires_at: float


class ReplicaRegistry:
    """This replica's row in `replicas`, and the heartbeat that renews it and its leases."""

    def __init__(
        self,
        db: PostgresDatabase,
        replica_id: str,
        *,
        lease: float = DEFAULT_LEASE,
        version: str | None = None,
        on_lost: Callable[[set[int]], Awaitable[None] | None] | None = None,
    ) -> None:
        self.db = db
        self.id = replica_id
        self.lease = lease
        self.version = version
        self.leases = TaskLeases(db, replica_id, lease=lease)
        #: called with the ids of tasks whose lease this replica no longer holds
        self.on_lost = on_lost
        self.running: Callable[[], set[int]] = set
        self._loop: asyncio.Task[None] | None = None

    async def join(self) -> None:
        await self.db.execute(
            "INSERT INTO replicas (id, host, pid, version, started_at, heartbeat_at, expires_at)"
            f" VALUES (?, ?, ?, ?, {DB_NOW}, {DB_NOW}, {DB_NOW} + ?)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
            " expires_at = excluded.expires_at",
            (self.id, socket.gethostname(), os.getpid(), self.version, self.lease),
        )
        await self.db.execute(
            f"DELETE FROM replicas WHERE expires_at < {DB_NOW} - ?", (FORGET_AFTER,)
        )

    async def beat(self) -> set[int]:
        """Renew this replica's row and task leases; the running tasks it no longer holds."""
        renewed = await self.db.execute(
            f"UPDATE replicas SET heartbeat_at = {DB_NOW}, expires_at = {DB_NOW} + ? WHERE id = ?",
            (self.lease, self.id),
        )
        if not renewed:  # pruned while this replica could not reach the database
            await self.join()
        before = self.running()
        held = await self.leases.renew()
        # Only tasks held here both before and after the renewal: one claimed meanwhile is
        # not in `held` yet, and one its own job moved on (done, waiting) is no longer held.
        lost = (before & self.running()) - held
        if lost:
            log.warning("cluster: another replica took over task(s) %s", sorted(lost))
            if self.on_lost is not None:
                result = self.on_lost(lost)
                if result is not None:
                    await result
        return lost

    async def leave(self) -> None:
        await self.db.execute("DELETE FROM replicas WHERE id = ?", (self.id,))

    async def live(self) -> list[ReplicaInfo]:
        """Replicas whose heartbeat is current, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, host, pid, version, started_at, heartbeat_at, expires_at FROM replicas"
            f" WHERE expires_at > {DB_NOW} ORDER BY started_at, id"
        )
        return [ReplicaInfo(**r) for r in rows]

    async def start(self) -> None:
        await self.join()
        self._loop = asyncio.create_task(self._heartbeat(), name="replica-heartbeat")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        await self.leave()

    async def _heartbeat(self) -> None:
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.beat()
                last_ok = time.monotonic()
            except (psycopg.Error, OSError) as exc:  # the database may be back at the next beat
                log.warning("cluster: heartbeat failed (%s); trying again", exc)
                if time.monotonic() - last_ok > self.lease and (running := self.running()):
                    # Others may have taken these tasks over by now: stop working on them.
                    log.warning("cluster: leases ran out; stopping task(s) %s", sorted(running))
                    if self.on_lost is not None and (result := self.on_lost(running)):
                        await result
