"""Splitting Markdown at Slack's limits without breaking code or characters.

Text is split at a paragraph break when one is near, else at a line; a split inside a
fenced code block closes the fence and reopens it in the next part, so code never breaks.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


def split_markdown(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` chars, split at a paragraph break when one is near, else at
    a line; a split inside a fenced code block closes it and opens it again in the next part.

    Fences follow CommonMark, except that any indentation is allowed (models indent fences
    under list items): three or more backticks (with no backtick after them, or it is
    inline code) or tildes; a fence closes only with the same character, at least as many,
    and nothing after. So inline code at the start of a line is no fence, and a
    four-backtick block may hold a three-backtick one.
    """
    splitter = _Splitter(limit)
    for line in text.splitlines(keepends=True):
        splitter.add(line)
    return splitter.finish()


_FENCE = re.compile(r"([ \t]*)(`{3,}|~{3,})(.*)")


@dataclass(frozen=True)
class _Fence:
    line: str  # the line that opened it, as written
    opener: str  # what opens it again in the next part (a long info string is dropped)
    indent: str
    marks: str  # its backticks or tildes: what closes it

    @property
    def closer(self) -> str:
        return "\n" + self.indent + self.marks

    def closed_by(self, line: str) -> bool:
        m = _FENCE.fullmatch(line.rstrip("\r\n"))
        return bool(
            m
            and m.group(2)[0] == self.marks[0]
            and len(m.group(2)) >= len(self.marks)
            and not m.group(3).strip()
        )


def _opens(line: str, limit: int) -> _Fence | None:
    m = _FENCE.fullmatch(line.rstrip("\r\n"))
    if m is None or (m.group(2)[0] == "`" and "`" in m.group(3)):
        return None
    indent, marks = m.group(1), m.group(2)
    opener = line if line.endswith("\n") else line + "\n"
    if len(opener) > limit // 4:
        opener = indent + marks + "\n"
    return _Fence(line=line, opener=opener, indent=indent, marks=marks)


class _Splitter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.current = ""
        self.fence: _Fence | None = None
        self.paragraph_end = 0  # in `current`: after the last blank line outside a fence
        self.fence_end = -1  # in `current`: just after the line that opened the fence

    def add(self, line: str) -> None:
        reopen = self.fence.opener if self.fence else ""
        close = self.fence.closer if self.fence else ""
        for piece in _hard_wrap(line, max(1, self.limit - len(reopen) - len(close))):
            if len(self.current) + len(piece) + len(close) > self.limit:
                self._split(len(piece))
            self.current += piece
        if self.fence is not None:
            if self.fence.closed_by(line):
                self.fence = None
        elif (opened := _opens(line, self.limit)) is not None:
            self.fence, self.fence_end = opened, len(self.current)
        elif not line.strip():
            self.paragraph_end = len(self.current)

    def _split(self, incoming: int) -> None:
        """End the current part before a piece of `incoming` chars."""
        fence, carry = self.fence, ""
        close, reopen = (fence.closer, fence.opener) if fence else ("", "")
        if fence is None and self.paragraph_end > len(self.current) // 2:
            rest = self.current[self.paragraph_end :]
            if len(rest) + incoming <= self.limit:  # the paragraph moves on with the piece
                self.current, carry = self.current[: self.paragraph_end], rest
        elif fence is not None and self.fence_end == len(self.current):  # no empty block
            self.current, close = self.current[: -len(fence.line)], ""
        if self.current.strip():  # never a part of blank lines only
            self.parts.append(self.current.strip("\r\n") + close)
        self.current, self.paragraph_end, self.fence_end = reopen + carry, 0, len(reopen)

    def finish(self) -> list[str]:
        if self.current.strip():
            self.parts.append(self.current.strip("\r\n"))
        return self.parts or [""]


def _hard_wrap(line: str, limit: int) -> list[str]:
    """`line` in pieces of at most `limit` chars: after a space when one is near the end of
    the window, and never inside a character sequence (an emoji with its modifiers, a flag,
    a letter with its accents)."""
    pieces = []
    while len(line) > limit:
        cut = line.rfind(" ", limit * 9 // 10, limit) + 1 or limit
        while cut > 0 and _joined(line, cut):
            cut -= 1
        cut = cut or limit  # no safe place in the window: cut at its end
        pieces.append(line[:cut])
        line = line[cut:]
    return [*pieces, line] if line else pieces


_JOINERS = frozenset("\u200d\ufe0e\ufe0f")


def _joined(text: str, i: int) -> bool:
    """Whether cutting `text` before index `i` would split one visible character."""
    this, before = text[i], text[i - 1]
    return (
        unicodedata.category(this) in ("Mn", "Mc", "Me")
        or this in _JOINERS
        or before == "\u200d"
        or "\U0001f3fb" <= this <= "\U0001f3ff"  # skin tones
        or ("\U0001f1e6" <= this <= "\U0001f1ff" and "\U0001f1e6" <= before <= "\U0001f1ff")
    )
