"""MemoryStore: writing, reading, changing status, and forgetting from every index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pydantic
import pytest

from memory.records import Scope
from memory.store import MemoryStore
from tests.memory.conftest import MakeTask


async def vec_ids(store: MemoryStore) -> set[int]:
    return {r["memory_id"] for r in await store.db.fetchall("SELECT memory_id FROM memory_vec")}


async def fts_ids(store: MemoryStore, word: str) -> set[int]:
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


async def test_set_status_is_conditional_and_list_filters(store: MemoryStore) -> None:
    fact = await store.add("fact", "prefer squash merges", "team", status="proposed")
    assert await store.set_status(fact, "active", expected="archived") is False
    assert await store.set_status(fact, "active", expected="proposed") is True
    assert await store.set_status(fact, "active", expected="proposed") is False
    assert [m.id for m in await store.list(Scope(), kind="fact")] == [fact]
    assert await store.list(Scope(), status="proposed") == []
    status = await store.db.fetchval("SELECT status FROM memory_vec WHERE memory_id = ?", (fact,))
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


async def test_forgotten_text_is_gone_from_the_database_file(store: MemoryStore) -> None:
    for i in range(30):
        await store.add("fact", f"filler fact {i} about the build farm", "team")
    secret = await store.add("fact", "the door code is zqx-4471-kappa", "team")
    await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.forget(secret)
    await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = await asyncio.to_thread(Path(store.db.path).read_bytes)
    assert b"zqx-4471-kappa" not in data and b"4471" not in data
