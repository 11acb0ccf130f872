"""Keyword search on PostgreSQL: a generated `tsvector` with a GIN index, ranked by `ts_rank`.

`memories.content_tsv` is `to_tsvector('english', content)`, kept by PostgreSQL itself
(migration 0004), so a row and its words never disagree and a deleted row leaves the index
with it. The scope filter is in the same query as the match (`scope_tag = ANY(…)`, one tag
per visible scope, as on SQLite), so only rows the scope may see are ranked and returned.

Free text never reaches `to_tsquery` as syntax: the words are `\\w+` tokens
(`memory.keywords`), each quoted, OR-ed together. As on SQLite, a term found in more than
`COMMON_FRACTION` of memories is left out of the ranking query (it ranks little and costs
much), tested with a bounded `OFFSET cap LIMIT 1` and cached for `TTL` seconds; when every
term is common the keyword side abstains unless it is the only side.
"""

from __future__ import annotations

import time

from bot.base.db import Database
from memory.keywords import query_terms
from memory.records import Kind, Scope, Status

COMMON_FRACTION = 0.05
COMMON_MIN = 500
TTL = 600.0
_MAX_CACHED = 50_000
CONFIG = "english"


def tsquery(terms: list[str], op: str) -> str:
    """A `to_tsquery` text matching any (`|`) or all (`&`) of `terms`, each quoted."""
    return f" {op} ".join("'" + t.replace("'", "''").replace("\\", "") + "'" for t in terms)


class PostgresKeywordIndex:
    """Scoped `ts_rank` ranking over memories.content_tsv, skipping over-common terms."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._common: dict[str, tuple[bool, float]] = {}
        self._cap: tuple[int, float] = (COMMON_MIN, 0.0)

    async def ranking(
        self,
        query: str,
        scope: Scope,
        *,
        kind: Kind | None,
        statuses: tuple[Status, ...],
        limit: int,
        allow_common: bool,
    ) -> list[tuple[int, float]]:
        """(memory id, relevance) by keyword rank (`ts_rank`, higher is better), best first,
        among those `scope` may see."""
        terms = query_terms(query)
        selective = [t for t in terms if not await self._is_common(t)]
        if not selective:
            if not allow_common or not terms:
                return []
            selective = terms
        sql = (
            "SELECT m.id, ts_rank(m.content_tsv, q, 1) AS score FROM memories m, to_tsquery(?, ?) q"
            " WHERE m.content_tsv @@ q AND m.scope_tag = ANY(?) AND m.status = ANY(?)"
        )
        params: list[object] = [CONFIG, tsquery(selective, "|"), scope.tags(), list(statuses)]
        if kind is not None:
            sql += " AND m.kind = ?"
            params.append(kind)
        sql += " ORDER BY score DESC, m.id DESC LIMIT ?"
        rows = await self.db.fetchall(sql, [*params, limit])
        return [(int(r["id"]), float(r["score"])) for r in rows]

    async def containing_all(self, text: str, scope: Scope, limit: int) -> list[int]:
        """Ids of memories `scope` may see that have every word of `text` (for forget)."""
        terms = query_terms(text)
        if not terms:
            return []
        rows = await self.db.fetchall(
            "SELECT m.id FROM memories m, to_tsquery(?, ?) q"
            " WHERE m.content_tsv @@ q AND m.scope_tag = ANY(?)"
            " ORDER BY ts_rank(m.content_tsv, q, 1) DESC, m.id DESC LIMIT ?",
            (CONFIG, tsquery(terms, "&"), scope.tags(), limit),
        )
        return [int(r["id"]) for r in rows]

    async def _is_common(self, term: str) -> bool:
        now = time.monotonic()
        cached = self._common.get(term)
        if cached is not None and now - cached[1] < TTL:
            return cached[0]
        row = await self.db.fetchone(
            "SELECT 1 AS hit FROM memories WHERE content_tsv @@ to_tsquery(?, ?) LIMIT 1 OFFSET ?",
            (CONFIG, tsquery([term], "|"), await self._common_cap(now)),
        )
        if len(self._common) >= _MAX_CACHED:
            self._common.clear()
        self._common[term] = (row is not None, now)
        return row is not None

    async def _common_cap(self, now: float) -> int:
        """How many matching memories make a term common (from the table's size estimate)."""
        cap, at = self._cap
        if now - at >= 60:
            rows = await self.db.fetchval("SELECT max(id) FROM memories") or 0
            cap = max(COMMON_MIN, int(rows * COMMON_FRACTION))
            self._cap = (cap, now)
        return cap
