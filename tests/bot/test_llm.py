"""bot/llm.py: routing, prices, caching breakpoints, the call log, and the budget gate."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from anthropic.types import Message, ToolUseBlock

from bot.base.clock import now
from bot.base.config import DEFAULT_PRICES, Config, CoworkerConfig, Price, parse_config
from bot.base.db import Database
from bot.base.errors import BudgetExhausted, LLMUnavailable
from bot.llm import (
    DEFAULT_ROUTES,
    LLM,
    CallContext,
    cost_usd,
    make_client,
    read_message,
    system_blocks,
    text_of,
)
from tests.fakes.anthropic import FakeAnthropic, Reply

FAST, DEFAULT, BEST = "claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"
SYSTEM = "You are dev, an AI coworker. " + "Follow the team's conventions carefully. " * 200
TOOLS = [
    {
        "name": f"github__tool_{i}",
        "description": "A GitHub tool. " * 20,
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    for i in range(5)
]


def llm_for(config: Config | None = None, **kw: Any) -> LLM:
    return LLM(client=None, config=config or Config(), db=None, **kw)  # type: ignore[arg-type]


# -- routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("purpose", "model"),
    [
        ("classify", FAST),
        ("route", FAST),
        ("extract", FAST),
        ("summarize", FAST),
        ("consolidate", FAST),
        ("plan", DEFAULT),
        ("act", DEFAULT),
        ("review", FAST),
        ("final_draft", DEFAULT),
    ],
)
def test_each_purpose_goes_to_its_default_tier(purpose: str, model: str) -> None:
    assert llm_for().model_for(purpose) == model


def test_every_purpose_is_routed() -> None:
    assert set(DEFAULT_ROUTES) == {
        "classify",
        "route",
        "extract",
        "plan",
        "act",
        "review",
        "summarize",
        "final_draft",
        "consolidate",
    }


def test_final_draft_of_a_high_visibility_task_uses_the_best_tier() -> None:
    llm = llm_for()
    assert llm.model_for("final_draft", CallContext(high_visibility=True)) == BEST
    assert llm.model_for("act", CallContext(high_visibility=True)) == DEFAULT


def test_tiers_resolve_through_the_models_table() -> None:
    config = parse_config({"models": {"fast": "m-fast", "default": "m-default", "best": "m-best"}})
    llm = llm_for(config)
    assert llm.model_for("classify") == "m-fast"
    assert llm.model_for("plan") == "m-default"
    assert llm.model_for("final_draft", CallContext(high_visibility=True)) == "m-best"


def test_routing_section_moves_a_purpose_to_another_tier() -> None:
    config = parse_config({"routing": {"plan": "best", "summarize": "default"}})
    llm = llm_for(config)
    assert llm.model_for("plan") == BEST
    assert llm.model_for("summarize") == DEFAULT
    assert llm.model_for("act") == DEFAULT


def test_routing_section_wins_over_high_visibility() -> None:
    llm = llm_for(parse_config({"routing": {"final_draft": "default"}}))
    assert llm.model_for("final_draft", CallContext(high_visibility=True)) == DEFAULT


def test_coworker_overrides_by_purpose_and_by_tier() -> None:
    dev = CoworkerConfig(
        name="dev",
        models={"plan": "best", "fast": "claude-sonnet-5-5", "act": "my-fine-tune"},
    )
    llm = llm_for()
    ctx = CallContext(coworker=dev)
    assert llm.model_for("plan", ctx) == BEST  # purpose -> tier
    assert llm.model_for("act", ctx) == "my-fine-tune"  # purpose -> model id
    assert llm.model_for("classify", ctx) == DEFAULT  # tier -> model id
    assert llm.model_for("final_draft", ctx) == DEFAULT  # untouched
    assert llm.model_for("classify") == FAST  # only for this coworker


def test_coworker_tier_override_applies_to_a_routed_tier() -> None:
    writer = CoworkerConfig(name="writer", models={"default": "best"})
    llm = llm_for(parse_config({"routing": {"summarize": "default"}}))
    assert llm.model_for("summarize", CallContext(coworker=writer)) == BEST


def test_unknown_purpose_is_an_error() -> None:
    with pytest.raises(ValueError, match="purpose 'chitchat'"):
        llm_for().model_for("chitchat")


# -- prices ------------------------------------------------------------------------------


def usage(i: int = 0, o: int = 0, w: int = 0, r: int = 0) -> Any:
    return SimpleNamespace(
        input_tokens=i, output_tokens=o, cache_creation_input_tokens=w, cache_read_input_tokens=r
    )


def test_cost_from_reported_usage() -> None:
    price = Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)
    cost = cost_usd(price, usage(i=1000, o=500, w=2000, r=10_000))
    assert cost == pytest.approx((1000 * 3 + 500 * 15 + 2000 * 3.75 + 10_000 * 0.3) / 1e6)
    assert cost_usd(None, usage(i=1000)) == 0.0


def test_default_prices_cover_the_default_models_and_config_overrides_them() -> None:
    for model in (FAST, DEFAULT, BEST):
        price = DEFAULT_PRICES[model]
        assert price.cache_read < price.input < price.cache_write < price.output
    config = parse_config(
        {"prices": {DEFAULT: {"input": 1, "output": 2, "cache_write": 3, "cache_read": 4}}}
    )
    assert config.price(DEFAULT) == Price(input=1, output=2, cache_write=3, cache_read=4)
    assert config.price(FAST) == DEFAULT_PRICES[FAST]


# -- cache breakpoints -------------------------------------------------------------------


def test_system_blocks_cache_the_stable_prefix_and_put_memory_after_it() -> None:
    blocks = system_blocks("stable prompt", "memory for this task")
    assert blocks == [
        {"type": "text", "text": "stable prompt", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "memory for this task"},
    ]
    assert "cache_control" not in system_blocks("stable prompt", None, cache=False)[0]


# -- calls against the Anthropic stand-in -------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


async def new_task(db: Database, budget: float = 2.0) -> int:
    t = now()
    return await db.insert(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, budget_usd,"
        " created_at, updated_at) VALUES ('U1', 'C1', '1.0', '1.0', 'r', ?, ?, ?)",
        (budget, t, t),
    )


@pytest.fixture
async def make_llm(fake: FakeAnthropic, db: Database) -> AsyncIterator[Callable[..., LLM]]:
    clients: list[Any] = []

    def factory(**kw: Any) -> LLM:
        clients.append(make_client("sk-ant-test", fake.base_url, max_retries=0))
        return LLM(clients[-1], Config(), db, **kw)

    yield factory
    for client in clients:
        await client.close()


async def act(llm: LLM, messages: list[dict[str, Any]], task_id: int) -> Any:
    return await llm.create(
        purpose="act",
        system=SYSTEM,
        messages=messages,
        tools=TOOLS,
        ctx=CallContext(task_id=task_id, budget_usd=2.0),
    )


async def test_second_turn_reads_the_cache_and_the_log_has_it(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    llm = make_llm()
    task = await new_task(db)
    fake.enqueue_tool_use("github__tool_0", {"q": "flaky"}, id="toolu_1")
    fake.enqueue_text("Done.")
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "find flaky tests"}]}
    ]
    first = await act(llm, messages, task)
    assert "cache_control" not in str(messages)  # the caller's conversation is untouched
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 flaky tests"}
            ],
        },
    ]
    second = await act(llm, messages, task)

    body = fake.requests[1].body
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens >= first.usage.cache_creation_input_tokens
    rows = await db.fetchall("SELECT * FROM llm_calls WHERE task_id = ? ORDER BY id", (task,))
    assert [r["cache_read_tokens"] for r in rows] == [0, second.usage.cache_read_input_tokens]
    assert rows[0]["cache_write_tokens"] == first.usage.cache_creation_input_tokens
    price = DEFAULT_PRICES[DEFAULT]
    assert rows[1]["cost_usd"] == pytest.approx(cost_usd(price, second.usage))
    assert rows[1]["purpose"] == "act" and rows[1]["model"] == DEFAULT
    assert rows[1]["stop_reason"] == "end_turn" and rows[1]["error"] is None
    assert rows[1]["latency_ms"] > 0
    spent = await db.fetchval("SELECT spent_usd FROM tasks WHERE id = ?", (task,))
    assert spent == pytest.approx(rows[0]["cost_usd"] + rows[1]["cost_usd"])
    fake.enqueue_text("Still done.")
    ctx = CallContext(task_id=task, budget_usd=2.0, spent_usd=spent)
    await llm.create(purpose="act", system=SYSTEM, messages=messages, ctx=ctx)
    total = await db.fetchval("SELECT SUM(cost_usd) FROM llm_calls WHERE task_id = ?", (task,))
    assert ctx.spent_usd == pytest.approx(total) and ctx.spent_usd > spent  # the new total


async def test_single_shot_purposes_cache_only_the_stable_prefix(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    fake.enqueue_text("bug")
    await make_llm().create(
        purpose="classify", system=SYSTEM, messages=[{"role": "user", "content": "hi"}]
    )
    body = fake.requests[0].body
    assert body["model"] == FAST
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert str(body).count("cache_control") == 1


async def test_caching_off_sends_no_breakpoints(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    llm = make_llm(caching=False)
    task = await new_task(db)
    for _ in range(2):
        fake.enqueue_text("ok")
        message = await act(llm, [{"role": "user", "content": "go"}], task)
    assert "cache_control" not in str([r.body for r in fake.requests])
    assert message.usage.cache_read_input_tokens == 0


async def test_failed_call_is_logged_with_its_error(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    task = await new_task(db)
    fake.enqueue_error(400, "invalid_request_error", "bad")
    with pytest.raises(LLMUnavailable) as info:
        await act(make_llm(), [{"role": "user", "content": "go"}], task)
    assert (info.value.status, info.value.retryable, info.value.timed_out) == (400, False, False)
    assert info.value.model == "claude-sonnet-5-5"
    row = await db.fetchone("SELECT * FROM llm_calls WHERE task_id = ?", (task,))
    assert row["error"] == "BadRequestError"
    assert row["cost_usd"] == 0 and row["stop_reason"] is None


async def test_no_call_once_the_budget_is_spent(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    task = await new_task(db)
    await db.execute(
        "INSERT INTO llm_calls (task_id, purpose, model, cost_usd, created_at)"
        " VALUES (?, 'act', ?, 2.0, ?)",
        (task, DEFAULT, now()),
    )
    with pytest.raises(BudgetExhausted) as caught:
        await act(make_llm(), [{"role": "user", "content": "go"}], task)
    assert caught.value.spent_usd == 2.0
    assert fake.requests == []


async def test_a_reply_the_installed_types_do_not_describe_is_parsed_by_the_sdk(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    # A content block newer than the installed SDK fails strict validation; the SDK's own
    # lenient parser still builds the message, and the known blocks keep their types.
    future = {"type": "hologram", "frames": [1, 2, 3]}
    fake.enqueue_reply(Reply(content=[{"type": "text", "text": "Here."}, future]))
    fake.enqueue_tool_use("github__tool_0", {"q": "x"}, id="toolu_9")
    llm = make_llm()
    task = await new_task(db)
    odd = await act(llm, [{"role": "user", "content": "go"}], task)
    plain = await act(llm, [{"role": "user", "content": "go"}], task)

    assert isinstance(odd, Message) and odd.content[0].type == "text"
    assert odd.content[0].text == "Here."  # type: ignore[union-attr]
    assert odd.content[1].type == "hologram"
    assert odd.usage.output_tokens > 0
    assert isinstance(plain.content[0], ToolUseBlock)
    assert (plain.content[0].id, plain.content[0].input) == ("toolu_9", {"q": "x"})
    assert plain.stop_reason == "tool_use"
    rows = await db.fetchall("SELECT stop_reason FROM llm_calls WHERE task_id = ?", (task,))
    assert [r[0] for r in rows] == ["end_turn", "tool_use"]


class RawReply:
    """What `read_message` uses of the SDK's raw response: the body, and the SDK's parser."""

    request_id = "req_0123"

    def __init__(self, body: bytes) -> None:
        self.body, self.sdk_parsed = body, False

    async def read(self) -> bytes:
        return self.body

    async def parse(self) -> str:
        self.sdk_parsed = True
        return "parsed by the SDK"


async def test_read_message_validates_a_known_reply_without_the_sdk_parser() -> None:
    known = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": DEFAULT,
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"a": 1}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    raw = RawReply(json.dumps(known).encode())
    message = await read_message(raw)  # type: ignore[arg-type]
    assert isinstance(message, Message) and not raw.sdk_parsed
    assert message._request_id == "req_0123"
    assert isinstance(message.content[0], ToolUseBlock) and message.content[0].input == {"a": 1}
    assert message.usage.output_tokens == 4

    newer = {**known, "content": [{"type": "hologram"}]}
    raw = RawReply(json.dumps(newer).encode())
    assert await read_message(raw) == "parsed by the SDK"  # type: ignore[arg-type]
    assert raw.sdk_parsed


async def test_a_checkpoint_that_cannot_be_written_does_not_take_the_calls_cost_with_it(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    task = await new_task(db)
    fake.enqueue_text("Done.")
    kept = ("INSERT INTO no_such_table (x) VALUES (?)", (1,))  # fails inside the batch

    with pytest.raises(Exception, match="no_such_table"):
        await make_llm().create(
            purpose="act",
            system=SYSTEM,
            messages=[{"role": "user", "content": "go"}],
            ctx=CallContext(task_id=task, budget_usd=2.0),
            keep=lambda message: [kept],
        )
    rows = await db.fetchall(
        "SELECT cost_usd, stop_reason FROM llm_calls WHERE task_id = ?", (task,)
    )
    assert len(rows) == 1 and rows[0]["cost_usd"] > 0 and rows[0]["stop_reason"] == "end_turn"
    spent = await db.fetchval("SELECT spent_usd FROM tasks WHERE id = ?", (task,))
    assert spent == pytest.approx(rows[0]["cost_usd"])


async def test_what_the_caller_keeps_is_written_with_the_calls_row(
    fake: FakeAnthropic, db: Database, make_llm: Callable[..., LLM]
) -> None:
    task = await new_task(db)
    fake.enqueue_text("Done.")
    seen: list[Message] = []

    def keep(message: Message) -> list[tuple[str, tuple[Any, ...]]]:
        seen.append(message)
        return [("UPDATE tasks SET result = ? WHERE id = ?", (text_of(message), task))]

    message = await make_llm().create(
        purpose="act",
        system=SYSTEM,
        messages=[{"role": "user", "content": "go"}],
        ctx=CallContext(task_id=task, budget_usd=2.0),
        keep=keep,
    )
    assert seen == [message] and message._request_id is not None
    row = await db.fetchone("SELECT result, spent_usd FROM tasks WHERE id = ?", (task,))
    assert row["result"] == "Done." and row["spent_usd"] > 0
