"""The built-in slack tools stay within what the delegator can see."""

from __future__ import annotations

from tests.fakes.slack import app_mention
from tests.scenarios.conftest import plan

CONFIG = 'plan_approval = "never"\n[policy.tools]\n"slack__*" = "auto"\n'


async def test_channel_the_delegator_is_not_in_cannot_be_read(make_harness) -> None:  # type: ignore[no-untyped-def]
    async with make_harness(config=CONFIG) as h:
        h.slack.add_channel("CSECRET", "exec-private", is_private=True)
        h.slack.channel_members["CSECRET"] = ["UBOSS"]
        h.slack.add_message("CSECRET", "layoffs planned for Q3", user="UBOSS")
        h.slack.add_channel("CPUB", "general")
        h.slack.channel_members["CPUB"] = ["U1", "UBOSS"]
        h.slack.add_message("CPUB", "release on Friday", user="UBOSS")
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Read", ["slack__channel_history"])))
        h.anthropic.enqueue_tool_uses(
            [
                ("slack__channel_history", {"channel": "CSECRET"}),
                ("slack__channel_history", {"channel": "CPUB"}),
            ]
        )
        h.anthropic.enqueue_text("Summary: release on Friday.")
        await h.mention("what's new?", user="U1")
        await h.wait_status("done")
        results = str(h.anthropic.requests[-1].body["messages"][-1])
        assert "not a member of CSECRET" in results
        assert "layoffs" not in results and "release on Friday" in results


async def test_a_file_shared_with_the_request_can_be_read(make_harness) -> None:  # type: ignore[no-untyped-def]
    async with make_harness(config=CONFIG) as h:
        shared = h.slack.add_file("notes.txt", "deploy checklist: tag, build, ship")
        other = h.slack.add_file("salaries.csv", "name,salary")
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Read", ["slack__read_file"])))
        h.anthropic.enqueue_tool_uses(
            [
                ("slack__read_file", {"file_id": shared["id"]}),
                ("slack__read_file", {"file_id": other["id"]}),
            ]
        )
        h.anthropic.enqueue_text("The checklist has three steps.")
        await h.slack.send_event(app_mention("summarize this file", user="U1", files=[shared]))
        done = await h.wait_status("done")
        assert done.files[0]["id"] == shared["id"] and done.files[0]["name"] == "notes.txt"
        results = str(h.anthropic.requests[-1].body["messages"][-1])
        assert "deploy checklist: tag, build, ship" in results
        assert "only files shared with the request" in results and "salary" not in results
