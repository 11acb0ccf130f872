"""Issue 15, messages people read: what a failure says, answers to empty, long or misnamed
requests, words instead of internal names, and rejecting in one click."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.slack import slash_command
from tests.scenarios.conftest import plan, tickets_mcp
from tests.scenarios.harness import Harness, until

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


@pytest.mark.parametrize(
    ("status", "kind", "code", "said"),
    [
        (
            400,
            "invalid_request_error",
            "model_refused",
            "refused an invalid request (400), so I stopped here. It was sent once, not "
            "retried: the same request would be refused again, so resuming is unlikely to help",
        ),
        (
            404,
            "not_found_error",
            "model_not_found",
            "has no model `claude-sonnet-5-5` (404), so I stopped here. An admin needs to name "
            "a model this API key can use in `coworker.toml`",
        ),
        (
            401,
            "authentication_error",
            "model_key_rejected",
            "did not accept the bot's API key (401), so I stopped here. An admin needs to fix "
            "`ANTHROPIC_API_KEY`; after that, `/coworker resume T-1` picks up",
        ),
    ],
)
async def test_a_model_api_error_resuming_cannot_fix_says_so(
    make_harness: Callable[..., Harness], status: int, kind: str, code: str, said: str
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.enqueue_error(status, kind, "details for the log only")
        await h.mention("hi")
        failed = await h.wait_status("failed")
        assert failed.error == code
        [msg] = await h.slack.wait_for("chat.postMessage", lambda c: said in str(c.params))
        assert "several retries" not in str(msg.params) and "couldn't reach" not in str(msg.params)
        assert "details for the log only" not in h.texts()
        assert len(h.anthropic.requests) == 2  # the plan, and one try of the failing call


async def test_a_bare_mention_gets_a_short_help_and_no_task(harness: Harness) -> None:
    h = harness
    await h.mention(f"<@{h.slack.bot_user_id}>", user="U1")
    [hint] = await h.slack.wait_for("chat.postEphemeral")
    assert hint.params["user"] == "U1"
    assert "Tell me what to do in the same message" in hint.params["text"]
    assert "/coworker help" in hint.params["text"]
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 0


async def test_a_request_cut_to_the_limit_says_so(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Read it", [])))
    event = await h.mention("summarize this: " + "word " * 9000)
    [note] = await h.slack.wait_for(
        "chat.postMessage", lambda c: "characters long" in c.params.get("text", "")
    )
    assert len(event["text"]) > 45_000
    assert note.params["text"] == (
        f"Your message was {len(event['text']):,} characters long; I read only the first 40,000."
    )
    assert len((await h.task()).request) <= 40_000


TEAM = """
[[coworkers]]
name = "dev"
[[coworkers]]
name = "writer"
"""


async def test_an_unknown_coworker_name_is_answered_with_the_ones_that_exist(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=TEAM) as h:
        h.anthropic.enqueue_tool_use("choose_coworker", {"name": "dev"})
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Run it", [])))
        task_id = await h.delegate("qa: run the regression suite")
        [note] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "no coworker called" in c.params.get("text", "")
        )
        assert note.params["text"] == (
            "There is no coworker called `qa` here (there are `dev` and `writer`), so I'll "
            "choose one. To pick, start the request with its name, like `dev: …`."
        )
        await h.wait_status("awaiting_plan_approval", task_id)
        assert (await h.task(task_id)).coworker == "dev"


async def ask(h: Harness, text: str, user: str = "U1") -> str:
    """A `/coworker` command from `user`; the ephemeral answer's text."""
    before = len(h.slack.calls_to("response_url"))
    await h.slack.send_slash_command(slash_command(text, user=user))
    *_, answer = await h.slack.wait_for("response_url", count=before + 1)
    return str(answer.params["text"])


async def test_status_speaks_words_in_the_persons_time_zone(harness: Harness) -> None:
    h = harness
    h.slack.add_user("U1", "ada", tz="Europe/Paris")
    h.slack.add_user("U2", "bob", tz="America/New_York")
    h.slack.channel_members["C1"] = ["U1", "U2"]
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Do it", [])))
    await h.mention("summarize the incident", user="U1")
    await h.approve_plan(1)
    h.anthropic.enqueue_text("Summary.")
    await h.wait_status("done")
    mine = await ask(h, "status T-1", user="U1")
    assert "`T-1` done" in mine
    assert "request received by <@U1>" in mine and "plan approved by <@U1>" in mine
    assert "now waiting for plan approval" in mine and "now queued" in mine
    for internal in ("status:", "awaiting_plan_approval", "plan_approved", "_"):
        assert internal not in mine
    assert re.search(r"• \d\d:\d\d:\d\d CES?T plan approved", mine)
    theirs = await ask(h, "status T-1", user="U2")
    assert re.search(r"• \d\d:\d\d:\d\d E[SD]T plan approved", theirs)
    # users.info is asked once per person (the answer is cached).
    await ask(h, "status T-1", user="U1")
    asked = [c for c in h.slack.calls_to("users.info") if c.params.get("user") == "U1"]
    assert len(asked) == 1


async def test_the_status_line_lists_only_tools_that_ran_and_keeps_them_for_a_follow_up(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    config = NO_PLAN_APPROVAL + '[approvals]\napprovers = ["ULEAD"]\n'
    async with make_harness(mcp=tickets_mcp(tmp_path / "t.log"), config=config) as h:
        h.anthropic.enqueue_tool_use(
            "submit_plan",
            plan(("Search", ["tickets__search"]), ("File it", ["tickets__create_ticket"])),
        )
        h.anthropic.enqueue_tool_use("tickets__search", {"query": "flaky"})
        h.anthropic.enqueue_tool_use("tickets__create_ticket", {"title": "Flaky"})
        task = await h.mention("find and file the flaky test")
        await h.wait_status("waiting_approval")
        approval = await h.coworker.db.fetchval("SELECT id FROM approvals")
        h.anthropic.enqueue_text("Found it; filing was refused.")
        await h.click("approval_reject", approval, user="U1")
        await h.wait_status("done")
        done = await status_line(h, "T-1 · done")
        assert "tools: `tickets__search` ·" in done and "create_ticket" not in done
        # A follow-up that runs no tool still lists what the task ran.
        updates = len(h.slack.calls_to("chat.update"))
        h.anthropic.enqueue_text("It was TCK-1.")
        await h.reply("which ticket was it?", task["ts"])
        again = await status_line(h, "T-1 · done", since=updates)
        assert "tools: `tickets__search` ·" in again


async def status_line(h: Harness, prefix: str, since: int = 0) -> str:
    """The newest status message text starting with `prefix`, among the updates after the
    first `since` ones (waited for)."""

    def newest() -> str | None:
        texts = [str(c.params.get("text")) for c in h.slack.calls_to("chat.update")[since:]]
        found = [t for t in texts if t.startswith(prefix)]
        return found[-1] if found else None

    return str(await until(newest, what=f"a status line {prefix!r}"))


async def test_the_got_it_reply_names_the_assignee_when_planning_fails(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=TEAM) as h:
        h.anthropic.enqueue_tool_use("choose_coworker", {"name": "writer"})
        h.anthropic.enqueue_error(400, "invalid_request_error", "bad")
        await h.mention("draft the release notes")
        failed = await h.wait_status("failed")
        [ack] = await h.slack.wait_for("chat.update", lambda c: c.params.get("ts") == failed.ack_ts)
        assert ack.params["text"] == "Got it: task T-1, priority normal, assignee `writer`."


async def test_a_deliverables_notification_text_is_plain(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Write", [])))
        h.anthropic.enqueue_text("# Report\n\n**Two** flaky tests: see [the run](https://ci/1).")
        await h.mention("report the flaky tests")
        await h.wait_status("done")
        [done] = await h.slack.wait_for(
            "chat.postMessage", lambda c: c.params.get("text", "").startswith("Done: T-1")
        )
        assert done.params["text"] == "Done: T-1 Report Two flaky tests: see the run."
        assert "**Two**" in str(done.params["blocks"])  # the answer itself stays Markdown


async def test_a_decided_approval_keeps_its_plan_step(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    async with make_harness(mcp=tickets_mcp(tmp_path / "t.log"), config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("File it", ["tickets__create_ticket"])))
        h.anthropic.enqueue_tool_use("tickets__create_ticket", {"title": "Flaky"})
        await h.mention("file the flaky test")
        await h.wait_status("waiting_approval")
        approval = await h.coworker.approvals.get(1)
        assert approval is not None
        h.anthropic.enqueue_text("Not filed.")
        await h.click("approval_reject", 1, user="U1")
        [decided] = await h.slack.wait_for(
            "chat.update", lambda c: c.params.get("ts") == approval.message_ts
        )
        blocks = str(decided.params["blocks"])
        assert "Rejected by <@U1>" in blocks and "*Plan step:* 1. File it" in blocks
