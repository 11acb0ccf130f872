"""Short replies to a person: ephemeral refusals and errors, never internals."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

NOT_YOURS = "Sorry, that's not yours to decide: only the person who delegated the task or a configured approver can."


async def ephemeral(client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
    """Tell only the clicking user; fall back silently if the channel is unknown."""
    user = (body.get("user") or {}).get("id")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    if not user or not channel:
        return
    thread = ((body.get("message") or {}).get("thread_ts")) or (body.get("container") or {}).get(
        "thread_ts"
    )
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread)
    except SlackApiError as exc:
        log.info("ephemeral reply failed: %s", exc.response.get("error"))
