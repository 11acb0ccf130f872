"""Issue 8: coworkers handing work to each other through subtasks."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.fakes.anthropic import Reply, error_reply, text_reply, tool_reply
from tests.fakes.slack import slash_command
from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness, until

TEAM = """plan_approval = "never"
[[coworkers]]
name = "lead"
description = "Coordinates"
[[coworkers]]
name = "dev"
description = "Writes code"
[[coworkers]]
name = "qa"
description = "Tests things"
"""


class Script:
    """Replies per coworker, chosen from the system prompt of each request."""

    def __init__(self) -> None:
        self.queues: dict[str, list[Callable[[dict[str, Any]], Reply]]] = defaultdict(list)
        self.seen: dict[str, int] = defaultdict(int)
        self.active: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.delay = 0.0

    def add(self, who: str, *replies: Reply | Callable[[dict[str, Any]], Reply]) -> None:
        for r in replies:
            self.queues[who].append(r if callable(r) else (lambda body, r=r: r))

    @staticmethod
    def who(body: dict[str, Any]) -> str:
        system = " ".join(b["text"] for b in body.get("system", []))
        if body.get("tool_choice", {}).get("name") == "submit_plan":
            return "plan"
        m = re.search(r"You are (\w+)", system)
        return m.group(1) if m else "?"

    async def __call__(self, body: dict[str, Any]) -> Reply:
        who = self.who(body)
        self.seen[who] += 1
        self.active[who] += 1
        self.peak[who] = max(self.peak[who], self.active[who])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if who == "plan":
                return tool_reply("submit_plan", plan(("Coordinate", [])))
            if not self.queues[who]:
                return text_reply(f"{who} has nothing more to say")
            return self.queues[who].pop(0)(body)
        finally:
            self.active[who] -= 1


def results_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The subtask outcomes the parent received in its last tool result."""
    block = body["messages"][-1]["content"][0]
    return json.loads(block["content"])


async def start(h: Harness, script: Script, text: str = "lead: ship the release") -> None:
    h.anthropic.responder = script
    await h.mention(text)


async def test_delegate_to_another_coworker_returns_typed_result(
    make_harness: Callable[..., Harness],
) -> None:
    script = Script()
    script.add(
        "lead",
        tool_reply("team__delegate", {"coworker": "dev", "objective": "check the tests pass"}),
    )
    script.add(
        "dev",
        tool_reply(
            "team__submit_result",
            {
                "summary": "All 120 tests pass",
                "artifacts": ["ci-run-42"],
                "findings": [{"severity": "low", "text": "one slow test"}],
                "open_questions": [],
            },
        ),
    )
    script.add(
        "lead",
        lambda body: text_reply("Release is good: " + results_in(body)[0]["result"]["summary"]),
    )
    async with make_harness(config=TEAM) as h:
        await start(h, script)
        parent = await h.wait_status("done", task_id=1, timeout=10)
        child = await h.task(2)
        assert child.parent_id == 1 and child.coworker == "dev" and child.status == "done"
        assert (
            child.structured_result and child.structured_result["findings"][0]["severity"] == "low"
        )
        assert parent.result == "Release is good: All 120 tests pass"
        thread = " ".join(str(m.get("text")) for m in h.slack.thread("C1", parent.thread_ts))
        assert "handed work to `dev`" in thread and "Subtask T-2 (`dev`) done" in thread
        calls = await h.coworker.db.fetchall("SELECT task_id, purpose FROM llm_calls ORDER BY id")
        assert {r[0] for r in calls} == {1, 2}
        from bot.report_text import render_summary, render_timeline
        from bot.reports import summary, timeline

        steps = render_timeline(await timeline(h.coworker.db, 1))
        assert "T-2" in steps and "T-1" in steps
        by_coworker = render_summary(await summary(h.coworker.db, days=1))
        assert "dev" in by_coworker and "lead" in by_coworker


async def test_fan_out_runs_concurrently_within_the_limit(
    make_harness: Callable[..., Harness],
) -> None:
    script = Script()
    script.delay = 0.15
    subtasks = [{"coworker": "qa", "objective": f"test area {i}"} for i in range(3)]
    script.add("lead", tool_reply("team__fan_out", {"subtasks": subtasks}))
    for i in range(3):
        script.add("qa", tool_reply("team__submit_result", {"summary": f"area ok {i}"}))
    script.add("lead", lambda body: text_reply(f"gathered {len(results_in(body))}"))
    config = (
        TEAM
        + '[orchestration]\nfanout_concurrency = 2\n[runner]\nconcurrency = 4\nstatus_interval = "0.05s"\n'
    )
    async with make_harness(config=config) as h:
        await start(h, script)
        parent = await h.wait_status("done", task_id=1, timeout=15)
        assert parent.result == "gathered 3"
        assert script.peak["qa"] == 2
        children = await h.coworker.tasks.children(1)
        assert sorted(c.status for c in children) == ["done"] * 3


async def test_failing_child_is_escalated_after_three_failures(
    make_harness: Callable[..., Harness],
) -> None:
    script = Script()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "build it"}))
    for _ in range(3):
        script.add("dev", error_reply(400, "invalid_request_error", "bad", should_retry=False))
    script.add("lead", lambda body: text_reply("child status: " + results_in(body)[0]["status"]))
    async with make_harness(config=TEAM) as h:
        await start(h, script)
        parent = await h.wait_status("done", task_id=1, timeout=15)
        assert parent.result == "child status: failed"
        assert script.seen["dev"] == 3
        await h.slack.wait_for(
            "chat.postMessage", lambda c: "failed 3 times" in c.params.get("text", "")
        )


async def test_delegation_cycle_is_refused_and_said(make_harness: Callable[..., Harness]) -> None:
    script = Script()
    script.add(
        "lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "fix the bug"})
    )
    script.add(
        "dev", tool_reply("team__delegate", {"coworker": "dev", "objective": "Fix the bug!"})
    )
    script.add(
        "dev", lambda body: text_reply("refused: " + str("Refused" in str(body["messages"][-1])))
    )
    script.add("lead", lambda body: text_reply("done"))
    async with make_harness(config=TEAM) as h:
        await start(h, script)
        await h.wait_status("done", task_id=1, timeout=10)
        assert (await h.task(2)).result == "refused: True"
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 2
        await h.slack.wait_for(
            "chat.postMessage", lambda c: "refused a hand-off" in c.params.get("text", "")
        )
        # The same call replayed (a restart before the next checkpoint) refuses again,
        # without telling the thread twice.
        detail = await h.coworker.db.fetchval(
            "SELECT detail FROM task_events WHERE kind = 'delegation_refused'"
        )
        orchestrator = h.coworker.runner.work.toolbox.orchestrator
        again = await orchestrator.handle(
            await h.task(2),
            json.loads(detail)["key"],
            "team__delegate",
            {"coworker": "dev", "objective": "Fix the bug!"},
        )
        assert again is not None and again[1] and again[0].startswith("Refused")
        notes = [
            c
            for c in h.slack.calls_to("chat.postMessage")
            if "refused a hand-off" in c.params.get("text", "")
        ]
        assert len(notes) == 1


async def test_depth_past_the_limit_is_refused(make_harness: Callable[..., Harness]) -> None:
    script = Script()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "step one"}))
    script.add("dev", tool_reply("team__delegate", {"coworker": "qa", "objective": "step two"}))
    script.add("dev", lambda body: text_reply(str(body["messages"][-1]["content"][0]["content"])))
    script.add("lead", text_reply("done"))
    async with make_harness(config=TEAM + "[orchestration]\nmax_depth = 1\n") as h:
        await start(h, script)
        await h.wait_status("done", task_id=1, timeout=10)
        assert "depth would exceed the limit of 1" in str((await h.task(2)).result)
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 2


async def test_parent_crossing_spend_threshold_asks_for_approval(
    make_harness: Callable[..., Harness],
) -> None:
    script = Script()
    script.add(
        "lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "expensive work"})
    )
    script.add("dev", text_reply("x" * 4000))
    config = TEAM + (
        "[budget]\ntask_usd = 1.0\n[orchestration]\nspend_threshold = 0.01\n"
        '[prices."claude-sonnet-5-5"]\ninput = 3.0\noutput = 1000.0\ncache_write = 3.75\ncache_read = 0.3\n'
    )
    async with make_harness(config=config) as h:
        await start(h, script)
        await h.wait_status("waiting_approval", task_id=1, timeout=10)
        row = await h.coworker.db.fetchone("SELECT kind, status FROM approvals WHERE task_id = 1")
        assert tuple(row) == ("spend", "pending")
        await h.slack.wait_for(
            "chat.postMessage", lambda c: "approval needed for T-1" in c.params.get("text", "")
        )


async def test_restart_while_children_run_completes_with_each_result_once(
    make_harness: Callable[..., Harness],
) -> None:
    gate = asyncio.Event()

    async def slow(body: dict[str, Any]) -> Reply:
        await gate.wait()
        return tool_reply("team__submit_result", {"summary": "child result"})

    script = Script()
    subtasks = [{"coworker": "qa", "objective": f"area {i}"} for i in range(2)]
    script.add("lead", tool_reply("team__fan_out", {"subtasks": subtasks}))
    script.add(
        "lead",
        lambda body: text_reply(json.dumps([r["result"]["summary"] for r in results_in(body)])),
    )
    async with make_harness(config=TEAM) as h:
        h.anthropic.responder = script
        original = script.__call__

        async def responder(body: dict[str, Any]) -> Reply:
            if Script.who(body) == "qa":
                return await slow(body)
            return await original(body)

        h.anthropic.responder = responder
        await h.mention("lead: check both areas")
        await h.wait_status("running", task_id=3, timeout=10)
        await h.stop_app()
        gate.set()
        await h.start_app()
        parent = await h.wait_status("done", task_id=1, timeout=15)
        assert json.loads(parent.result or "[]") == ["child result", "child result"]
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks WHERE parent_id = 1") == 2


async def test_hand_off_carries_the_parents_journal(
    make_harness: Callable[..., Harness], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from tests.scenarios.conftest import tickets_mcp

    script = Script()
    script.add("lead", tool_reply("tickets__search", {"query": "login"}))
    script.add(
        "lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "fix the login test"})
    )
    script.add(
        "dev",
        lambda body: text_reply("saw: " + str("flaky login test" in str(body["messages"][0]))),
    )
    script.add("lead", text_reply("done"))
    config = TEAM + '[policy.tools]\n"tickets__search" = "auto"\n'
    async with make_harness(config=config, mcp=tickets_mcp(tmp_path / "t.log")) as h:
        await start(h, script)
        await h.wait_status("done", task_id=1, timeout=10)
        assert (await h.task(2)).result == "saw: True"


async def test_parent_wakes_after_a_crash_between_child_done_and_wake(
    make_harness: Callable[..., Harness],
) -> None:
    gate = asyncio.Event()

    async def slow(body: dict[str, Any]) -> Reply:
        await gate.wait()
        return text_reply("never used")

    script = Script()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "check it"}))
    script.add("lead", lambda body: text_reply("parent saw: " + results_in(body)[0]["status"]))
    async with make_harness(config=TEAM) as h:

        async def responder(body: dict[str, Any]) -> Reply:
            return await slow(body) if Script.who(body) == "dev" else await script(body)

        h.anthropic.responder = responder
        await h.mention("lead: check it all")
        await h.wait_status("running", task_id=2, timeout=10)
        await h.stop_app()
        gate.set()
        # The crash window: the child was recorded done, the parent was never woken.
        from bot.base.db import Database

        db = await Database.open(h.tmp / "coworker.db")
        await db.execute("UPDATE tasks SET status = 'done', result = 'checked' WHERE id = 2")
        await db.close()
        await h.start_app()
        parent = await h.wait_status("done", task_id=1, timeout=10)
        assert parent.result == "parent saw: done"


def held_dev(script: Script, gate: asyncio.Event) -> Callable[[dict[str, Any]], Any]:
    """The responder with `dev`'s model calls held until `gate` is set (they never answer)."""

    async def responder(body: dict[str, Any]) -> Reply:
        if Script.who(body) == "dev":
            script.seen["dev"] += 1
            await gate.wait()
        return await script(body)

    return responder


async def cancel(h: Harness, ref: str) -> None:
    await h.slack.send_slash_command(slash_command(f"cancel {ref}", user="U1"))


async def test_cancelling_a_task_cancels_the_subtasks_working_for_it(
    make_harness: Callable[..., Harness],
) -> None:
    script, gate = Script(), asyncio.Event()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "build it"}))
    async with make_harness(config=TEAM) as h:
        h.anthropic.responder = held_dev(script, gate)
        await h.mention("lead: ship the release")
        await until(lambda: script.seen["dev"] >= 1, what="the subtask's model call")
        await cancel(h, "T-1")
        await h.slack.wait_for("chat.postMessage", lambda c: "T-1 was cancelled" in str(c.params))
        assert [(await h.task(i)).status for i in (1, 2)] == ["cancelled", "cancelled"]
        async with asyncio.timeout(5):
            while h.coworker.runner.active:
                await asyncio.sleep(0.01)
        gate.set()
        texts = [str(m.get("text")) for m in h.slack.messages]
        assert sum("T-1 was cancelled" in t for t in texts) == 1
        assert not any("Subtask T-2" in t and "done" in t for t in texts)
        statuses = [c.params["text"] for c in h.slack.calls_to("chat.update")]
        assert any(s.startswith("T-2 · cancelled") for s in statuses)
        assert any(s.startswith("T-1 · cancelled") for s in statuses)


async def test_a_cancelled_subtask_lets_its_parent_go_on(
    make_harness: Callable[..., Harness],
) -> None:
    script, gate = Script(), asyncio.Event()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "build it"}))
    script.add("lead", lambda body: text_reply("child status: " + results_in(body)[0]["status"]))
    async with make_harness(config=TEAM) as h:
        h.anthropic.responder = held_dev(script, gate)
        await h.mention("lead: ship the release")
        await until(lambda: script.seen["dev"] >= 1, what="the subtask's model call")
        await cancel(h, "T-2")
        parent = await h.wait_status("done", task_id=1, timeout=10)
        gate.set()
        assert parent.result == "child status: cancelled"
        assert (await h.task(2)).status == "cancelled"


async def test_nothing_more_runs_for_a_cancelled_parent(
    make_harness: Callable[..., Harness],
) -> None:
    # A subtask that ended just before its parent was cancelled reports after the cancel:
    # no retry, no next stage, and a queued subtask of a cancelled parent is never claimed.
    script, gate = Script(), asyncio.Event()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "build it"}))
    async with make_harness(config=TEAM) as h:
        h.anthropic.responder = held_dev(script, gate)
        await h.mention("lead: ship the release")
        await until(lambda: script.seen["dev"] >= 1, what="the subtask's model call")
        await cancel(h, "T-1")
        await h.wait_status("cancelled", task_id=2)
        gate.set()
        await h.coworker.db.execute("UPDATE tasks SET status = 'failed' WHERE id = 2")
        orchestrator = h.coworker.delegation.orchestrator
        assert orchestrator is not None
        await orchestrator.child_finished(await h.task(2))
        assert (await h.task(2)).status == "failed"  # not queued for a retry
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 2
        await h.coworker.db.execute("UPDATE tasks SET status = 'queued' WHERE id = 2")
        assert await h.coworker.runner.claim() is None


async def test_a_subtask_whose_top_up_is_declined_stops_and_its_parent_goes_on(
    make_harness: Callable[..., Harness],
) -> None:
    script, gate = Script(), asyncio.Event()
    script.add("lead", tool_reply("team__delegate", {"coworker": "dev", "objective": "build it"}))
    script.add("lead", lambda body: text_reply("child: " + json.dumps(results_in(body)[0])))
    async with make_harness(config=TEAM) as h:
        h.anthropic.responder = held_dev(script, gate)
        await h.mention("lead: ship the release")
        await until(lambda: script.seen["dev"] >= 1, what="the subtask's model call")
        # The subtask ran out of budget: it paused and asked for a top-up (as lifecycle does).
        h.coworker.runner.stop_task(2)
        await until(lambda: 2 not in h.coworker.runner.active, what="the subtask's run to stop")
        assert await h.coworker.tasks.transition(2, "paused", from_="running")
        asked = await h.coworker.approvals.request(
            await h.task(2), kind="budget", key="t2:budget:0.50", reason="Top up?"
        )
        assert asked is not None
        await h.coworker.delegation.decide(asked, "U1", approve=False)
        parent = await h.wait_status("done", task_id=1, timeout=10)
        gate.set()
        child = await h.task(2)
        assert (child.status, child.error) == ("cancelled", "budget_declined")
        outcome = json.loads((parent.result or "").removeprefix("child: "))
        assert (outcome["status"], outcome["error"]) == ("cancelled", "budget_declined")
