"""Messages: DMs and replies in a task's thread (and channel messages that mention us).

Slack sends an `app_mention` and a `message` event for the same message; intake dedupes on
channel + ts, so whichever comes first acts.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.intake import IncomingMessage
from handlers.services import Next, services

log = logging.getLogger(__name__)

IGNORED_SUBTYPES = {
    "message_changed",
    "message_deleted",
    "bot_message",
    "channel_join",
    "channel_leave",
    "thread_broadcast",
    "message_replied",
    "assistant_app_thread",
    "channel_topic",
    "channel_purpose",
    "channel_name",
    "pinned_item",
    "unpinned_item",
    "ekm_access_denied",
}
MAX_TEXT = 40_000


def incoming(
    body: dict[str, Any], event: dict[str, Any], bot_user_id: str | None, *, mention: bool = False
) -> IncomingMessage | None:
    """An `IncomingMessage` from a Slack event, or None for messages we never act on."""
    if event.get("bot_id") or event.get("subtype") in IGNORED_SUBTYPES:
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    if bot_user_id and user == bot_user_id:
        return None
    raw = event.get("text")
    text: str = raw if isinstance(raw, str) else ""
    mention = mention or bool(bot_user_id and f"<@{bot_user_id}>" in text)
    files = [f for f in event.get("files") or [] if isinstance(f, dict)]
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
    return IncomingMessage(
        event_id=str(body.get("event_id") or f"{channel}:{ts}"),
        channel=channel,
        user=user,
        text=text[:MAX_TEXT],
        cut_from=len(text) if len(text) > MAX_TEXT else None,
        ts=ts,
        thread_ts=thread_ts,
        team_id=body.get("team_id"),
        channel_type=event.get("channel_type"),
        mention=mention,
        files=files,
        assistant=bool(event.get("assistant_thread")),
    )


async def keep_before_ack(body: dict[str, Any], context: dict[str, Any], next: Next) -> None:
    """Write a message we will act on down before Bolt acknowledges it (`bot.inbox`).

    A global middleware runs before the listener's automatic acknowledgement, in Socket
    Mode and HTTP mode alike, so an acknowledged message is always on disk (or, with
    replicas on PostgreSQL, in the inbox table).
    """
    event = body.get("event") if body.get("type") == "event_callback" else None
    if isinstance(event, dict) and event.get("type") in ("app_mention", "message"):
        mention = event["type"] == "app_mention"
        msg = incoming(body, event, context.get("bot_user_id"), mention=mention)
        if msg is not None:
            await services(context).delegation.keep(msg)
    await next()


async def handle_message(
    body: dict[str, Any], event: dict[str, Any], context: dict[str, Any]
) -> None:
    msg = incoming(body, event, context.get("bot_user_id"))
    if msg is None:
        return
    await services(context).delegation.on_message(msg)


def register(app: AsyncApp) -> None:
    app.event("message")(handle_message)
