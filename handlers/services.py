"""What a Slack handler may call: the services `bot.app.build()` wires, as a Protocol.

Bolt hands listeners a plain `context` dict; `register_handlers` puts the services in it
and `services(context)` gives them back typed, so mypy and a reader see what a handler
reaches: `Delegation` for tasks and approvals (decisions go through `Delegation.decide`
only), `TeamMemory` for facts, `Connections` for people's per-user servers, the notifier
for fact messages and Connect links; no database, no MCP server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import Directory
from bot.connections import Connections
from bot.delegation import Delegation
from bot.team_memory import TeamMemory
from handlers.notifier import SlackNotifier

#: An extra App Home section: the blocks it shows a user.
HomeSection = Callable[[str], Awaitable[list[dict[str, Any]]]]
#: Bolt's `next` in a middleware: runs the rest of the chain.
Next = Callable[[], Awaitable[None]]


class Services(Protocol):
    """The services a handler may call (read-only: handlers never replace them)."""

    @property
    def team_id(self) -> str | None:
        """The workspace this bot belongs to; clicks from another are ignored."""

    @property
    def slack(self) -> AsyncWebClient: ...

    @property
    def delegation(self) -> Delegation: ...

    @property
    def memory(self) -> TeamMemory: ...

    @property
    def connections(self) -> Connections:
        """People's connections to per-user MCP servers (Connect links, callbacks)."""

    @property
    def notifier(self) -> SlackNotifier: ...

    @property
    def directory(self) -> Directory: ...

    @property
    def home_sections(self) -> list[HomeSection]: ...


def services(context: dict[str, Any]) -> Services:
    """The services in a listener's context (put there by `register_handlers`)."""
    return cast(Services, context["coworker"])
