"""How memories are ranked and how they fade: engine-neutral, shared by every search backend.

Recall asks two searches for candidates, each giving (memory id, score) best first: cosine
similarity from the vector index and bm25 from the keyword index. `fuse()` turns each list's
scores into 0..1 (min-max over the list: its best is 1, its last 0, absent 0) and adds them
with weights that say how far each list can be trusted, so a weak embedder cannot push the
keyword side's good answers down (rank fusion gives every list the same say, and a weak
vector list then makes hybrid worse than keywords alone). The sum is then scaled by the
share of the lists that found the memory (CombMNZ, Fox & Shaw 1994): a memory that both
searches found, even below their tops, is more likely relevant than one that only one of
them ranks a little higher. That is why recall reads each list deep (100 candidates for
k = 10): agreement below the top tens is where most of what it adds comes from (LoCoMo
dev conversations, recall@10: 0.720 with 30 candidates and no agreement factor, 0.745 with
both). The weights sum to 1, so a memory's relevance is in 0..1 whatever answered.

Relevance decides; `boost()` adjusts within it: freshness, importance and use together add
at most `MAX_BOOST`, so they reorder only memories whose relevance is that close. A fresh,
important, much-used memory never passes one that is clearly more relevant, however old.
(A multiplier cannot promise that: fused scores of ranks 1 and 10 differ far less than a
memory a day old differs from one a year old.)

Decay uses `decay_score`, which has no floors: unimportant, unused memories fade to zero.
Both measure age from the last use, or from creation for a memory never used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

DAY = 86_400.0
#: The most that freshness, importance and use together add to a relevance in 0..1.
MAX_BOOST = 0.05
#: How the boost is shared: freshness, importance, use (they sum to 1).
_FRESH, _IMPORTANT, _USED = 0.5, 0.3, 0.2

#: The share of relevance the vector list gets, by embeddings provider. The keyword list
#: gets the rest. The built-in model, with the query centred on the mean memory
#: (`memory.vector_index`), ranks about as well alone as bm25 does (LoCoMo dev conversations:
#: recall@10 0.60 against 0.61), so the two get equal shares; other local models are not
#: measured with centring and keep the cautious share a weaker list needs (min-max stretches
#: the noise of close cosines); hosted models are stronger; the `test` provider hashes the
#: very words the keyword index already ranks, and adds only collisions.
VECTOR_WEIGHTS = {"local": 0.5, "fastembed": 0.3, "voyage": 0.5, "openai": 0.5, "test": 0.1}
DEFAULT_VECTOR_WEIGHT = 0.3

Scored = Sequence[tuple[int, float]]


class Usage(Protocol):
    """What scoring reads of a memory (a `Memory`, or a lighter row during recall)."""

    @property
    def importance(self) -> float: ...
    @property
    def created_at(self) -> float: ...
    @property
    def last_used_at(self) -> float | None: ...
    @property
    def use_count(self) -> int: ...


def vector_weight(provider: str | None, configured: float | None = None) -> float:
    """The vector list's share of relevance: `memory.vector_weight`, else by provider."""
    if configured is not None:
        return configured
    return VECTOR_WEIGHTS.get(provider or "", DEFAULT_VECTOR_WEIGHT)


def normalised(hits: Scored) -> dict[int, float]:
    """A best-first (id, score) list's scores mapped to 0..1: its best 1, its last 0."""
    if not hits:
        return {}
    best = max(score for _, score in hits)
    worst = min(score for _, score in hits)
    spread = best - worst
    if spread <= 0:
        return {memory_id: 1.0 for memory_id, _ in hits}
    return {memory_id: (score - worst) / spread for memory_id, score in hits}


def fuse(*lists: tuple[Scored, float]) -> dict[int, float]:
    """Relevance in 0..1 from (hits, weight) lists; a list with no hits gives its weight away.

    Each memory's weighted sum of normalised scores is scaled by the share of answering
    lists that hold it: found by one search of two, it counts half. A search that abstains
    (no embedder, or every query word too common) says nothing about relevance, so the
    lists that did answer share the whole weight, and the share is of those lists.
    """
    answered = [(normalised(hits), weight) for hits, weight in lists if hits and weight > 0]
    total = sum(weight for _, weight in answered)
    fused: dict[int, float] = {}
    found: dict[int, int] = {}
    for scores, weight in answered:
        for memory_id, score in scores.items():
            fused[memory_id] = fused.get(memory_id, 0.0) + score * weight / total
            found[memory_id] = found.get(memory_id, 0) + 1
    return {
        memory_id: score * found[memory_id] / len(answered) for memory_id, score in fused.items()
    }


def recency(memory: Usage, now: float, half_life_days: float) -> float:
    """1 when just used, halving every `half_life_days` since the last use (or creation)."""
    last = memory.last_used_at or memory.created_at
    age_days = max(0.0, now - last) / DAY
    return 0.5 ** (age_days / half_life_days)


def use_factor(use_count: int) -> float:
    """1 for a memory never used, growing slowly with each use."""
    return 1.0 + math.log1p(max(0, use_count))


def boost(memory: Usage, now: float, half_life_days: float) -> float:
    """What freshness, importance and use add to relevance: 0..`MAX_BOOST`."""
    uses = max(0, memory.use_count)
    used = uses / (uses + 2)
    share = (
        _FRESH * recency(memory, now, half_life_days)
        + _IMPORTANT * memory.importance
        + _USED * used
    )
    return MAX_BOOST * share


def decay_score(memory: Usage, now: float, half_life_days: float) -> float:
    """importance × recency × use factor: what `archive_stale` compares to `archive_below`."""
    return memory.importance * recency(memory, now, half_life_days) * use_factor(memory.use_count)
