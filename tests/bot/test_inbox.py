"""The inbox file: what intake has not recorded is handed back; the rest is pruned."""

import json
from pathlib import Path

from bot.base.clock import now
from bot.base.db import Database
from bot.inbox import KEEP_SECONDS, Inbox
from bot.intake import IncomingMessage


def message(event_id: str, text: str = "hi") -> IncomingMessage:
    return IncomingMessage(
        event_id=event_id, channel="C1", user="U1", text=text, ts=f"1.{event_id[-1]}", mention=True
    )


async def record(db: Database, event_id: str) -> None:
    await db.execute(
        "INSERT INTO slack_events (event_id, channel, ts, received_at) VALUES (?, 'C1', ?, ?)",
        (event_id, event_id, now()),
    )


async def test_left_over_is_what_intake_never_recorded_once_each(
    db: Database, tmp_path: Path
) -> None:
    inbox = Inbox(tmp_path / "inbox.jsonl", db)
    for event_id in ("Ev1", "Ev2", "Ev3", "Ev2"):  # Ev2 delivered twice by Slack
        await inbox.keep(message(event_id, text=f"about {event_id}"))
    await record(db, "Ev1")
    left = await inbox.left_over()
    assert [(m.event_id, m.text, m.mention) for m in left] == [
        ("Ev2", "about Ev2", True),
        ("Ev3", "about Ev3", True),
    ]
    assert left[0] == message("Ev2", text="about Ev2")  # every field round-trips
    inbox.close()


async def test_prune_keeps_only_recent_unrecorded_lines_and_appending_goes_on(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "inbox.jsonl"
    inbox = Inbox(path, db)
    await inbox.keep(message("Ev1"))
    await inbox.keep(message("Ev2"))
    old = json.dumps(
        {
            "at": now() - KEEP_SECONDS - 1,
            **{"event_id": "Ev0", "channel": "C1", "user": "U1", "text": "old", "ts": "1.0"},
        }
    )
    path.write_text(old + "\n" + path.read_text())
    await record(db, "Ev1")
    assert await inbox.prune() == 2  # Ev0 is old, Ev1 was recorded
    await inbox.keep(message("Ev3"))  # the file is reopened after the replace
    ids = [json.loads(line)["event_id"] for line in path.read_text().splitlines()]
    assert ids == ["Ev2", "Ev3"]
    assert await inbox.prune() == 0
    inbox.close()


async def test_a_message_intake_finished_is_never_handed_back(db: Database, tmp_path: Path) -> None:
    # e.g. a reply in a thread that is no task's: intake ignores it and records no event.
    path = tmp_path / "inbox.jsonl"
    inbox = Inbox(path, db)
    await inbox.keep(message("Ev1", text="just chatting"))
    await inbox.keep(message("Ev2", text="cut off by a crash"))
    await inbox.handled("Ev1")
    assert [m.event_id for m in await inbox.left_over()] == ["Ev2"]
    assert await inbox.prune() == 2  # Ev1 and its mark
    assert [json.loads(line)["event_id"] for line in path.read_text().splitlines()] == ["Ev2"]
    assert path.stat().st_mode & 0o777 == 0o600  # message text: the owner's eyes only
    inbox.close()
