"""Wake-ups across replicas: NOTIFY within a second, after commit, and a poll as fallback."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

from bot.base.db.postgres import PostgresDatabase
from bot.cluster.wakeups import Wakeups
from tests.bot.cluster.conftest import OpenReplica


async def test_a_cancel_sent_by_one_replica_reaches_the_other_within_a_second(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    a = Wakeups(await open_replica(), "a")
    b = Wakeups(await open_replica(), "b")
    got: asyncio.Queue[tuple[str, int | None]] = asyncio.Queue()
    for replica in (a, b):
        replica.on("cancel", lambda task_id, r=replica: got.put_nowait((r.id, task_id)))
    await a.start()
    await b.start()
    try:
        async with asyncio.timeout(5):
            await a.listening.wait()
            await b.listening.wait()
        started = time.monotonic()
        await a.send("cancel", 42)
        async with asyncio.timeout(1):
            assert await got.get() == ("b", 42)
        assert time.monotonic() - started < 1
        await asyncio.sleep(0.2)
        assert got.empty()  # the sender acts locally; it is not called back
    finally:
        await a.stop()
        await b.stop()


async def test_a_wake_up_sent_in_a_transaction_arrives_after_the_commit(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    a = Wakeups(pg_db, "a")
    b = Wakeups(await open_replica(), "b")
    seen: list[str | None] = []

    async def read_state(task_id: int | None) -> None:
        seen.append(await pg_db.fetchval("SELECT request FROM tasks WHERE id = ?", (task_id,)))

    b.on("input", read_state)
    await b.start()
    try:
        async with asyncio.timeout(5):
            await b.listening.wait()
        async with pg_db.transaction() as tx:
            task_id = await tx.fetchval(
                "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request,"
                " created_at, updated_at) VALUES ('U1', 'C1', '1', '1', 'new', 0, 0) RETURNING id"
            )
            await a.send("input", task_id, tx=tx)
            await asyncio.sleep(0.3)
            assert seen == []
        async with asyncio.timeout(2):
            while not seen:
                await asyncio.sleep(0.01)
        assert seen == ["new"]
    finally:
        await b.stop()


async def test_polling_covers_what_notify_does_not_bring(pg_db: PostgresDatabase) -> None:
    polls: list[float] = []
    wakeups = Wakeups(pg_db, "a", poll_every=0.1)
    wakeups.on_poll(lambda: polls.append(time.monotonic()))
    await wakeups.start()
    try:
        async with asyncio.timeout(5):
            while len(polls) < 4:
                await asyncio.sleep(0.02)
    finally:
        await wakeups.stop()


async def test_listening_resumes_after_the_connection_is_cut(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    b = Wakeups(await open_replica(), "b")
    got: asyncio.Queue[int | None] = asyncio.Queue()
    polled = asyncio.Event()
    b.on("work", got.put_nowait)
    b.on_poll(polled.set)
    await b.start()
    try:
        async with asyncio.timeout(10):
            await b.listening.wait()
            polled.clear()
            cut = await pg_db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
            assert cut == 1
            while b.listening.is_set():
                await asyncio.sleep(0.01)
            await b.listening.wait()
            await polled.wait()  # caught up on what it may have missed
            await Wakeups(pg_db, "a").send("work")
            assert await got.get() is None
    finally:
        await b.stop()


async def test_a_failing_handler_does_not_stop_the_others(pg_db: PostgresDatabase) -> None:
    wakeups = Wakeups(pg_db, "b")
    got: list[int | None] = []

    def broken(task_id: int | None) -> None:
        raise RuntimeError("bug")

    wakeups.on("approval", broken)
    wakeups.on("approval", got.append)
    wakeups.dispatch("approval:7:a")
    wakeups.dispatch("approval:8:b")  # its own: ignored
    wakeups.dispatch("nonsense")
    assert got == [7]


async def test_a_handler_stopped_before_it_started_leaves_no_coroutine_unawaited(
    pg_db: PostgresDatabase,
) -> None:
    # A poll or wake-up scheduled just before a stop: its handler never runs, and nothing
    # warns later, in whatever test the garbage collector finds it.
    wakeups = Wakeups(pg_db, "b")
    ran: list[int | None] = []
    failed: list[int | None] = []

    async def handler(task_id: int | None) -> None:
        ran.append(task_id)

    async def broken(task_id: int | None) -> None:
        failed.append(task_id)
        raise RuntimeError("bug")

    wakeups.on("cancel", handler)
    wakeups.on("input", broken)
    wakeups.dispatch("input:3:a")
    await asyncio.sleep(0.05)  # a failing async handler is logged, the others go on
    assert failed == [3]
    wakeups.dispatch("cancel:7:a")  # scheduled, not started
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await wakeups.stop()
        gc.collect()
    assert ran == []
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
