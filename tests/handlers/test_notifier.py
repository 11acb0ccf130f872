"""The Slack notifier: one status message kept current, throttled; limits respected."""

from __future__ import annotations

import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.notifier import StatusSnapshot
from bot.tasks import Task
from handlers.blocks import split_markdown
from handlers.notifier import SlackNotifier
from tests.fakes.slack import FakeSlack


def task(**kw: object) -> Task:
    fields: dict = dict(id=7, status="running", priority=1, coworker="dev", delegator="U1",
                        channel="C1", thread_ts="1.0", message_ts="1.0", request="r", budget_usd=2.0)  # fmt: skip
    fields.update(kw)
    return Task(**fields)


async def test_status_is_one_message_updated_at_most_once_per_interval() -> None:
    async with FakeSlack() as slack:
        slack.add_message("C1", "request", ts="1.0")
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=0.3)
        t = task()
        started = time.monotonic()
        for step in range(1, 21):
            await notifier.status(
                t, StatusSnapshot("running", step, 20, spent_usd=0.01 * step, budget_usd=2.0)
            )
        intervals = (time.monotonic() - started) / 0.3  # well under 1 unless the machine stalls
        await slack.wait_for("chat.update", lambda c: "step 20/20" in c.params["text"])
        await notifier.close()
        posts = slack.calls_to("chat.postMessage")
        updates = slack.calls_to("chat.update")
        assert len(posts) == 1
        # The newest snapshot, sent when the interval ended; at most one per interval.
        assert len(updates) <= 1 + int(intervals)
        assert (
            "step 20/20" in updates[-1].params["text"]
            and "$0.20 of $2.00" in updates[-1].params["text"]
        )


async def test_assistant_threads_get_the_working_status() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=0.0)
        await notifier.status(task(assistant=True, channel="D1"), StatusSnapshot("running", 1, 2))
        [call] = await slack.wait_for("assistant.threads.setStatus")
        assert call.params["status"] == "is working…" and call.params["channel_id"] == "D1"
        await notifier.close()


def test_split_keeps_code_fences_balanced_and_text_whole() -> None:
    text = "Intro\n\n" + "```python\n" + "".join(f"x = {i}\n" for i in range(2000)) + "```\nEnd"
    parts = split_markdown(text, 3000)
    assert all(len(p) <= 3000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    restored = "".join(p.removeprefix("```python\n").removesuffix("\n```") for p in parts)
    for i in (0, 999, 1999):
        assert f"x = {i}\n" in restored
