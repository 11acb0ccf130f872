"""The inbox: a message is on disk before Slack hears "got it".

Slack does not deliver an acknowledged event again, and the bot acknowledges within
milliseconds, before intake has run. The handlers write each message the bot will act on
here first (a Bolt middleware, which runs before the acknowledgement in both Socket Mode
and HTTP mode); intake deletes it when done. What a crash leaves behind is handled at the
next start, at most `MAX_ATTEMPTS` times (intake's dedupe makes a repeat harmless).
"""

from __future__ import annotations

import dataclasses
import json
import logging

from bot.clock import now
from bot.db import Database
from bot.intake import IncomingMessage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def keep(self, msg: IncomingMessage) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO slack_inbox (event_id, message, received_at) VALUES (?, ?, ?)",
            (msg.event_id, json.dumps(dataclasses.asdict(msg)), now()),
        )

    async def done(self, event_id: str) -> None:
        await self.db.execute("DELETE FROM slack_inbox WHERE event_id = ?", (event_id,))

    async def left_over(self) -> list[IncomingMessage]:
        """Messages a stop cut off, oldest first; each call counts an attempt."""
        rows = await self.db.batch(
            ("DELETE FROM slack_inbox WHERE attempts >= ? RETURNING event_id", (MAX_ATTEMPTS,)),
            ("UPDATE slack_inbox SET attempts = attempts + 1 RETURNING message, received_at", ()),
        )
        for (event_id,) in rows[0]:
            log.error("inbox: gave up on Slack event %s after %d attempts", event_id, MAX_ATTEMPTS)
        left = sorted(rows[1], key=lambda r: r[1])
        return [IncomingMessage(**json.loads(r[0])) for r in left]
