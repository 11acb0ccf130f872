"""Words: tokens for keyword search, the FTS5 query built from free text, token Jaccard.

Free text from Slack must never reach FTS5 as query syntax (a stray `"` or `NEAR(` is a
syntax error, `-` a column filter), so each token is quoted and the tokens are OR-ed: bm25
then ranks rows matching more and rarer words higher. Stop words are dropped because they
match most rows and would make the keyword side slow without making it better.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TOKENS = 32

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
