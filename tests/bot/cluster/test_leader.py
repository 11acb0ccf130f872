"""The leader lease: one holder at a time, taken over when it runs out or is given up."""

from __future__ import annotations

import asyncio

from bot.base.db.postgres import PostgresDatabase
from bot.cluster.leader import LeaderLease
from tests.bot.cluster.conftest import OpenReplica


async def test_one_of_three_racing_replicas_leads(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    leases = [LeaderLease(await open_replica(), f"r{n}", lease=30) for n in range(3)]
    async with asyncio.timeout(10):
        won = await asyncio.gather(*(lease.try_acquire() for lease in leases))
    assert sorted(won) == [False, False, True]
    leader = leases[won.index(True)]
    holder = await leases[0].holder()
    assert holder is not None and holder[0] == leader.id and 25 < holder[1] <= 30
    # Renewing keeps it; the others still may not take it.
    assert await leader.try_acquire() is True
    assert [await lease.try_acquire() for lease in leases if lease is not leader] == [False, False]


async def test_a_lease_that_runs_out_is_taken_over(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    first = LeaderLease(await open_replica(), "first", lease=30)
    second = LeaderLease(await open_replica(), "second", lease=30)
    assert await first.try_acquire()
    assert not await second.try_acquire()
    # first stopped renewing 31 s ago
    await pg_db.execute("UPDATE leader_leases SET expires_at = expires_at - 31")
    assert await second.try_acquire()
    assert not await first.try_acquire()
    assert (await first.holder() or ("", 0))[0] == "second"


async def test_giving_it_up_lets_another_lead_at_once(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    first = LeaderLease(await open_replica(), "first", lease=30)
    second = LeaderLease(await open_replica(), "second", lease=30)
    await first.start()
    assert first.is_leader
    await first.stop()
    assert not first.is_leader
    assert await second.try_acquire()


async def test_once_only_jobs_run_on_the_leader_alone(
    pg_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    runs: list[str] = []
    leases = [LeaderLease(await open_replica(), f"r{n}", lease=30) for n in range(3)]
    for lease in leases:
        await lease.try_acquire()

    def job_of(lease: LeaderLease):  # type: ignore[no-untyped-def]
        async def sweep() -> None:
            runs.append(lease.id)

        return lease.only_on_leader("delivery_sweep", sweep)

    await asyncio.gather(*(job_of(lease)() for lease in leases))
    assert runs == [next(lease.id for lease in leases if lease.is_leader)]


async def test_a_leader_that_cannot_renew_stops_assuming_it_leads(
    pg_db: PostgresDatabase,
) -> None:
    lease = LeaderLease(pg_db, "r1", lease=0.3)
    assert await lease.try_acquire()
    async with asyncio.timeout(5):
        while lease.is_leader:  # nothing renews it: its own clock ends it
            await asyncio.sleep(0.05)
