"""Words: tokens for keyword search, the FTS5 query built from free text, token Jaccard.

Free text from Slack must never reach FTS5 as query syntax (a stray `"` or `NEAR(` is a
syntax error, `-` a column filter), so each token is quoted and the tokens are OR-ed: bm25
then ranks rows matching more and rarer words higher. Stop words are dropped because they
match most rows and would make the keyword side slow without making it better.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.base.db import Database

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TOKENS = 32

#: a term in more than this share of memories (and at least COMMON_MIN of them) is common
COMMON_FRACTION = 0.05
COMMON_MIN = 500
#: seconds an answer on whether a term is common is kept
TTL = 600.0
_MAX_CACHED = 50_000

STOP_WORDS = frozenset(
    """a about after all also am an and any are as at be been before being but by can could
    did do does doing for from had has have having he her here him his how i if in into is it
    its me more most my no not of on once only or other our out over own please same she should
    so some such than that the their them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    yours""".split()
)


def tokens(text: str) -> list[str]:
    """Lower-cased words of `text` without stop words, in order."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def query_terms(text: str) -> list[str]:
    """The distinct tokens of `text`, in order, at most MAX_QUERY_TOKENS."""
    return list(dict.fromkeys(tokens(text)))[:MAX_QUERY_TOKENS]


def quoted(term: str) -> str:
    """A term as an FTS5 string, which FTS5 never reads as syntax."""
    return '"' + term.replace('"', '""') + '"'


def any_of(terms: list[str]) -> str:
    return " OR ".join(map(quoted, terms))


def fts_all_words(text: str) -> str | None:
    """An FTS5 MATCH expression requiring every token (for `/coworker forget <text>`)."""
    terms = query_terms(text)
    return " AND ".join(map(quoted, terms)) if terms else None


def normalised(text: str) -> str:
    """Tokens joined by single spaces: equal for texts that differ only in case and punctuation."""
    return " ".join(_WORD.findall(text.lower()))


def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity of two texts (0 when either has no tokens)."""
    sa, sb = set(tokens(a)), set(tokens(b))
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


class CommonTerms:
    """Which query terms are too common to rank, as each engine's keyword index finds out:
    each answer kept for `TTL` seconds, and the row count that makes a term common."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: dict[str, tuple[bool, float]] = {}
        self._cap: tuple[int, float] = (COMMON_MIN, 0.0)

    def split(self, terms: list[str], now: float) -> tuple[set[str], list[str]]:
        """(the terms known to be common, the terms not known either way)."""
        common, unknown = set(), []
        for term in terms:
            known = self._known.get(term)
            if known is None or now - known[1] >= TTL:
                unknown.append(term)
            elif known[0]:
                common.add(term)
        return common, unknown

    def keep(self, found: Mapping[str, bool], now: float) -> set[str]:
        """Remember what was found out; the terms found common."""
        if len(self._known) + len(found) > _MAX_CACHED:
            self._known.clear()
        for term, common in found.items():
            self._known[term] = (common, now)
        return {term for term, common in found.items() if common}

    async def cap(self, now: float) -> int:
        """How many matching memories make a term common (from the highest id, a cheap
        stand-in for the row count, read at most once a minute)."""
        cap, at = self._cap
        if now - at >= 60:
            rows = await self.db.fetchval("SELECT max(id) FROM memories") or 0
            cap = max(COMMON_MIN, int(rows * COMMON_FRACTION))
            self._cap = (cap, now)
        return cap
