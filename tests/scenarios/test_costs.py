"""Issue 7 through Slack: budgets with a top-up, prompt caching in the call log, the App Home
spend summary, and OpenTelemetry spans from a real task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot import telemetry
from tests.bot.test_telemetry import OtlpCollector, attributes
from tests.fakes.anthropic import tool_reply
from tests.scenarios.conftest import plan, tickets_mcp, tool_runs
from tests.scenarios.harness import Harness

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'
# Every call below reports 300 input tokens at $1000 per million: exactly $0.30 a call.
BUDGET_CONFIG = (
    NO_PLAN_APPROVAL
    + """
[budget]
task_usd = 1.0

[prices."claude-sonnet-5-5"]
input = 1000.0
output = 0.0
cache_write = 0.0
cache_read = 0.0
"""
)
CALL = {"input_tokens": 300}
WRAP_UP = "Budget notice"


def texts_of(body: dict) -> str:
    return str(body["messages"])


async def test_budget_wraps_up_stops_and_a_top_up_continues(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    async with make_harness(mcp=tickets_mcp(log), config=BUDGET_CONFIG) as h:
        search = ("tickets__search", {"query": "flaky"})
        h.anthropic.enqueue_tool_use(
            "submit_plan", plan(("Search", ["tickets__search"])), usage=CALL
        )  # $0.30
        h.anthropic.enqueue_tool_use(*search, usage=CALL)  # $0.60
        h.anthropic.enqueue_tool_use(*search, usage=CALL)  # $0.90: past 80%
        h.anthropic.enqueue_tool_use(*search, text="So far: TCK-1 looks flaky.", usage=CALL)
        await h.mention("find the flaky tests")  # ^ $1.20: out of budget

        paused = await h.wait_status("paused")
        assert paused.spent_usd == pytest.approx(1.20)
        requests = [r.body for r in h.anthropic.requests]
        assert len(requests) == 4  # no call after the budget ran out
        assert [WRAP_UP in texts_of(b) for b in requests[1:]] == [False, False, True]
        assert len(tool_runs(log, "search")) == 3

        [why] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "used its budget" in str(c.params)
        )
        shown = str(why.params["blocks"])  # what people see, not just the notification text
        assert "used its budget ($1.20 of $1.00)" in shown
        assert "So far: TCK-1 looks flaky." in shown  # what it has
        [ask] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Budget reached" in str(c.params)
        )
        assert "approval_approve" in str(ask.params["blocks"])
        assert "Approve top-up" in str(ask.params["blocks"])
        approval = await h.coworker.db.fetchone("SELECT * FROM approvals WHERE kind = 'budget'")

        await h.click("approval_approve", approval["id"], user="USTRANGER")
        [eph] = await h.slack.wait_for("chat.postEphemeral")
        assert "not yours" in eph.params["text"]  # only the delegator or an approver
        assert (await h.task()).status == "paused"

        h.anthropic.enqueue_text("TCK-1 is the flaky login test.", usage=CALL)
        await h.click("approval_approve", approval["id"], user="U1")
        done = await h.wait_status("done")
        assert done.result == "TCK-1 is the flaky login test."
        assert done.budget_usd == pytest.approx(2.0)
        assert done.spent_usd == pytest.approx(1.50)
        assert len(h.anthropic.requests) == 5
        await h.slack.wait_for(  # the status message: spend against the topped-up budget
            "chat.update",
            lambda c: "· done ·" in str(c.params.get("text")) and "$1.50 of $2.00" in str(c.params),
        )


async def test_a_declined_top_up_ends_the_task_without_a_second_deliverable(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    async with make_harness(mcp=tickets_mcp(tmp_path / "t.log"), config=BUDGET_CONFIG) as h:
        search = ("tickets__search", {"query": "flaky"})
        h.anthropic.enqueue_tool_use(
            "submit_plan", plan(("Search", ["tickets__search"])), usage=CALL
        )
        for _ in range(3):
            h.anthropic.enqueue_tool_use(*search, usage=CALL)
        await h.mention("find the flaky tests")
        await h.wait_status("paused")  # the task pauses before it asks for the top-up
        await h.slack.wait_for("chat.postMessage", lambda c: "Budget reached" in str(c.params))
        approval = await h.coworker.db.fetchone("SELECT * FROM approvals WHERE kind = 'budget'")
        await h.click("approval_reject", approval["id"], user="U1")  # one click
        done = await h.wait_status("done")
        assert not done.delivery_pending  # what it had was posted when the budget ran out
        # The status line is updated after the task is done; the approval message may be
        # updated (its reason) after that, so look at the status line's updates only.
        await h.slack.wait_for(
            "chat.update", lambda c: str(c.params.get("text")).startswith("T-1 · stopped")
        )
        status = [c.params["text"] for c in h.slack.calls_to("chat.update")]
        status = [text for text in status if text.startswith("T-1 · ")]
        assert status[-1].startswith("T-1 · stopped: top-up declined")
        assert await h.coworker.delivery.sweep() == 0
        assert not [c for c in h.slack.calls_to("chat.postMessage") if "Done: T-1" in str(c.params)]


async def test_later_calls_read_the_prompt_cache_and_the_log_records_it(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    async with make_harness(mcp=tickets_mcp(tmp_path / "t.log"), config=NO_PLAN_APPROVAL) as h:
        for user, task_id in (("U1", 1), ("U2", 2)):
            h.anthropic.enqueue_tool_use("submit_plan", plan(("Search", ["tickets__search"])))
            h.anthropic.enqueue_tool_use("tickets__search", {"query": "flaky"})
            h.anthropic.enqueue_text("TCK-1.")
            await h.mention("find the flaky tests", user=user)
            await h.wait_status("done", task_id=task_id)

        act = h.anthropic.requests[1].body
        assert act["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert act["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
        rows = await h.coworker.db.fetchall("SELECT * FROM llm_calls ORDER BY id")
        calls = [(r["task_id"], r["purpose"]) for r in rows]
        assert calls == [(1, "plan"), (1, "act"), (1, "act"), (2, "plan"), (2, "act"), (2, "act")]
        first_plan, first_act, second_act = rows[0], rows[1], rows[2]
        assert first_plan["cache_read_tokens"] == 0 and first_act["cache_read_tokens"] == 0
        assert first_act["cache_write_tokens"] > 0
        # the second act call reads tools + system + the first turn from the cache
        assert second_act["cache_read_tokens"] >= first_act["cache_write_tokens"]
        # the next task's calls share the stable prefix written by the first task
        assert all(r["cache_read_tokens"] > 0 for r in rows[3:])


async def test_app_home_shows_spend_for_me_and_for_admins_the_team(
    make_harness: Callable[..., Harness],
) -> None:
    config = NO_PLAN_APPROVAL + '[roles.ops]\nmembers = ["UADMIN"]\nadmin = true\ntools = ["*"]\n'
    config += '[roles.default]\ntools = ["*"]\n'
    async with make_harness(config=config) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.enqueue_text("Answer.")
        await h.mention("answer me", user="U1")
        await h.wait_status("done")
        for user in ("U1", "UADMIN"):
            await h.slack.send_event(
                {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"}
            )
        await h.slack.wait_for("views.publish", count=2)
        mine, admin = str(h.slack.home_views["U1"]), str(h.slack.home_views["UADMIN"])
        assert "Your tasks, last 7 days" in mine and "Team, last 7 days" not in mine
        assert "1 (1 done, 0 failed, 0 cancelled, 0 open)" in mine
        assert "100.0% (1 of 1)" in mine and "claude-sonnet-5-5" in mine
        assert "Team, last 7 days" in admin and "By coworker" in admin
        assert "Your tasks, last 7 days" in admin and "0 (0 done" in admin


async def test_a_task_exports_task_model_and_tool_spans(
    make_harness: Callable[..., Harness], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = OtlpCollector()
    await collector.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    try:
        async with make_harness(mcp=tickets_mcp(tmp_path / "t.log"), config=NO_PLAN_APPROVAL) as h:
            h.anthropic.enqueue_tool_use("submit_plan", plan(("Search", ["tickets__search"])))
            h.anthropic.enqueue_tool_use("tickets__search", {"query": "flaky"})
            h.anthropic.enqueue_text("TCK-1.")
            await h.mention("find the flaky tests")
            await h.wait_status("done")
            spans = await collector.wait_for(
                ["invoke_agent coworker"] * 2
                + ["chat claude-sonnet-5-5"] * 3
                + ["execute_tool tickets__search"]
            )
    finally:
        await telemetry.close()
        await collector.stop()

    names = sorted(s.name for s in spans)
    assert names.count("chat claude-sonnet-5-5") == 3
    assert names.count("execute_tool tickets__search") == 1
    runs = [s for s in spans if s.name == "invoke_agent coworker"]
    assert sorted(attributes(s)["coworker.phase"] for s in runs) == ["planning", "running"]
    acting = next(s for s in runs if attributes(s)["coworker.phase"] == "running")
    children = [s for s in spans if s.parent_span_id == acting.span_id]
    assert sorted(s.name for s in children) == [
        "chat claude-sonnet-5-5",
        "chat claude-sonnet-5-5",
        "execute_tool tickets__search",
    ]
    tool = next(s for s in children if s.name.startswith("execute_tool"))
    assert attributes(tool)["gen_ai.tool.name"] == "tickets__search"
    chat = next(s for s in children if s.name.startswith("chat"))
    assert attributes(chat)["coworker.task"] == "T-1"
    assert attributes(chat)["gen_ai.usage.input_tokens"] > 0


async def test_budget_comes_from_the_task_flag_the_coworker_or_the_default(
    make_harness: Callable[..., Harness],
) -> None:
    config = '[budget]\ntask_usd = 1.5\n[[coworkers]]\nname = "dev"\nbudget_usd = 3.0\n'
    async with make_harness(config=config) as h:
        h.anthropic.responder = lambda body: tool_reply("submit_plan", plan(("Answer", [])))
        await h.delegate("dev: fix the flaky test", user="U1")
        await h.delegate("summarize the incident !budget 0.25", user="U2")
        await h.delegate("summarize the incident", user="U3")
        budgets = []
        for task_id in (1, 2, 3):
            task = await h.wait_status("awaiting_plan_approval", task_id=task_id)
            budgets.append(task.budget_usd)
        assert budgets == [3.0, 0.25, 1.5]
        [shown] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Plan for T-2" in str(c.params.get("text"))
        )
        assert "budget $0.25" in str(shown.params["blocks"])


async def test_budget_running_out_while_planning_pauses_and_a_top_up_plans_again(
    make_harness: Callable[..., Harness],
) -> None:
    config = BUDGET_CONFIG.replace("task_usd = 1.0", "task_usd = 0.25")
    async with make_harness(config=config) as h:
        h.anthropic.enqueue_tool_use("submit_plan", {"steps": "not a list"}, usage=CALL)
        await h.mention("find the flaky tests")  # an invalid plan that spends $0.30 of $0.25
        await h.wait_status("paused")
        assert len(h.anthropic.requests) == 1  # the retry is not made
        await h.slack.wait_for("chat.postMessage", lambda c: "used its budget" in str(c.params))
        await h.slack.wait_for("chat.postMessage", lambda c: "Budget reached" in str(c.params))
        approval = await h.coworker.db.fetchone("SELECT * FROM approvals WHERE kind = 'budget'")
        cheap = {"input_tokens": 10}
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])), usage=cheap)
        h.anthropic.enqueue_text("Found them.", usage=cheap)
        await h.click("approval_approve", approval["id"], user="U1")
        done = await h.wait_status("done")
        assert done.result == "Found them." and done.budget_usd == pytest.approx(0.5)
        assert "submit_plan" in str(h.anthropic.requests[1].body.get("tool_choice"))
