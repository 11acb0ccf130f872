"""Issue 4: restarts, long answers, Slack and Anthropic errors, concurrency, cancel, commands."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.agent import TRIMMED
from bot.base.db import sqlite_module
from bot.tasks import Task
from handlers.messages import incoming
from tests.fakes.anthropic import Reply, text_reply, tool_reply
from tests.fakes.slack import app_mention, event_callback, slash_command
from tests.reliability.conftest import effects_mcp
from tests.scenarios.conftest import plan, tickets_mcp, tool_runs
from tests.scenarios.harness import Harness, until

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


async def wait_for_journal(h: Harness, status: str = "ok", timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await h.coworker.db.fetchval(
            "SELECT COUNT(*) FROM tool_calls WHERE status = ?", (status,)
        ):
            await asyncio.sleep(0.01)


async def test_restart_mid_task_finishes_and_tool_ran_once(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "tickets.log"
    async with make_harness(mcp=tickets_mcp(log), config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Search", ["tickets__search"])))
        h.anthropic.enqueue_tool_use("tickets__search", {"query": "deploy"})
        h.anthropic.enqueue_hang(30)  # the model call after the tool result never returns
        await h.mention("what deploy tickets are open?")
        await wait_for_journal(h)
        await h.anthropic.wait_for_requests(3)
        await h.stop_app()  # the process goes away mid-task
        assert (await_status := await h_status(h, tmp_path)) == "running", await_status
        h.anthropic.enqueue_text("TCK-2 slow deploy is open.")
        await h.start_app()
        done = await h.wait_status("done")
        assert done.result == "TCK-2 slow deploy is open."
        assert len(tool_runs(log, "search")) == 1
        resumed = h.anthropic.requests[-1].body["messages"]
        assert "2 tickets match 'deploy'" in str(resumed)


async def test_a_result_replayed_after_a_restart_is_what_the_model_saw_live(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    config = NO_PLAN_APPROVAL + "[gateway]\nresult_max_chars = 500\n"
    async with make_harness(mcp=effects_mcp(tmp_path / "e.log"), config=config) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Read", ["effects__echo"])))
        h.anthropic.enqueue_tool_use("effects__echo", {"text": "log line\n" * 400})
        h.anthropic.enqueue_hang(30)
        await h.mention("job-1: read the log")
        [live_request] = (await h.anthropic.wait_for_requests(3))[2:]
        await h.stop_app()
        h.anthropic.enqueue_text("The log repeats one line.")
        await h.start_app()
        await h.wait_status("done")

        def result(body: dict[str, Any]) -> Any:
            return next(
                b
                for m in body["messages"]
                if m["role"] == "user"
                for b in m["content"]
                if b.get("type") == "tool_result"
            )

        live, replayed = result(live_request.body), result(h.anthropic.requests[-1].body)
        assert "cut: 500 of" in str(live["content"])
        assert replayed["content"] == live["content"]


async def h_status(h: Harness, tmp_path: Path) -> str:
    from bot.base.db import Database

    db = await Database.open(tmp_path / "coworker.db")
    try:
        return str(await db.fetchval("SELECT status FROM tasks WHERE id = 1"))
    finally:
        await db.close()


def inbox_lines(h: Harness) -> list[dict[str, object]]:
    path = h.tmp / "coworker.db.inbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_mention_is_on_disk_before_slack_is_acknowledged(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    other = sqlite_module().connect(str(h.tmp / "coworker.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database: intake must wait
    try:
        envelope = await h.slack.send_event(
            app_mention("what changed in the deploy?"), event_id="Ev-deploy"
        )
        await h.slack.wait_for_ack(envelope, timeout=2)  # the ack does not wait for it
        assert [e["event_id"] for e in inbox_lines(h)] == ["Ev-deploy"]
        assert other.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
    task = await h.wait_status("awaiting_plan_approval")
    assert task.request.endswith("what changed in the deploy?")


async def test_a_message_acknowledged_just_before_a_crash_is_handled_at_start(
    harness: Harness,
) -> None:
    h = harness
    await h.stop_app()
    # What the inbox holds when the process died after Slack's ack and before intake.
    event = app_mention("summarize the incident channel")
    h.slack.add_event_message(event)
    msg = incoming(event_callback(event, "Ev-crashed"), event, h.slack.bot_user_id, mention=True)
    assert msg is not None
    line = json.dumps({"at": time.time(), **dataclasses.asdict(msg)})
    (h.tmp / "coworker.db.inbox.jsonl").write_text(line + "\n" + line[:40])  # + a torn line
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Summarize", [])))
    await h.start_app()
    task = await h.wait_status("awaiting_plan_approval")
    assert task.request.endswith("summarize the incident channel")
    assert task.message_ts == event["ts"]
    assert inbox_lines(h) == []  # handled, so cut from the file
    # Slack's own copy, if it comes after all, is the same event: nothing new.
    await h.slack.wait_for_ack(await h.slack.send_event(event, event_id="Ev-crashed"))
    await h.stop_app()  # waits for the message in flight
    await h.start_app()  # and the inbox line it left is recognised as handled
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
    assert inbox_lines(h) == []


async def test_old_tool_output_gives_way_when_working_memory_is_full(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    config = NO_PLAN_APPROVAL + "[runner]\nworking_memory_tokens = 1000\n"

    def model(body: dict[str, Any]) -> Reply:
        if (body.get("tool_choice") or {}).get("name") == "submit_plan":
            return tool_reply("submit_plan", plan(("Read", ["effects__echo"])))
        n = str(body["messages"]).count("'tool_result'")
        if n < 4:
            return tool_reply("effects__echo", {"text": f"page {n} " + "x" * 1500})
        return text_reply("Read all four pages.")

    async with make_harness(mcp=effects_mcp(tmp_path / "e.log"), config=config) as h:
        h.anthropic.responder = model
        await h.mention("job-1: read the four pages")
        done = await h.wait_status("done")
        assert done.result == "Read all four pages."
        results = [
            [
                b["content"]
                for m in r.body["messages"]
                if m["role"] == "user"
                for b in m["content"]
                if isinstance(b, dict) and b.get("type") == "tool_result"
            ]
            for r in h.anthropic.requests[1:]
        ]
        last = results[-1]
        assert len(last) == 4 and "page 3 " in str(last[-1])  # the newest stays whole
        assert TRIMMED in str(last[0]) and "page 0 " not in str(last)
        assert all(len(json.dumps(r)) // 4 < 1500 for r in results)  # near the budget


async def test_long_answer_arrives_intact_as_a_file(make_harness: Callable[..., Harness]) -> None:
    answer = "\n\n".join(f"## Part {i}\n" + ("word " * 120).strip() for i in range(46))
    answer += "\n```python\n" + "print('x')\n" * 200 + "```\n"
    assert len(answer) > 30_000
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Write", [])))
        h.anthropic.enqueue_text(answer)
        await h.mention("write the long report")
        await h.wait_status("done")
        await h.slack.wait_for("files.completeUploadExternal")
        [stored] = list(h.slack.files.values())
        text = stored.content.decode() if isinstance(stored.content, bytes) else stored.content
        assert text == answer.strip()
        errors = [c for c in h.slack.calls if c.response and not c.response.get("ok", True)]
        assert errors == []


async def test_medium_answer_is_split_without_breaking_code(
    make_harness: Callable[..., Harness],
) -> None:
    answer = (
        "Intro\n\n```\n" + "\n".join(f"line {i} " + "x" * 60 for i in range(150)) + "\n```\nEnd."
    )
    assert 10_000 < len(answer) <= 12_000
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Write", [])))
        h.anthropic.enqueue_text(answer)
        await h.mention("write it")
        await h.wait_status("done")
        parts = [
            b["text"]
            for m in h.slack.messages
            for b in m.get("blocks") or []
            if b["type"] == "markdown"
        ]
        joined = "".join(parts)
        assert "line 0 " in joined and "line 149 " in joined and "End." in joined
        assert all(p.count("```") % 2 == 0 for p in parts)
        errors = [c for c in h.slack.calls if c.response and not c.response.get("ok", True)]
        assert errors == []


async def test_post_message_rate_limited_twice_still_delivers(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.enqueue_text("Delivered despite rate limits.")
        h.slack.fail_next("chat.postMessage", times=2, status=429, retry_after=0)
        await h.mention("hi")
        await h.wait_status("done")
        await h.slack.wait_for("chat.postMessage", lambda c: "Delivered despite" in str(c.params))
        limited = [
            c
            for c in h.slack.calls_to("chat.postMessage")
            if c.response and c.response.get("error") == "ratelimited"
        ]
        assert len(limited) == 2


async def test_anthropic_overloaded_twice_still_completes(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.enqueue_error(529, "overloaded_error")
        h.anthropic.enqueue_error(529, "overloaded_error")
        h.anthropic.enqueue_text("Done after retries.")
        await h.mention("hi")
        done = await h.wait_status("done")
        assert done.result == "Done after retries."
        errors = await h.coworker.db.fetchval(
            "SELECT COUNT(*) FROM llm_calls WHERE error IS NOT NULL"
        )
        assert errors == 0


async def test_anthropic_failing_for_good_is_explained(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        for _ in range(5):
            h.anthropic.enqueue_error(500, "api_error", "internal detail sk-ant-secret-123")
        await h.mention("hi")
        failed = await h.wait_status("failed")
        [msg] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "couldn't reach the model API" in str(c.params)
        )
        assert "resume T-1" in msg.params["text"]
        assert "sk-ant-secret" not in h.texts() and "Traceback" not in h.texts()
        assert failed.error == "model_unavailable"
        # The status line says how it ended, rather than "running" for ever.
        [status] = h.slack.calls_to("chat.update")[-1:]
        assert status.params["text"].startswith("T-1 · failed · step 0/1")


async def test_ten_tasks_with_concurrency_four(make_harness: Callable[..., Harness]) -> None:
    config = NO_PLAN_APPROVAL + '[runner]\nconcurrency = 4\nstatus_interval = "0.05s"\n'
    async with make_harness(config=config) as h:

        def respond(body: dict) -> object:
            if body.get("tool_choice", {}).get("name") == "submit_plan":
                return tool_reply("submit_plan", plan(("Answer", [])))
            return text_reply("ok")

        h.anthropic.responder = respond
        h.anthropic.latency = (0.02, 0.05)
        for i in range(10):
            await h.mention(f"task {i}", user=f"U{i}")
        for task_id in range(1, 11):
            await h.wait_status("done", task_id=task_id, timeout=20)
        assert h.coworker.runner.peak == 4


async def test_cancel_during_run_stops_it(make_harness: Callable[..., Harness]) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Think hard", [])))
        h.anthropic.enqueue_hang(30)
        await h.mention("think about it")
        await h.anthropic.wait_for_requests(2)
        await h.slack.send_slash_command(slash_command("cancel T-1", user="U1"))
        await h.wait_status("cancelled")
        await h.slack.wait_for(
            "chat.postMessage", lambda c: "T-1 was cancelled" in c.params.get("text", "")
        )
        async with asyncio.timeout(5):
            while h.coworker.runner.active:
                await asyncio.sleep(0.01)
        said = [m for m in h.slack.messages if "was cancelled" in str(m.get("text"))]
        assert len(said) == 1  # once, though both the command and the stopped run saw it
        status = [c.params["text"] for c in h.slack.calls_to("chat.update")]
        assert status[-1].startswith("T-1 · cancelled")


async def test_slash_commands_help_tasks_status(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step", [])))
    await h.mention("summarize the incident", user="U1")
    await h.wait_status("awaiting_plan_approval")
    for text in ("help", "tasks", "status T-1", "status T-999", "frobnicate"):
        await h.slack.send_slash_command(slash_command(text, user="U1"))
    replies = await h.slack.wait_for("response_url", count=5)
    bodies = [str(r.params.get("text")) for r in replies]
    assert any("/coworker status T-42" in b for b in bodies)
    assert any("`T-1` waiting for plan approval" in b for b in bodies)
    assert any("can't find that task" in b for b in bodies)
    assert any("don't know `frobnicate`" in b for b in bodies)


async def test_app_home_shows_open_tasks(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step", [])))
    await h.mention("summarize the incident", user="U1")
    await h.wait_status("awaiting_plan_approval")
    await h.slack.send_event(
        {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"}
    )
    await h.slack.wait_for("views.publish")
    assert "T-1" in str(h.slack.home_views["U1"])


def second_part(params: dict[str, Any]) -> bool:
    return any(
        b.get("type") == "markdown" and b["text"].startswith("Section 1")
        for b in params.get("blocks") or []
    )


TWO_PARTS = "\n\n".join(f"Section {i}\n" + "word " * 1150 for i in range(2))


async def deliver_two_parts(
    h: Harness, refusing: Callable[[dict[str, Any]], bool], error: str
) -> Task:
    """A task whose answer is two parts, delivered while Slack refuses some posts: the task."""
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Write", [])))
    h.anthropic.enqueue_text(TWO_PARTS)
    h.slack.refuse("chat.postMessage", refusing, error)
    await h.mention("write the report")
    return await h.wait_status("done")


async def test_a_follow_up_first_posts_the_rest_of_an_answer_slack_cut_short(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        first = await deliver_two_parts(h, second_part, "service_unavailable")
        assert (first.delivered_parts, first.delivery_pending) == (1, True)
        h.slack.stop_refusing()
        h.anthropic.enqueue_text("Yes: the rest of it is above now.")
        await h.reply("your answer looks cut off?", first.thread_ts)
        await h.slack.wait_for("chat.postMessage", lambda c: "rest of it is above" in str(c.params))
        posted = [c for c in h.slack.calls_to("chat.postMessage") if c.response.get("ok")]
        texts = [str(c.params.get("blocks")) for c in posted]
        rest = next(i for i, c in enumerate(posted) if second_part(c.params))
        follow_up = next(i for i, t in enumerate(texts) if "rest of it is above" in t)
        assert rest < follow_up
        done = await h.wait_status("done")
        assert done.result == "Yes: the rest of it is above now." and not done.delivery_pending


def has_markdown(params: dict[str, Any]) -> bool:
    return any(b.get("type") == "markdown" for b in params.get("blocks") or [])


async def test_an_answer_whose_blocks_slack_refuses_arrives_as_text(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        done = await deliver_two_parts(h, has_markdown, "invalid_blocks")
        assert (done.delivered_parts, done.delivery_pending) == (2, False)
        thread = h.slack.thread(done.channel, done.thread_ts)
        texts = [m["text"] for m in thread if not m.get("blocks") and "Section" in m["text"]]
        assert [t.split("\n")[0] for t in texts] == ["Section 0", "Section 1"]
        assert " ".join(" ".join(texts).split()) == " ".join(TWO_PARTS.split())
        feedback = [m for m in thread if "feedback_up" in str(m.get("blocks"))]
        assert len(feedback) == 1 and thread.index(feedback[0]) > thread.index(
            next(m for m in thread if m.get("text", "").startswith("Section 1"))
        )


def refused(h: Harness, text: str) -> bool:
    return any(
        text in str(c.params.get("text")) and not c.response.get("ok")
        for c in h.slack.calls_to("chat.postMessage")
    )


async def test_a_plan_or_questions_slack_did_not_take_are_posted_by_the_sweep(
    harness: Harness,
) -> None:
    h = harness
    h.coworker.delivery.settle = 0.0  # no post under way to wait for in this test
    h.slack.refuse(
        "chat.postMessage", lambda p: "Plan for T-1" in str(p.get("text")), "service_unavailable"
    )
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step", [])))
    await h.mention("summarize the incident")
    await h.wait_status("awaiting_plan_approval")
    await until(lambda: refused(h, "Plan for T-1"), what="the refused plan")
    await until(lambda: h.coworker.runner.active == {}, what="planning to end")
    assert (await h.task()).plan_ts is None
    h.slack.stop_refusing()
    h.coworker.delivery.busy = lambda task_id: True  # a job at work posts for itself
    await h.coworker.delivery.sweep()
    assert (await h.task()).plan_ts is None
    h.coworker.delivery.busy = lambda task_id: False
    await h.coworker.delivery.sweep()
    assert (await h.task()).plan_ts is not None
    h.anthropic.enqueue_text("Summary.")
    await h.approve_plan()
    await h.wait_status("done")

    h.slack.refuse(
        "chat.postMessage", lambda p: "a few questions" in str(p.get("text")), "service_unavailable"
    )
    h.anthropic.enqueue_tool_use("submit_plan", plan(questions=["Which service?"]))
    task_id = await h.delegate("fix the outage", channel="C2")
    await h.wait_status("waiting_input", task_id=task_id)
    await until(lambda: refused(h, "a few questions"), what="the refused questions")
    await until(lambda: h.coworker.runner.active == {}, what="planning to end")
    await h.coworker.delivery.sweep()  # still refused: tried again next time
    h.slack.stop_refusing()
    await h.coworker.delivery.sweep()
    asked = [
        c
        for c in h.slack.calls_to("chat.postMessage")
        if c.response.get("ok") and "Which service?" in str(c.params.get("text"))
    ]
    assert len(asked) == 1
    await h.coworker.delivery.sweep()  # once taken, never again
    assert (
        len(
            [
                c
                for c in h.slack.calls_to("chat.postMessage")
                if c.response.get("ok") and "Which service?" in str(c.params.get("text"))
            ]
        )
        == 1
    )


async def test_a_deliverable_slack_did_not_take_for_a_day_is_given_up_and_said(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    h.anthropic.enqueue_text("The answer.")
    await h.mention("question")
    await h.approve_plan()
    await h.wait_status("done")
    two_days_ago = time.time() - 2 * 24 * 3600
    await h.coworker.db.execute(
        "UPDATE tasks SET delivery_pending = 1, delivered_parts = 0, finished_at = ?",
        (two_days_ago,),
    )
    posts = len(h.slack.calls_to("chat.postMessage"))
    assert await h.coworker.delivery.sweep() == 0
    assert not (await h.task()).delivery_pending
    assert "T-1: Slack did not take its deliverable within a day" in caplog.text
    assert len(h.slack.calls_to("chat.postMessage")) == posts


async def test_approve_works_on_a_plan_whose_message_ts_never_came_back(harness: Harness) -> None:
    # Slack took the plan but its answer was lost: the one plan message is the one clicked.
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Step", [])))
    await h.mention("summarize the incident")
    seen = await until(lambda: h.coworker.db.fetchval("SELECT plan_ts FROM tasks"))
    await h.coworker.db.execute("UPDATE tasks SET plan_ts = NULL")
    h.anthropic.enqueue_text("Summary.")
    await h.click("plan_approve", 1, user="U1", message_ts=seen)
    assert (await h.wait_status("done")).result == "Summary."
