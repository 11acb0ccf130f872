"""Semantic memory: facts proposed from episodes, then approved, edited or rejected by people.

The scheduled job takes `pending_episodes()`, calls `propose_facts()` with an extraction
function (a fast-tier model call, injected so this package never talks to an LLM), and posts
what comes back for review. A candidate is dropped when it is too close to a fact that is
already active or proposed: cosine similarity of the vectors when there is an embedder, and
always token Jaccard against the keyword matches (which also covers facts whose vectors are
still being rebuilt). A rejected proposal leaves only a hash of its normalised text, so the
same sentence is not proposed again and nothing of it stays readable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.base import clock
from bot.base.errors import CoworkerError, LLMUnavailable
from memory.keywords import jaccard, normalised
from memory.records import Memory, Scope, Status
from memory.retrieval import keyword_ranking, similar
from memory.store import MemoryStore

log = logging.getLogger(__name__)

Extract = Callable[[str], Awaitable[list[str]]]

MAX_FACTS_PER_EPISODE = 5
MAX_FACT_CHARS = 500
_OPEN: tuple[Status, ...] = ("active", "proposed")


def _rejection_hash(text: str) -> str:
    return hashlib.sha256(normalised(text).encode()).hexdigest()


async def pending_episodes(store: MemoryStore, *, limit: int = 50) -> list[Memory]:
    """Active episodes not yet consolidated, oldest first."""
    rows = await store.db.fetchall(
        "SELECT * FROM memories WHERE kind = 'episode' AND status = 'active'"
        " AND consolidated_at IS NULL ORDER BY created_at, id LIMIT ?",
        (limit,),
    )
    return [Memory.from_row(r) for r in rows]


async def is_duplicate(store: MemoryStore, text: str, scope: Scope) -> bool:
    """True if `text` was rejected before or is too close to an open fact `scope` sees."""
    if await store.db.fetchone(
        "SELECT 1 FROM rejected_facts WHERE hash = ?", (_rejection_hash(text),)
    ):
        return True
    threshold = store.config.duplicate_similarity
    nearest = await similar(store, text, scope, kind="fact", statuses=_OPEN, k=1)
    if nearest and nearest[0][1] >= threshold:
        return True
    ids = await keyword_ranking(store, text, scope, "fact", _OPEN, 20)
    existing = await store.get_many(ids)
    return any(jaccard(text, m.content) >= threshold for m in existing.values())


async def propose_facts(
    store: MemoryStore, episodes: Sequence[Memory], extract: Extract
) -> list[Memory]:
    """Extract candidate facts from `episodes`, store the new ones as proposed, return them.

    Each fact takes its episode's scope and links back to it (sources, task, permalink). An
    episode whose extraction fails stays pending for the next run.
    """
    proposed: list[Memory] = []
    for episode in episodes:
        try:
            candidates = await extract(episode.content)
        except LLMUnavailable:
            raise  # the model is down for every episode: stop here; they all stay pending
        except CoworkerError as exc:
            log.warning("memory: fact extraction failed for episode %d: %s", episode.id, exc)
            continue
        for candidate in candidates[:MAX_FACTS_PER_EPISODE]:
            if fact := await _propose(store, episode, candidate):
                proposed.append(fact)
        await store.db.execute(
            "UPDATE memories SET consolidated_at = ? WHERE id = ?", (clock.now(), episode.id)
        )
    return proposed


async def _propose(store: MemoryStore, episode: Memory, candidate: str) -> Memory | None:
    text = " ".join(candidate.split())[:MAX_FACT_CHARS]
    if not normalised(text):
        return None
    if await is_duplicate(store, text, Scope(episode.project, episode.user_id)):
        log.debug("memory: dropped duplicate fact candidate from episode %d", episode.id)
        return None
    fact_id = await store.add(
        "fact",
        text,
        episode.scope,
        project=episode.project,
        user_id=episode.user_id,
        source_task=episode.source_task,
        permalink=episode.permalink,
        status="proposed",
        sources=[episode.id],
    )
    return await store.get(fact_id)


async def remember(
    store: MemoryStore, text: str, scope: Scope, *, user_id: str, shared: bool = True
) -> int:
    """`/coworker remember …`: an active fact, in the project if there is one, else the team
    (or the user's own with `shared=False`)."""
    if not shared:
        return await store.add("fact", text, "user", user_id=user_id, decided_by=user_id)
    if scope.project:
        return await store.add(
            "fact", text, "project", project=scope.project, user_id=user_id, decided_by=user_id
        )
    return await store.add("fact", text, "team", user_id=user_id, decided_by=user_id)


async def approve(
    store: MemoryStore, fact_id: int, edited_content: str | None = None, *, by: str | None = None
) -> Memory | None:
    """Make a proposed fact active (with the reviewer's edit); None if it is not proposed.

    The status change is conditional, so a double click or a race with `reject` decides once.
    """
    if not await store.set_status(fact_id, "active", expected="proposed"):
        return None
    changes: dict[str, object] = {"decided_by": by}
    if edited_content is not None and edited_content.strip():
        changes["content"] = edited_content.strip()
    return await store.update(fact_id, **changes)


async def reject(store: MemoryStore, fact_id: int) -> bool:
    """Delete a proposed fact and remember only its hash; False if it is not proposed."""
    fact = await store.get(fact_id)
    if fact is None or fact.kind != "fact":
        return False
    if not await store.forget(fact_id, status="proposed"):
        return False
    await store.db.execute(
        "INSERT OR IGNORE INTO rejected_facts (hash, rejected_at) VALUES (?, ?)",
        (_rejection_hash(fact.content), clock.now()),
    )
    return True
