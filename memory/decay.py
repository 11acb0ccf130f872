"""Decay: memories nobody uses fade, and the weekly job archives what has faded.

A memory is archived when it has not been used for `archive_unused_days` and its
`decay_score` (importance × recency × use factor, see `memory.scoring`) is below
`archive_below`. Archived memories are kept but not recalled; `restore()` brings one back
until `purge_archived()` deletes it for good.
"""

from __future__ import annotations

import logging

from bot.base import clock
from memory.records import Memory
from memory.scoring import DAY, decay_score
from memory.store import MemoryStore

log = logging.getLogger(__name__)


async def archive_stale(store: MemoryStore, now: float | None = None) -> list[int]:
    """Archive faded, unused active memories; return their ids."""
    now = clock.now() if now is None else now
    config = store.config
    rows = await store.db.fetchall(
        "SELECT * FROM memories WHERE status = 'active' AND coalesce(last_used_at, created_at) < ?",
        (now - config.archive_unused_days * DAY,),
    )
    archived = []
    for memory in map(Memory.from_row, rows):
        if decay_score(memory, now, config.half_life_days) >= config.archive_below:
            continue
        if await store.set_status(memory.id, "archived", expected="active", at=now):
            archived.append(memory.id)
    if archived:
        log.info("memory: archived %d stale memories", len(archived))
    return archived


async def restore(store: MemoryStore, memory_id: int) -> bool:
    """Bring an archived memory back; it counts as used now, so it does not fade again at once."""
    if not await store.set_status(memory_id, "active", expected="archived"):
        return False
    await store.mark_used([memory_id])
    return True


async def purge_archived(store: MemoryStore, older_than: float) -> int:
    """Delete, from every index, memories archived before `older_than`; return how many."""
    rows = await store.db.fetchall(
        "SELECT id FROM memories WHERE status = 'archived' AND archived_at < ?", (older_than,)
    )
    purged = 0
    for row in rows:
        purged += await store.forget(row["id"], status="archived")
    if purged:
        log.info("memory: purged %d archived memories", purged)
    return purged
