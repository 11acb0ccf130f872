"""Hubness terms: a memory close to its own neighbourhood does not crowd out the one a query
is about; the terms follow the vectors (worked out after embedding, dropped when the text
changes, the missing ones first)."""

from __future__ import annotations

import asyncio
import math

import pytest

from bot.base.config import MemoryConfig
from bot.base.db import Database
from memory.hubness import adjust
from memory.records import Scope
from memory.retrieval import recall
from memory.store import MemoryStore

ENGINES = ("sqlite", "postgres")
DIM = 16


def unit(**parts: float) -> list[float]:
    """A unit vector from named axes: q (the query's), c0-c9 (ten clusters), a (alone)."""
    axes = ["q", *(f"c{i}" for i in range(10)), "a"]
    vector = [parts.get(axis, 0.0) for axis in axes] + [0.0] * (DIM - len(axes))
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


class TableEmbedder:
    """Texts whose vectors the test sets; any other text (a cluster member) is named
    "<cluster> <n>" and points along its cluster's axis, a little apart from its mates."""

    name = "table"
    model = "table-v1"
    dim = DIM

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def _vector(self, text: str) -> list[float]:
        if text in self.table:
            return self.table[text]
        cluster, _, n = text.partition(" ")
        if cluster.startswith("c") and n.isdigit():
            return _near(cluster, n)
        return unit(c9=0.1, c8=0.1)  # prepare()'s probe and anything else: out of the way


def _near(cluster: str, n: str) -> list[float]:
    vector = unit(**{cluster: 1.0})
    vector[DIM - 1 - int(n) % 4] = 0.05  # a little off the axis, each its own way
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


HUB = "the weekly status report, as always"
ABOUT = "the database migration that failed on Tuesday"
QUERY = "what went wrong with the migration"
TABLE = {
    # Nearer the query than ABOUT (0.85 against 0.78), but in a dense cluster (c0's ten).
    HUB: unit(q=0.85, c0=0.53),
    ABOUT: unit(q=0.78, a=0.63),
    QUERY: unit(q=1.0),
}


async def filled_store(db: Database, **options: bool) -> tuple[MemoryStore, int, int]:
    store = MemoryStore(db, TableEmbedder(TABLE), MemoryConfig(), **options)
    await store.prepare()
    hub = await store.add("episode", HUB, "team")
    about = await store.add("episode", ABOUT, "team")
    for cluster in range(10):
        for n in range(10):
            await store.add("episode", f"c{cluster} {n}", "team")
    return store, hub, about


async def top(store: MemoryStore) -> list[int]:
    found = await recall(store, QUERY, Scope(), kind="episode", k=5, searches="vector")
    return [m.id for m in found]


async def test_a_memory_close_to_its_neighbours_yields_to_the_one_the_query_is_about(
    db: Database,
) -> None:
    store, hub, about = await filled_store(db)
    # Centred on the mean memory alone, the hub still comes first: ten clusters average out,
    # so the mean says little about the one it sits in.
    assert (await top(store))[:2] == [hub, about]
    assert await store.refresh_hubness() == 102
    terms = {
        r["id"]: r["hubness"]
        for r in await db.fetchall(
            "SELECT id, hubness FROM memories WHERE id IN (?, ?)", (hub, about)
        )
    }
    assert terms[hub] > terms[about] + 0.03
    assert (await top(store))[:2] == [about, hub]


async def test_terms_follow_the_vectors_and_go_with_the_text(db: Database) -> None:
    store, hub, about = await filled_store(db, embed_later=True)
    async with asyncio.timeout(10):  # the writer's background job embeds them
        while await store.pending_embeddings():
            await asyncio.sleep(0.01)
    # The terms are the scheduler's work (`refresh_hubness`), not the writer's.
    assert await db.fetchval("SELECT COUNT(*) FROM memories WHERE hubness_at IS NULL") == 102
    assert await store.refresh_hubness(limit=None) == 102
    assert (await top(store))[:2] == [about, hub]

    await store.update(hub, content="c0 7")  # a new text: its old term says nothing now
    row = await db.fetchone("SELECT hubness, hubness_at FROM memories WHERE id = ?", (hub,))
    assert row is not None and row["hubness"] is None and row["hubness_at"] is None
    async with asyncio.timeout(10):
        while await store.pending_embeddings():
            await asyncio.sleep(0.01)
    assert await store.refresh_hubness() == 1  # the missing one first, the others are fresh
    row = await db.fetchone("SELECT hubness FROM memories WHERE id = ?", (hub,))
    assert row is not None and row["hubness"] is not None
    await store.close()


async def test_the_missing_terms_come_first_and_a_small_scope_gets_none(db: Database) -> None:
    store, hub, about = await filled_store(db)
    lone = await store.add("episode", "c1 3", "project", project="tiny")  # alone in its scope
    await db.execute("UPDATE memories SET hubness_at = 5 WHERE id = ?", (hub,))
    assert await store.refresh_hubness(limit=2) == 2
    done = {r["id"] for r in await db.fetchall("SELECT id FROM memories WHERE hubness_at > 5")}
    assert hub not in done and len(done) == 2  # the missing ones before an old one
    assert await store.refresh_hubness(limit=None) == 101
    row = await db.fetchone("SELECT hubness, hubness_at FROM memories WHERE id = ?", (lone,))
    assert row is not None and row["hubness"] is None and row["hubness_at"] is not None


async def test_a_memory_without_a_term_gets_the_candidates_mean_term(db: Database) -> None:
    store, hub, about = await filled_store(db)
    await store.refresh_hubness(limit=None)
    lone = await store.add("episode", "c0 3", "project", project="tiny")  # no term: alone
    scope = Scope(project="tiny")
    query = await store.vectors.embed_query(QUERY)
    assert query is not None
    centred = await store.vectors.centred(query)
    hits = await store.vectors.nearest(centred, 200, scope=scope, kind="episode")  # all
    rows = await db.fetchall("SELECT id, hubness FROM memories")
    terms = {r["id"]: r["hubness"] for r in rows if r["hubness"] is not None}
    assert lone not in terms and lone in dict(hits)
    dots = dict(store.vectors.dot_products(hits, centred))
    adjusted = dict(await adjust(store, hits, centred))
    typical = sum(terms[i] for i, _ in hits if i in terms) / sum(1 for i, _ in hits if i in terms)
    assert adjusted[lone] == pytest.approx(dots[lone] - typical)
    assert adjusted[hub] == pytest.approx(dots[hub] - terms[hub])
