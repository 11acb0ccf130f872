"""The agent loop's working memory: old tool output gives way when the context is full."""

import json
from typing import Any

from bot.agent import TRIMMED, trim_tool_output


def conversation(results: int, size: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "go"}]}]
    for i in range(results):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": f"t{i}", "name": "search", "input": {"q": i}}
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"t{i}", "content": str(i) * size}
                ],
            }
        )
    return messages


def contents(messages: list[dict[str, Any]]) -> list[str]:
    return [
        b["content"]
        for m in messages
        if m["role"] == "user"
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]


def test_oldest_results_are_trimmed_until_it_fits_and_the_size_is_exact() -> None:
    messages = conversation(results=5, size=4000)  # about 5,000 tokens
    size = trim_tool_output(messages, budget=2500)
    assert contents(messages)[:3] == [TRIMMED] * 3
    assert contents(messages)[3:] == ["3" * 4000, "4" * 4000]
    assert size == len(json.dumps(messages)) and size // 4 <= 2500


def test_the_last_exchange_is_kept_even_over_budget() -> None:
    messages = conversation(results=2, size=20_000)
    trim_tool_output(messages, budget=100)
    assert contents(messages) == [TRIMMED, "1" * 20_000]


def test_a_conversation_within_budget_is_untouched() -> None:
    messages = conversation(results=3, size=100)
    before = json.dumps(messages)
    assert trim_tool_output(messages, budget=10_000) == len(before)
    assert json.dumps(messages) == before
