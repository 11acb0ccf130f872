"""Facts about Slack users for the core: who is a bot, which user groups and channels
someone is in, and their time zone.

Answers are cached for a few minutes; a Slack error is treated as "not a member" and
"not a bot is unknown → treat as bot", the safe side for approvals and for who sees what,
and as "time zone unknown" (times are then shown in UTC, labelled so).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)
TTL = 300.0


class SlackDirectory:
    def __init__(
        self, client: AsyncWebClient, groups: set[str], bot_user_id: str | None = None
    ) -> None:
        self.client = client
        self.groups = groups
        self.bot_user_id = bot_user_id
        self._users: dict[str, tuple[float, dict[str, Any]]] = {}
        self._members: dict[str, tuple[float, set[str]]] = {}
        self._channels: dict[str, tuple[float, set[str]]] = {}

    async def is_bot(self, user: str) -> bool:
        if user == self.bot_user_id or user.startswith("B"):
            return True
        info = await self._user(user)
        if info is None:
            return True
        return bool(info.get("is_bot") or info.get("is_app_user")) and info.get("id") != "USLACKBOT"

    async def tz_of(self, user: str) -> str | None:
        """The user's time zone as Slack has it (an IANA name such as "Europe/Paris")."""
        info = await self._user(user)
        tz = info.get("tz") if info is not None else None
        return tz if isinstance(tz, str) and tz else None

    async def _user(self, user: str) -> dict[str, Any] | None:
        """`users.info` of `user`, cached; None when Slack would not say."""
        cached = self._users.get(user)
        if cached and time.monotonic() - cached[0] < TTL:
            return cached[1]
        try:
            resp = await self.client.users_info(user=user)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user, exc.response.get("error"))
            return None
        info = resp.get("user")
        if not isinstance(info, dict):
            return None
        self._users[user] = (time.monotonic(), info)
        return info

    async def groups_of(self, user: str) -> set[str]:
        found = set()
        for group in self.groups:
            if user in await self._members_of(group):
                found.add(group)
        return found

    async def _members_of(self, group: str) -> set[str]:
        cached = self._members.get(group)
        if cached and time.monotonic() - cached[0] < TTL:
            return cached[1]
        try:
            resp = await self.client.usergroups_users_list(usergroup=group)
            members = set(resp.get("users") or [])
        except SlackApiError as exc:
            log.warning("usergroups.users.list failed for %s: %s", group, exc.response.get("error"))
            members = set()
        self._members[group] = (time.monotonic(), members)
        return members

    async def in_channel(self, user: str, channel: str) -> bool:
        """Whether `user` is a member of `channel` (unknown → False, the safe side)."""
        cached = self._channels.get(channel)
        if not cached or time.monotonic() - cached[0] >= TTL:
            members: set[str] = set()
            try:
                cursor = None
                while True:
                    resp = await self.client.conversations_members(
                        channel=channel, cursor=cursor, limit=1000
                    )
                    members.update(resp.get("members") or [])
                    cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                    if not cursor:
                        break
            except SlackApiError as exc:
                log.warning(
                    "conversations.members failed for %s: %s", channel, exc.response.get("error")
                )
            cached = (time.monotonic(), members)
            self._channels[channel] = cached
        return user in cached[1]
