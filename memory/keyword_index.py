"""Keyword search: FTS5 bm25 within a scope, without the terms too common to rank.

The search runs on the database thread (`Database.run_sync`), so recall does its vector
and keyword searches in one hop. The scope filter runs inside FTS5: each row's `scope_tag`
column holds one token for its scope, and the query ANDs the content terms with the
scope's tags, so FTS5 only ranks rows the scope may see. Kind and status are then checked
on the joined row.

A term found in more than `COMMON_FRACTION` of memories has a low IDF, so it moves bm25
little, yet it makes FTS5 walk and rank a large part of the index (episode labels such as
"request" or "outcome" are in every episode). Such terms are dropped from the query. A term
is tested with `LIMIT 1 OFFSET cap`, whose cost is bounded by the cap, and the answer is
cached for `TTL` seconds. When every term is common, the keyword side abstains if vectors
can answer, and runs the full query in keyword-only mode.
"""

from __future__ import annotations

import time
from typing import Any

from bot.base.db import Database, marks
from memory.keywords import any_of, query_terms, quoted
from memory.records import Kind, Scope, Status

COMMON_FRACTION = 0.05
COMMON_MIN = 500
TTL = 600.0
_MAX_CACHED = 50_000


class KeywordIndex:
    """Scoped bm25 ranking over memories_fts, with a cache of which terms are common."""

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
    ) -> list[int]:
        """Memory ids by bm25, best first, among those `scope` may see."""
        hits: list[tuple[int, float]] = await self.db.run_sync(
            lambda conn: self.ranking_on(
                conn,
                query,
                scope,
                kind=kind,
                statuses=statuses,
                limit=limit,
                allow_common=allow_common,
            )
        )
        return [memory_id for memory_id, _ in hits]

    def ranking_on(
        self,
        conn: Any,
        query: str,
        scope: Scope,
        *,
        kind: Kind | None,
        statuses: tuple[Status, ...],
        limit: int,
        allow_common: bool,
    ) -> list[tuple[int, float]]:
        """(memory id, relevance) by bm25, best first: `ranking()` on the database thread.

        FTS5's bm25 is lower for better matches; it is negated so that higher is better.
        """
        terms = query_terms(query)
        selective = [t for t in terms if not self._is_common(conn, t)]
        if not selective:
            if not allow_common or not terms:
                return []
            selective = terms
        match = f"content : ({any_of(selective)}) AND scope_tag : ({any_of(scope.tags())})"
        sql = (
            "SELECT m.id, bm25(memories_fts, 1.0, 0.0) AS bm25_score"
            " FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid"
            f" WHERE memories_fts MATCH ? AND m.status IN ({marks(len(statuses))})"
        )
        params: list[Any] = [match, *statuses]
        if kind is not None:
            sql += " AND m.kind = ?"
            params.append(kind)
        sql += " ORDER BY bm25_score LIMIT ?"
        return [(r["id"], -r["bm25_score"]) for r in conn.execute(sql, [*params, limit])]

    def _is_common(self, conn: Any, term: str) -> bool:
        now = time.monotonic()
        cached = self._common.get(term)
        if cached is not None and now - cached[1] < TTL:
            return cached[0]
        row = conn.execute(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT 1 OFFSET ?",
            (f"content : {quoted(term)}", self._common_cap(conn, now)),
        ).fetchone()
        if len(self._common) >= _MAX_CACHED:
            self._common.clear()
        self._common[term] = (row is not None, now)
        return row is not None

    def _common_cap(self, conn: Any, now: float) -> int:
        """How many matching memories make a term common (from an approximate row count)."""
        cap, at = self._cap
        if now - at >= 60:
            rows = conn.execute("SELECT max(id) FROM memories").fetchone()[0] or 0
            cap = max(COMMON_MIN, int(rows * COMMON_FRACTION))
            self._cap = (cap, now)
        return cap
