"""Events: mentions, and the AI assistant thread surface."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.messages import incoming
from handlers.services import services

log = logging.getLogger(__name__)

SUGGESTED_PROMPTS = [
    {"title": "Summarize a thread", "message": "Summarize the discussion in #general today"},
    {"title": "Triage bugs", "message": "Triage yesterday's new bug reports"},
    {"title": "Draft a doc", "message": "Draft release notes from this week's merged PRs"},
]


async def handle_mention(
    body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]
) -> None:
    msg = incoming(body, event, context.get("bot_user_id"), mention=True)
    if msg is not None:
        await services(context).delegation.on_message(msg)


async def handle_assistant_thread_started(event: dict[str, Any], client: AsyncWebClient) -> None:
    thread = event.get("assistant_thread") or {}
    channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
    if not channel or not thread_ts:
        return
    try:
        await client.assistant_threads_setSuggestedPrompts(
            channel_id=channel,
            thread_ts=thread_ts,
            prompts=SUGGESTED_PROMPTS,
            title="What should I work on?",
        )
    except SlackApiError as exc:
        log.info("suggested prompts not set: %s", exc.response.get("error"))


def register(app: AsyncApp) -> None:
    app.event("app_mention")(handle_mention)
    app.event("assistant_thread_started")(handle_assistant_thread_started)
    app.event("assistant_thread_context_changed")(_ignore)


async def _ignore() -> None:
    return None
