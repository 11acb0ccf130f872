"""Recall: hybrid vector + keyword search within a scope, and the context block for a task.

`recall()` runs two searches over what the scope may see and fuses them:
  * vector KNN in memory_vec, with scope, kind and status filtered inside the scan (vec0
    partitions and metadata columns, `memory.vector_index`), so it returns `depth` rows
    however few memories are in scope; the query is centred on the mean stored vector, which
    keeps memories that are close to everything from crowding out the relevant ones;
  * FTS5 bm25 over memories_fts, the scope ANDed into the FTS5 query (`memory.keyword_index`).
Each gives scored candidates; `memory.scoring` fuses them into a relevance in 0..1, each list
weighted by how far it can be trusted, then adds a small bounded boost for freshness,
importance and use. Without an embedder, or when the query cannot be embedded, the keyword
side alone answers. Rows are checked against the scope again after loading: a stale index
entry can cost a result, never leak one. Recall marks nothing used: only a task's
`retrieve_for_task()` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from bot.base import clock
from bot.base.db import marks
from memory.errors import EmbeddingUnavailable
from memory.records import Kind, Memory, Scope, Status, scope_key
from memory.scoring import Scored, boost, fuse
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
    """How many candidates each side contributes to fusion."""
    return min(max(3 * k, 30), MAX_K)


@dataclass(frozen=True, slots=True)
class _Candidate:
    """The columns ranking needs, so only the final `k` rows are loaded in full."""

    id: int
    kind: str
    scope_key: str
    status: str
    importance: float
    created_at: float
    last_used_at: float | None
    use_count: int

    COLUMNS: ClassVar[str] = (
        "id, kind, scope, project, user_id, status, importance, created_at, last_used_at, use_count"
    )

    @classmethod
    def from_row(cls, r: Any) -> _Candidate:
        return cls(
            id=r["id"],
            kind=r["kind"],
            scope_key=scope_key(r["scope"], r["project"], r["user_id"]),
            status=r["status"],
            importance=r["importance"],
            created_at=r["created_at"],
            last_used_at=r["last_used_at"],
            use_count=r["use_count"],
        )


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
    vector_hits: Scored = []
    if blob is not None:
        # Centred on the stored vectors' mean: ranks by similarity beyond what every memory
        # shares with every query (`memory.vector_index`); scores are then not cosines.
        vector_hits = await store.vectors.nearest(
            await store.vectors.centred(blob), depth, scope=scope, kind=kind, statuses=statuses
        )
    keyword_hits: Scored = []
    if searches != "vector":
        keyword_hits = await store.keywords.ranking(
            query,
            scope,
            kind=kind,
            statuses=statuses,
            limit=depth,
            allow_common=blob is None,
        )
    ids = list(dict.fromkeys([i for i, _ in vector_hits] + [i for i, _ in keyword_hits]))
    candidates = await _candidates(store, ids)
    relevance = fuse((vector_hits, store.vector_weight), (keyword_hits, 1.0 - store.vector_weight))
    now = clock.now() if at is None else at
    half_life, visible = store.config.half_life_days, set(scope.keys())
    ranked = sorted(
        (
            (relevance[c.id] + boost(c, now, half_life), c.id)
            for c in candidates
            if c.id in relevance
            and c.status in statuses
            and c.scope_key in visible
            and kind in (None, c.kind)
        ),
        reverse=True,
    )[:k]
    loaded = await store.get_many([memory_id for _, memory_id in ranked])
    return [
        loaded[memory_id].model_copy(update={"score": score})
        for score, memory_id in ranked
        if memory_id in loaded and scope.allows(loaded[memory_id])
    ]


async def _candidates(store: MemoryStore, ids: list[int]) -> list[_Candidate]:
    if not ids:
        return []
    rows = await store.db.fetchall(
        f"SELECT {_Candidate.COLUMNS} FROM memories WHERE id IN ({marks(len(ids))})", ids
    )
    return [_Candidate.from_row(r) for r in rows]


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
