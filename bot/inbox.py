"""The inbox: a message is on disk before Slack hears "got it".

Slack does not deliver an acknowledged event again, and the bot acknowledges within
milliseconds, before intake has run. So the handlers write each message the bot may act on
to this file first, from a Bolt middleware, which runs before the acknowledgement in Socket
Mode and HTTP mode alike. It is an append-only JSON-lines file beside the database, not a
table: appending never waits for the database (a backup or a long write could hold it), so
the acknowledgement stays fast. It survives the process (a SIGKILL, a crash); like the
database's `synchronous = NORMAL`, it is not flushed to the disk itself on every write.

Once intake is done with a message, whatever it decided (a task, a reply, nothing for us),
a `handled` line follows it. At start the bot hands intake every message without one (and
whose event intake has not recorded in `slack_events`), and every few minutes the file is
cut down to the messages still unhandled and recent. The file is readable by its owner
only: it holds the text of messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from bot.base.clock import now
from bot.base.db import Database, marks
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

    async def keep(self, msg: IncomingMessage) -> None:
        """Append `msg`: one write with nothing awaited, quick enough to run before the
        acknowledgement (async only to match the table of `bot.cluster.inbox`)."""
        self._append({"at": now(), **dataclasses.asdict(msg)})

    async def handled(self, event_id: str) -> None:
        """Intake is done with this event, whatever it decided."""
        self._append({"at": now(), "handled": event_id})

    async def left_over(self) -> list[IncomingMessage]:
        """Messages in the file that intake never finished, oldest first, once each."""
        messages = self._messages(self._read())
        recorded = await self._recorded([e["event_id"] for e in messages])
        left: dict[str, IncomingMessage] = {}
        for entry in messages:
            if entry["event_id"] not in recorded:
                fields = {k: v for k, v in entry.items() if k in FIELDS}
                left.setdefault(entry["event_id"], IncomingMessage(**fields))
        return list(left.values())

    async def prune(self) -> int:
        """Cut the file down to recent unhandled messages; how many lines were dropped."""
        recorded = await self._recorded([e["event_id"] for e in self._messages(self._read())])
        # No await from here on: nothing can be appended between this read and the replace.
        entries = self._read()
        keep = [
            e
            for e in self._messages(entries)
            if e["event_id"] not in recorded and e["at"] > now() - KEEP_SECONDS
        ]
        if len(keep) == len(entries):
            return 0
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when a stale .tmp was left with a wider mode
        with os.fdopen(fd, "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in keep))
        self.close()
        os.replace(tmp, self.path)
        return len(entries) - len(keep)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, entry: dict[str, Any]) -> None:
        """Append a line. A disk that refuses it costs this message the guarantee, not the
        message (or the acknowledgement): it is logged and handled as usual."""
        try:
            if self._file is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.fchmod(fd, 0o600)  # a file from an older version may be world-readable
                self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()
        except OSError as exc:
            log.error("inbox: could not write to %s: %s", self.path, exc)
            file, self._file = self._file, None  # reopened on the next message
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()

    @staticmethod
    def _messages(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The message lines that have no `handled` line."""
        done = {e["handled"] for e in entries if isinstance(e.get("handled"), str)}
        return [e for e in entries if "event_id" in e and e["event_id"] not in done]

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
            if isinstance(entry, dict) and (
                isinstance(entry.get("event_id"), str) or isinstance(entry.get("handled"), str)
            ):
                entries.append(entry)
        return entries

    async def _recorded(self, event_ids: list[str]) -> set[str]:
        """Events intake recorded: handled even if the `handled` line was not written."""
        handled: set[str] = set()
        unique = list(dict.fromkeys(event_ids))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            rows = await self.db.fetchall(
                f"SELECT event_id FROM slack_events WHERE event_id IN ({marks(len(chunk))})",
                chunk,
            )
            handled |= {r["event_id"] for r in rows}
        return handled
