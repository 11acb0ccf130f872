"""Decay: faded, unused memories are archived; recent or used ones stay."""

from __future__ import annotations

import time

from memory.decay import archive_stale, purge_archived, restore
from memory.records import Scope
from memory.store import MemoryStore

DAY = 86_400


async def aged(
    store: MemoryStore,
    content: str,
    days: float,
    *,
    used_days: float | None = None,
    uses: int = 0,
    importance: float = 0.5,
) -> int:
    memory_id = await store.add("fact", content, "team", importance=importance)
    now = time.time()
    await store.db.execute(
        "UPDATE memories SET created_at = ?, last_used_at = ?, use_count = ? WHERE id = ?",
        (now - days * DAY, None if used_days is None else now - used_days * DAY, uses, memory_id),
    )
    return memory_id


async def test_archives_old_unused_and_keeps_recent_or_used(store: MemoryStore) -> None:
    stale = await aged(store, "the old build server is jenkins", 200)
    recent = await aged(store, "the new build server is buildkite", 3)
    used = await aged(store, "builds are cached in s3", 200, used_days=2, uses=4)
    important = await aged(store, "never deploy on friday", 100, importance=1.0)
    archived = await archive_stale(store, time.time())
    assert archived == [stale]
    statuses = {m.id: m.status for m in await store.list(Scope(), status="active")}
    assert set(statuses) == {recent, used, important}
    assert stale not in [m.id for m in await store.recall("old build server jenkins", Scope())]
    vec_status = await store.db.fetchval(
        "SELECT status FROM memory_vec WHERE memory_id = ?", (stale,)
    )
    assert vec_status == "archived"


async def test_restore_until_purged(store: MemoryStore) -> None:
    stale = await aged(store, "the old wiki is confluence", 365)
    other = await aged(store, "the old chat was hipchat", 365)
    assert set(await archive_stale(store)) == {stale, other}
    assert await restore(store, stale) is True
    assert [m.id for m in await store.recall("old wiki confluence", Scope())] == [stale]
    assert await archive_stale(store) == []  # restoring counts as a use
    assert await purge_archived(store, older_than=time.time() + 1) == 1
    assert await store.get(other) is None
    assert await restore(store, other) is False
    assert (
        await store.db.fetchval("SELECT count(*) FROM memory_vec WHERE memory_id = ?", (other,))
        == 0
    )
