"""The built-in slack and memory servers, through the gateway like any other server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.base.db import Database
from tests.tools.conftest import GatewayFactory, add_approval, audit_text, ctx_for
from tools.builtin.memory import memory_server
from tools.builtin.slack import slack_server
from tools.gateway import args_hash

TOKEN = "xoxb-1111-2222-builtintoken"

REPLIES = {
    "ok": True,
    "messages": [
        {
            "ts": "1.0",
            "user": "U1",
            "text": "can you check CI?",
            "thread_ts": "1.0",
            "reply_count": 1,
        },
        {"ts": "2.0", "user": "U2", "text": "on it", "thread_ts": "1.0"},
    ],
}
REPLIES_FIRST = {"ts": "1.0", "user": "U1", "text": "can you check CI?"}
USER = {
    "ok": True,
    "user": {
        "id": "U1",
        "name": "ann",
        "real_name": "Ann Lee",
        "tz": "Europe/Paris",
        "profile": {"display_name": "ann", "title": "SRE"},
    },
}


class SlackStandIn:
    """A local Slack Web API that records every call (method and form fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        fields: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            fields.update(await request.json())
        elif request.method == "POST":
            fields.update(await request.post())
        self.calls.append((method, fields))
        answers = {
            "conversations.replies": REPLIES,
            "conversations.history": {"ok": True, "messages": [REPLIES_FIRST]},
            "users.info": USER,
            "chat.postMessage": {"ok": True, "channel": fields.get("channel"), "ts": "3.0"},
        }
        return web.json_response(answers.get(method, {"ok": False, "error": "channel_not_found"}))


@pytest.fixture
async def slack_api() -> AsyncIterator[tuple[SlackStandIn, str]]:
    stand_in = SlackStandIn()
    app = web.Application()
    app.router.add_route("*", "/api/{method}", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield stand_in, f"http://127.0.0.1:{port}/api/"
    finally:
        await runner.cleanup()


async def test_slack_server_tools_and_tiers(
    make_gateway: GatewayFactory, slack_api: tuple[SlackStandIn, str], db: Database, task_id: int
) -> None:
    stand_in, url = slack_api
    gateway = await make_gateway(
        builtin={"slack": slack_server(AsyncWebClient(token=TOKEN, base_url=url))}
    )
    tiers = {t.name: (t.tier, t.tier_source) for t in gateway.tools()}
    assert tiers == {
        "slack__read_thread": ("auto", "annotation readOnlyHint"),
        "slack__channel_history": ("auto", "annotation readOnlyHint"),
        "slack__read_file": ("auto", "annotation readOnlyHint"),
        "slack__lookup_user": ("auto", "annotation readOnlyHint"),
        "slack__post_message": ("block", "default"),
    }

    thread = await asyncio.wait_for(
        gateway.call("slack__read_thread", {"channel": "C1", "thread_ts": "1.0"}, ctx_for(gateway)),
        5,
    )
    assert (
        thread.status == "ok"
        and "can you check CI?" in thread.content
        and "on it" in thread.content
    )
    user = await gateway.call("slack__lookup_user", {"user_id": "U1"}, ctx_for(gateway))
    assert json.loads(user.content)["title"] == "SRE"
    history = await gateway.call(
        "slack__channel_history", {"channel": "C1", "limit": 500}, ctx_for(gateway)
    )
    assert history.status == "invalid"  # over the declared maximum, never sent

    post = {"channel": "C1", "text": "CI is green"}
    refused = await gateway.call("slack__post_message", post, ctx_for(gateway))
    assert refused.status == "rejected"
    approval = await add_approval(
        db, task_id, "slack__post_message", args_hash("slack__post_message", post)
    )
    posted = await gateway.call(
        "slack__post_message", post, ctx_for(gateway, task_id=task_id, approval_id=approval)
    )
    assert posted.status == "ok" and json.loads(posted.content) == {"channel": "C1", "ts": "3.0"}

    methods = [m for m, _ in stand_in.calls]
    assert methods == ["conversations.replies", "users.info", "chat.postMessage"]
    assert stand_in.calls[-1][1]["text"] == "CI is green"
    assert TOKEN not in await audit_text(db)


async def test_slack_errors_are_short_and_safe(
    make_gateway: GatewayFactory, slack_api: tuple[SlackStandIn, str]
) -> None:
    _, url = slack_api
    client = AsyncWebClient(token=TOKEN, base_url=url.replace("/api/", "/nope/"))
    gateway = await make_gateway(builtin={"slack": slack_server(client)})
    result = await gateway.call("slack__lookup_user", {"user_id": "U1"}, ctx_for(gateway))
    assert result.is_error and result.status == "error"
    assert TOKEN not in result.content and "Traceback" not in result.content


async def test_memory_server(make_gateway: GatewayFactory) -> None:
    saved: list[tuple[str, str]] = []
    asked_by: list[int] = []

    async def remember(task_id: int, content: str, scope: str) -> int:
        asked_by.append(task_id)
        saved.append((content, scope))
        return len(saved)

    async def recall(task_id: int, query: str, limit: int) -> list[dict[str, Any]]:
        asked_by.append(task_id)
        return [{"fact": c, "scope": s} for c, s in saved if query in c][:limit]

    gateway = await make_gateway(builtin={"memory": memory_server(remember, recall)})
    tiers = {t.name: (t.tier, t.tier_source) for t in gateway.tools()}
    assert tiers == {
        "memory__remember": ("notify", "annotation destructiveHint=false"),
        "memory__recall": ("auto", "annotation readOnlyHint"),
    }
    done = await gateway.call(
        "memory__remember",
        {"content": "CI runs on Buildkite", "scope": "project"},
        ctx_for(gateway),
    )
    assert (done.status, done.content) == ("ok", "remembered (1)")
    bad = await gateway.call(
        "memory__remember", {"content": "x", "scope": "galaxy"}, ctx_for(gateway)
    )
    assert bad.status == "invalid" and "$.scope" in bad.content
    found = await gateway.call("memory__recall", {"query": "CI", "task_id": 7}, ctx_for(gateway))
    assert json.loads(found.content) == [{"fact": "CI runs on Buildkite", "scope": "project"}]
    assert saved == [("CI runs on Buildkite", "project")]
    assert asked_by == [0, 7]
