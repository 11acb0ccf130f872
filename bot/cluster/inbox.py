"""The pre-ack inbox as a table, for replicas that keep nothing on their own disk.

On SQLite the inbox is a file beside the database (`bot.inbox`). With replicas, a container
may be replaced at any moment and its disk with it, so the message goes into the `inbox`
table instead, before Slack is acknowledged (one INSERT, a millisecond or two), and is
marked handled once intake is done with it, whatever intake decided.

A message whose writer died between the acknowledgement and the end of intake is replayed
by another replica: `take_orphans()` moves rows whose writer's heartbeat ran out to this
replica with a conditional update, so each is replayed once, and skips events intake
already recorded in `slack_events`. A restarted process is a new replica (a new id), so
it replays what its previous life left the same way. Handled rows
and old unhandled ones are deleted by `prune()`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from bot.base.db.postgres import PostgresDatabase
from bot.cluster import DB_NOW
from bot.intake import IncomingMessage

log = logging.getLogger(__name__)

FIELDS = {f.name for f in dataclasses.fields(IncomingMessage)}
#: handled rows are kept this long (a redelivery within it is recognised here too)
KEEP_HANDLED = 600.0
#: an unhandled row this old was lost for good (the bot was down for a day)
KEEP_UNHANDLED = 86_400.0

ORPHANS = f"""
UPDATE inbox SET writer = :me
 WHERE event_id IN (
       SELECT i.event_id FROM inbox i
        WHERE i.handled_at IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM replicas r WHERE r.id = i.writer AND r.expires_at > {DB_NOW})
          AND NOT EXISTS (SELECT 1 FROM slack_events e WHERE e.event_id = i.event_id)
        ORDER BY i.received_at
        LIMIT :limit
          FOR UPDATE SKIP LOCKED)
RETURNING message, received_at
"""


class InboxTable:
    """`keep()` before the acknowledgement, `handled()` after intake, replay of orphans."""

    def __init__(self, db: PostgresDatabase, replica_id: str) -> None:
        self.db = db
        self.id = replica_id

    async def keep(self, msg: IncomingMessage) -> None:
        """Write `msg` down; a redelivered event keeps its first row."""
        await self.db.execute(
            "INSERT INTO inbox (event_id, message, writer, received_at)"
            f" VALUES (?, ?, ?, {DB_NOW}) ON CONFLICT (event_id) DO NOTHING",
            (msg.event_id, json.dumps(dataclasses.asdict(msg)), self.id),
        )

    async def handled(self, event_id: str) -> None:
        """Intake is done with this event, whatever it decided."""
        await self.db.execute(
            f"UPDATE inbox SET handled_at = {DB_NOW} WHERE event_id = ? AND handled_at IS NULL",
            (event_id,),
        )

    async def take_orphans(self, limit: int = 500) -> list[IncomingMessage]:
        """Unhandled messages of writers that died (also this process's previous life), now
        ours to replay, oldest first; each goes to one replica only."""
        rows = await self.db.fetchall(ORPHANS, {"me": self.id, "limit": limit})
        messages = []
        for row in sorted(rows, key=lambda r: r["received_at"]):
            entry: dict[str, Any] = json.loads(row["message"])
            messages.append(IncomingMessage(**{k: v for k, v in entry.items() if k in FIELDS}))
        return messages

    async def left_over(self) -> list[IncomingMessage]:
        """What `Delegation.replay_inbox` replays: the orphans, now this replica's."""
        return await self.take_orphans()

    def close(self) -> None:
        """Nothing to close: the rows live in the database."""

    async def prune(self) -> int:
        """Delete handled rows past `KEEP_HANDLED` and unhandled ones past `KEEP_UNHANDLED`."""
        return await self.db.execute(
            f"DELETE FROM inbox WHERE (handled_at IS NOT NULL AND handled_at < {DB_NOW} - ?)"
            f" OR received_at < {DB_NOW} - ?",
            (KEEP_HANDLED, KEEP_UNHANDLED),
        )
