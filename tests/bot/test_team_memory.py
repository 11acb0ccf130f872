"""TeamMemory in the task flow: the estimate in the "Got it" reply never waits for a model."""

from __future__ import annotations

import asyncio

from bot.base.config import Config, MemoryConfig
from bot.base.db import Database
from bot.tasks import Task
from bot.team_memory import TeamMemory
from memory.embeddings import HashedNgramEmbedder
from memory.store import MemoryStore


class StuckQueries(HashedNgramEmbedder):
    """Documents embed at once; a query's embedding never comes back."""

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        if query:
            await asyncio.Event().wait()
        return await super().embed(texts)


async def test_the_estimate_uses_keywords_and_never_waits_for_the_embedder(db: Database) -> None:
    store = MemoryStore(db, StuckQueries(), MemoryConfig())
    await store.prepare()
    for minutes in (10, 20, 30):
        await store.add(
            "episode",
            "Request: export the Stripe invoices",
            "user",
            user_id="U1",
            duration_s=minutes * 60,
        )
    memory = TeamMemory(store, llm=None, tasks=None, config=Config())  # type: ignore[arg-type]
    task = Task(
        id=1,
        status="received",
        priority=2,
        coworker="default",
        delegator="U1",
        channel="D1",
        thread_ts="1.0",
        message_ts="1.0",
        request="export the stripe invoices",
        budget_usd=2,
    )
    async with asyncio.timeout(5):
        assert await memory.estimate_minutes(task) == 20
