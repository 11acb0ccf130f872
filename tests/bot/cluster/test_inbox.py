"""The inbox table: written before the ack, replayed once by another replica if its writer died."""

from __future__ import annotations

import asyncio

from bot.base.db.postgres import PostgresDatabase
from bot.cluster.inbox import InboxTable
from bot.cluster.replicas import ReplicaRegistry
from bot.intake import IncomingMessage
from tests.bot.cluster.conftest import OpenReplica


def message(n: int) -> IncomingMessage:
    return IncomingMessage(
        event_id=f"Ev{n}", channel="C1", user="U1", text=f"do thing {n}", ts=f"{n}.0", mention=True
    )


async def test_a_message_is_kept_once_and_marked_handled(pg_db: PostgresDatabase) -> None:
    inbox = InboxTable(pg_db, "a")
    await inbox.keep(message(1))
    await inbox.keep(message(1))  # Slack redelivered it
    rows = await pg_db.fetchall("SELECT event_id, writer, handled_at FROM inbox")
    assert [(r["event_id"], r["writer"], r["handled_at"]) for r in rows] == [("Ev1", "a", None)]
    await inbox.handled("Ev1")
    assert await pg_db.fetchval("SELECT handled_at FROM inbox") is not None
    assert await inbox.take_orphans() == []


async def test_a_dead_writers_messages_are_replayed_once(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    dead, alive = InboxTable(pg_db, "dead"), InboxTable(pg_db, "alive")
    await ReplicaRegistry(pg_db, "alive", lease=30).join()
    await ReplicaRegistry(pg_db, "dead", lease=30).join()
    for n in range(1, 4):
        await dead.keep(message(n))
    await alive.keep(message(9))
    await pg_db.execute(
        "INSERT INTO slack_events (event_id, received_at) VALUES ('Ev3', 0)"
    )  # intake got that far
    assert await InboxTable(pg_db, "c").take_orphans() == []  # dead's heartbeat is current
    await pg_db.execute("UPDATE replicas SET expires_at = 0 WHERE id = 'dead'")
    takers = [InboxTable(await open_replica(), f"t{n}") for n in range(3)]
    for taker in takers:
        await ReplicaRegistry(pg_db, taker.id, lease=30).join()
    async with asyncio.timeout(10):
        taken = await asyncio.gather(*(t.take_orphans() for t in takers))
    replayed = [m for batch in taken for m in batch]
    assert sorted(m.event_id for m in replayed) == ["Ev1", "Ev2"]
    assert message(1) in replayed and message(2) in replayed
    assert [await t.take_orphans() for t in takers] == [[], [], []]
    rows = await pg_db.fetchall(
        "SELECT event_id, writer FROM inbox WHERE event_id IN ('Ev1', 'Ev2')"
    )
    # each row now belongs to the taker that replayed it (the takers may share them out)
    replayers = {m.event_id: t.id for t, batch in zip(takers, taken, strict=True) for m in batch}
    assert {r["event_id"]: r["writer"] for r in rows} == replayers


async def test_a_restarted_process_replays_what_its_previous_life_left(
    pg_db: PostgresDatabase,
) -> None:
    before = ReplicaRegistry(pg_db, "host:41:aaa", lease=30)
    await before.join()
    await InboxTable(pg_db, before.id).keep(message(1))
    await before.leave()  # stopped (or killed and since expired)
    after = InboxTable(pg_db, "host:57:bbb")
    await ReplicaRegistry(pg_db, after.id, lease=30).join()
    assert await after.take_orphans() == [message(1)]


async def test_a_live_replica_keeps_its_messages_in_intake(pg_db: PostgresDatabase) -> None:
    inbox = InboxTable(pg_db, "a")
    await ReplicaRegistry(pg_db, "a", lease=30).join()
    await inbox.keep(message(1))  # intake is at work on it
    assert await inbox.take_orphans() == []


async def test_prune_drops_handled_and_very_old_rows(pg_db: PostgresDatabase) -> None:
    inbox = InboxTable(pg_db, "a")
    for n in range(1, 4):
        await inbox.keep(message(n))
    await inbox.handled("Ev1")
    await inbox.handled("Ev2")
    await pg_db.execute("UPDATE inbox SET handled_at = handled_at - 601 WHERE event_id = 'Ev1'")
    await pg_db.execute("UPDATE inbox SET received_at = received_at - 90000 WHERE event_id = 'Ev3'")
    assert await inbox.prune() == 2
    assert [r["event_id"] for r in await pg_db.fetchall("SELECT event_id FROM inbox")] == ["Ev2"]
