"""The Slack notifier: one status message kept current, throttled; limits respected."""

from __future__ import annotations

import json
import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.notifier import StatusSnapshot
from bot.tasks import Task
from handlers.notifier import SlackNotifier
from handlers.splitting import split_markdown
from tests.fakes.slack import FakeSlack


def task(**kw: object) -> Task:
    fields: dict = dict(
        id=7,
        status="running",
        priority=1,
        coworker="dev",
        delegator="U1",
        channel="C1",
        thread_ts="1.0",
        message_ts="1.0",
        request="r",
        budget_usd=2.0,
    )
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


def fast_retries(client: AsyncWebClient) -> AsyncWebClient:
    """The bot's retry handlers, without their back-off (tests need not wait seconds)."""
    from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
    from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

    client.retry_handlers.append(
        AsyncConnectionErrorRetryHandler(
            max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
        )
    )
    return client


async def test_a_status_update_lost_to_the_network_is_kept_for_the_next_snapshot() -> None:
    async with FakeSlack() as slack:
        client = fast_retries(AsyncWebClient(token="xoxb-test", base_url=slack.api_url))
        notifier = SlackNotifier(client, status_interval=0.0)
        t = task()
        await notifier.status(t, StatusSnapshot("running", 1, 3))
        slack.fail_next("chat.update", times=3, drop=True)  # more than the retries
        await notifier.status(t, StatusSnapshot("running", 2, 3))  # no exception reaches here
        slack.fail_next("chat.update", times=4, status=503)
        await notifier.status(t, StatusSnapshot("running", 2, 3))
        await notifier.status(t, StatusSnapshot("done", 3, 3))
        assert len(slack.calls_to("chat.postMessage")) == 1  # no second status message
        assert "T-7 · done · step 3/3" in slack.calls_to("chat.update")[-1].params["text"]
        await notifier.close()


async def test_a_status_message_slack_lost_is_posted_again() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=0.0)
        t = task()
        await notifier.status(t, StatusSnapshot("running", 1, 3))
        slack.fail_next("chat.update", status=200, error="message_not_found")
        await notifier.status(t, StatusSnapshot("running", 2, 3))
        first, second = slack.calls_to("chat.postMessage")
        assert "step 2/3" in second.params["text"]
        await notifier.close()


async def test_other_states_are_shown_at_once_and_never_start_a_status_message() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=60)
        await notifier.status(task(id=8), StatusSnapshot("cancelled", 0, 0))
        assert slack.calls_to("chat.postMessage") == []  # it never ran: nothing to update
        t = task()
        await notifier.status(t, StatusSnapshot("running", 1, 3))
        await notifier.status(t, StatusSnapshot("running", 2, 3))  # held for the interval
        await notifier.status(t, StatusSnapshot("failed", 2, 3))  # shown at once
        [update] = slack.calls_to("chat.update")
        assert "T-7 · failed · step 2/3" in update.params["text"]
        await notifier.close()
        assert len(slack.calls_to("chat.update")) == 1  # the held running one is dropped


async def test_close_sends_the_snapshot_the_interval_held() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=60)
        t = task()
        await notifier.status(t, StatusSnapshot("running", 1, 5))
        await notifier.status(t, StatusSnapshot("running", 4, 5))
        assert slack.calls_to("chat.update") == []
        await notifier.close()
        [update] = slack.calls_to("chat.update")
        assert "step 4/5" in update.params["text"]


async def test_the_assistant_status_is_set_per_change_and_after_our_own_posts() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=0.0)
        t = task(assistant=True, channel="D1")
        for step in range(1, 4):  # the first posts the status message, then sets the status
            await notifier.status(t, StatusSnapshot("running", step, 5))
        await notifier.note(t, "Ran a tool.")  # a post: Slack clears the status
        for step in range(4, 6):
            await notifier.status(t, StatusSnapshot("running", step, 5))
        await notifier.status(t, StatusSnapshot("done", 5, 5))
        calls = slack.calls_to("assistant.threads.setStatus")
        assert [c.params["status"] for c in calls] == ["is working…", "is working…", ""]
        order = [c.method for c in slack.calls if c.method != "auth.test"]
        assert order.index("chat.postMessage") < order.index("assistant.threads.setStatus")
        await notifier.close()


async def test_the_last_part_leaves_room_for_the_checks_and_buttons() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        notifier = SlackNotifier(client, status_interval=0.0)
        text = "\n\n".join("paragraph " * 108 for _ in range(10))  # one part, without checks
        checks = [f"✓ check {i}: " + "detail " * 40 for i in range(10)]  # ~2,900 chars
        got = await notifier.deliver(task(), text, checks=checks)
        assert got.complete
        for call in slack.calls_to("chat.postMessage"):
            blocks = call.params["blocks"]
            shown = sum(len(json.dumps(b, ensure_ascii=False)) for b in blocks)
            assert shown <= 12_000
        last = slack.calls_to("chat.postMessage")[-1].params["blocks"]
        assert "check 9" in str(last) and "feedback_up" in str(last)
        await notifier.close()
