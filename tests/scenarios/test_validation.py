"""Issue 8: deliverables are checked before a person sees them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.anthropic import Reply, text_reply, tool_reply
from tests.fakes.slack import channel_message
from tests.scenarios.conftest import plan, warehouse_mcp
from tests.scenarios.harness import Harness


def planned(deliverable: str) -> dict[str, Any]:
    return {**plan(("Write it", [])), "deliverable": deliverable}


def responder(
    drafts: list[str], verdicts: list[dict[str, Any]], deliverable: str = "written"
) -> Callable[[dict[str, Any]], Reply]:
    def respond(body: dict[str, Any]) -> Reply:
        choice = body.get("tool_choice", {}).get("name")
        if choice == "submit_plan":
            return tool_reply("submit_plan", planned(deliverable))
        if choice == "submit_review":
            return tool_reply("submit_review", verdicts.pop(0))
        return text_reply(drafts.pop(0))

    return respond


async def test_draft_failing_review_is_revised(make_harness: Callable[..., Harness]) -> None:
    drafts = ["Draft one, no sources.", "Draft two, citing TCK-1 (source: tracker)."]
    verdicts = [
        {"passed": False, "issues": ["cite the source of the ticket numbers"]},
        {"passed": True},
    ]
    async with make_harness(config='plan_approval = "never"\n') as h:
        h.anthropic.responder = responder(drafts, verdicts)
        await h.mention("write the weekly summary")
        done = await h.wait_status("done")
        assert done.result == "Draft two, citing TCK-1 (source: tracker)."
        reviews = [
            r.body
            for r in h.anthropic.requests
            if r.body.get("tool_choice", {}).get("name") == "submit_review"
        ]
        assert len(reviews) == 2
        revision_request = [
            r.body
            for r in h.anthropic.requests
            if "did not pass these checks" in str(r.body["messages"])
        ]
        assert "cite the source of the ticket numbers" in str(revision_request[0]["messages"][-1])
        assert done.checks == ["✅ review"]
        await h.slack.wait_for(
            "chat.postMessage", lambda c: "✅ review" in str(c.params.get("blocks"))
        )


async def test_still_failing_after_three_rounds_is_posted_with_open_issues(
    make_harness: Callable[..., Harness],
) -> None:
    drafts = ["v1", "v2", "v3"]
    verdicts = [{"passed": False, "issues": [f"problem {i}"]} for i in range(3)]
    async with make_harness(config='plan_approval = "never"\n') as h:
        h.anthropic.responder = responder(drafts, verdicts)
        await h.mention("write the weekly summary")
        done = await h.wait_status("done")
        assert done.result == "v3"
        assert done.checks[0] == "⚠️ review: problem 2"
        assert "Still open after 3 round(s)" in done.checks[-1]
        [post] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "problem 2" in str(c.params.get("blocks"))
        )
        assert "v3" in str(post.params["blocks"])


async def test_code_validation_runs_commands_feeds_back_and_stops_after_three(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    counter = tmp_path / "runs.txt"
    script = tmp_path / "check.py"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print(f'E501 line too long (run {n})')\n"
        "sys.exit(1)\n"
    )
    config = (
        'plan_approval = "never"\n[validation.code]\n'
        f'commands = ["{sys.executable} {script}"]\nworkdir = "{tmp_path}"\ntimeout = "20s"\n'
    )
    async with make_harness(config=config) as h:
        h.anthropic.responder = responder(["code v1", "code v2", "code v3"], [], deliverable="code")
        await h.mention("fix the lint errors")
        done = await h.wait_status("done", timeout=15)
        assert counter.read_text() == "3"
        assert done.result == "code v3"
        feedbacks = [
            r.body
            for r in h.anthropic.requests
            if "did not pass these checks" in str(r.body["messages"])
        ]
        assert len(feedbacks) == 2 and "E501 line too long (run 1)" in str(
            feedbacks[0]["messages"][-1]
        )
        assert "E501" in done.checks[0] and "Still open after 3" in done.checks[-1]


async def test_write_tool_needs_a_dry_run_whose_preview_is_in_the_approval(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    from tests.scenarios.conftest import tickets_mcp, tool_runs

    log = tmp_path / "t.log"
    config = 'plan_approval = "never"\n[policy.dry_run]\n"tickets__delete_tickets" = "dry_run"\n'
    async with make_harness(mcp=tickets_mcp(log), config=config) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Clean up", ["tickets__delete_tickets"])))
        h.anthropic.enqueue_tool_use("tickets__delete_tickets", {"query": "stale"})
        h.anthropic.enqueue_tool_use("tickets__delete_tickets", {"query": "stale", "dry_run": True})
        h.anthropic.enqueue_tool_use("tickets__delete_tickets", {"query": "stale"})
        await h.mention("delete the stale tickets")
        await h.wait_status("waiting_approval")
        refused = str(h.anthropic.requests[2].body["messages"][-1])
        assert "dry_run=true first" in refused
        assert tool_runs(log) == [
            {"tool": "delete_tickets", "args": {"query": "stale", "dry_run": True}}
        ]
        [ask] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "approval needed" in c.params.get("text", "")
        )
        assert "Dry-run preview" in str(ask.params["blocks"]) and "would delete 3 tickets" in str(
            ask.params["blocks"]
        )
        approval = await h.coworker.db.fetchval("SELECT id FROM approvals")
        h.anthropic.enqueue_text("Deleted 3 stale tickets.")
        await h.click("approval_approve", approval, user="U1")
        await h.wait_status("done")
        assert [r["args"]["dry_run"] for r in tool_runs(log)] == [True, False]


async def test_high_visibility_final_draft_goes_to_the_best_model(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config='plan_approval = "never"\n') as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Write", [])))
        h.anthropic.enqueue_text("rough draft")
        h.anthropic.enqueue_text("Polished announcement.")
        await h.mention("!visible write the launch announcement")
        done = await h.wait_status("done")
        assert done.result == "Polished announcement."
        final = h.anthropic.requests[-1].body
        assert final["model"] == "claude-opus-5-5" and "rough draft" in str(final["messages"])
        assert h.anthropic.requests[1].body["model"] == "claude-sonnet-5-5"


ROW_SCHEMA = {
    "type": "object",
    "required": ["id", "total"],
    "properties": {"id": {"type": "integer"}, "total": {"type": "number"}},
}


def data_plan(expect: dict[str, Any]) -> dict[str, Any]:
    step = {"what": "Query the orders", "tools": ["warehouse__query"], "expect": expect}
    return {**plan(), "steps": [step], "deliverable": "data"}


async def run_query(
    h: Harness, region: str, expect: dict[str, Any], task: int = 1
) -> tuple[str, Any]:
    """A task whose plan expects `expect` of its one query; the model's view and the task."""
    h.anthropic.enqueue_tool_use("submit_plan", data_plan(expect))
    h.anthropic.enqueue_tool_use("warehouse__query", {"region": region})
    h.anthropic.enqueue_text("Here are the orders.")
    await h.mention(f"total the {region} orders")
    done = await h.wait_status("done", task_id=task)
    result = h.anthropic.requests[-1].body["messages"][-1]["content"][0]["content"]
    return str(result), done


async def test_a_query_result_matching_the_plan_passes_its_check(
    make_harness: Callable[..., Harness],
) -> None:
    config = 'plan_approval = "never"\n'
    async with make_harness(mcp=warehouse_mcp(), config=config) as h:
        seen, done = await run_query(h, "emea", {"min_rows": 1, "row_schema": ROW_SCHEMA})
        assert "[Coworker check]" not in seen
        assert done.checks == ["✅ warehouse__query result"]
        [posted] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Done: T-1" in str(c.params)
        )
        assert "✅ warehouse__query result" in str(posted.params["blocks"])
        # A follow-up that queries nothing shows no check from the run before.
        h.anthropic.enqueue_text("The total is 200.50.")
        await h.slack.send_event(
            channel_message(
                "and the total?", user="U1", channel="C1", thread_ts=posted.params["thread_ts"]
            )
        )
        await h.slack.wait_for("chat.postMessage", lambda c: "200.50" in str(c.params))
        assert (await h.task()).checks == []


async def test_a_query_result_outside_the_expected_range_or_schema_is_flagged(
    make_harness: Callable[..., Harness],
) -> None:
    config = 'plan_approval = "never"\n'
    async with make_harness(mcp=warehouse_mcp(), config=config) as h:
        seen, done = await run_query(h, "latam", {"min_rows": 1, "max_rows": 100})
        assert "[Coworker check]" in seen and "expected 1–100 rows, got 0" in seen
        assert done.checks == ["⚠️ warehouse__query result: expected 1–100 rows, got 0"]
        [posted] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Done: T-1" in str(c.params)
        )
        assert "expected 1–100 rows, got 0" in str(posted.params["blocks"])

        seen, done = await run_query(h, "apac", {"row_schema": ROW_SCHEMA}, task=2)
        assert "row 1: 'n/a' is not of type 'number'" in seen


async def test_a_check_survives_a_restart_and_is_recorded_once(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(mcp=warehouse_mcp(), config='plan_approval = "never"\n') as h:
        h.anthropic.enqueue_tool_use("submit_plan", data_plan({"min_rows": 1}))
        h.anthropic.enqueue_tool_use("warehouse__query", {"region": "latam"})
        h.anthropic.enqueue_hang(30)  # the process stops during the next model call
        await h.mention("total the latam orders")
        await h.anthropic.wait_for_requests(3)
        await h.stop_app()
        h.anthropic.enqueue_text("There are no latam orders.")
        await h.start_app()
        done = await h.wait_status("done")
        replayed = h.anthropic.requests[-1].body["messages"][-1]["content"][0]["content"]
        assert "[Coworker check]" in replayed and "got 0" in replayed  # seen again
        assert done.checks == ["⚠️ warehouse__query result: expected 1–any rows, got 0"]
        events = await h.coworker.db.fetchval(
            "SELECT COUNT(*) FROM task_events WHERE kind = 'data_check'"
        )
        assert events == 1
