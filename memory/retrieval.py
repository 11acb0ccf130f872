"""Recall: hybrid vector + keyword search within a scope, and the context block for a task.

`recall()` runs two searches over what the scope may see and fuses them:
  * vector KNN in memory_vec, with scope, kind and status filtered inside the scan (vec0
    partitions and metadata columns, `memory.vector_index`), so it returns `depth` rows
    however few memories are in scope; the query is centred on the mean stored vector, which
    keeps memories that are close to everything from crowding out the relevant ones;
  * FTS5 bm25 over memories_fts, the scope ANDed into the FTS5 query (`memory.keyword_index`).
Each gives scored candidates, 100 for the default k = 10; `memory.scoring` fuses them into a
relevance in 0..1, each list weighted by how far it can be trusted and each memory by how
many of the searches found it, then adds a small bounded boost for freshness,
importance and use. Without an embedder, or when the query cannot be embedded, the keyword
side alone answers. Rows are checked against the scope again after loading: a stale index
entry can cost a result, never leak one. Recall marks nothing used: only a task's
`retrieve_for_task()` does.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from bot.base import clock
from memory import hubness
from memory.errors import EmbeddingUnavailable
from memory.records import Kind, Memory, Scope, Status
from memory.scoring import MAX_BOOST, Scored, boost, fuse
from memory.vector_index import MAX_K

if TYPE_CHECKING:
    from memory.store import MemoryStore

CHARS_PER_TOKEN = 4
#: An item shorter than this is not worth squeezing into the end of the budget.
_MIN_ITEM_CHARS = 160
#: how much of a memory's `context` the model is shown
_CONTEXT_SHOWN = 300

#: Which searches answer: both (the default), or one alone (benchmarks, diagnosis).
Searches = Literal["hybrid", "keyword", "vector"]


class RecalledContext(BaseModel):
    """What a task starts with: the memories chosen and the text block rendering them."""

    model_config = ConfigDict(frozen=True)

    episodes: list[Memory]
    facts: list[Memory]
    text: str
    tokens: int
    keyword_only: bool

    @property
    def memory_ids(self) -> list[int]:
        return [m.id for m in self.facts + self.episodes]


def _depth(k: int) -> int:
    """How many candidates each side contributes to fusion: deep enough that a memory both
    searches rank below their tops still counts as found by both (`memory.scoring.fuse`)."""
    return min(max(10 * k, 100), MAX_K)


async def recall(
    store: MemoryStore,
    query: str,
    scope: Scope,
    *,
    kind: Kind | None = None,
    k: int = 10,
    statuses: tuple[Status, ...] = ("active",),
    at: float | None = None,
    searches: Searches = "hybrid",
) -> list[Memory]:
    """The `k` memories most relevant to `query` that `scope` may see, best first.

    `at` is the moment freshness is measured from (now by default).
    """
    if k <= 0:
        return []
    depth = _depth(k)
    blob = await store.vectors.embed_query(query) if searches != "keyword" else None

    async def vector_side() -> Scored:
        if blob is None:
            return []
        # Centred on the stored vectors' mean: ranks by similarity beyond what every memory
        # shares with every query (`memory.vector_index`); scores are then not cosines. Then
        # each memory's closeness to its own neighbourhood is taken out (`memory.hubness`).
        centred = await store.vectors.centred(blob)
        hits = await store.vectors.nearest(
            centred, depth, scope=scope, kind=kind, statuses=statuses
        )
        return await hubness.adjust(store, hits, centred)

    async def keyword_side() -> Scored:
        if searches == "vector":
            return []
        return await store.keywords.ranking(
            query, scope, kind=kind, statuses=statuses, limit=depth, allow_common=blob is None
        )

    # At once: on PostgreSQL each search has its own pooled connection and server process.
    vector_hits, keyword_hits = await asyncio.gather(vector_side(), keyword_side())
    relevance = fuse((vector_hits, store.vector_weight), (keyword_hits, 1.0 - store.vector_weight))
    now = clock.now() if at is None else at
    half_life = store.config.half_life_days

    def fits(memory: Memory) -> bool:
        return memory.status in statuses and scope.allows(memory) and kind in (None, memory.kind)

    found = [m for m in await _contenders(store, relevance, k, fits) if fits(m)]
    ranked = sorted(
        ((relevance[m.id] + boost(m, now, half_life), m.id, m) for m in found),
        key=lambda item: item[:2],
        reverse=True,
    )[:k]
    return [memory.model_copy(update={"score": score}) for score, _, memory in ranked]


async def _contenders(
    store: MemoryStore, relevance: dict[int, float], k: int, fits: Callable[[Memory], bool]
) -> list[Memory]:
    """The memories that can still make the top `k` once boosted, loaded in one round trip
    (more only when some loaded ones turn out not to fit: a stale index entry).

    The boost adds at most `MAX_BOOST`, so a memory whose relevance is more than that below
    the k-th fitting one's cannot pass it: of a hundred or more candidates, only those
    within `MAX_BOOST` of the k-th are read."""
    order = sorted(relevance, key=lambda i: (relevance[i], i), reverse=True)
    loaded: list[Memory] = []
    taken = 0
    while taken < len(order):
        fitting = sorted((relevance[m.id] for m in loaded if fits(m)), reverse=True)
        if len(fitting) >= k:
            floor = fitting[k - 1] - MAX_BOOST
            end = taken
        else:  # enough more to make k if they all fit, and those within reach of the last
            end = min(taken + k - len(fitting), len(order))
            floor = relevance[order[end - 1]] - MAX_BOOST
        while end < len(order) and relevance[order[end]] >= floor:
            end += 1
        if end == taken:
            break
        batch = await store.get_many(order[taken:end])
        loaded += [batch[i] for i in order[taken:end] if i in batch]
        taken = end
    return loaded


async def keyword_ranking(
    store: MemoryStore,
    query: str,
    scope: Scope,
    kind: Kind | None,
    statuses: tuple[Status, ...],
    limit: int,
) -> list[int]:
    """Memory ids by bm25 (best first) among those `scope` may see."""
    hits = await store.keywords.ranking(
        query, scope, kind=kind, statuses=statuses, limit=limit, allow_common=store.keyword_only
    )
    return [memory_id for memory_id, _ in hits]


async def similar(
    store: MemoryStore,
    text: str,
    scope: Scope,
    *,
    kind: Kind = "fact",
    statuses: tuple[Status, ...] = ("active", "proposed"),
    k: int = 5,
) -> list[tuple[int, float]]:
    """(id, cosine similarity) of the memories nearest to `text`; [] without vectors.

    `text` is embedded as a document, not a query: this compares like with like (for
    duplicates), and the vector is cached for when `text` is stored.
    """
    if store.keyword_only:
        return []
    try:
        (blob,) = await store.vectors.embed_documents([text])
    except EmbeddingUnavailable:
        return []
    return await store.vectors.nearest(blob, k, scope=scope, kind=kind, statuses=statuses)


async def retrieve_for_task(store: MemoryStore, request: str, scope: Scope) -> RecalledContext:
    """The most relevant episodes and facts for a new task, rendered within the token budget.

    Memories that make it into the text are marked used, which keeps them from decaying.
    """
    config = store.config
    facts = await recall(store, request, scope, kind="fact", k=config.facts)
    episodes = await recall(store, request, scope, kind="episode", k=config.episodes)
    text, used_facts, used_episodes = render(facts, episodes, config.token_budget * CHARS_PER_TOKEN)
    await store.mark_used([m.id for m in used_facts + used_episodes])
    return RecalledContext(
        episodes=used_episodes,
        facts=used_facts,
        text=text,
        tokens=math.ceil(len(text) / CHARS_PER_TOKEN),
        keyword_only=store.keyword_only or store.vectors.paused,
    )


def render(
    facts: list[Memory], episodes: list[Memory], max_chars: int
) -> tuple[str, list[Memory], list[Memory]]:
    """The context block and the facts and episodes that fit in `max_chars`.

    Items go in by relevance; the first that does not fit is cut short if enough room is
    left to be useful, and the rest are left out.
    """
    sections = [
        ("Facts the team has confirmed (most relevant first):", facts, _fact_line),
        ("Similar past tasks (most relevant first):", episodes, _episode_lines),
    ]
    blocks: list[str] = []
    used: tuple[list[Memory], list[Memory]] = ([], [])
    remaining = max_chars
    for (header, memories, fmt), chosen in zip(sections, used, strict=True):
        room = remaining - len(header) - 2  # its newline, and the blank line between sections
        items = []
        for memory in memories:
            item = fmt(memory)
            if len(item) + 1 > room:
                if room < _MIN_ITEM_CHARS:
                    break
                item = item[: room - 2] + "…"
            items.append(item)
            chosen.append(memory)
            room -= len(item) + 1
        if items:
            blocks.append("\n".join([header, *items]))
            remaining -= len(blocks[-1]) + 2
    return "\n\n".join(blocks), used[0], used[1]


def _where(memory: Memory) -> str:
    if memory.scope == "project":
        return f", project {memory.project}"
    if memory.scope == "user":
        return ", yours"
    return ""


def _fact_line(memory: Memory) -> str:
    line = f"- [fact {memory.id}{_where(memory)}] {' '.join(memory.content.split())}"
    return f"{line} {_after(memory)}" if memory.context else line


def _after(memory: Memory) -> str:
    """What the memory answers or follows, on one line, shortened."""
    text = " ".join((memory.context or "").split())
    return f"(after: {text[:_CONTEXT_SHOWN]}{'…' if len(text) > _CONTEXT_SHOWN else ''})"


def _episode_lines(memory: Memory) -> str:
    day = datetime.fromtimestamp(memory.created_at, UTC).date().isoformat()
    label = f"T-{memory.source_task}" if memory.source_task else f"episode {memory.id}"
    verdict = {1: ", rated helpful", -1: ", rated unhelpful"}.get(memory.feedback or 0, "")
    head = f"- [{label}, {day}, {memory.outcome or 'unknown outcome'}{verdict}{_where(memory)}]"
    body = "\n".join("  " + line for line in memory.content.splitlines() if line.strip())
    if memory.context:
        body = f"  {_after(memory)}\n{body}"
    link = f"\n  {memory.permalink}" if memory.permalink else ""
    return f"{head}\n{body}{link}"
