"""Pydantic's validation errors as the plain sentences an operator reads.

Pydantic says "Input should be greater than 0" or "Value error, …"; settings, `coworker.toml`
and `.mcp.json` errors say "must be greater than 0" after the name of the key. `plain()`
turns one error into that sentence; validators that need their own words raise `ValueError`
with them, and its text comes through unchanged. A file that does not parse is shown by its
offending line (`offending_line()`).
"""

from __future__ import annotations

from typing import Any

from pydantic_core import ErrorDetails

_FIXED = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "string_pattern_mismatch": "is not in the expected form",
}
_BOUNDS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
}


def plain(err: ErrorDetails, *, mapping: str = "table") -> str:
    """One validation error as a sentence to follow a key: "must be at least 1".

    `mapping` names what a dict is called where the error was made ("table" in TOML,
    "object" in JSON).
    """
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _FIXED:
        return _FIXED[kind]
    if kind in _BOUNDS:
        name, sentence = _BOUNDS[kind]
        bound = ctx.get(name)
        return sentence.format(
            int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        )
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"].removeprefix("Value error, "))
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"must be {ctx.get('expected_tags')}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a {mapping}"
    if kind in ("string_too_short", "too_short"):
        return _too_short(ctx)
    return _lower_first(err["msg"])


def offending_line(text: str, lineno: int) -> str:
    """Line `lineno` of `text`, trimmed for a one-line error message."""
    lines = text.splitlines()
    line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return line if len(line) <= 80 else line[:77] + "..."


def _too_short(ctx: dict[str, Any]) -> str:
    least = ctx.get("min_length", 1)
    return "must not be empty" if least == 1 else f"must have at least {least} items"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
