"""The built-in `slack` MCP server: read threads and channels, look people up, post.

Reading is annotated read-only (auto tier). `post_message` carries no annotations, so it
falls to `policy.default` (block unless the operator says otherwise): the coworker does
not speak in a channel on its own without a person agreeing or a rule allowing it.
Slack errors reach the model as the short Slack error code, never the token or a
traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

import aiohttp
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

Channel = Annotated[str, Field(description="Slack channel id, e.g. C0123ABCD")]
Ts = Annotated[
    str, Field(description="message timestamp of the thread's parent, e.g. 1712345678.000100")
]
UserId = Annotated[str, Field(description="Slack user id, e.g. U0123ABCD")]
FileId = Annotated[str, Field(description="Slack file id, e.g. F0123ABCD")]
MAX_FILE_BYTES = 512 * 1024
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml")
Limit = Annotated[int, Field(ge=1, le=200, description="how many messages, newest first")]


def slack_server(
    client: AsyncWebClient, *, name: str = "slack", max_messages: int = 200
) -> MCPServer:
    """An in-process MCP server over `client` (its token and base URL come from settings)."""
    server = MCPServer(name, instructions="Read and post in the Slack workspace Coworker is in.")

    @server.tool(annotations=READ_ONLY, description="Read every message of a thread, oldest first.")
    async def read_thread(channel: Channel, thread_ts: Ts) -> list[dict[str, Any]]:
        call = client.conversations_replies(channel=channel, ts=thread_ts, limit=max_messages)
        return _messages(await _slack(call))

    @server.tool(annotations=READ_ONLY, description="Read a channel's latest messages.")
    async def channel_history(channel: Channel, limit: Limit = 20) -> list[dict[str, Any]]:
        return _messages(await _slack(client.conversations_history(channel=channel, limit=limit)))

    @server.tool(annotations=READ_ONLY, description="Look up a person's name, title and time zone.")
    async def lookup_user(user_id: UserId) -> dict[str, Any]:
        return _user((await _slack(client.users_info(user=user_id))).get("user", {}))

    @server.tool(annotations=READ_ONLY, description="Read a text file shared with the request.")
    async def read_file(file_id: FileId) -> dict[str, Any]:
        info: dict[str, Any] = (await _slack(client.files_info(file=file_id))).get("file", {})
        mimetype = str(info.get("mimetype") or "")
        if not mimetype.startswith(TEXT_TYPES):
            raise ToolError(
                f"{info.get('name')} is {mimetype or 'binary'}; only text files can be read"
            )
        content = await _download(str(info.get("url_private") or ""), client.token or "")
        return {"name": info.get("name"), "mimetype": mimetype, "content": content}

    @server.tool(description="Post a message in a channel as Coworker.")
    async def post_message(
        channel: Channel, text: Annotated[str, Field(min_length=1)]
    ) -> dict[str, Any]:
        response = await _slack(client.chat_postMessage(channel=channel, text=text))
        return {"channel": response.get("channel"), "ts": response.get("ts")}

    return server


async def _slack(call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Await a Web API call; turn a failure into a tool error naming only Slack's error code."""
    try:
        return await call
    except SlackApiError as exc:
        data = exc.response.data
        code = data.get("error") if isinstance(data, dict) else None
        raise ToolError(f"Slack said: {code or f'HTTP {exc.response.status_code}'}") from None
    except (SlackClientError, OSError) as exc:
        raise ToolError(f"Slack could not be reached ({type(exc).__name__})") from None


async def _download(url: str, token: str) -> str:
    """A file's text with the bot token (capped); errors name only the HTTP status."""
    if not url:
        raise ToolError("the file has no download URL")
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp,
        ):
            if resp.status != 200:
                raise ToolError(f"Slack answered HTTP {resp.status} for the file")
            data = await resp.content.read(MAX_FILE_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ToolError(f"the file could not be downloaded ({type(exc).__name__})") from None
    text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
    return text + ("\n[… cut at 512 KB]" if len(data) > MAX_FILE_BYTES else "")


def _messages(response: AsyncSlackResponse) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = response.get("messages", [])
    return [_message(m) for m in messages]


def _message(m: dict[str, Any]) -> dict[str, Any]:
    out = {"ts": m.get("ts"), "user": m.get("user") or m.get("bot_id"), "text": m.get("text", "")}
    if m.get("thread_ts") and m.get("thread_ts") != m.get("ts"):
        out["thread_ts"] = m["thread_ts"]
    if m.get("reply_count"):
        out["reply_count"] = m["reply_count"]
    return out


def _user(u: dict[str, Any]) -> dict[str, Any]:
    profile = u.get("profile", {})
    return {
        "id": u.get("id"),
        "name": u.get("name"),
        "real_name": u.get("real_name") or profile.get("real_name"),
        "display_name": profile.get("display_name"),
        "title": profile.get("title"),
        "tz": u.get("tz"),
        "is_bot": u.get("is_bot", False),
        "deleted": u.get("deleted", False),
    }
