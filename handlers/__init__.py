"""The Slack adapter: one module per Slack surface, each with `register(app)`.

Handlers parse Slack input and call services in `bot/`; they run no SQL and call no MCP
server. The services (`handlers.services.Services`) reach them through Bolt's context, set
by a middleware in `register_handlers`.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncRespond
from slack_bolt.response import BoltResponse

from handlers import actions, commands, events, home, messages, views
from handlers.services import Next, Services

log = logging.getLogger(__name__)

FOREIGN = "This coworker works for another Slack workspace, so it can't act on this."


def workspace_of(body: dict[str, Any]) -> str | None:
    """The workspace a request comes from: events and commands name it at the top, clicks
    and modal submissions in `team` (or, org-wide, in the user)."""
    team = body.get("team")
    for found in (
        body.get("team_id"),
        team.get("id") if isinstance(team, dict) else team,
        (body.get("user") or {}).get("team_id") if isinstance(body.get("user"), dict) else None,
    ):
        if isinstance(found, str) and found:
            return found
    return None


def register_handlers(app: AsyncApp, services: Services) -> None:
    """Make `services` available to every listener and register every surface."""

    async def inject(context: dict[str, Any], next: Next) -> None:
        context["coworker"] = services
        await next()

    async def only_our_workspace(
        body: dict[str, Any], next: Next, respond: AsyncRespond
    ) -> BoltResponse | None:
        """A request from another workspace is acknowledged and does nothing, on every
        surface (events, commands, clicks, modal submissions) alike; a command is told why."""
        ours = services.team_id
        if ours is None or workspace_of(body) == ours:
            await next()
            return None
        log.info("ignored a Slack request from a foreign team")
        if body.get("command") and body.get("response_url"):
            await respond(text=FOREIGN, response_type="ephemeral")
        return BoltResponse(status=200, body="")

    app.middleware(inject)
    app.middleware(only_our_workspace)
    app.middleware(messages.keep_before_ack)
    for surface in (events, messages, actions, views, commands, home):
        surface.register(app)
    actions.register_fallback(app)
