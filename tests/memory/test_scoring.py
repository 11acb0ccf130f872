"""Ranking: relevance decides, freshness/importance/use adjust within it, and fusion weights
each search by how far it can be trusted (a weak embedder cannot make hybrid worse)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.base.config import MemoryConfig
from bot.base.db import Database
from memory.embeddings import l2_normalised
from memory.records import MemoryDraft, Scope
from memory.retrieval import _contenders, recall
from memory.scoring import MAX_BOOST, boost, fuse, vector_weight
from memory.store import MemoryStore

DAY = 86_400.0
NOW = 1_800_000_000.0


@dataclass(frozen=True)
class Usage:
    importance: float
    created_at: float
    last_used_at: float | None
    use_count: int


usages = st.builds(
    Usage,
    importance=st.floats(0, 1),
    created_at=st.floats(NOW - 3000 * DAY, NOW),
    last_used_at=st.one_of(st.none(), st.floats(NOW - 3000 * DAY, NOW)),
    use_count=st.integers(0, 10_000),
)


@given(usages)
def test_boost_is_bounded(memory: Usage) -> None:
    assert 0.0 <= boost(memory, NOW, 30) <= MAX_BOOST


@given(usages, usages, st.floats(0, 1), st.floats(0, 1))
def test_clearly_more_relevant_always_ranks_higher(
    a: Usage, b: Usage, relevance_a: float, relevance_b: float
) -> None:
    if relevance_a - relevance_b > MAX_BOOST:
        assert relevance_a + boost(a, NOW, 30) > relevance_b + boost(b, NOW, 30)


def test_fusion_weights_lists_and_an_empty_list_gives_its_weight_away() -> None:
    vector = [(1, 0.9), (2, 0.5), (3, 0.1)]
    keyword = [(2, 12.0), (4, 7.0), (5, 2.0)]
    fused = fuse((vector, 0.25), (keyword, 0.75))
    assert fused[2] == 0.25 * 0.5 + 0.75 * 1.0  # found by both: the weighted sum
    # found by one of the two: half of it
    assert fused[1] == 0.25 / 2 and fused[4] == 0.75 * 0.5 / 2
    assert fused[3] == 0.0 and fused[5] == 0.0
    assert fuse((vector, 0.25), ([], 0.75)) == {1: 1.0, 2: 0.5, 3: 0.0}


def test_fusion_ranks_what_both_searches_found_above_what_one_ranked_a_little_higher() -> None:
    vector = [(1, 0.9), (2, 0.85), (3, 0.1)]
    keyword = [(7, 10.0), (2, 6.0), (8, 1.0)]
    fused = fuse((vector, 0.5), (keyword, 0.5))
    assert max(fused, key=fused.__getitem__) == 2
    assert fused[2] > fused[1] and fused[2] > fused[7]


async def test_recency_cannot_lift_irrelevant_memories_above_a_relevant_old_one(
    any_store: MemoryStore,
) -> None:
    store = any_store
    relevant = await store.add(
        "fact", "Rotate the staging database password with vault, then restart the API", "team"
    )
    await store.db.execute(
        "UPDATE memories SET created_at = ?, importance = 0 WHERE id = ?",
        (time.time() - 3 * 365 * DAY, relevant),
    )
    noise = await store.add_many(
        [
            MemoryDraft(
                kind="fact",
                content=f"The staging party {i} has pizza and games",
                scope="team",
                importance=1.0,
            )
            for i in range(40)
        ]
    )
    for _ in range(20):  # every one of them used often, and just now
        await store.mark_used(noise)
    results = await store.recall("how do I rotate the staging database password", Scope())
    assert results[0].id == relevant
    assert results[0].score is not None and results[0].score > (results[1].score or 0) + 0.5


class WeakEmbedder:
    """Deliberately weak: hashes only a text's first few characters, so it ranks near random."""

    name = "weak"
    model = "first-characters"
    dim = 32

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text[:6].lower().encode()).digest()
        return l2_normalised([b - 127.5 for b in digest])


# (fact, a query that needs its rare words) pairs; every fact shares common words with others.
FIXTURE = [
    ("The deploy runbook for payments lives in Confluence under Payments Ops", "payments runbook"),
    ("The deploy freeze starts each December 15th for the holidays", "holiday deploy freeze"),
    ("Our VPN gateway is vpn2 and it needs the Okta push", "which VPN gateway"),
    ("The on-call rota for the API team is kept in PagerDuty", "API on-call rota"),
    ("Expense reports go to Finance by the 5th of each month", "expense reports due"),
    ("The staging database is reset every Sunday night", "staging database reset"),
    ("Design reviews for the mobile app happen on Thursdays", "mobile design reviews"),
    ("The team's style guide says British spelling in docs", "docs spelling style"),
    ("Flaky CI tests are tracked on the QA board in Linear", "flaky CI tests board"),
    ("The data warehouse refresh runs at 02:00 UTC nightly", "warehouse refresh time"),
    ("Customer escalations go to the support lead, Amira", "customer escalations lead"),
    ("The release checklist is in the repository's RELEASE.md", "release checklist location"),
]


async def _ranks(store: MemoryStore, ids: list[int], searches: str) -> list[int]:
    ranks = []
    for (_, query), memory_id in zip(FIXTURE, ids, strict=True):
        hits = await recall(store, query, Scope(), k=10, searches=searches)  # type: ignore[arg-type]
        found = [m.id for m in hits]
        ranks.append(found.index(memory_id) + 1 if memory_id in found else 99)
    return ranks


async def test_hybrid_with_a_weak_embedder_is_not_worse_than_keywords(db: Database) -> None:
    store = MemoryStore(db, WeakEmbedder(), MemoryConfig())
    await store.prepare()
    # Filler sharing the common words, so keyword ranking has near-ties to resolve.
    filler = [
        f"The team notes {i}: deploy, database, review, reports and tests are on the board"
        for i in range(30)
    ]
    ids = await store.add_many(
        [MemoryDraft(kind="fact", content=fact, scope="team") for fact, _ in FIXTURE]
    )
    await store.add_many([MemoryDraft(kind="fact", content=t, scope="team") for t in filler])
    keyword = await _ranks(store, ids, "keyword")
    vector = await _ranks(store, ids, "vector")
    hybrid = await _ranks(store, ids, "hybrid")
    assert sum(r == 1 for r in keyword) >= 10  # the fixture is one keywords answer
    assert sum(r == 1 for r in vector) <= 4  # and the embedder really is weak
    assert sum(r == 1 for r in hybrid) >= sum(r == 1 for r in keyword)
    assert sum(1 / r for r in hybrid) >= sum(1 / r for r in keyword)


def test_the_built_in_model_and_keywords_have_an_equal_say() -> None:
    # Centred on the mean memory, the built-in model ranks about as well as bm25, so a memory
    # only one search puts first is no more relevant than one only the other puts first.
    weight = vector_weight("local")
    vector_hits = [(1, 0.9), (2, 0.5), (3, 0.1)]
    keyword_hits = [(2, 9.0), (1, 5.0), (3, 1.0)]
    relevance = fuse((vector_hits, weight), (keyword_hits, 1.0 - weight))
    assert relevance[1] == pytest.approx(relevance[2])
    assert vector_weight("local", configured=0.2) == 0.2


@dataclass(frozen=True)
class Row:
    id: int
    fits: bool
    lift: float  # what freshness, importance and use add: 0..MAX_BOOST


class Rows:
    """`get_many` over rows in memory, counting what was read."""

    def __init__(self, rows: dict[int, Row]) -> None:
        self.rows = rows
        self.read: list[int] = []

    async def get_many(self, ids: list[int]) -> dict[int, Row]:
        self.read += ids
        return {i: self.rows[i] for i in ids}


def top(rows: list[Row], relevance: dict[int, float], k: int) -> list[int]:
    ranked = sorted(((relevance[r.id] + r.lift, r.id) for r in rows if r.fits), reverse=True)
    return [memory_id for _, memory_id in ranked[:k]]


@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.booleans(), st.floats(0, MAX_BOOST)),
        min_size=0,
        max_size=60,
    ),
    st.integers(1, 12),
)
# one that does not fit, so a second read must reach past what the first one took
@example([(1.0, True, 0.0), (0.9, False, 0.0), (0.85, True, 0.0), (0.82, True, 0.05)], 2)
async def test_only_memories_that_could_make_the_top_k_are_read_and_none_is_missed(
    candidates: list[tuple[float, bool, float]], k: int
) -> None:
    rows = {i: Row(i, fits, lift) for i, (_, fits, lift) in enumerate(candidates)}
    relevance = {i: rel for i, (rel, _, _) in enumerate(candidates)}
    store = Rows(rows)
    loaded = await _contenders(store, relevance, k, lambda r: r.fits)  # type: ignore[arg-type]
    assert top(loaded, relevance, k) == top(list(rows.values()), relevance, k)
    assert len(store.read) == len(set(store.read))  # nothing read twice


async def test_a_clear_ranking_reads_little_more_than_k() -> None:
    relevance = {i: 1.0 - i / 100 for i in range(100)}  # 0.01 apart: the boost spans 5
    store = Rows({i: Row(i, fits=i != 3, lift=0.0) for i in range(100)})
    loaded = await _contenders(store, relevance, 10, lambda r: r.fits)  # type: ignore[arg-type]
    assert top(loaded, relevance, 10) == [i for i in range(11) if i != 3]
    # 11 to have 10 that fit, and those within the boost's reach of the 10th: not all 100
    assert 11 <= len(store.read) <= 17
