"""FakeAnthropic, exercised through the real ``anthropic.AsyncAnthropic`` client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam, TextBlock, ToolUseBlock

from tests.fakes.anthropic import FakeAnthropic, Reply, text_reply, tool_reply

pytestmark = pytest.mark.asyncio

MODEL = "claude-haiku-5-5"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="sk-ant-test", max_retries=2
    ) as sdk:
        yield sdk


async def ask(client: anthropic.AsyncAnthropic, **params: Any) -> Any:
    """``messages.create`` with defaults; ``Any`` because ``stream=True`` returns a stream."""
    params = {"model": MODEL, "max_tokens": 256, "messages": HELLO, **params}
    return await client.messages.create(**params)


async def test_text_reply_is_a_real_message(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_text("Hi there!")

    message = await ask(client)

    assert message.content == [TextBlock(type="text", text="Hi there!", citations=None)]
    assert (message.role, message.model, message.stop_reason) == ("assistant", MODEL, "end_turn")
    assert message.id.startswith("msg_")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    (request,) = fake.requests
    assert request.body["messages"] == HELLO
    assert request.api_key == "sk-ant-test"
    assert not request.stream


async def test_tool_use_reply_is_parsed_into_tool_use_blocks(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_tool_use("search", {"query": "cats", "limit": 3}, text="Let me look.")
    fake.enqueue_tool_uses([("read", {"path": "a"}), ("read", {"path": "b"})])

    first = await ask(client)
    second = await ask(client)

    text, tool = first.content
    assert isinstance(text, TextBlock) and text.text == "Let me look."
    assert isinstance(tool, ToolUseBlock) and tool.id.startswith("toolu_")
    assert (tool.name, tool.input) == ("search", {"query": "cats", "limit": 3})
    assert first.stop_reason == "tool_use"
    assert [block.input for block in second.content if isinstance(block, ToolUseBlock)] == [
        {"path": "a"},
        {"path": "b"},
    ]


async def test_stream_helper_rebuilds_the_same_message(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    tool_input = {"query": "naïve ünïcode", "filters": {"tags": ["a", "b"], "n": 10}}
    for _ in range(2):
        fake.enqueue_tool_use("search", tool_input, id="toolu_fixed", text="One moment, searching.")

    plain = await ask(client)
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
        streamed_text = "".join([chunk async for chunk in stream.text_stream])
        final = await stream.get_final_message()

    assert streamed_text == "One moment, searching."
    assert [block.to_dict() for block in final.content] == [
        block.to_dict() for block in plain.content
    ]
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert fake.requests[1].stream


async def test_raw_stream_events_carry_partial_json(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    tool_input = {"city": "Paris", "days": [1, 2, 3], "units": "metric"}
    fake.enqueue_tool_use("weather", tool_input, text="Checking the weather for you now.")

    events = [event async for event in await ask(client, stream=True)]

    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.index == 0)
    partial = [
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 1
    ]
    assert text == "Checking the weather for you now."
    assert len([p for p in partial if p]) >= 3
    assert json.loads("".join(partial)) == tool_input
    assert events[-2].delta.stop_reason == "tool_use"


async def test_overloaded_twice_then_success_is_retried(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_error(529, "overloaded_error", "Overloaded")
    fake.enqueue_error(529, "overloaded_error", "Overloaded")
    fake.enqueue_text("finally")
    started = time.monotonic()

    message = await ask(client)

    assert message.content[0].text == "finally"
    assert len(fake.requests) == 3
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0", "1", "2"]
    assert time.monotonic() - started < 1.0


async def test_rate_limit_honours_retry_after(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_error(429, "rate_limit_error", "slow down", retry_after=0.1)
    fake.enqueue_text("ok")

    message = await ask(client)

    first, second = fake.requests
    assert message.content[0].text == "ok"
    assert 0.1 <= second.at - first.at < 1.0


async def test_persistent_failure_raises_the_sdk_error(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    for _ in range(3):
        fake.enqueue_error(500, "api_error", "Internal server error")
    fake.enqueue_error(529, "overloaded_error", "Overloaded", should_retry=False)

    with pytest.raises(anthropic.InternalServerError) as failed:
        await ask(client)
    assert failed.value.status_code == 500 and len(fake.requests) == 3
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await ask(client)

    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {"type": "api_error", "message": "Internal server error"}
    assert overloaded.value.status_code == 529 and len(fake.requests) == 4


async def test_cached_system_prompt_is_written_then_read(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    system = [
        {"type": "text", "text": "You are helpful. " * 50, "cache_control": {"type": "ephemeral"}}
    ]
    fake.enqueue_text("one")
    fake.enqueue_text("two")

    first = await ask(client, system=system)
    second = await ask(client, system=system, messages=[{"role": "user", "content": "Other"}])

    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens > 0  # the uncached user message


async def test_moving_breakpoint_reads_the_earlier_conversation(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    def turn(text: str) -> dict[str, Any]:
        block = {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}
        return {"role": "user", "content": [block]}

    fake.enqueue_text("A1")
    fake.enqueue_text("A2")
    first = await ask(client, messages=[turn("Q1 " * 40)])
    plain_q1 = {"role": "user", "content": [{"type": "text", "text": "Q1 " * 40}]}
    history = [plain_q1, {"role": "assistant", "content": "A1"}, turn("Q2")]
    second = await ask(client, messages=history)

    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens > 0


async def test_explicit_usage_overrides_the_estimate(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_text("hi", usage={"input_tokens": 1000, "output_tokens": 7})

    message = await ask(client)

    assert (message.usage.input_tokens, message.usage.output_tokens) == (1000, 7)


async def test_hang_trips_the_client_timeout(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_hang(30)

    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.1, max_retries=0).messages.create(
            model=MODEL, max_tokens=256, messages=HELLO
        )

    assert len(fake.requests) == 1


async def test_empty_queue_fails_clearly_without_retries(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.InternalServerError, match="no reply queued"):
        await ask(client)

    assert len(fake.requests) == 1


async def test_responder_answers_concurrent_requests(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    async def responder(body: dict[str, Any]) -> Reply:
        question = body["messages"][-1]["content"]
        if question == "use a tool":
            return tool_reply("lookup", {"q": question})
        return text_reply(f"echo: {question}")

    fake.responder = responder
    fake.latency = (0.0, 0.05)
    questions = [f"q{i}" for i in range(20)] + ["use a tool"]

    calls = [ask(client, messages=[{"role": "user", "content": q}]) for q in questions]
    replies = await asyncio.gather(*calls)
    await fake.wait_for_requests(len(questions), timeout=1.0)

    assert [r.content[0].text for r in replies[:-1]] == [f"echo: {q}" for q in questions[:-1]]
    assert isinstance(replies[-1].content[0], ToolUseBlock)


async def test_wait_for_requests_wakes_on_arrival(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    fake.enqueue_text("later")
    waiter = asyncio.create_task(fake.wait_for_requests(1))
    await asyncio.sleep(0)
    assert not waiter.done()

    await ask(client)

    assert [r.body["model"] for r in await asyncio.wait_for(waiter, 1.0)] == [MODEL]
    with pytest.raises(TimeoutError, match="expected 2 requests, got 1"):
        await fake.wait_for_requests(2, timeout=0.05)


async def test_count_tokens_and_models(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    counted = await client.messages.count_tokens(model=MODEL, messages=HELLO)
    models = await client.models.list()

    assert counted.input_tokens > 0
    assert MODEL in [model.id for model in models.data]
    assert fake.requests == []  # only /v1/messages calls are recorded


async def test_missing_api_key_is_an_authentication_error(fake: FakeAnthropic) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{fake.base_url}/v1/messages"
        async with session.post(
            url, json={"model": MODEL, "max_tokens": 5, "messages": HELLO}
        ) as r:
            status, payload = r.status, await r.json()

    assert status == 401
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "authentication_error"


async def test_wrong_api_key_raises_authentication_error() -> None:
    async with (
        FakeAnthropic(api_key="sk-ant-right") as fake,
        anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="sk-ant-wrong") as sdk,
    ):
        with pytest.raises(anthropic.AuthenticationError):
            await ask(sdk)


async def test_raw_content_is_passed_through_plain_and_streamed(
    fake: FakeAnthropic, client: anthropic.AsyncAnthropic
) -> None:
    content = [
        {"type": "thinking", "thinking": "The user greets me.", "signature": "sig"},
        {"type": "text", "text": "Hello back!"},
    ]
    fake.enqueue(content, stop_reason="end_turn")
    fake.enqueue(content, stop_reason="end_turn")

    plain = await ask(client)
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
        final = await stream.get_final_message()

    assert [block.to_dict() for block in plain.content] == content
    assert [block.to_dict() for block in final.content] == content


async def test_stream_wire_format_is_server_sent_events(fake: FakeAnthropic) -> None:
    fake.enqueue_text("Hi")
    body = {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}

    async with aiohttp.ClientSession(headers={"x-api-key": "sk-ant-test"}) as session:
        async with session.post(f"{fake.base_url}/v1/messages", json=body) as response:
            content_type, raw = response.content_type, await response.text()

    frames = [frame.split("\n") for frame in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in frames]
    payloads = [json.loads(lines[1].removeprefix("data: ")) for lines in frames]
    assert content_type == "text/event-stream"
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [payload["type"] for payload in payloads] == names
