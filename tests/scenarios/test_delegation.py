"""Issue 4: from a Slack message to a planned, approved, executed and delivered task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic import Reply, text_reply, tool_reply
from tests.fakes.slack import channel_message, slash_command, view_submission
from tests.scenarios.conftest import plan, tickets_mcp, tool_runs
from tests.scenarios.harness import Harness, until

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


def deliveries(h: Harness, needle: str) -> list[dict]:
    return [m for m in h.slack.messages if needle in str(m.get("blocks") or m.get("text"))]


async def test_mention_plan_approve_tool_answer(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "tickets.log"
    async with make_harness(mcp=tickets_mcp(log)) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Search tickets", ["tickets__search"])))
        h.anthropic.enqueue_tool_use("tickets__search", {"query": "flaky"})
        h.anthropic.enqueue_text("Found **2 tickets**: TCK-1 and TCK-2.")
        event = await h.mention("find flaky test tickets")
        [posted] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Plan for T-1" in c.params.get("text", "")
        )
        assert "tickets__search" in str(posted.params["blocks"])
        task = await h.wait_status("awaiting_plan_approval")
        await h.click("plan_approve", task.id, user="U1", message_ts=posted.response["ts"])
        done = await h.wait_status("done")
        assert tool_runs(log, "search") == [{"tool": "search", "args": {"query": "flaky"}}]
        [answer] = deliveries(h, "Found **2 tickets**")
        assert answer["thread_ts"] == event["ts"]
        assert done.result == "Found **2 tickets**: TCK-1 and TCK-2."
        act_request = h.anthropic.requests[1].body
        assert any(t["name"] == "tickets__search" for t in act_request["tools"])


async def test_same_through_a_dm(harness: Harness) -> None:
    harness.anthropic.enqueue_tool_use("submit_plan", plan(("Answer directly", [])))
    harness.anthropic.enqueue_text("Here is your answer.")
    await harness.dm("what is our deploy process?", user="U2", channel="D9")
    task = await harness.wait_status("awaiting_plan_approval")
    assert task.channel == "D9" and task.delegator == "U2"
    await harness.approve_plan(task.id, user="U2")
    await harness.wait_status("done")
    assert deliveries(harness, "Here is your answer.")[0]["channel"] == "D9"


async def test_the_log_follows_a_task_through_its_states_without_its_request(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer directly", [])))
    h.anthropic.enqueue_text("Here is your answer.")
    await h.dm("summarize the confidential merger memo", user="U2", channel="D9")
    await h.approve_plan(1, user="U2")
    await h.wait_status("done")
    await until(lambda: "state=done" in caplog.text, what="the log line of the last move")

    lines = [r.getMessage() for r in caplog.records if r.name == "bot.tasks"]
    states = [line.split()[1].removeprefix("state=") for line in lines]
    assert states == ["received", "planning", "awaiting_plan_approval", "queued", "running", "done"]
    moves = [e["kind"] for e in await h.coworker.tasks.events(1) if e["kind"].startswith("status:")]
    assert moves == [f"status:{state}" for state in states[1:]]  # one line per state change
    assert all(line.startswith("task=T-1 state=") for line in lines)
    done = lines[-1].split()
    assert done[2] == "coworker=coworker"  # routed while planning
    assert float(done[4].removeprefix("cost=$")) > 0  # the model calls it made
    assert all(" duration=" in line and " cost=$" in line for line in lines)
    assert "merger memo" not in caplog.text


async def test_clarifying_question_answered_in_thread_continues_same_task(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(questions=["Which repository?"]))
    event = await h.mention("fix the flaky test")
    await h.wait_status("waiting_input")
    await h.slack.wait_for("chat.postMessage", lambda c: "Which repository?" in str(c.params))
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Fix it in api", [])))
    await h.slack.send_event(
        channel_message("the api repo", user="U1", channel="C1", thread_ts=event["ts"])
    )
    task = await h.wait_status("awaiting_plan_approval")
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
    assert "the api repo" in task.request
    assert "the api repo" in str(h.anthropic.requests[-1].body["messages"])


async def test_edit_through_modal_revises_plan(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step A", [])))
    await h.mention("write release notes")
    task = await h.wait_status("awaiting_plan_approval")
    await h.click("plan_edit", task.id, user="U1")
    [opened] = await h.slack.wait_for("views.open")
    assert opened.params["view"]["callback_id"] == "plan_edit"
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step B only", [])))
    await h.slack.send_interactive(
        view_submission(
            "plan_edit",
            {"plan": {"text": "Only do step B"}},
            user="U1",
            private_metadata=str(task.id),
        )
    )
    await h.slack.wait_for(
        "chat.postMessage", lambda c: "Step B only" in str(c.params.get("blocks"))
    )
    revised = await h.wait_status("awaiting_plan_approval")
    assert revised.plan is not None and revised.plan["steps"][0]["what"] == "Step B only"
    assert "Only do step B" in str(h.anthropic.requests[-1].body["messages"])


async def test_cancel_before_run(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step", [])))
    await h.mention("something")
    task = await h.wait_status("awaiting_plan_approval")
    await h.click("task_cancel", task.id, user="U1")
    await h.wait_status("cancelled")
    await h.slack.wait_for("chat.postMessage", lambda c: "cancelled" in c.params.get("text", ""))
    assert len(h.anthropic.requests) == 1


async def test_someone_else_approving_changes_nothing(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step", [])))
    await h.mention("something", user="U1")
    task = await h.wait_status("awaiting_plan_approval")
    await h.approve_plan(task.id, user="U666")
    [eph] = await h.slack.wait_for("chat.postEphemeral")
    assert eph.params["user"] == "U666" and "not yours" in eph.params["text"]
    assert (await h.task(task.id)).status == "awaiting_plan_approval"


async def test_an_approve_click_racing_the_recording_of_its_message_still_approves(
    harness: Harness,
) -> None:
    """The plan is posted, then its ts recorded: a click read between the two sees no ts, and
    the ts is recorded before its conditional update. The clicked message is the plan."""
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    h.anthropic.enqueue_text("Done.")
    await h.mention("question")
    task = await h.wait_status("awaiting_plan_approval")
    ts = await until(
        lambda: h.coworker.db.fetchval("SELECT plan_ts FROM tasks WHERE id = ?", (task.id,)),
        what="the plan's ts",
    )
    await h.coworker.db.execute("UPDATE tasks SET plan_ts = NULL WHERE id = ?", (task.id,))
    tasks = h.coworker.delegation.tasks
    read = tasks.get

    async def read_then_recorded(task_id: int) -> Any:
        row = await read(task_id)  # what the click's handler reads: no ts yet
        await h.coworker.db.execute("UPDATE tasks SET plan_ts = ? WHERE id = ?", (ts, task_id))
        return row

    tasks.get = read_then_recorded  # type: ignore[method-assign]
    try:
        assert await h.coworker.delegation.approve_plan(task.id, "U1", plan_ts=ts)
    finally:
        tasks.get = read  # type: ignore[method-assign]
    await h.wait_status("done")


async def test_follow_up_after_delivery_keeps_conversation(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    h.anthropic.enqueue_text("The capital is Paris.")
    event = await h.mention("capital of France?")
    task = await h.wait_status("awaiting_plan_approval")
    await h.approve_plan(task.id)
    await h.wait_status("done")
    h.anthropic.enqueue_text("About 2.1 million people.")
    await h.slack.send_event(
        channel_message("and its population?", user="U1", channel="C1", thread_ts=event["ts"])
    )
    await h.slack.wait_for("chat.postMessage", lambda c: "2.1 million" in str(c.params))
    last = h.anthropic.requests[-1].body["messages"]
    assert "The capital is Paris." in str(last) and "and its population?" in str(last)
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1


async def reply_during_first_act_call(
    h: Harness, replies: list[Reply], request: str, reply: str
) -> None:
    """Delegate `request`, answer model calls from `replies` in order, and `reply` in the
    thread while the first act call (the second model call) is held in flight."""
    release = asyncio.Event()

    async def responder(body: dict[str, Any]) -> Reply:
        n = len(h.anthropic.requests)  # this request is recorded before it is answered
        if n == 2:
            await release.wait()
        return replies[n - 1]

    h.anthropic.responder = responder
    event = await h.mention(request)
    await h.anthropic.wait_for_requests(2)
    await h.reply(reply, event["ts"])
    release.set()


async def test_a_reply_while_it_works_reaches_the_next_model_turn(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # The reply lands while the first act call is in flight, after the turn read the task
    # row: the next turn must look again and hand the reply to the model.
    async with make_harness(mcp=tickets_mcp(tmp_path / "t.log"), config=NO_PLAN_APPROVAL) as h:
        replies = [
            tool_reply("submit_plan", plan(("Search", ["tickets__search"]))),
            tool_reply("tickets__search", {"query": "flaky"}, id="toolu_s1"),
            text_reply("Found them; labelled as asked."),
        ]
        await reply_during_first_act_call(
            h, replies, "find flaky test tickets", "label them flaky-test too"
        )
        await h.wait_status("done")
        _, first, second = (r.body["messages"] for r in h.anthropic.requests)
        assert "label them flaky-test too" not in str(first)
        *_, answer = second
        assert [b["type"] for b in answer["content"]] == ["tool_result", "text"]
        assert "label them flaky-test too" in answer["content"][1]["text"]
        assert await h.coworker.db.fetchval("SELECT consumed FROM task_inputs") == 1


async def test_a_reply_during_the_last_turn_is_answered_as_a_follow_up(
    make_harness: Callable[..., Harness],
) -> None:
    # The reply comes in while the final answer is being written: the task is still running,
    # so intake only records it; once the answer is delivered, the reply is taken up.
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        replies = [
            tool_reply("submit_plan", plan(("Answer", []))),
            text_reply("The capital is Paris."),
            text_reply("About 2.1 million people."),
        ]
        await reply_during_first_act_call(h, replies, "capital of France?", "and its population?")
        await h.slack.wait_for("chat.postMessage", lambda c: "2.1 million" in str(c.params))
        assert deliveries(h, "The capital is Paris.")
        last = h.anthropic.requests[2].body["messages"]
        assert "The capital is Paris." in str(last) and "and its population?" in str(last)
        task = await h.wait_status("done")
        assert task.result == "About 2.1 million people."
        assert await h.coworker.db.fetchval("SELECT consumed FROM task_inputs") == 1


async def test_a_plan_revised_from_a_comment_is_the_only_one_that_can_be_approved(
    harness: Harness,
) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Drop the table", [])))
    event = await h.mention("clean up the old tables")
    old_ts = await until(lambda: h.coworker.db.fetchval("SELECT plan_ts FROM tasks"))
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Archive the table first", [])))
    await h.reply("archive it before you drop anything", event["ts"])
    new_ts = await until(
        lambda: h.coworker.db.fetchval("SELECT plan_ts FROM tasks WHERE plan_ts != ?", (old_ts,)),
        what="the revised plan",
    )
    await h.wait_status("awaiting_plan_approval")
    replaced = [c for c in h.slack.calls_to("chat.update") if c.params["ts"] == old_ts]
    assert "replaced by a revised plan" in replaced[-1].params["text"]
    assert "actions" not in str(replaced[-1].params["blocks"])  # its buttons are gone

    await h.click("plan_approve", 1, user="U1", message_ts=old_ts)  # a stale button
    [eph] = await h.slack.wait_for("chat.postEphemeral")
    assert "revised plan replaced this one" in eph.params["text"]
    assert (await h.task()).status == "awaiting_plan_approval"

    h.anthropic.enqueue_text("Archived, then dropped.")
    await h.click("plan_approve", 1, user="U1", message_ts=new_ts)
    done = await h.wait_status("done")
    assert done.result == "Archived, then dropped."
    assert (
        "Archive the table first"
        in h.anthropic.requests[-1].body["messages"][0]["content"][0]["text"]
    )


async def test_a_task_sent_back_to_planning_never_runs_the_old_plan(harness: Harness) -> None:
    # Planning again fails (the model is down); resuming must plan again and ask again,
    # not act on the plan the comment had set aside.
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Drop the table", [])))
    event = await h.mention("clean up the old tables")
    await until(lambda: h.coworker.db.fetchval("SELECT plan_ts FROM tasks"))
    for _ in range(5):
        h.anthropic.enqueue_error(500, "api_error")
    await h.reply("archive it before you drop anything", event["ts"])
    failed = await h.wait_status("failed")
    assert failed.plan is None
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Archive the table first", [])))
    await h.slack.send_slash_command(slash_command("resume T-1", user="U1"))
    task = await h.wait_status("awaiting_plan_approval")
    assert task.plan is not None and task.plan["steps"][0]["what"] == "Archive the table first"
    events = [e["kind"] for e in await h.coworker.tasks.events(1)]
    assert "plan_approved" not in events and "status:running" not in events
