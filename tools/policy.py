"""Approval tiers: which tool calls run at once, run and tell, or wait for a person.

`ApprovalPolicy.resolve(name, annotations)` decides, in this order:

1. A rule in `[policy.tools]` whose glob matches the tool's `SERVER__TOOL` name. When several
   match, the most specific wins: an exact name (no wildcard) beats any glob; among globs,
   the one with the most literal (non-wildcard) characters wins, so `github__merge_*` beats
   `github__*`, which beats `*`. Rules equally specific that disagree resolve to the stricter
   tier (block > notify > auto), so an ambiguous configuration never loosens anything.
2. The MCP tool annotations, read as the MCP spec defines them: `readOnlyHint: true` → auto;
   otherwise `destructiveHint: false` → notify; otherwise block (the spec's defaults are
   `readOnlyHint: false`, `destructiveHint: true`). A tool whose annotations carry neither
   hint has said nothing about its effects and falls through to 3.
3. `policy.default`.

The inputs are the operator's configuration and what the server declared when its tools
were listed, nothing else: arguments, messages and tool results never reach this code, so
nothing a model reads or writes can lower a tier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from bot.base.config import PolicyConfig, Tier

_WILDCARDS = re.compile(r"\*|\?|\[[^\]]*\]")
_STRICTNESS: dict[str, int] = {"auto": 0, "notify": 1, "block": 2}


def is_glob(pattern: str) -> bool:
    return bool(_WILDCARDS.search(pattern))


def stricter(a: Tier, b: Tier) -> Tier:
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


def _specificity(pattern: str) -> tuple[int, int]:
    """Sort key, most specific first: exact names, then the most literal characters."""
    return (0 if is_glob(pattern) else 1, len(_WILDCARDS.sub("", pattern)))


class ApprovalPolicy:
    """Resolves a tool's tier from `[policy]` and its MCP annotations."""

    def __init__(self, config: PolicyConfig) -> None:
        self._default: Tier = config.default
        self._rules = sorted(config.tools.items(), key=lambda r: _specificity(r[0]), reverse=True)

    def resolve(self, name: str, annotations: Mapping[str, Any] | None) -> tuple[Tier, str]:
        """The tier of tool `name` and a readable note of what set it."""
        rule = self._rule_for(name)
        if rule is not None:
            return rule[1], f'rule "{rule[0]}"'
        hinted = _from_annotations(annotations or {})
        if hinted is not None:
            return hinted
        return self._default, "default"

    def _rule_for(self, name: str) -> tuple[str, Tier] | None:
        best: tuple[str, Tier] | None = None
        for pattern, tier in self._rules:
            if not fnmatchcase(name, pattern):
                continue
            if best is None:
                best = (pattern, tier)
            elif _specificity(pattern) == _specificity(best[0]):
                if _STRICTNESS[tier] > _STRICTNESS[best[1]]:
                    best = (pattern, tier)
            else:
                break
        return best


def _from_annotations(annotations: Mapping[str, Any]) -> tuple[Tier, str] | None:
    read_only = annotations.get("readOnlyHint")
    destructive = annotations.get("destructiveHint")
    if read_only is True:
        return "auto", "annotation readOnlyHint"
    if destructive is False:
        return "notify", "annotation destructiveHint=false"
    if destructive is True:
        return "block", "annotation destructiveHint"
    if read_only is False:
        return "block", "annotation readOnlyHint=false (destructiveHint defaults to true)"
    return None
