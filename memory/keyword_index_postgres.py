"""Keyword search on PostgreSQL: a generated `tsvector` with a GIN index, ranked by `ts_rank`.

`memories.content_tsv` is `to_tsvector('english', content)`, kept by PostgreSQL itself
(migration 0004), so a row and its words never disagree and a deleted row leaves the index
with it. The scope filter is in the same query as the match (`scope_tag = ANY(…)`, one tag
per visible scope, as on SQLite), so only rows the scope may see are ranked and returned.

Free text never reaches `to_tsquery` as syntax: the words are `\\w+` tokens
(`memory.keywords`), each quoted, OR-ed together. As on SQLite, a term found in more than
`COMMON_FRACTION` of memories is left out of the ranking query (it ranks little and costs
much), and the answer is cached for `TTL` seconds; when every term is common the keyword
side abstains unless it is the only side. PostgreSQL already knows which words are
frequent: ANALYZE (and autovacuum) keep the most common words of `content_tsv` with their
frequencies in `pg_stats`, so the terms a query has not met before are looked up there, in
one round trip. Before the table's first ANALYZE, each such term's rows are counted instead,
up to the cap (`OFFSET cap LIMIT 1`), which walks up to that many rows per term.
"""

from __future__ import annotations

import time

from bot.base.db import Database
from memory.keywords import CommonTerms, query_terms
from memory.records import Kind, Scope, Status

#: seconds the list of frequent words read from the statistics is kept
STATS_TTL = 60.0
CONFIG = "english"


def tsquery(terms: list[str], op: str) -> str:
    """A `to_tsquery` text matching any (`|`) or all (`&`) of `terms`, each quoted."""
    return f" {op} ".join("'" + t.replace("'", "''").replace("\\", "") + "'" for t in terms)


class PostgresKeywordIndex:
    """Scoped `ts_rank` ranking over memories.content_tsv, skipping over-common terms."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._common = CommonTerms(db)
        self._frequent: tuple[set[str] | None, float] = (None, -STATS_TTL)

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
        common = await self._common_terms(terms)
        selective = [t for t in terms if t not in common]
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

    async def _common_terms(self, terms: list[str]) -> set[str]:
        """Which of `terms` are common: from the cache, else all the rest in one round trip."""
        now = time.monotonic()
        common, unknown = self._common.split(terms, now)
        if not unknown:
            return common
        cap = await self._common.cap(now)
        frequent = await self._frequent_lexemes(now, cap)
        if frequent is None:  # no statistics yet: count each term's rows, up to the cap
            rows = await self.db.fetchall(
                "SELECT t.term, EXISTS (SELECT 1 FROM memories"
                " WHERE content_tsv @@ to_tsquery(?, t.query) OFFSET ? LIMIT 1) AS common"
                " FROM unnest(CAST(? AS text[]), CAST(? AS text[])) AS t(term, query)",
                [CONFIG, cap, unknown, [tsquery([t], "|") for t in unknown]],
            )
            found = {r["term"]: bool(r["common"]) for r in rows}
        else:  # a term is common when every word it stems to is
            rows = await self.db.fetchall(
                "SELECT t.term, tsvector_to_array(to_tsvector(?, t.term)) AS lexemes"
                " FROM unnest(CAST(? AS text[])) AS t(term)",
                [CONFIG, unknown],
            )
            found = {r["term"]: bool(r["lexemes"]) and set(r["lexemes"]) <= frequent for r in rows}
        return common | self._common.keep({t: found.get(t, False) for t in unknown}, now)

    async def _frequent_lexemes(self, now: float, cap: int) -> set[str] | None:
        """The words in more than `cap` memories, from the planner's statistics on
        `content_tsv` (`pg_stats.most_common_elems`, kept by ANALYZE and autovacuum);
        None before the table was first analysed."""
        known, at = self._frequent
        if now - at < STATS_TTL:  # the answer "no statistics yet" is kept as long
            return known
        rows = await self.db.fetchall(
            "SELECT e.word FROM pg_stats s JOIN pg_class c ON c.oid = to_regclass('memories'),"
            " unnest(CAST(CAST(s.most_common_elems AS text) AS text[]),"
            " s.most_common_elem_freqs) AS e(word, freq)"
            " WHERE s.schemaname = current_schema() AND s.tablename = 'memories'"
            " AND s.attname = 'content_tsv' AND e.word IS NOT NULL AND e.freq * c.reltuples > ?",
            [cap],
        )
        analysed = bool(
            rows
            or await self.db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema()"
                " AND tablename = 'memories' AND attname = 'content_tsv')"
            )
        )
        self._frequent = ({r["word"] for r in rows} if analysed else None, now)
        return self._frequent[0]
