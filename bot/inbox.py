"""The inbox: a message is on disk before Slack hears "got it".

Slack does not deliver an acknowledged event again, and the bot acknowledges within
milliseconds, before intake has run. So the handlers write each message the bot may act on
to this file first, from a Bolt middleware, which runs before the acknowledgement in Socket
Mode and HTTP mode alike. It is an append-only JSON-lines file beside the database, not a
table: appending never waits for the database (a backup or a long write could hold it), so
the acknowledgement stays fast. It survives the process (a SIGKILL, a crash); like the
database's `synchronous = NORMAL`, it is not flushed to the disk itself on every write.

At start the bot handles every line whose event intake has not recorded (`slack_events`),
and every few minutes the file is cut down to the lines still unhandled and recent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from bot.clock import now
from bot.db import Database
from bot.intake import IncomingMessage

log = logging.getLogger(__name__)

PRUNE_SECONDS = 300
KEEP_SECONDS = 600  # a line this old was handed to intake long ago (or the bot was down)
FIELDS = {f.name for f in dataclasses.fields(IncomingMessage)}


class Inbox:
    def __init__(self, path: Path, db: Database) -> None:
        self.path = path
        self.db = db
        self._file: IO[str] | None = None

    def keep(self, msg: IncomingMessage) -> None:
        """Append `msg`; synchronous and quick, so it can run before the acknowledgement."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps({"at": now(), **dataclasses.asdict(msg)}) + "\n")
        self._file.flush()

    async def left_over(self) -> list[IncomingMessage]:
        """Messages in the file that intake never recorded, oldest first."""
        entries = self._read()
        handled = await self._handled([e["event_id"] for e in entries])
        seen: set[str] = set()
        left = []
        for entry in entries:
            if entry["event_id"] in handled or entry["event_id"] in seen:
                continue
            seen.add(entry["event_id"])
            left.append(IncomingMessage(**{k: v for k, v in entry.items() if k in FIELDS}))
        return left

    async def prune(self) -> int:
        """Cut the file down to recent lines intake has not recorded; how many were dropped."""
        handled = await self._handled([e["event_id"] for e in self._read()])
        # No await from here on: nothing can be appended between this read and the replace.
        entries = self._read()
        keep = [
            e for e in entries if e["event_id"] not in handled and e["at"] > now() - KEEP_SECONDS
        ]
        if len(keep) == len(entries):
            return 0
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in keep), encoding="utf-8")
        self.close()
        os.replace(tmp, self.path)
        return len(entries) - len(keep)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by the crash itself
                log.warning("inbox: skipped an unreadable line in %s", self.path)
                continue
            if isinstance(entry, dict) and isinstance(entry.get("event_id"), str):
                entries.append(entry)
        return entries

    async def _handled(self, event_ids: list[str]) -> set[str]:
        handled: set[str] = set()
        unique = list(dict.fromkeys(event_ids))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            rows = await self.db.fetchall(
                f"SELECT event_id FROM slack_events WHERE event_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            handled |= {r[0] for r in rows}
        return handled
