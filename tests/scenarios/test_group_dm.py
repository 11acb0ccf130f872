"""Group DMs (mpim): the manifest asks for what they need, and they work like a channel.

A mention in a group DM starts a task (`app_mention`), a reply in its thread steers it
(`message.mpim`), and other messages in the group DM are not requests.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.fakes.slack import app_mention, group_dm_message
from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness

REPO = Path(__file__).resolve().parents[2]
KINDS = ("channels", "groups", "im", "mpim")


def manifest() -> dict:
    return yaml.safe_load((REPO / "slack-manifest.yaml").read_text())


def test_every_kind_of_conversation_read_has_its_scopes_and_events() -> None:
    m = manifest()
    scopes = set(m["oauth_config"]["scopes"]["bot"])
    events = set(m["settings"]["event_subscriptions"]["bot_events"])
    for kind in KINDS:
        asked = {f"{kind}:history" in scopes, f"{kind}:read" in scopes, f"message.{kind}" in events}
        assert asked == {True} or asked == {False}, kind  # all three, or none of them
    assert "message.mpim" in events  # group DMs work


def test_the_readme_lists_every_event_the_manifest_subscribes_to() -> None:
    events = manifest()["settings"]["event_subscriptions"]["bot_events"]
    readme = (REPO / "README.md").read_text()
    setup = readme[readme.index("## Set up the Slack app") :].split("\n2. ")[0]
    listed = [e for e in events if f"`{e}`" in setup]
    assert listed == events


async def test_a_group_dm_works_like_a_channel(harness: Harness) -> None:
    h = harness
    chatter = group_dm_message("lunch at noon?", user="U2")
    await h.slack.wait_for_ack(await h.slack.send_event(chatter))
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 0

    h.anthropic.enqueue_tool_use("submit_plan", plan(questions=["Which repository?"]))
    event = app_mention("fix the flaky test", user="U1", channel="G0MPIM1")
    await h.slack.send_event(event)
    await h.wait_status("waiting_input")
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Fix it in api", [])))
    await h.slack.send_event(group_dm_message("the api repo", thread_ts=event["ts"]))
    task = await h.wait_status("awaiting_plan_approval")
    assert task.channel == "G0MPIM1" and "the api repo" in task.request
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
