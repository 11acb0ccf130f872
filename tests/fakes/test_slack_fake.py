"""FakeSlack, exercised through the real slack_sdk and slack_bolt clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    FakeSlack,
    app_mention,
    block_action,
    event_callback_body,
    form_body,
    post_signed,
    sign,
    slash_command,
)

pytestmark = pytest.mark.asyncio

BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as server:
        yield server


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


@pytest_asyncio.fixture
async def socket_client(slack: FakeSlack) -> AsyncIterator[SocketModeClient]:
    """A real Socket Mode client that acks every request with an empty payload."""
    web_client = AsyncWebClient(base_url=slack.api_url)  # the app token is passed per call
    socket = SocketModeClient(app_token=APP_TOKEN, web_client=web_client)

    async def ack(client: SocketModeClient, request: SocketModeRequest) -> None:
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    socket.socket_mode_request_listeners.append(ack)
    await socket.connect()
    try:
        yield socket
    finally:
        await socket.close()


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# ------------------------------------------------------------------ Web API


async def test_post_update_and_replies_round_trip(slack: FakeSlack, client: AsyncWebClient):
    parent = slack.add_message("C1", "please summarize CI", user="U7")
    posted = await client.chat_postMessage(
        channel="C1", text="Got it", blocks=[section("*Got it*")], thread_ts=parent["ts"]
    )
    await client.chat_update(channel="C1", ts=posted["ts"], text="Done", blocks=[section("Done")])
    replies = await client.conversations_replies(channel="C1", ts=parent["ts"])

    assert [m["text"] for m in replies["messages"]] == ["please summarize CI", "Done"]
    assert replies["messages"][0]["reply_count"] == 1
    reply = replies["messages"][1]
    assert reply["user"] == "UBOT" and reply["bot_id"] == "B0001"
    assert reply["blocks"] == [section("Done")] and reply["thread_ts"] == parent["ts"]
    assert [m["text"] for m in slack.thread("C1", parent["ts"])] == ["please summarize CI", "Done"]
    [call] = slack.calls_to("chat.postMessage")
    assert call.token == BOT_TOKEN and call.params["blocks"] == [section("*Got it*")]


async def test_timestamps_are_unique_and_increasing(client: AsyncWebClient):
    first = await client.chat_postMessage(channel="C1", text="one")
    second = await client.chat_postMessage(channel="C1", text="two")
    assert float(first["ts"]) < float(second["ts"])


async def test_rate_limit_is_retried_without_waiting(slack: FakeSlack, client: AsyncWebClient):
    slack.fail_next("chat.postMessage", times=2, status=429, retry_after=0)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))

    started = time.perf_counter()
    response = await client.chat_postMessage(channel="C1", text="hello")

    assert response["ok"] and time.perf_counter() - started < 1.0
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert [m["text"] for m in slack.messages] == ["hello"]


async def test_rate_limit_without_retry_handler_raises(slack: FakeSlack, client: AsyncWebClient):
    slack.fail_next("reactions.add", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        await client.reactions_add(channel="C1", timestamp="1.2", name="eyes")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.response["error"] == "ratelimited"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"blocks": [section("x")] * 51}, "invalid_blocks"),
        ({"blocks": [section("x" * 3001)]}, "invalid_blocks"),
        ({"blocks": [{"type": "markdown", "text": "x" * 12_001}]}, "invalid_blocks"),
        ({"text": "x" * 40_001}, "msg_too_long"),
    ],
)
async def test_slack_limits_are_enforced(
    slack: FakeSlack, client: AsyncWebClient, kwargs: dict[str, Any], error: str
):
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="C1", text=kwargs.pop("text", "fallback"), **kwargs)
    assert caught.value.response["error"] == error
    assert slack.messages == []


async def test_auth_and_channel_errors(slack: FakeSlack, client: AsyncWebClient):
    slack.missing_channels.add("C404")
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    cases = [
        (wrong.auth_test(), "invalid_auth"),
        (client.chat_postMessage(channel="C404", text="hi"), "channel_not_found"),
        (client.chat_update(channel="C1", ts="1.1", text="hi"), "message_not_found"),
        (client.api_call("chat.fly"), "unknown_method"),
    ]
    for call, error in cases:
        with pytest.raises(SlackApiError) as caught:
            await call
        assert caught.value.response["error"] == error


async def test_reactions_users_and_home(slack: FakeSlack, client: AsyncWebClient):
    message = slack.add_message("C1", "hi")
    slack.add_user("U9", "ada", is_admin=True, tz="Europe/Paris")
    await client.reactions_add(channel="C1", timestamp=message["ts"], name="eyes")
    with pytest.raises(SlackApiError, match="already_reacted"):
        await client.reactions_add(channel="C1", timestamp=message["ts"], name="eyes")
    user = (await client.users_info(user="U9"))["user"]
    dm = (await client.conversations_open(users="U9"))["channel"]["id"]
    await client.views_publish(user_id="U9", view={"type": "home", "blocks": [section("Tasks")]})

    assert slack.reactions == [("C1", message["ts"], "eyes")]
    assert user["is_admin"] and user["tz"] == "Europe/Paris"
    assert dm == "D9"
    assert slack.home_views["U9"]["blocks"] == [section("Tasks")]


async def test_files_upload_v2_round_trip(slack: FakeSlack, client: AsyncWebClient):
    response = await client.files_upload_v2(
        channel="C1",
        thread_ts="1700000000.000100",
        content="# Report\n",
        filename="report.md",
        title="Report",
    )
    file_id = response["file"]["id"]

    stored = slack.files[file_id]
    assert stored.content == b"# Report\n" and stored.title == "Report"
    assert (stored.channel_id, stored.thread_ts) == ("C1", "1700000000.000100")
    info = (await client.files_info(file=file_id))["file"]
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(info["url_private"], headers=headers) as download,
    ):
        assert await download.read() == b"# Report\n"


async def test_wait_for_times_out_with_the_recorded_methods(
    slack: FakeSlack, client: AsyncWebClient
):
    await client.auth_test()
    with pytest.raises(AssertionError, match=r"chat\.postMessage.*\['auth\.test'\]"):
        await slack.wait_for("chat.postMessage", timeout=0.05)


# -------------------------------------------------------------- Socket Mode


async def test_socket_mode_event_is_delivered_and_acked(
    slack: FakeSlack, socket_client: SocketModeClient
):
    await slack.wait_connected()
    envelope_id = await slack.send_event(app_mention("hello", user="U2"))
    ack = await slack.wait_for_ack(envelope_id)

    assert ack.envelope_id == envelope_id and ack.payload is None
    assert ack.latency is not None and 0 <= ack.latency < 1
    [connect] = slack.calls_to("apps.connections.open")
    assert connect.token == APP_TOKEN
    assert slack.messages[0]["text"] == "<@UBOT> hello"  # the mentioned message now exists


async def test_socket_mode_client_reconnects(slack: FakeSlack, socket_client: SocketModeClient):
    first = await slack.wait_connected()
    await slack.disconnect_clients()
    await slack.wait_connected(after=first)

    envelope_id = await slack.send_interactive(block_action("approve", "T-42"))
    assert (await slack.wait_for_ack(envelope_id)).envelope_id == envelope_id


async def test_bolt_app_answers_a_mention_in_the_thread(slack: FakeSlack, client: AsyncWebClient):
    app = AsyncApp(client=client)

    @app.event("app_mention")
    async def reply(event: dict[str, Any], say: Any) -> None:
        await say(text="Got it", thread_ts=event["ts"])

    @app.command("/coworker")
    async def command(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"you said {command['text']}")

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    await handler.connect_async()
    try:
        event = app_mention("summarize CI", user="U2")
        await slack.send_event(event)
        [call] = await slack.wait_for("chat.postMessage")
        command_ack = await slack.wait_for_ack(
            await slack.send_slash_command(slash_command("help"))
        )
    finally:
        await handler.close_async()

    assert call.params["thread_ts"] == event["ts"] and call.params["text"] == "Got it"
    assert command_ack.payload == {"text": "you said help"}


# ---------------------------------------------------------------- HTTP mode


async def test_sign_is_accepted_by_the_sdk_verifier():
    body = event_callback_body(app_mention("hi"))
    headers = sign(body, "secret")
    assert SignatureVerifier("secret").is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    old = sign(body, "secret", timestamp=int(time.time()) - 600)
    assert not SignatureVerifier("secret").is_valid_request(body, old)


async def test_post_signed_reaches_a_verifying_server():
    received: list[str] = []

    async def events(request: web.Request) -> web.Response:
        body = await request.text()
        if not SignatureVerifier("secret").is_valid_request(body, request.headers):
            return web.Response(status=401)
        received.append(body)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        form = form_body(block_action("approve", "T-42"))
        assert await post_signed(url, form, "secret", "application/x-www-form-urlencoded") == (
            200,
            "ok",
        )
        assert (await post_signed(url, "{}", "wrong"))[0] == 401
    finally:
        await runner.cleanup()
    payload = json.loads(parse_qs(received[0])["payload"][0])
    assert payload["actions"][0]["value"] == "T-42"


async def test_wait_connected_times_out_clearly(slack: FakeSlack):
    with pytest.raises(AssertionError, match="no Socket Mode connection"):
        await asyncio.wait_for(slack.wait_connected(timeout=0.05), 1)


async def test_envelopes_go_to_a_random_connection_or_the_one_asked_for():
    """Like Slack with several replicas connected: each envelope goes to one open
    connection, chosen at random; a test can also pick a replica's connection by its token."""
    tokens = ("xapp-r1", "xapp-r2", "xapp-r3")
    async with FakeSlack(
        bot_token=BOT_TOKEN, app_token=tokens[0], app_tokens=tokens[1:], dispatch="random", seed=3
    ) as slack:
        received: dict[str, list[str]] = {t: [] for t in tokens}
        sockets = []
        for token in tokens:
            socket = SocketModeClient(
                app_token=token, web_client=AsyncWebClient(base_url=slack.api_url)
            )

            async def ack(
                client: SocketModeClient, request: SocketModeRequest, token=token
            ) -> None:
                received[token].append(request.envelope_id)
                await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

            socket.socket_mode_request_listeners.append(ack)
            await socket.connect()
            sockets.append(socket)
        try:
            async with asyncio.timeout(5):
                while len(slack.open_connections()) < 3:
                    await asyncio.sleep(0.01)
            assert slack.open_connections() == dict.fromkeys(tokens, 1)
            sent = [await slack.send_event(app_mention(f"m{n}", user="U2")) for n in range(30)]
            for envelope_id in sent:
                await slack.wait_for_ack(envelope_id)
            assert all(len(ids) >= 3 for ids in received.values())  # spread over all three
            assert sorted(sum(received.values(), [])) == sorted(sent)  # each to one only
            chosen = await slack.send_interactive(block_action("approve", "T-1"), via="xapp-r2")
            await slack.wait_for_ack(chosen)
            assert chosen in received["xapp-r2"]
        finally:
            for socket in sockets:
                await socket.close()
