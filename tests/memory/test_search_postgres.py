"""Memory search on PostgreSQL: pgvector HNSW and tsvector, scoped inside the search."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.base.db.postgres import PostgresDatabase
from memory.embeddings import HashedNgramEmbedder
from memory.keyword_index_postgres import PostgresKeywordIndex
from memory.records import MemoryDraft, Scope, scope_id, scope_key
from memory.vector_index import to_blob
from memory.vector_index_postgres import PUT_SQL, TABLE, PostgresVectorIndex, to_vector

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "ru", "te") for b in range(40)]


async def add_many(
    db: PostgresDatabase,
    index: PostgresVectorIndex,
    drafts: list[MemoryDraft],
    *,
    embed: bool = True,
) -> list[int]:
    """Store memory rows and their vectors the way the store does: in one transaction."""
    blobs = await index.embed_documents([d.content for d in drafts]) if embed else []
    ids = []
    async with db.transaction() as tx:
        for i, draft in enumerate(drafts):
            values = draft.columns() | {
                "embedded_by": index.signature if embed else None,
                "created_at": 1.0,
                "updated_at": 1.0,
            }
            memory_id = await tx.fetchval(
                f"INSERT INTO memories ({', '.join(values)})"
                f" VALUES ({', '.join(':' + n for n in values)}) RETURNING id",
                values,
            )
            if embed:
                await index.put(tx, memory_id, blobs[i], draft.kind, draft.scope_key, draft.status)
            ids.append(int(memory_id))
    return ids


async def add(
    db: PostgresDatabase, index: PostgresVectorIndex, draft: MemoryDraft, *, embed: bool = True
) -> int:
    (memory_id,) = await add_many(db, index, [draft], embed=embed)
    return memory_id


@pytest.fixture
async def index(pg_db: PostgresDatabase) -> AsyncIterator[PostgresVectorIndex]:
    vectors = PostgresVectorIndex(pg_db, HashedNgramEmbedder())
    assert await vectors.prepare() is True
    assert vectors.ready and vectors.exists
    yield vectors


@pytest.fixture
def keywords(pg_db: PostgresDatabase) -> PostgresKeywordIndex:
    return PostgresKeywordIndex(pg_db)


def random_draft(rng: random.Random, i: int) -> MemoryDraft:
    text = " ".join(rng.choice(WORDS) for _ in range(12))
    roll = rng.random()
    kind = "fact" if rng.random() < 0.3 else "episode"
    if roll < 0.1:
        return MemoryDraft(kind=kind, content=text, scope="team")
    if roll < 0.8:
        return MemoryDraft(kind=kind, content=text, scope="project", project=f"p{i % 20}")
    return MemoryDraft(kind=kind, content=text, scope="user", user_id=f"U{i % 30}")


@pytest.mark.parametrize("search", ["exact", "hnsw"])
async def test_nearest_is_the_exact_top_k_within_a_narrow_scope(
    pg_db: PostgresDatabase, search: str
) -> None:
    """A scope that sees a few percent of memories still gets k rows, all its own; a small
    scope is ranked exactly, a large one through the HNSW graph."""
    embedder = HashedNgramEmbedder(dim=64)
    index = PostgresVectorIndex(pg_db, embedder, exact_max=10_000 if search == "exact" else 0)
    await index.prepare()
    rng = random.Random(7)
    drafts = [random_draft(rng, i) for i in range(800)]
    ids = await add_many(pg_db, index, drafts)
    scope = Scope(project="p3", user_id="U4")
    visible = {k for k in scope.keys()}
    query = " ".join(rng.choice(WORDS) for _ in range(6))
    q = embedder.vector(query)

    def cosine(text: str) -> float:
        v = embedder.vector(text)
        return sum(a * b for a, b in zip(q, v, strict=True))

    exact = sorted(
        (
            (cosine(d.content), memory_id)
            for memory_id, d in zip(ids, drafts, strict=True)
            if d.scope_key in visible and d.kind == "fact"
        ),
        reverse=True,
    )[:10]
    hits = await index.nearest(to_blob(q), 10, scope=scope, kind="fact")
    assert len(hits) == 10
    by_id = dict(zip(ids, drafts, strict=True))
    assert all(by_id[m].scope_key in visible and by_id[m].kind == "fact" for m, _ in hits)
    # Vectors are 16-bit floats: a hit within 2e-3 of the exact 10th counts as a tie.
    floor = exact[-1][0] - 2e-3
    good = sum(cosine(by_id[m].content) >= floor for m, _ in hits)
    assert good >= (10 if search == "exact" else 9)  # HNSW is approximate
    for (memory_id, similarity), (expected, _) in zip(hits[:1], exact[:1], strict=True):
        assert math.isclose(
            similarity, cosine(by_id[memory_id].content), abs_tol=2e-3
        )  # stored as 16-bit floats
        assert similarity <= expected + 2e-3


async def ranking_ids(keywords: PostgresKeywordIndex, *args: Any, **kw: Any) -> list[int]:
    """The ids of a keyword ranking, best first (its scores are checked apart)."""
    return [memory_id for memory_id, _ in await keywords.ranking(*args, **kw)]


async def test_nothing_leaks_across_projects_or_people(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, keywords: PostgresKeywordIndex
) -> None:
    mine = await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="deploy the rocket on friday", scope="user", user_id="U1"),
    )
    theirs = await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="deploy the rocket on friday", scope="user", user_id="U2"),
    )
    other = await add(
        pg_db,
        index,
        MemoryDraft(
            kind="fact", content="deploy the rocket on friday", scope="project", project="secret"
        ),
    )
    team = await add(
        pg_db, index, MemoryDraft(kind="fact", content="deploy rockets with care", scope="team")
    )
    scope = Scope(project="public", user_id="U1")
    blob = (await index.embed_documents(["deploy the rocket"]))[0]
    assert {m for m, _ in await index.nearest(blob, 10, scope=scope)} == {mine, team}
    ranked = await ranking_ids(
        keywords,
        "rocket deploy",
        scope,
        kind=None,
        statuses=("active",),
        limit=10,
        allow_common=True,
    )
    assert set(ranked) == {mine, team}
    assert theirs not in ranked and other not in ranked


async def test_keyword_rank_filters_kind_and_status_and_survives_syntax(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, keywords: PostgresKeywordIndex
) -> None:
    fact = await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="The billing service retries webhooks", scope="team"),
    )
    episode = await add(
        pg_db,
        index,
        MemoryDraft(kind="episode", content="Fixed billing webhooks retry storm", scope="team"),
    )
    await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="billing proposal", scope="team", status="proposed"),
    )
    scope = Scope()
    hostile = "billing' OR 1=1 -- \"NEAR( webhooks) & | ! :* <-> \\"
    assert await ranking_ids(
        keywords, hostile, scope, kind="fact", statuses=("active",), limit=5, allow_common=True
    ) == [fact]
    both = await ranking_ids(
        keywords,
        "webhooks billing",
        scope,
        kind=None,
        statuses=("active",),
        limit=5,
        allow_common=True,
    )
    assert set(both) == {fact, episode}
    assert (
        await ranking_ids(
            keywords, "&&& !!!", scope, kind=None, statuses=("active",), limit=5, allow_common=True
        )
        == []
    )


async def test_rows_with_more_matching_words_rank_higher(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, keywords: PostgresKeywordIndex
) -> None:
    one = await add(pg_db, index, MemoryDraft(kind="fact", content="kafka consumers", scope="team"))
    two = await add(
        pg_db, index, MemoryDraft(kind="fact", content="kafka consumers lag alerts", scope="team")
    )
    ranked = await ranking_ids(
        keywords,
        "kafka lag alerts",
        Scope(),
        kind=None,
        statuses=("active",),
        limit=5,
        allow_common=True,
    )
    assert ranked == [two, one]
    scores = dict(
        await keywords.ranking(
            "kafka lag alerts", Scope(), kind=None, statuses=("active",), limit=5, allow_common=True
        )
    )
    assert scores[two] > scores[one] > 0  # higher is better, as recall's fusion reads it


async def test_common_terms_are_left_to_the_vectors(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, keywords: PostgresKeywordIndex
) -> None:
    for i in range(520):
        await add(
            pg_db,
            index,
            MemoryDraft(kind="episode", content=f"request outcome number{i}", scope="team"),
            embed=False,
        )
    rare = await add(
        pg_db,
        index,
        MemoryDraft(kind="episode", content="request about zeppelins", scope="team"),
        embed=False,
    )
    scope = Scope()
    args = {"kind": None, "statuses": ("active",), "limit": 5}
    assert await ranking_ids(keywords, "request", scope, allow_common=False, **args) == []
    assert len(await ranking_ids(keywords, "request", scope, allow_common=True, **args)) == 5
    assert await ranking_ids(keywords, "request zeppelins", scope, allow_common=False, **args) == [
        rare
    ]


async def test_once_analysed_common_terms_come_from_the_statistics(
    pg_db: PostgresDatabase, index: PostgresVectorIndex
) -> None:
    drafts = [
        MemoryDraft(kind="episode", content=f"requests outcome number{i}", scope="team")
        for i in range(520)
    ]
    await add_many(pg_db, index, drafts, embed=False)
    rare = await add(
        pg_db,
        index,
        MemoryDraft(kind="episode", content="requesting zeppelins", scope="team"),
        embed=False,
    )
    await pg_db.execute("ANALYZE memories")
    keywords = PostgresKeywordIndex(pg_db)
    # "requests" and "requesting" stem to the word the statistics count in every row
    assert await keywords._common_terms(["request", "zeppelin", "number7"]) == {"request"}
    # the statistics are what decided: rows deleted since the ANALYZE are not counted again
    await pg_db.execute("DELETE FROM memories WHERE id != ?", (rare,))
    fresh = PostgresKeywordIndex(pg_db)
    args = {"kind": None, "statuses": ("active",), "limit": 5}
    assert await ranking_ids(fresh, "requesting", Scope(), allow_common=False, **args) == []
    assert await ranking_ids(fresh, "requesting", Scope(), allow_common=True, **args) == [rare]
    assert await ranking_ids(fresh, "request zeppelin", Scope(), allow_common=False, **args) == [
        rare
    ]


async def test_a_scopes_vector_count_is_kept_for_a_minute(
    pg_db: PostgresDatabase, index: PostgresVectorIndex
) -> None:
    def notes(n: int, scope: str = "project") -> list[MemoryDraft]:
        project = "p1" if scope == "project" else None
        return [
            MemoryDraft(kind="fact", content=f"note {i}", scope=scope, project=project)
            for i in range(n)
        ]

    await add_many(pg_db, index, notes(3) + notes(2, "team"))
    seen = Scope(project="p1").ids()
    assert await index._visible(seen, "fact", ("active",)) == 5  # the team's and the project's
    await add_many(pg_db, index, notes(4))
    assert await index._visible(seen, "fact", ("active",)) == 5  # counted a moment ago: kept
    another = PostgresVectorIndex(pg_db, HashedNgramEmbedder(), exact_max=5)
    # counted afresh, each scope up to exact_max + 1: the project 6 of its 7, the team 2
    assert await another._visible(seen, "fact", ("active",)) == 8


async def test_forgetting_removes_the_memory_from_every_index(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, keywords: PostgresKeywordIndex
) -> None:
    gone = await add(
        pg_db, index, MemoryDraft(kind="fact", content="the vault code is 4711", scope="team")
    )
    kept = await add(
        pg_db, index, MemoryDraft(kind="fact", content="the vault is in the basement", scope="team")
    )
    blob = (await index.embed_documents(["vault code"]))[0]
    async with pg_db.transaction() as tx:
        await index.delete(tx, gone)
        await tx.execute("DELETE FROM memories WHERE id = ?", (gone,))
    assert [m for m, _ in await index.nearest(blob, 5, scope=Scope())] == [kept]
    assert await ranking_ids(
        keywords,
        "vault code 4711",
        Scope(),
        kind=None,
        statuses=("active",),
        limit=5,
        allow_common=True,
    ) == [kept]
    assert await pg_db.fetchval(f"SELECT COUNT(*) FROM {TABLE} WHERE memory_id = ?", (gone,)) == 0


async def test_a_deleted_row_takes_its_vector_with_it(
    pg_db: PostgresDatabase, index: PostgresVectorIndex
) -> None:
    memory_id = await add(
        pg_db, index, MemoryDraft(kind="fact", content="cascade me", scope="team")
    )
    await pg_db.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
    assert await pg_db.fetchval(f"SELECT COUNT(*) FROM {TABLE}") == 0


async def test_status_and_scope_changes_reach_the_vector_index(
    pg_db: PostgresDatabase, index: PostgresVectorIndex
) -> None:
    memory_id = await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="standup is at ten", scope="project", project="a"),
    )
    blob = (await index.embed_documents(["standup"]))[0]
    async with pg_db.transaction() as tx:
        await index.move(tx, memory_id, "fact", scope_key("project", "b", None), "active")
    assert await index.nearest(blob, 5, scope=Scope(project="a")) == []
    assert [m for m, _ in await index.nearest(blob, 5, scope=Scope(project="b"))] == [memory_id]
    async with pg_db.transaction() as tx:
        await index.set_status(tx, memory_id, "archived")
    assert await index.nearest(blob, 5, scope=Scope(project="b")) == []
    hits = await index.nearest(blob, 5, scope=Scope(project="b"), statuses=("archived",))
    assert [m for m, _ in hits] == [memory_id]


async def test_forget_by_words_needs_every_word(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, keywords: PostgresKeywordIndex
) -> None:
    both = await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="Alice owns the payments runbook", scope="team"),
    )
    await add(pg_db, index, MemoryDraft(kind="fact", content="Alice owns nothing", scope="team"))
    await add(
        pg_db,
        index,
        MemoryDraft(kind="fact", content="payments runbook for Alice", scope="user", user_id="U9"),
    )
    assert await keywords.containing_all("alice payments", Scope(user_id="U1"), limit=5) == [both]


async def test_another_provider_rebuilds_the_table_once_for_all_replicas(
    pg_db: PostgresDatabase, index: PostgresVectorIndex, postgres_server
) -> None:
    await add(pg_db, index, MemoryDraft(kind="fact", content="old vector", scope="team"))
    replicas = [await PostgresDatabase.open(pg_db.url, max_size=2) for _ in range(3)]
    try:
        indexes = [PostgresVectorIndex(r, HashedNgramEmbedder(dim=64)) for r in replicas]
        async with asyncio.timeout(30):
            await asyncio.gather(*(i.prepare() for i in indexes))
        assert all(i.ready for i in indexes)
        dim = await pg_db.fetchval(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = ?::regclass AND attname = 'embedding'",
            (TABLE,),
        )
        assert dim == 64
        assert await pg_db.fetchval(f"SELECT COUNT(*) FROM {TABLE}") == 0
        blob = (await indexes[0].embed_documents(["old vector"]))[0]
        assert await indexes[1].nearest(blob, 3, scope=Scope()) == []
    finally:
        for r in replicas:
            await r.close()


async def test_vectors_too_large_for_the_scope_index_are_read_from_the_table(
    pg_db: PostgresDatabase,
) -> None:
    index = PostgresVectorIndex(pg_db, HashedNgramEmbedder(dim=1536))
    await index.prepare()
    assert not index.covered
    mine = await add(pg_db, index, MemoryDraft(kind="fact", content="big vectors", scope="team"))
    await add(
        pg_db, index, MemoryDraft(kind="fact", content="big vectors", scope="user", user_id="U2")
    )
    blob = (await index.embed_documents(["big vectors"]))[0]
    assert [m for m, _ in await index.nearest(blob, 5, scope=Scope(user_id="U1"))] == [mine]


async def test_an_exact_search_does_not_walk_the_graph(pg_db: PostgresDatabase) -> None:
    """A narrow scope is ranked in full even where the planner would rather walk the HNSW
    graph (a table big enough, a graph search that keeps few candidates): all k rows."""
    embedder = HashedNgramEmbedder(dim=16)
    index = PostgresVectorIndex(pg_db, embedder)
    await index.prepare()
    rng = random.Random(11)
    drafts = [random_draft(rng, i) for i in range(6000)]
    blobs = await index.embed_documents([d.content for d in drafts])
    rows = [
        {"id": i + 1} | d.columns() | {"embedded_by": None, "created_at": 1.0, "updated_at": 1.0}
        for i, d in enumerate(drafts)
    ]
    async with pg_db.transaction() as tx:  # in bulk, the graph built after the rows
        await tx.execute(f"DROP INDEX {TABLE}_hnsw")
        await tx.executemany(
            f"INSERT INTO memories ({', '.join(rows[0])})"
            f" VALUES ({', '.join(':' + c for c in rows[0])})",
            rows,
        )
        await tx.executemany(
            PUT_SQL,
            [
                (i + 1, to_vector(b), scope_id(d.scope_key), d.kind, d.status)
                for i, (d, b) in enumerate(zip(drafts, blobs, strict=True))
            ],
        )
        await tx.execute(
            f"CREATE INDEX {TABLE}_hnsw ON {TABLE} USING hnsw (embedding halfvec_cosine_ops)"
        )
    await pg_db.execute(f"ANALYZE {TABLE}")
    name = await pg_db.fetchval("SELECT current_database()")
    await pg_db.execute(f'ALTER DATABASE "{name}" SET hnsw.ef_search = 10')
    fresh = await PostgresDatabase.open(pg_db.url)  # sessions that start with that setting
    try:
        searcher = PostgresVectorIndex(fresh, embedder)
        await searcher.prepare()
        blob = to_blob(embedder.vector(" ".join(rng.choice(WORDS) for _ in range(6))))
        scope = Scope(project="p3", user_id="U4")
        assert len(await searcher.nearest(blob, 10, scope=scope, kind="fact")) == 10
    finally:
        await fresh.close()
        await pg_db.execute(f'ALTER DATABASE "{name}" RESET ALL')
