"""The Slack adapter: one module per Slack surface, each with `register(app)`.

Handlers parse Slack input and call services in `bot/`; they run no SQL and call no MCP
server. The services (`handlers.services.Services`) reach them through Bolt's context, set
by a middleware in `register_handlers`.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from handlers import actions, commands, events, home, messages, views
from handlers.services import Next, Services


def register_handlers(app: AsyncApp, services: Services) -> None:
    """Make `services` available to every listener and register every surface."""

    async def inject(context: dict[str, Any], next: Next) -> None:
        context["coworker"] = services
        await next()

    app.middleware(inject)
    app.middleware(messages.keep_before_ack)
    for surface in (events, messages, actions, views, commands, home):
        surface.register(app)
    actions.register_fallback(app)
