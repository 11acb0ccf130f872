"""Block Kit building and splitting at Slack's limits.

Model output is standard Markdown, shown with Block Kit's `markdown` block (which renders
it; 12,000 characters per message) instead of being hand-converted to mrkdwn. Text is
split on paragraph and line boundaries; a split inside a fenced code block closes the
fence and reopens it in the next part, so code never breaks.
"""

from __future__ import annotations

import json
from typing import Any

SECTION_LIMIT = 3000
MARKDOWN_LIMIT = 12_000
MESSAGE_BLOCKS = 50
FILE_THRESHOLD = 12_000


def split_markdown(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` chars, split at blank lines, then lines; fences kept whole."""
    parts: list[str] = []
    current = ""
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        for piece in _hard_wrap(line, limit - 8):
            reopen = f"{fence}\n" if fence else ""
            close = "\n```" if fence else ""
            if current and len(current) + len(piece) + len(close) > limit:
                parts.append(current.rstrip("\n") + close)
                current = reopen
            current += piece
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence else stripped
    if current.strip():
        parts.append(current.rstrip("\n"))
    return parts or [""]


def _hard_wrap(line: str, limit: int) -> list[str]:
    return [line[i : i + limit] for i in range(0, len(line), limit)] or [line]


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
        blocks.append(actions(
            f"plan:{task_id}",
            button("Approve", "plan_approve", v, "primary"),
            button("Edit", "plan_edit", v),
            button("Cancel", "task_cancel", v, "danger"),
        ))  # fmt: skip
    return blocks[:MESSAGE_BLOCKS]
