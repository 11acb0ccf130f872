"""Recall: hybrid ranking, scope filters inside the KNN, the task context block."""

from __future__ import annotations

import time
from array import array
from typing import Any

import pytest

from bot.base.config import MemoryConfig
from bot.base.db import Database
from memory.embeddings import HashedNgramEmbedder, load_embedder
from memory.keywords import COMMON_MIN
from memory.records import Memory, MemoryDraft, Scope, shard
from memory.retrieval import CHARS_PER_TOKEN, keyword_ranking, recall, render, retrieve_for_task
from memory.store import MemoryStore

#: the tests that use the database run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")

DAY = 86_400


async def test_project_fact_reaches_its_project_only(any_store: MemoryStore) -> None:
    store = any_store
    fact = await store.add(
        "fact", "Payments deploys need a feature flag", "project", project="payments"
    )
    request = "how do payments deploys work"
    same = await retrieve_for_task(store, request, Scope(project="payments", user_id="U1"))
    other = await retrieve_for_task(store, request, Scope(project="mobile", user_id="U1"))
    assert [m.id for m in same.facts] == [fact] and "feature flag" in same.text
    assert other.facts == [] and other.text == ""
    assert await store.recall(request, Scope()) == []  # a task outside any project


async def test_user_memory_never_reaches_another_user(any_store: MemoryStore) -> None:
    s = any_store
    mine = await s.add(
        "fact", "My manager is Priya and she likes terse updates", "user", user_id="U1"
    )
    await s.add("episode", "Request: weekly update for Priya", "user", user_id="U1")
    for scope in (Scope(user_id="U2"), Scope(project="web", user_id="U2"), Scope()):
        assert await s.recall("manager Priya terse updates", scope) == []
        context = await retrieve_for_task(s, "write Priya a terse update", scope)
        assert context.facts == [] and context.episodes == [] and "Priya" not in context.text
    assert [m.id for m in await s.recall("manager Priya", Scope(user_id="U1"), kind="fact")] == [
        mine
    ]


class _Recording(HashedNgramEmbedder):
    """The `test` embedder, keeping the passages it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.passages: list[str] = []

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        if not query:
            self.passages += texts
        return await super().embed(texts, query=query)


async def test_context_is_searched_by_keywords_and_not_embedded(
    db: Database, memory_config: MemoryConfig
) -> None:
    embedder = _Recording()
    store = MemoryStore(db, embedder, memory_config)
    await store.prepare()
    embedder.passages.clear()  # the dimension probe
    question = "Caroline: which colour did you paint the kayak?"
    reply = MemoryDraft(
        kind="episode",
        content="Mel: Blue, like the lake",
        scope="team",
        context=question,
        ref="r:2",
    )
    other = MemoryDraft(kind="episode", content="Mel: we went camping in June", scope="team")
    [reply_id, other_id] = await store.add_many([reply, other])
    assert embedder.passages == ["Mel: Blue, like the lake", "Mel: we went camping in June"]
    found = await recall(store, "kayak colour", Scope(), kind="episode", searches="keyword")
    assert [m.id for m in found] == [reply_id] and found[0].context == question
    text, _, episodes = render([], found, 2_000)
    assert episodes == found and f"(after: {question})" in text
    # The index forgets the context with the memory, and an edit keeps it searchable.
    await store.update(reply_id, content="Mel: Blue, like the sky")
    found = await recall(store, "kayak sky", Scope(), kind="episode", searches="keyword")
    assert [m.id for m in found] == [reply_id]
    assert await store.forget(reply_id)
    assert await recall(store, "kayak", Scope(), kind="episode", searches="keyword") == []
    assert [m.id for m in await recall(store, "camping", Scope(), searches="keyword")] == [other_id]


async def test_k_results_when_95_percent_are_out_of_scope(store: MemoryStore) -> None:
    drafts = []
    for i in range(400):
        visible = i % 20 == 0  # 20 of 400 in the asking user's scope
        drafts.append(
            MemoryDraft(
                kind="fact",
                content=f"note {i} about deployment pipelines and release checklists",
                scope="project",
                project="alpha" if visible else f"other{i % 7}",
            )
        )
    await store.add_many(drafts)
    scope = Scope(project="alpha", user_id="U9")
    nearest = await store.vectors.nearest(
        await store.vectors.embed_query("deployment release checklist") or b"",
        10,
        scope=scope,
        kind="fact",
    )
    assert len(nearest) == 10
    results = await store.recall("deployment release checklist", scope, kind="fact", k=10)
    assert len(results) == 10
    assert all(m.project == "alpha" for m in results)
    assert len(await store.recall("deployment release checklist", scope, k=50)) == 20


async def test_hybrid_ranks_the_relevant_memory_first(store: MemoryStore) -> None:
    await store.add("fact", "Lunch orders go through the #food channel", "team")
    target = await store.add("fact", "Flaky CI tests are tracked in the QA board", "team")
    await store.add("fact", "Expense reports are due on the 5th", "team")
    results = await store.recall("which board tracks flaky CI tests", Scope())
    assert results[0].id == target
    assert results[0].score is not None and results[0].score > (results[1].score or 0)


async def test_recent_use_and_importance_break_ties(store: MemoryStore) -> None:
    old = await store.add("fact", "Release notes live in the wiki", "team")
    new = await store.add("fact", "Release notes live in the wiki", "team", importance=0.5)
    await store.db.execute(
        "UPDATE memories SET created_at = ? WHERE id = ?", (time.time() - 200 * DAY, old)
    )
    results = await store.recall("where are release notes", Scope())
    assert [m.id for m in results] == [new, old]
    await store.update(old, importance=1.0)
    await store.mark_used([old])
    results = await store.recall("where are release notes", Scope())
    assert results[0].id == old


async def test_archived_and_proposed_are_not_recalled(store: MemoryStore) -> None:
    archived = await store.add("fact", "Old VPN host is vpn1", "team")
    await store.set_status(archived, "archived")
    await store.add("fact", "New VPN host is vpn2", "team", status="proposed")
    assert await store.recall("vpn host", Scope()) == []


async def test_retrieve_for_task_renders_within_budget_and_marks_used(
    db: Database, make_task: object
) -> None:
    config = MemoryConfig(embeddings="test", token_budget=120, episodes=10, facts=5)
    embedder, _ = load_embedder(config, {})
    store = MemoryStore(db, embedder, config)
    await store.prepare()
    fact = await store.add("fact", "Invoices are exported from Stripe every Monday", "team")
    for i in range(8):
        await store.add(
            "episode",
            f"Request: export the Stripe invoices for week {i}\n"
            "Outcome: done: uploaded the CSV to the finance drive",
            "team",
            outcome="done",
        )
    context = await retrieve_for_task(store, "export stripe invoices", Scope())
    assert len(context.text) <= 120 * 4 and context.tokens <= 120
    assert [m.id for m in context.facts] == [fact]
    assert 1 <= len(context.episodes) < 8  # the budget cut the list
    assert f"[fact {fact}]" in context.text and "Similar past tasks" in context.text
    used = await db.fetchall("SELECT id FROM memories WHERE use_count = 1")
    assert {r["id"] for r in used} == set(context.memory_ids)


async def test_keyword_only_when_the_provider_fails_to_load(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = MemoryConfig(embeddings="voyage")  # no VOYAGE_API_KEY in the environment
    embedder, warning = load_embedder(config, {})
    assert embedder is None and warning is not None and "VOYAGE_API_KEY" in warning
    store = MemoryStore(db, embedder, config)
    await store.prepare()
    assert store.keyword_only
    fact = await store.add("fact", "The on-call rota is in PagerDuty", "team")
    await store.add("fact", "Coffee beans are in the left cupboard", "team")
    context = await retrieve_for_task(store, "who is on-call this week? check pagerduty", Scope())
    assert [m.id for m in context.facts] == [fact] and context.keyword_only


async def test_keyword_ranking_ignores_fts_syntax_in_queries(keyword_store: MemoryStore) -> None:
    await keyword_store.add("fact", "quotes and NEAR operators", "team")
    ids = await keyword_ranking(
        keyword_store, 'NEAR( "quotes -x* AND', Scope(), None, ("active",), 5
    )
    assert len(ids) == 1
    assert await keyword_ranking(keyword_store, "the of and", Scope(), None, ("active",), 5) == []


async def test_users_sharing_a_vector_shard_stay_apart(store: MemoryStore) -> None:
    users = [f"U{i:03d}" for i in range(40)]  # more users than shards: some must share one
    assert len({shard(f"user:{u}") for u in users}) < len(users)
    await store.add_many(
        [
            MemoryDraft(
                kind="fact", content=f"my locker code is {i}{i}{i}", scope="user", user_id=u
            )
            for i, u in enumerate(users)
        ]
    )
    for i, user in enumerate(users):
        hits = await store.recall("what is my locker code", Scope(user_id=user), k=5)
        assert [m.user_id for m in hits] == [user], user
        assert hits[0].content.endswith(f"{i}{i}{i}")


async def test_common_terms_do_not_drown_the_keyword_side(
    store: MemoryStore, keyword_store: MemoryStore
) -> None:
    drafts = [
        MemoryDraft(kind="episode", content=f"Request: routine report {i}", scope="team")
        for i in range(COMMON_MIN + 50)
    ]
    await store.add_many(drafts)
    rare = await store.add("episode", "Request: feed the zebra", "team")
    hybrid = await keyword_ranking(store, "request zebra", Scope(), "episode", ("active",), 30)
    assert hybrid == [rare]  # "request" is in every episode: dropped, not ranked
    assert await keyword_ranking(store, "request", Scope(), None, ("active",), 30) == []
    # without vectors, a query of common words still gets an answer
    assert (
        len(await keyword_ranking(keyword_store, "routine report", Scope(), None, ("active",), 30))
        == 30
    )


@pytest.mark.parametrize("budget", [0, 10, 50, 120, 400, 1000])
def test_render_never_exceeds_the_budget(budget: int) -> None:
    now = time.time()
    common: dict[str, Any] = dict(
        scope="team",
        project=None,
        user_id=None,
        source_task=None,
        permalink=None,
        sources=[],
        importance=0.5,
        status="active",
        outcome="done",
        feedback=None,
        correction=None,
        tools_used=[],
        duration_s=None,
        cost_usd=None,
        consolidated_at=None,
        decided_by=None,
        embedded_by=None,
        created_at=now,
        updated_at=now,
        last_used_at=None,
        use_count=0,
        archived_at=None,
    )
    facts = [Memory(id=i, kind="fact", content="fact " * 40, **common) for i in range(5)]
    episodes = [
        Memory(id=10 + i, kind="episode", content="step\n" * 80, **common) for i in range(10)
    ]
    text, used_facts, used_episodes = render(facts, episodes, budget * CHARS_PER_TOKEN)
    assert len(text) <= budget * CHARS_PER_TOKEN
    assert bool(text) == bool(used_facts or used_episodes)
    assert all(f"[fact {m.id}]" in text for m in used_facts)


class ConeEmbedder:
    """Vectors in a narrow cone, as real models make them: every text shares one direction.

    A text's vector is that shared direction plus a little of the topics it names, so a
    text naming no topic (a "hub", like "Thanks, see you tomorrow!") is close to every query.
    """

    name = "cone"
    model = "cone-v1"
    dim = 8
    TOPICS = ("deploy", "invoice", "vpn", "lunch", "oncall", "backup", "laptop")

    async def embed(self, texts: list[str], *, query: bool = False) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def _vector(self, text: str) -> list[float]:
        named = [topic in text.lower() for topic in self.TOPICS]
        return [3.0, *(1.0 if n else 0.0 for n in named)]


async def test_vector_recall_prefers_the_relevant_memory_to_a_hub(db: Database) -> None:
    # Raw cosines with the query: the hub 0.95, the deploy memory 0.91 (it names two more
    # topics), the others 0.90. Centred on the mean memory, only the deploy memory shares
    # something with the query beyond what every memory shares.
    store = MemoryStore(db, ConeEmbedder(), MemoryConfig())
    await store.prepare()
    hub = await store.add("episode", "Thanks, see you tomorrow!", "team")
    target = await store.add("episode", "The deploy broke the backup job over the vpn", "team")
    for topic in ("invoice", "vpn", "lunch", "oncall", "laptop"):
        await store.add("episode", f"Notes about the {topic}", "team")
    found = await recall(store, "what happened with the deploy", Scope(), searches="vector")
    assert found[0].id == target
    assert [m.id for m in found].index(hub) > 0


async def test_the_query_is_centred_on_the_memories_stored_so_far(db: Database) -> None:
    store = MemoryStore(db, ConeEmbedder(), MemoryConfig())
    await store.prepare()
    query = await store.vectors.embed_query("deploy")
    assert query is not None
    assert await store.vectors.centred(query) == query  # nothing stored: nothing to centre on
    await store.add("episode", "the invoice", "team")
    await store.add("episode", "the lunch", "team")
    mean = [(a + b) / 2 for a, b in zip(_unit(3, 0, 1), _unit(3, 0, 0, 0, 1), strict=False)]
    centred = array("f", await store.vectors.centred(query))
    expected = [q - m for q, m in zip(_unit(3, 1), mean, strict=False)]
    # PostgreSQL keeps vectors as halfvec: the mean is as exact as 16-bit floats allow.
    tolerance = 1e-3 if db.engine == "postgres" else 1e-6
    assert list(centred) == pytest.approx(expected, abs=tolerance)


def _unit(*values: float) -> list[float]:
    vector = [*values, *[0.0] * (ConeEmbedder.dim - len(values))]
    norm = sum(v * v for v in vector) ** 0.5
    return [v / norm for v in vector]
