"""Issue 15, privacy, scope and abuse: who sees which tasks, which tools a coworker may hand
work off with, how far a request may raise its budget, and no mass mentions in our name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.fakes.slack import slash_command
from tests.scenarios.conftest import plan, tickets_mcp
from tests.scenarios.harness import Harness

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'
MASS = "<!channel> <!here|here> <!everyone> <!subteam^S0123|@oncall> @channel"


async def test_mass_mentions_the_model_writes_notify_nobody(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan((f"Tell {MASS}", [])))
    await h.mention("summarize the incident")
    task = await h.wait_status("awaiting_plan_approval")
    h.anthropic.enqueue_text(f"Summary for {MASS}: all good.")
    await h.approve_plan(task.id)
    await h.wait_status("done")
    await h.slack.wait_for("chat.postMessage", lambda c: "all good" in str(c.params))
    posted = h.texts()
    assert "all good" in posted
    for mention in ("<!channel>", "<!here", "<!everyone>", "<!subteam", " @channel"):
        assert mention not in posted
    # Each still reads as text: "@", a word joiner (json.dumps writes it \u2060), the name.
    assert "for @\\u2060channel @\\u2060here @\\u2060everyone @\\u2060oncall" in posted


SCOPED_TEAM = """plan_approval = "never"
[[coworkers]]
name = "dev"
tools = ["tickets__search"]
[[coworkers]]
name = "lead"
tools = ["tickets__*", "team__delegate"]
[[coworkers]]
name = "writer"
"""


async def test_hand_off_tools_obey_the_coworkers_tool_globs(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    async with make_harness(mcp=tickets_mcp(log), config=SCOPED_TEAM) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Search", ["tickets__search"])))
        h.anthropic.enqueue_tool_use(
            "team__delegate", {"coworker": "writer", "objective": "write it up"}
        )
        h.anthropic.enqueue_text("Searched only.")
        await h.mention("dev: look for flaky tickets")
        done = await h.wait_status("done")
        offered = [t["name"] for t in h.anthropic.requests[1].body["tools"]]
        assert offered == ["tickets__search"]
        refused = str(h.anthropic.requests[-1].body["messages"][-1])
        assert "team__delegate: not among this task's tools" in refused
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM spawns") == 0
        assert done.result == "Searched only."

        # A glob that names one hand-off tool offers that one; the default ("*") all three.
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Plan", [])))
        h.anthropic.enqueue_text("Nothing to hand off.")
        await h.delegate("lead: triage")
        await h.wait_status("done", task_id=2)
        lead = [t["name"] for t in h.anthropic.requests[-1].body["tools"]]
        assert [n for n in lead if n.startswith("team__")] == ["team__delegate"]
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Plan", [])))
        h.anthropic.enqueue_text("Done.")
        await h.delegate("writer: draft notes")
        await h.wait_status("done", task_id=3)
        writer = [t["name"] for t in h.anthropic.requests[-1].body["tools"]]
        assert {"team__delegate", "team__fan_out", "team__pipeline"} <= set(writer)


async def test_a_request_cannot_lift_its_budget_past_the_cap(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Rebuild it", [])))
    await h.mention("!budget 100000 rebuild the search index")
    task = await h.wait_status("awaiting_plan_approval")
    assert task.budget_usd == 20.0  # 10 x the default task_usd of $2.00
    await h.slack.wait_for(
        "chat.postMessage", lambda c: "a request can set at most $20.00" in str(c.params)
    )
    [shown] = await h.slack.wait_for(
        "chat.postMessage", lambda c: "Plan for T-1" in c.params.get("text", "")
    )
    blocks = str(shown.params["blocks"])
    assert (
        "budget $20.00 (you asked for $100,000.00: more than this needs an approver's top-up)"
        in blocks
    )

    h.anthropic.enqueue_tool_use("submit_plan", plan(("Tidy", [])))
    await h.delegate("!budget 0 tidy the wiki")
    await h.slack.wait_for(
        "chat.postMessage", lambda c: "`!budget 0` has no amount I can use" in str(c.params)
    )
    assert (await h.task(2)).budget_usd == 2.0


async def ask(h: Harness, text: str, user: str, channel: str = "C1") -> str:
    """A `/coworker` command from `user`; the ephemeral answer's text."""
    before = len(h.slack.calls_to("response_url"))
    await h.slack.send_slash_command(slash_command(text, user=user, channel=channel))
    *_, answer = await h.slack.wait_for("response_url", count=before + 1)
    return str(answer.params["text"])


ADMINS = '[roles.admins]\nadmin = true\nmembers = ["UADMIN"]\n'


async def test_people_see_their_tasks_their_channels_tasks_and_admins_all(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=ADMINS) as h:
        h.slack.add_channel("C1")
        h.slack.channel_members["C1"] = ["U2", "U3"]
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Draft it", [])))
        await h.dm("confidential: draft the layoff memo", user="U1", channel="D1")
        await h.wait_status("awaiting_plan_approval", task_id=1)
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Fix it", [])))
        assert await h.delegate("fix the flaky login test", user="U2", channel="C1") == 2
        await h.wait_status("awaiting_plan_approval", task_id=2)

        # A member of C1 sees the channel's task, not another person's DM task.
        listing = await ask(h, "tasks", user="U3")
        assert "`T-2`" in listing and "flaky login" in listing
        assert "T-1" not in listing and "confidential" not in listing
        assert await ask(h, "status T-1", user="U3") == "I can't find that task."
        assert await ask(h, "report T-1", user="U3") == "I can't find that task."
        assert "fix the flaky login test" in await ask(h, "status T-2", user="U3")
        # Someone outside C1 sees neither; the delegator sees their own DM task.
        assert await ask(h, "status T-2", user="U4") == "I can't find that task."
        assert "T-2" not in await ask(h, "tasks", user="U4")
        assert "confidential" in await ask(h, "status T-1", user="U1", channel="D1")
        assert "T-1 · waiting for plan approval" in await ask(
            h, "report T-1", user="U1", channel="D1"
        )
        # An admin sees everything.
        everything = await ask(h, "tasks", user="UADMIN")
        assert "`T-1`" in everything and "`T-2`" in everything
        assert "confidential" in await ask(h, "status T-1", user="UADMIN")
