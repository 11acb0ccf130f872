"""Changing the embeddings provider rebuilds the vector index and re-embeds everything."""

from __future__ import annotations

import asyncio

from bot.base.config import MemoryConfig
from bot.base.db import Database
from memory.embeddings import HashedNgramEmbedder
from memory.errors import EmbeddingUnavailable
from memory.records import Scope
from memory.store import MemoryStore


class SmallEmbedder(HashedNgramEmbedder):
    """Another model with another dimension."""

    name = "small"
    model = "hashed-64"

    def __init__(self) -> None:
        super().__init__(dim=64)


class FlakyEmbedder(HashedNgramEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        self.calls += 1
        if self.down:
            raise EmbeddingUnavailable("down", provider=self.name)
        return await super().embed(texts, query=query)


async def test_switching_dimension_rebuilds_and_reembeds(
    db: Database, memory_config: MemoryConfig
) -> None:
    first = MemoryStore(db, HashedNgramEmbedder(), memory_config)
    await first.prepare()
    ids = [
        await first.add("fact", f"fact {i} about kubernetes upgrades", "team") for i in range(70)
    ]
    target = await first.add("fact", "terraform state lives in the infra bucket", "team")

    second = MemoryStore(db, SmallEmbedder(), memory_config)
    assert await second.prepare() is True  # memories need re-embedding
    sql = await db.fetchval("SELECT sql FROM sqlite_master WHERE name = 'memory_vec'")
    assert "FLOAT[64]" in sql
    assert await db.fetchval("SELECT count(*) FROM memory_vec") == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM embedding_cache WHERE provider != ?", ("small:hashed-64",)
        )
        == 0
    )
    # keyword recall still answers while the index is rebuilt
    assert (await second.recall("terraform state bucket", Scope()))[0].id == target

    assert await second.reembed_all(batch=16) == len(ids) + 1
    assert await second.pending_embeddings() == 0
    assert await db.fetchval("SELECT count(*) FROM memory_vec") == len(ids) + 1
    blob = await second.vectors.embed_query("where does terraform keep state")
    assert blob is not None and len(blob) == 64 * 4
    nearest = await second.vectors.nearest(blob, 1, scope=Scope())
    assert nearest[0][0] == target
    assert await second.prepare() is False  # same provider again: nothing to do


async def down_store(db: Database, config: MemoryConfig) -> tuple[MemoryStore, FlakyEmbedder]:
    """A ready store whose provider has just gone down."""
    embedder = FlakyEmbedder()
    store = MemoryStore(db, embedder, config)
    await store.prepare()
    embedder.down = True
    return store, embedder


async def test_rows_stored_while_the_provider_is_down_are_embedded_later(
    db: Database, memory_config: MemoryConfig
) -> None:
    store, embedder = await down_store(db, memory_config)
    memory_id = await store.add("fact", "the status page is statuspage.io", "team")
    assert (await store.get(memory_id)).embedded_by is None  # type: ignore[union-attr]
    assert [m.id for m in await store.recall("status page", Scope())] == [memory_id]
    assert await store.reembed_all() == 0  # still down: stops, does not spin
    embedder.down = False
    assert await store.reembed_all() == 1
    assert (
        await db.fetchval("SELECT count(*) FROM memory_vec WHERE memory_id = ?", (memory_id,)) == 1
    )


async def test_a_failing_provider_is_paused_instead_of_slowing_every_task(
    db: Database, memory_config: MemoryConfig
) -> None:
    embedder = FlakyEmbedder()
    store = MemoryStore(db, embedder, memory_config)
    await store.prepare()
    fact = await store.add("fact", "invoices go out on the first", "team")
    embedder.down = True
    calls = embedder.calls
    assert [m.id for m in await store.recall("when do invoices go out", Scope())] == [fact]
    assert embedder.calls == calls + 1 and store.vectors.paused
    # while paused: recall and add go keyword-only without waiting on the provider
    assert [m.id for m in await store.recall("invoices first of month", Scope())] == [fact]
    later = await store.add("fact", "refunds go out on the fifth", "team")
    assert embedder.calls == calls + 1
    assert (await store.get(later)).embedded_by is None  # type: ignore[union-attr]
    # the background job may still try, and fills the gap once the provider is back
    embedder.down = False
    assert await store.reembed_all() == 1


class GatedEmbedder(HashedNgramEmbedder):
    """Embeds documents only once the test opens the gate (queries at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.documents = 0

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        if not query and self.documents:  # the first call is prepare()'s probe
            await self.gate.wait()
        self.documents += not query
        return await super().embed(texts, query=query)


async def later_store(
    db: Database, config: MemoryConfig, embedder: HashedNgramEmbedder
) -> MemoryStore:
    """A ready store that writes at once and embeds in the background, as the bot's does."""
    store = MemoryStore(db, embedder, config, embed_later=True)
    await store.prepare()
    return store


async def test_embed_later_stores_at_once_and_embeds_in_the_background(
    db: Database, memory_config: MemoryConfig
) -> None:
    embedder = GatedEmbedder()
    store = await later_store(db, memory_config, embedder)
    async with asyncio.timeout(5):  # the writes do not wait for the model
        first = await store.add("episode", "Request: rotate the staging password", "team")
        second = await store.add("episode", "Request: renew the TLS certificate", "team")
        for i in range(8):
            await store.add("episode", f"Request: weekly report number {i}", "team")
    assert await store.pending_embeddings() == 10
    # Keywords find them meanwhile.
    assert [m.id for m in await store.recall("staging password", Scope())] == [first]
    embedder.gate.set()
    async with asyncio.timeout(5):
        while await store.pending_embeddings():
            await asyncio.sleep(0.01)
    # The probe, then batches: the job had started on the first before the rest were written.
    assert embedder.documents <= 3
    hits = await store.vectors.nearest(
        await store.vectors.embed_query("renew TLS certificate") or b"", 1, scope=Scope()
    )
    assert hits[0][0] == second
    await store.close()


async def test_closing_stops_background_embedding(
    db: Database, memory_config: MemoryConfig
) -> None:
    embedder = GatedEmbedder()
    store = await later_store(db, memory_config, embedder)
    await store.add("fact", "Deploys need a feature flag", "team")
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        await store.close()  # the job waits on the gate: cancelled, not awaited forever
    assert await store.pending_embeddings() == 1  # the next start embeds it


async def test_the_sweep_leaves_fresh_writes_to_their_writer(
    db: Database, memory_config: MemoryConfig
) -> None:
    store, embedder = await down_store(db, memory_config)
    left = await store.add("fact", "the writer died before embedding this", "team")
    fresh = await store.add("fact", "the writer is embedding this one now", "team")
    await db.execute("UPDATE memories SET updated_at = updated_at - 600 WHERE id = ?", (left,))
    embedder.down = False
    assert await store.reembed_all(settled_for=120) == 1
    assert (await store.get(left)).embedded_by is not None  # type: ignore[union-attr]
    assert (await store.get(fresh)).embedded_by is None  # type: ignore[union-attr]
    assert await store.reembed_all() == 1  # at start-up, everything


async def test_what_failed_to_embed_is_tried_again_with_the_next_write(
    db: Database, memory_config: MemoryConfig
) -> None:
    embedder = FlakyEmbedder()
    store = await later_store(db, memory_config, embedder)
    embedder.down = True
    first = await store.add("fact", "the provider was down when this was written", "team")
    async with asyncio.timeout(5):
        while embedder.calls < 2:  # prepare()'s probe, then the failed attempt
            await asyncio.sleep(0.01)
    embedder.down = False
    second = await store.add("fact", "and back up for this one", "team")
    async with asyncio.timeout(5):
        while await store.pending_embeddings():
            await asyncio.sleep(0.01)
    for memory_id in (first, second):
        assert (await store.get(memory_id)).embedded_by is not None  # type: ignore[union-attr]
    await store.close()
