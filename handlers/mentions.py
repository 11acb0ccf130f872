"""Mass mentions never leave the bot: `<!channel>`, `<!here>`, `<!everyone>`, user groups.

What the model writes (deliverables, notes, approval reasons, plans, subtask notes, file
summaries) and what people wrote reach Slack in the bot's name; a mass mention in it would
notify a whole channel or user group. Every Web API call that posts text goes through
`neutralize()` (the client in `handlers.slack_app` applies it), so there is one place on
the way out rather than one per message. Each mass mention becomes the text it reads as,
`@channel` or `@oncall`, with a word joiner (U+2060) after the `@`: it looks the same and
notifies nobody, neither as markup nor as the plain `@channel` that Slack links when asked
to (`link_names`). User mentions (`<@U…>`) and dates (`<!date^…>`) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

JOINER = "\u2060"

_SPECIAL = re.compile(r"<!(channel|here|everyone|group)\b[^>]*>", re.IGNORECASE)
_SUBTEAM = re.compile(r"<!subteam\^[A-Za-z0-9]+(?:[| ]@?([^>]*))?[^>]*>", re.IGNORECASE)
_PLAIN = re.compile(r"(?<![\w@])@(channel|here|everyone)\b", re.IGNORECASE)


def _group(match: re.Match[str]) -> str:
    label = (match.group(1) or "").strip() or "group"
    return f"@{JOINER}{label}"


def neutralize_text(text: str) -> str:
    """`text` with every mass mention turned into plain text that notifies nobody."""
    if "@" not in text and "<!" not in text:
        return text
    text = _SPECIAL.sub(lambda m: f"@{JOINER}{m.group(1).lower()}", text)
    text = _SUBTEAM.sub(_group, text)
    return _PLAIN.sub(lambda m: f"@{JOINER}{m.group(1)}", text)


def neutralize(obj: Any) -> Any:
    """A copy of `obj` (JSON-like data) with mass mentions neutralized in every string."""
    if isinstance(obj, str):
        return neutralize_text(obj)
    if isinstance(obj, Mapping):
        return {key: neutralize(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [neutralize(item) for item in obj]
    return obj
