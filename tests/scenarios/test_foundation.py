"""Issue 3: the first end-to-end path over Socket Mode and HTTP mode."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.fakes.slack import app_mention, event_callback_body, post_signed
from tests.scenarios.conftest import plan
from tests.scenarios.harness import SIGNING_SECRET, Harness


async def test_mention_is_acked_reacted_replied_and_recorded(harness: Harness) -> None:
    harness.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    event = app_mention("hello there", user="U1", channel="C1")
    envelope = await harness.slack.send_event(event)
    ack = await harness.slack.wait_for_ack(envelope)
    assert ack.envelope_id == envelope
    [reaction] = await harness.slack.wait_for("reactions.add")
    assert reaction.params["name"] == "eyes" and reaction.params["timestamp"] == event["ts"]
    [reply] = await harness.slack.wait_for(
        "chat.postMessage", lambda c: "Got it: task T-1" in c.params.get("text", "")
    )
    assert reply.params["thread_ts"] == event["ts"]
    task = await harness.task(1)
    assert task.request == "hello there" and task.delegator == "U1" and task.channel == "C1"


async def test_the_bot_keeps_its_slack_connections_open_between_calls(harness: Harness) -> None:
    # slack_sdk without a session of its own opens a connection (TCP and TLS) per call.
    harness.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    for i in range(3):
        await harness.slack.wait_for_ack(
            await harness.slack.send_event(app_mention(f"question {i}", user="U1", channel="C1"))
        )
        await harness.wait_status("awaiting_plan_approval", task_id=i + 1)
        harness.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    calls = [c for c in harness.slack.calls if c.method.startswith(("chat.", "reactions."))]
    assert len(calls) >= 9 and all(c.peer for c in calls)
    # One at a time, the calls share a connection; concurrent ones may open a few more.
    assert len({c.peer for c in calls}) <= 3, sorted({c.peer for c in calls})
    session = harness.coworker.slack.session
    await harness.stop_app()
    assert session is not None and session.closed


async def test_same_event_three_times_gives_one_task(harness: Harness) -> None:
    harness.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    event = app_mention("do the thing", user="U1", channel="C1")
    envelopes = [await harness.slack.send_event(event, event_id="Ev1") for _ in range(3)]
    for env in envelopes:
        await harness.slack.wait_for_ack(env)
    # The same message delivered as a `message` event with another event id: deduped on ts.
    twin = {**event, "type": "message", "channel_type": "channel"}
    await harness.slack.wait_for_ack(await harness.slack.send_event(twin, event_id="Ev2"))
    await harness.wait_status("awaiting_plan_approval")
    assert await harness.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
    acks = [
        c
        for c in harness.slack.calls_to("chat.postMessage")
        if "Got it" in c.params.get("text", "")
    ]
    assert len(acks) == 1


async def test_http_mode_signed_request_is_handled_and_bad_ones_refused(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(socket_mode=False) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        url = await serve_http(h)
        event = app_mention("over http", user="U1", channel="C1")
        h.slack.add_event_message(event)
        body = event_callback_body(event, event_id="EvHttp1")

        status, _ = await post_signed(url, body, "wrong-secret")
        assert status == 401
        status, _ = await post_signed(
            url, body, SIGNING_SECRET, timestamp=int(time.time()) - 6 * 60
        )
        assert status == 401
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM slack_events") == 0

        status, _ = await post_signed(url, body, SIGNING_SECRET)
        assert status == 200
        await h.slack.wait_for("chat.postMessage", lambda c: "T-1" in c.params.get("text", ""))
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1

        challenge = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "x"})
        status, text = await post_signed(url, challenge, SIGNING_SECRET)
        assert status == 200 and "abc123" in text


async def serve_http(h: Harness) -> str:
    """Start the app's HTTP server on a free port and return the events URL."""
    h.coworker.settings.port = 0
    await h.coworker.connect()
    port = h.coworker._runner_http.addresses[0][1]
    return f"http://127.0.0.1:{port}/slack/events"


async def test_healthz_reports_database_and_slack(make_harness: Callable[..., Harness]) -> None:
    import aiohttp

    async with make_harness(socket_mode=False) as h:
        url = (await serve_http(h)).replace("/slack/events", "/healthz")
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200 and (await resp.json()) == {"ok": True}
            h.slack.fail_next("auth.test", times=10, status=200, error="invalid_auth")
            async with session.get(url) as resp:
                assert resp.status == 503


async def test_assistant_thread_started_gets_suggested_prompts(harness: Harness) -> None:
    from tests.fakes.slack import assistant_thread_started

    await harness.slack.send_event(
        assistant_thread_started(user="U1", channel="D1", thread_ts="9.0")
    )
    [call] = await harness.slack.wait_for("assistant.threads.setSuggestedPrompts")
    assert call.params["thread_ts"] == "9.0" and len(call.params["prompts"]) >= 1
