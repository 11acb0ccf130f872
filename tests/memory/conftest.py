"""Memory fixtures: stores over the real migrated SQLite with sqlite-vec and FTS5."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.base.config import MemoryConfig
from bot.base.db import Database
from memory.embeddings import HashedNgramEmbedder
from memory.store import MemoryStore

MakeTask = Callable[..., Awaitable[int]]


@pytest.fixture
def memory_config() -> MemoryConfig:
    return MemoryConfig(embeddings="test")


@pytest.fixture
async def store(db: Database, memory_config: MemoryConfig) -> AsyncIterator[MemoryStore]:
    """A store with the deterministic `test` embedder and a ready vector index."""
    s = MemoryStore(db, HashedNgramEmbedder(), memory_config)
    await s.prepare()
    assert s.vectors.ready
    yield s


@pytest.fixture
async def keyword_store(db: Database, memory_config: MemoryConfig) -> MemoryStore:
    """A store without an embedder: keyword search only."""
    s = MemoryStore(db, None, memory_config)
    await s.prepare()
    return s


@pytest.fixture
def make_task(db: Database) -> MakeTask:
    """Insert a task row (memories.source_task references tasks)."""

    async def make(
        task_id: int,
        *,
        request: str = "do the thing",
        project: str | None = None,
        delegator: str = "U1",
    ) -> int:
        await db.execute(
            "INSERT INTO tasks (id, delegator, channel, thread_ts, message_ts, project, request,"
            " created_at, updated_at) VALUES (?, ?, 'C1', '1.0', '1.0', ?, ?, 0, 0)",
            (task_id, delegator, project, request),
        )
        return task_id

    return make


@pytest.fixture(params=["vectors", "keywords"])
async def any_store(
    request: pytest.FixtureRequest, db: Database, memory_config: MemoryConfig
) -> MemoryStore:
    """The same test with the `test` embedder and without any embedder."""
    embedder = HashedNgramEmbedder() if request.param == "vectors" else None
    s = MemoryStore(db, embedder, memory_config)
    await s.prepare()
    return s
