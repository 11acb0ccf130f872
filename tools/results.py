"""Tool results as text: what the model reads and what the audit keeps.

MCP results are lists of content blocks. The model gets the text blocks as they are and a
one-line placeholder for anything binary; structured content stands in when a result has
no text. Long results are cut with a note that says so, so neither the model nor a person
reading the audit mistakes a cut result for the whole one.
"""

from __future__ import annotations

import json
from typing import Any

import mcp.types as mt


def result_text(result: mt.CallToolResult) -> str:
    """The result's content blocks joined as text."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        size = len(block.data) * 3 // 4
        return f"[{kind} {block.mime_type}, about {size} bytes, not shown]"
    if kind == "resource_link":
        return f"[resource {block.uri}]"
    if kind == "resource":
        text = getattr(block.resource, "text", None)
        return (
            text if isinstance(text, str) else f"[resource {block.resource.uri}, binary, not shown]"
        )
    return f"[{kind or 'unknown'} content, not shown]"


def cut(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to `limit` characters with a note saying so; and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}\n[… cut: {limit} of {len(text)} characters shown]", True
