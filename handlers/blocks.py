"""Block Kit building and splitting at Slack's limits.

Model output is standard Markdown, shown with Block Kit's `markdown` block (which renders
it; 12,000 characters per message) instead of being hand-converted to mrkdwn. Text is
split at a paragraph break when one is near, else at a line; a split inside a fenced code
block closes the fence and reopens it in the next part, so code never breaks.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

SECTION_LIMIT = 3000
MARKDOWN_LIMIT = 12_000
MESSAGE_BLOCKS = 50
FILE_THRESHOLD = 12_000
#: What a deliverable's last message carries besides its text: the checks (a context block,
#: cut at SECTION_LIMIT) and the feedback buttons, as JSON.
TAIL_ROOM = SECTION_LIMIT + 500


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


def markdown(text: str) -> dict[str, Any]:
    return {"type": "markdown", "text": text}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style:
        b["style"] = style
    return b


def actions(block_id: str, *buttons: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "block_id": block_id, "elements": list(buttons)}


def code(obj: Any, limit: int = 2500) -> str:
    """Arguments as a fenced JSON block, cut to fit a section."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + "\n… (cut)"
    return f"```\n{text}\n```"


def escape(text: str) -> str:
    """Escape Slack's control characters in user-provided text shown as mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plan_blocks(
    ref: str, plan: dict[str, Any], budget_usd: float, needs_approval: bool, task_id: int
) -> list[dict[str, Any]]:
    lines = [f"*Plan for {ref}*: {escape(plan.get('summary', ''))}", ""]
    for i, step in enumerate(plan.get("steps", []), 1):
        tools = f" — `{'`, `'.join(step['tools'])}`" if step.get("tools") else ""
        stop = "  ⏸ _stops for approval_" if step.get("approval") else ""
        lines.append(f"{i}. {escape(step['what'])}{tools}{stop}")
    lines.append("")
    lines.append(f"Estimate ~{plan.get('estimate_minutes', '?')} min · budget ${budget_usd:.2f}")
    blocks = [section(part) for part in split_markdown("\n".join(lines), SECTION_LIMIT)]
    if needs_approval:
        v = str(task_id)
        blocks.append(
            actions(
                f"plan:{task_id}",
                button("Approve", "plan_approve", v, "primary"),
                button("Edit", "plan_edit", v),
                button("Cancel", "task_cancel", v, "danger"),
            )
        )
    return blocks[:MESSAGE_BLOCKS]
