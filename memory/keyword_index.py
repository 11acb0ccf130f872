"""Keyword search on SQLite: FTS5 bm25 within a scope, without the terms too common to rank.

This module and `memory.vector_index` are SQLite's memory search: FTS5 SQL lives here and
nowhere else, and it reaches the database through the common interface like everything
else. The scope filter runs inside FTS5: each row's `scope_tag` column holds one token for
its scope, and the query ANDs the content terms with the scope's tags, so FTS5 only ranks
rows the scope may see. Kind and status are then checked on the joined row.

A term found in more than `COMMON_FRACTION` of memories has a low IDF, so it moves bm25
little, yet it makes FTS5 walk and rank a large part of the index (episode labels such as
"request" or "outcome" are in every episode). Such terms are dropped from the query. A term
is tested with `LIMIT 1 OFFSET cap`, whose cost is bounded by the cap (the terms not in
the cache in one round trip), and the answer is cached for `TTL` seconds (the limits and
the cache are `memory.keywords.CommonTerms`, shared with PostgreSQL). When every term
is common, the keyword side abstains if vectors can answer, and runs the full query in
keyword-only mode."""

from __future__ import annotations

import time
from typing import Any

from bot.base.db import Database, marks
from memory.keywords import (
    CommonTerms,
    any_of,
    fts_all_words,
    query_terms,
    quoted,
)
from memory.records import Kind, Scope, Status


class KeywordIndex:
    """Scoped bm25 ranking over memories_fts, with a cache of which terms are common."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._common = CommonTerms(db)

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
        """(memory id, relevance) by bm25, best first, among those `scope` may see."""
        terms = query_terms(query)
        common = await self._common_terms(terms)
        selective = [t for t in terms if t not in common]
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
        # FTS5's bm25 is lower for better matches: negated, higher is better.
        return [(r["id"], -r["bm25_score"]) for r in await self.db.fetchall(sql, [*params, limit])]

    async def containing_all(self, text: str, scope: Scope, limit: int) -> list[int]:
        """Ids of memories `scope` may see with every word of `text` (best first); [] for
        text without words (`/coworker forget <words>`)."""
        match = fts_all_words(text)
        if not match:
            return []
        where, params = scope.sql("m")
        rows = await self.db.fetchall(
            "SELECT m.id FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid"
            f" WHERE memories_fts MATCH ? AND {where}"
            " ORDER BY bm25(memories_fts, 1.0, 0.0) LIMIT ?",
            [f"content : ({match})", *params, limit],
        )
        return [r["id"] for r in rows]

    async def _common_terms(self, terms: list[str]) -> set[str]:
        """Which of `terms` are common, from the cache or (the rest) in one round trip."""
        now = time.monotonic()
        common, unknown = self._common.split(terms, now)
        if not unknown:
            return common
        cap = await self._common.cap(now)
        found = await self.db.batch(
            *(
                (
                    "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT 1 OFFSET ?",
                    (f"content : {quoted(term)}", cap),
                )
                for term in unknown
            )
        )
        return common | self._common.keep(
            {term: bool(rows) for term, rows in zip(unknown, found, strict=True)}, now
        )
