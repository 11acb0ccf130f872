"""Issue 15, privacy, scope and abuse: who sees which tasks, which tools a coworker may hand
work off with, how far a request may raise its budget, and no mass mentions in our name."""

from __future__ import annotations

from tests.scenarios.conftest import plan
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
