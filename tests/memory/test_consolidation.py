"""Facts: proposed from episodes, reviewed by people, never proposed twice."""

from __future__ import annotations

import pytest

from bot.base.errors import CoworkerError, LLMUnavailable
from memory.consolidation import approve, pending_episodes, propose_facts, reject, remember
from memory.records import Scope
from memory.store import MemoryStore


class Extractor:
    """Stands in for the fast-tier model call: returns queued candidates per call."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[str] = []

    async def __call__(self, text: str) -> list[str]:
        self.seen.append(text)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def add_episode(store: MemoryStore, text: str, project: str = "web") -> int:
    return await store.add(
        "episode", text, "project", project=project, user_id="U1", outcome="done"
    )


async def test_propose_then_approve_makes_a_fact_active(any_store: MemoryStore) -> None:
    store = any_store
    ep = await add_episode(store, "Request: deploy web. Outcome: needed the DEPLOY_TOKEN secret")
    extract = Extractor(["Web deploys need the DEPLOY_TOKEN secret from Vault"])
    proposed = await propose_facts(store, await pending_episodes(store), extract)
    assert len(proposed) == 1
    fact = proposed[0]
    assert fact.status == "proposed" and fact.sources == [ep] and fact.project == "web"
    assert extract.seen and await pending_episodes(store) == []
    assert await store.recall("deploy token", Scope(project="web"), kind="fact") == []

    approved = await approve(store, fact.id, "Web deploys need DEPLOY_TOKEN (in Vault)", by="U7")
    assert approved is not None and approved.status == "active" and approved.decided_by == "U7"
    assert approved.content == "Web deploys need DEPLOY_TOKEN (in Vault)"
    hits = await store.recall("deploy token vault", Scope(project="web"), kind="fact")
    assert [m.id for m in hits] == [fact.id]
    assert await approve(store, fact.id) is None  # second click changes nothing


async def test_reject_deletes_and_is_not_proposed_again(any_store: MemoryStore) -> None:
    store = any_store
    await add_episode(store, "Request: tidy labels")
    await add_episode(store, "Request: tidy labels again")
    candidate = "Labels are tidied every Friday"
    (fact,) = await propose_facts(
        store, await pending_episodes(store, limit=1), Extractor([candidate])
    )
    assert await reject(store, fact.id) is True
    assert await store.get(fact.id) is None
    assert await reject(store, fact.id) is False
    again = await propose_facts(store, await pending_episodes(store), Extractor([candidate]))
    assert again == []
    assert await store.list(Scope(project="web"), kind="fact", status="proposed") == []


async def test_a_duplicate_is_not_proposed_twice(any_store: MemoryStore) -> None:
    store = any_store
    await remember(store, "Staging resets every Sunday night", Scope(project="web"), user_id="U1")
    await add_episode(store, "Request: check staging")
    extract = Extractor(
        [
            "staging resets every sunday night.",  # an active fact already says this
            "The staging DB is Postgres 16",
            "The staging DB is Postgres 16!",  # the same candidate twice in one run
        ]
    )
    proposed = await propose_facts(store, await pending_episodes(store), extract)
    assert [f.content for f in proposed] == ["The staging DB is Postgres 16"]
    await add_episode(store, "Request: check staging again")
    later = await propose_facts(
        store, await pending_episodes(store), Extractor(["The staging DB is Postgres 16"])
    )
    assert later == []  # still proposed, awaiting review


async def test_failed_extraction_leaves_the_episode_pending(store: MemoryStore) -> None:
    first = await add_episode(store, "Request: anything")
    second = await add_episode(store, "Request: something else")
    proposed = await propose_facts(
        store, await pending_episodes(store), Extractor(CoworkerError("no tool call"), [])
    )
    assert proposed == []
    assert [m.id for m in await pending_episodes(store)] == [first]
    assert second not in [m.id for m in await pending_episodes(store)]


async def test_the_model_down_stops_the_run_and_every_episode_stays_pending(
    store: MemoryStore,
) -> None:
    episodes = [await add_episode(store, f"Request: job {n}") for n in range(2)]
    extract = Extractor(LLMUnavailable("down", status=529), ["never asked"])
    with pytest.raises(LLMUnavailable):
        await propose_facts(store, await pending_episodes(store), extract)
    assert len(extract.seen) == 1
    assert [m.id for m in await pending_episodes(store)] == episodes
