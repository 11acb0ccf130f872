"""MemoryStore: writing, reading, changing status, and forgetting from every index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pydantic
import pytest

from bot.base.config import MemoryConfig
from bot.base.db import Database
from bot.base.db.postgres import PostgresDatabase
from memory.consolidation import approve, reject
from memory.embeddings import HashedNgramEmbedder
from memory.records import Scope, scope_id
from memory.store import MemoryStore
from tests.memory.conftest import MakeTask
from tests.postgres_races import replica, waiters

#: the tests that use the database run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")


def vec_table(store: MemoryStore) -> str:
    return "memory_vectors" if store.db.engine == "postgres" else "memory_vec"


async def vec_ids(store: MemoryStore) -> set[int]:
    rows = await store.db.fetchall(f"SELECT memory_id FROM {vec_table(store)}")
    return {r["memory_id"] for r in rows}


async def fts_ids(store: MemoryStore, word: str) -> set[int]:
    """Ids the keyword index (FTS5, or PostgreSQL's tsvector) finds for `word`."""
    if store.db.engine == "postgres":
        sql = "SELECT id AS rowid FROM memories WHERE content_tsv @@ plainto_tsquery('english', ?)"
        rows = await store.db.fetchall(sql, (word,))
    else:
        rows = await store.db.fetchall(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?", (f'"{word}"',)
        )
    return {r["rowid"] for r in rows}


async def test_add_and_get_round_trip(store: MemoryStore, make_task: MakeTask) -> None:
    await make_task(7)
    memory_id = await store.add(
        "episode",
        "Request: rotate the API keys",
        "project",
        project="payments",
        user_id="U1",
        source_task=7,
        permalink="https://x.slack.com/p1",
        importance=0.7,
        outcome="done",
        tools_used=["vault__rotate"],
        duration_s=12.5,
        cost_usd=0.03,
    )
    memory = await store.get(memory_id)
    assert memory is not None
    assert (memory.kind, memory.scope, memory.project, memory.user_id) == (
        "episode",
        "project",
        "payments",
        "U1",
    )
    assert memory.tools_used == ["vault__rotate"] and memory.outcome == "done"
    assert memory.importance == 0.7 and memory.status == "active" and memory.use_count == 0
    assert memory.embedded_by == store.vectors.signature
    assert memory_id in await vec_ids(store)


async def test_scope_owner_is_required(store: MemoryStore) -> None:
    with pytest.raises(pydantic.ValidationError):
        await store.add("fact", "x", "project")
    with pytest.raises(pydantic.ValidationError):
        await store.add("fact", "x", "user", project="p")
    with pytest.raises(TypeError):
        await store.add("fact", "x", "team", colour="red")


async def test_forget_deletes_from_table_vec_fts_and_cache(store: MemoryStore) -> None:
    keep = await store.add("fact", "deploys happen on tuesdays", "team")
    gone = await store.add("fact", "the wifi password is hunter2", "team")
    cache_key = store.vectors.cache_hash("the wifi password is hunter2")
    assert (
        await store.db.fetchval("SELECT count(*) FROM embedding_cache WHERE hash = ?", (cache_key,))
        == 1
    )
    assert gone in await vec_ids(store) and gone in await fts_ids(store, "hunter2")

    assert await store.forget(gone) is True

    assert await store.db.fetchone("SELECT 1 FROM memories WHERE id = ?", (gone,)) is None
    assert await vec_ids(store) == {keep}
    assert await fts_ids(store, "hunter2") == set()
    assert await fts_ids(store, "tuesdays") == {keep}
    assert (
        await store.db.fetchval("SELECT count(*) FROM embedding_cache WHERE hash = ?", (cache_key,))
        == 0
    )
    assert await store.forget(gone) is False


async def test_forget_reaches_the_vector_table_without_an_embedder(
    store: MemoryStore, keyword_store: MemoryStore
) -> None:
    memory_id = await store.add("fact", "the vpn endpoint moved", "team")
    assert keyword_store.vectors.exists and not keyword_store.vectors.ready
    assert await keyword_store.forget(memory_id)
    assert await vec_ids(store) == set()


async def test_find_matches_substring_or_all_words_within_scope(store: MemoryStore) -> None:
    a = await store.add("fact", "Staging deploys need approval from Dana", "team")
    b = await store.add(
        "fact", "Dana approves staging deploys on Fridays", "project", project="web"
    )
    await store.add("fact", "Dana's staging secret", "user", user_id="U2")
    found = await store.find("staging deploys", Scope(project="web", user_id="U1"))
    assert {m.id for m in found} == {a, b}
    assert [m.id for m in await store.find("approval from dana", Scope())] == [a]
    assert await store.find("  ", Scope(project="web")) == []


async def test_find_with_a_very_long_text_matches_all_of_it(store: MemoryStore) -> None:
    flood = await store.add("fact", "🙂" * 15_000, "team")  # 60 kB: over SQLite's LIKE limit
    near = await store.add("fact", "x" * 300 + " the tail differs", "team")
    assert [m.id for m in await store.find("🙂" * 15_000, Scope())] == [flood]
    assert await store.find("🙂" * 15_001, Scope()) == []  # longer than any memory
    assert await store.find("x" * 300 + " another tail", Scope()) == []
    assert [m.id for m in await store.find("X" * 300 + " THE TAIL", Scope())] == [near]


async def test_set_status_is_conditional_and_list_filters(store: MemoryStore) -> None:
    fact = await store.add("fact", "prefer squash merges", "team", status="proposed")
    assert await store.set_status(fact, "active", expected="archived") is False
    assert await store.set_status(fact, "active", expected="proposed") is True
    assert await store.set_status(fact, "active", expected="proposed") is False
    assert [m.id for m in await store.list(Scope(), kind="fact")] == [fact]
    assert await store.list(Scope(), status="proposed") == []
    status = await store.db.fetchval(
        f"SELECT status FROM {vec_table(store)} WHERE memory_id = ?", (fact,)
    )
    assert status == "active"


async def test_update_scope_moves_the_vector_metadata(store: MemoryStore) -> None:
    memory_id = await store.add("fact", "the release train leaves at noon", "team")
    updated = await store.update(memory_id, scope="project", project="mobile")
    assert updated is not None and updated.scope_key == "project:mobile"
    assert await store.recall("release train", Scope(project="web")) == []
    assert [m.id for m in await store.recall("release train", Scope(project="mobile"))] == [
        memory_id
    ]
    assert await store.update(9999, importance=0.1) is None


class HeldEmbedder(HashedNgramEmbedder):
    """Once `armed`, embeds documents only after `release` is set: an edit slow to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.waiting, self.release = asyncio.Event(), asyncio.Event()

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        if self.armed and not query:
            self.waiting.set()
            await self.release.wait()
        return await super().embed(texts, query=query)


async def test_a_move_made_while_an_edit_was_embedding_is_not_undone(
    db: Database, memory_config: MemoryConfig
) -> None:
    """The edit works out its writes from the row as it is once locked, not as it was read
    before the (slow) embedding: the memory and its vector stay in the new scope."""
    store, held = MemoryStore(db, HashedNgramEmbedder(), memory_config), HeldEmbedder()
    await store.prepare()
    memory_id = await store.add("fact", "the release train leaves at noon", "team")
    editor = MemoryStore(db, held, memory_config)
    await editor.prepare()
    held.armed = True
    async with asyncio.timeout(10):
        editing = asyncio.create_task(
            editor.update(memory_id, content="the release train leaves at one")
        )
        await held.waiting.wait()
        await store.update(memory_id, scope="project", project="mobile")
        held.release.set()
        await editing
    memory = await store.get(memory_id)
    assert memory is not None and memory.content == "the release train leaves at one"
    assert memory.scope_key == "project:mobile"
    filed_under = await db.fetchval(
        f"SELECT scope_id FROM {vec_table(store)} WHERE memory_id = ?", (memory_id,)
    )
    assert filed_under == scope_id("project:mobile")


async def test_a_reject_racing_an_approval_on_another_replica_deletes_nothing(
    db: Database, memory_config: MemoryConfig
) -> None:
    """The reject has read the fact as proposed when the approval commits; its delete
    must then find the fact no longer proposed (PostgreSQL: each replica its own session)."""
    if db.engine != "postgres":
        pytest.skip("one SQLite process runs one transaction at a time")
    assert isinstance(db, PostgresDatabase)
    store = MemoryStore(db, HashedNgramEmbedder(), memory_config)
    await store.prepare()
    fact = await store.add("fact", "deploys freeze on fridays", "team", status="proposed")
    async with replica(db) as other:
        rejecting = MemoryStore(other, HashedNgramEmbedder(), memory_config)
        await rejecting.prepare()
        async with await psycopg.AsyncConnection.connect(db.url) as hold:
            async with hold.transaction():
                # FOR KEY SHARE stops a DELETE of the row, not an UPDATE of its status: the
                # reject reads and then waits to delete while the approval goes through.
                await hold.execute("SELECT 1 FROM memories WHERE id = %s FOR KEY SHARE", (fact,))
                reject_job = asyncio.create_task(reject(rejecting, fact))
                await waiters(db, 1)
                approved = await approve(store, fact, by="U2")
            async with asyncio.timeout(10):
                rejected = await reject_job
    assert approved is not None and approved.status == "active"
    assert rejected is False
    kept = await store.get(fact)
    assert kept is not None and kept.status == "active"


async def test_forgotten_text_is_gone_from_the_database_file(store: MemoryStore) -> None:
    if store.db.engine != "sqlite":
        pytest.skip("a file check: PostgreSQL frees a deleted row's space at VACUUM")
    for i in range(30):
        await store.add("fact", f"filler fact {i} about the build farm", "team")
    secret = await store.add("fact", "the door code is zqx-4471-kappa", "team")
    await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.forget(secret)
    await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = await asyncio.to_thread(Path(store.db.path).read_bytes)
    assert b"zqx-4471-kappa" not in data and b"4471" not in data
