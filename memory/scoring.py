"""How memories are ranked and how they fade.

Recall fuses the vector and keyword rankings with reciprocal rank fusion (each list gives
`1 / (60 + rank)`, the constant from Cormack et al. 2009, which needs no score calibration
between bm25 and cosine), then multiplies by `retrieval_weight`. The weight has floors, so
a highly relevant old memory still beats a fresh irrelevant one: relevance decides, recency
and importance break near-ties.

Decay uses `decay_score`, which has no floors: unimportant, unused memories fade to zero.
Both measure age from the last use, or from creation for a memory never used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

RRF_K = 60
DAY = 86_400.0


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


def rrf(*rankings: Sequence[int]) -> dict[int, float]:
    """Reciprocal rank fusion of ranked id lists (best first)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, memory_id in enumerate(ranking, start=1):
            fused[memory_id] = fused.get(memory_id, 0.0) + 1.0 / (RRF_K + rank)
    return fused


def recency(memory: Usage, now: float, half_life_days: float) -> float:
    """1 when just used, halving every `half_life_days` since the last use (or creation)."""
    last = memory.last_used_at or memory.created_at
    age_days = max(0.0, now - last) / DAY
    return 0.5 ** (age_days / half_life_days)


def use_factor(use_count: int) -> float:
    """1 for a memory never used, growing slowly with each use."""
    return 1.0 + math.log1p(max(0, use_count))


def retrieval_weight(memory: Usage, now: float, half_life_days: float) -> float:
    """Multiplier on a memory's fused relevance: within [0.25, 1.5 × (1 + 0.1 ln(1+uses))]."""
    fresh = 0.5 + 0.5 * recency(memory, now, half_life_days)
    important = 0.5 + memory.importance
    used = 1.0 + 0.1 * math.log1p(max(0, memory.use_count))
    return fresh * important * used


def decay_score(memory: Usage, now: float, half_life_days: float) -> float:
    """importance × recency × use factor: what `archive_stale` compares to `archive_below`."""
    return memory.importance * recency(memory, now, half_life_days) * use_factor(memory.use_count)
