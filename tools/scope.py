"""Which tools a task may use: the coworker's tool list intersected with the delegator's role.

A task never has more access than the person who delegated it. `[roles]` grants tools to
Slack users (`U…`) and user groups (`S…`); with no roles configured every tool is allowed.
With roles configured, a user in no role gets the role named "default" if there is one,
and nothing otherwise. Patterns are globs over `SERVER__TOOL` names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from bot.base.config import Config
from tools.catalog import ToolInfo

DEFAULT_ROLE = "default"


def allowed_globs(config: Config, user_id: str, user_groups: set[str]) -> list[str] | None:
    """The tool globs `user_id` may use; None means every tool (no roles configured)."""
    if not config.roles:
        return None
    ids = {user_id, *user_groups}
    roles = [role for role in config.roles.values() if ids.intersection(role.members)]
    if not roles:
        default = config.roles.get(DEFAULT_ROLE)
        roles = [default] if default is not None else []
    return list(dict.fromkeys(glob for role in roles for glob in role.tools))


def matches(name: str, globs: Iterable[str] | None) -> bool:
    """Whether `name` matches any glob; None matches everything."""
    return globs is None or any(fnmatchcase(name, glob) for glob in globs)


def scope_tools(
    tools: Sequence[ToolInfo],
    coworker_globs: Sequence[str] | None,
    delegator_globs: Sequence[str] | None,
) -> list[ToolInfo]:
    """The tools matching both the coworker's globs and the delegator's."""
    return [
        t for t in tools if matches(t.name, coworker_globs) and matches(t.name, delegator_globs)
    ]
