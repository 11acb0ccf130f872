"""Hubness: each memory's closeness to its own neighbourhood, taken out of vector recall.

Embedding models put some texts close to everything ("hubs": "Thanks, see you tomorrow!",
or one of many near-identical status reports), and a hub is among the nearest neighbours of
many queries it does not answer. Centring the query on the mean memory
(`memory.vector_index`) subtracts each memory's similarity to the mean memory, which is
its average similarity to all of them; a memory that sits in a dense corner of the store is
a hub there although the average over everything says little about it. So each memory also
gets a term of its own, its mean cosine to its `K` nearest neighbours (the local scaling of
cross-domain similarity local scaling, Conneau et al., 2018), and the vector search ranks by
q·d - hub(d) instead of q·d - mean·d.

What is stored (`memories.hubness`) is the difference between the two, hub(d) - mean·d, so
the search subtracts it from the centred similarity it already has, with no vector read.
NULL means "not worked out": a new memory, a memory whose vector changed, or one in a scope
with fewer than `MIN_NEIGHBOURS` others; such a memory is given the mean term of the search's
other candidates (none subtracted would favour it over all of them), and when no candidate
has a term the centred similarity ranks alone. The
neighbours are the memories of the same kind in the same scope (team, one project, one
person), as embedded by the current model.

Measured on the LoCoMo dev conversations (README, "Memory quality"), with K = 50 instead of
the mean: vector-only recall@10 0.602 -> 0.636, hybrid 0.748 -> 0.758 (offline, before it
was built; K = 20-100 within 0.003 of it).

When: `refresh()` works out the missing terms, then the oldest again (a memory's
neighbourhood fills as memories arrive), `BATCH` at a time on the leader every two minutes,
and all of them after `memory import`. It is a KNN search and a few reads per memory, so it
runs in one place in batches rather than on every replica as each task ends: a new memory
waits up to a few minutes for its term, with the candidates' mean term meanwhile.
"""

from __future__ import annotations

import logging
import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.base import clock
from bot.base.db import marks
from memory.records import MemoryScope, Scope, scope_key
from memory.scoring import Scored

if TYPE_CHECKING:
    from memory.store import MemoryStore

log = logging.getLogger(__name__)

#: neighbours a memory's term is the mean cosine of
K = 50
#: fewer neighbours than this in its scope: no term (the centred similarity alone)
MIN_NEIGHBOURS = 10
#: memories worked out per `refresh()` from the scheduler, and how old a term may get
#: before it is worked out again
BATCH = 200
MAX_AGE = 7 * 86400.0


@dataclass(frozen=True)
class OneScope(Scope):
    """Exactly one scope's memories (a memory's own neighbourhood), not what a task sees."""

    scope: MemoryScope = "team"

    def keys(self) -> list[str]:
        return [scope_key(self.scope, self.project, self.user_id)]

    def sql(self, alias: str = "memories") -> tuple[str, list[Any]]:
        if self.scope == "project":
            return f"({alias}.scope = 'project' AND {alias}.project = ?)", [self.project]
        if self.scope == "user":
            return f"({alias}.scope = 'user' AND {alias}.user_id = ?)", [self.user_id]
        return f"({alias}.scope = 'team')", []


async def adjust(store: MemoryStore, hits: Scored, centred: bytes) -> Scored:
    """The vector search's hits (searched with the `centred` query) ranked by similarity
    less each memory's stored term, best first."""
    if not hits:
        return hits
    ids = [memory_id for memory_id, _ in hits]
    rows = await store.db.fetchall(
        f"SELECT id, hubness FROM memories WHERE id IN ({marks(len(ids))}) AND hubness IS NOT NULL",
        ids,
    )
    terms = {int(r["id"]): float(r["hubness"]) for r in rows}
    if not terms:
        return hits
    # A memory without a term (new, or in a small scope) gets the candidates' mean term:
    # with none subtracted it would gain on every memory that has one.
    typical = math.fsum(terms.values()) / len(terms)
    dots = store.vectors.dot_products(hits, centred)
    adjusted = [(memory_id, dot - terms.get(memory_id, typical)) for memory_id, dot in dots]
    return sorted(adjusted, key=lambda hit: hit[1], reverse=True)


async def refresh(store: MemoryStore, *, limit: int | None = BATCH) -> int:
    """Work out the terms of the memories without one, then of those older than `MAX_AGE`,
    oldest first, at most `limit` (None: all of them), `BATCH` per transaction. How many
    were written."""
    done = 0
    while store.vectors.ready and (limit is None or done < limit):
        batch = BATCH if limit is None else min(BATCH, limit - done)
        rows = await store.db.fetchall(
            "SELECT id, kind, scope, project, user_id FROM memories"
            " WHERE embedded_by = ? AND (hubness_at IS NULL OR hubness_at < ?)"
            " ORDER BY hubness_at IS NOT NULL, hubness_at, id LIMIT ?",
            (store.vectors.signature, clock.now() - MAX_AGE, batch),
        )
        if not rows:
            break
        written = await _terms(store, rows)
        async with store.db.transaction() as tx:
            await tx.executemany(
                "UPDATE memories SET hubness = ?, hubness_at = ? WHERE id = ?", written
            )
        done += len(written)
    return done


async def _terms(store: MemoryStore, rows: list[Any]) -> list[tuple[float | None, float, int]]:
    """(term, when, memory id) for each row; None where the scope is too small for one."""
    vectors = store.vectors
    mean = await vectors.mean()
    blobs = await vectors.stored([int(r["id"]) for r in rows])
    written: list[tuple[float | None, float, int]] = []
    for row in rows:
        memory_id = int(row["id"])
        term = None
        if (blob := blobs.get(memory_id)) is not None:  # else forgotten meanwhile
            neighbours = await vectors.nearest(
                blob,
                K + 1,
                scope=OneScope(row["project"], row["user_id"], row["scope"]),
                kind=row["kind"],
                statuses=("active", "proposed"),
            )
            similar = [s for other, s in neighbours if other != memory_id][:K]
            if len(similar) >= MIN_NEIGHBOURS:
                term = math.fsum(similar) / len(similar) - _dot(mean, blob)
        written.append((term, clock.now(), memory_id))
    return written


def _dot(mean: list[float] | None, blob: bytes) -> float:
    if mean is None:
        return 0.0
    vector = array("f", blob)
    if len(vector) != len(mean):
        return 0.0
    return math.fsum(m * v for m, v in zip(mean, vector, strict=True))
