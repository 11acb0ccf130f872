"""Issue 6 through Slack: memory in prompts by scope, curation, forgetting, feedback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakes.slack import block_action, slash_command, view_submission
from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness, until

CONFIG = """plan_approval = "never"
[memory]
embeddings = "test"
reviewers = ["ULEAD"]
[projects]
C1 = "payments"
C2 = "search"
"""


async def command(h: Harness, text: str, user: str = "U1", channel: str = "C1") -> str:
    before = len(h.slack.calls_to("response_url"))
    await h.slack.send_slash_command(slash_command(text, user=user, channel=channel))
    calls = await h.slack.wait_for("response_url", count=before + 1)
    return str(calls[before].params.get("text"))


async def run_task(h: Harness, text: str, *, user: str, channel: str, task_id: int) -> str:
    """Run a one-step task; return everything the planner was sent (system + messages)."""
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
    h.anthropic.enqueue_text("ok")
    await h.mention(text, user=user, channel=channel)
    await h.wait_status("done", task_id=task_id)
    planning = [
        r.body
        for r in h.anthropic.requests
        if r.body.get("tool_choice", {}).get("name") == "submit_plan"
    ]
    return str(planning[-1]["system"]) + str(planning[-1]["messages"])


async def test_facts_reach_related_tasks_within_scope_only(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=CONFIG) as h:
        reply = await command(
            h, "remember payments deploys need the PCI checklist signed by Dana", channel="C1"
        )
        assert "Remembered #" in reply and "project payments" in reply
        reply = await command(
            h, "remember --me my staging database is staging-db-ana", user="U1", channel="C1"
        )
        assert "[user]" in reply
        same_project = await run_task(
            h, "deploy the payments service", user="U2", channel="C1", task_id=1
        )
        assert "PCI checklist signed by Dana" in same_project
        assert "staging-db-ana" not in same_project  # U1's own memory, U2's task
        other_project = await run_task(
            h, "deploy the payments service", user="U1", channel="C2", task_id=2
        )
        assert "PCI checklist" not in other_project
        own = await run_task(
            h, "which staging database do I use?", user="U1", channel="C1", task_id=3
        )
        assert "staging-db-ana" in own


async def test_forget_removes_it_for_good(make_harness: Callable[..., Harness]) -> None:
    async with make_harness(config=CONFIG) as h:
        await command(h, "remember the search cluster lives in eu-west-3", channel="C2")
        listing = await command(h, "memory", channel="C2")
        assert "eu-west-3" in listing
        reply = await command(h, "forget eu-west-3", channel="C2")
        assert "Forgot" in reply
        assert "eu-west-3" not in await command(h, "memory", channel="C2")
        prompt = await run_task(
            h, "where does the search cluster live?", user="U1", channel="C2", task_id=1
        )
        assert "eu-west-3" not in prompt
        assert (
            await h.coworker.db.fetchval(
                "SELECT COUNT(*) FROM memories WHERE content LIKE '%eu-west-3%'"
            )
            == 0
        )


async def test_consolidation_review_approve_and_reject(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=CONFIG) as h:
        await run_task(h, "migrate the payments ledger", user="U1", channel="C1", task_id=1)
        memory = h.coworker.memory
        assert memory is not None
        await until(
            lambda: h.coworker.db.fetchval("SELECT COUNT(*) FROM memories WHERE kind = 'episode'")
        )
        h.anthropic.enqueue_tool_use(
            "submit_facts", {"facts": ["The ledger uses Postgres 16", "Migrations run on Tuesdays"]}
        )
        await h.coworker.notifier.facts_proposed(await memory.consolidate())
        posts = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Proposed fact" in c.params.get("text", ""), count=2
        )
        assert {p.params["channel"] for p in posts} == {"C1"}
        ids = [int(p.params["blocks"][1]["elements"][0]["value"]) for p in posts]
        # A stranger may not decide; the reviewer approves one and rejects the other.
        await h.slack.send_interactive(
            block_action("fact_approve", str(ids[0]), user="UNOBODY", channel="C1")
        )
        await h.slack.wait_for("chat.postEphemeral")
        await h.slack.send_interactive(
            block_action(
                "fact_approve",
                str(ids[0]),
                user="ULEAD",
                channel="C1",
                message_ts=posts[0].response["ts"],
            )
        )
        await h.slack.send_interactive(
            block_action(
                "fact_reject",
                str(ids[1]),
                user="ULEAD",
                channel="C1",
                message_ts=posts[1].response["ts"],
            )
        )
        decided = {p.response["ts"] for p in posts}  # not the task's status updates
        await h.slack.wait_for("chat.update", lambda c: c.params.get("ts") in decided, count=2)
        statuses = {
            r["content"]: r["status"]
            for r in await h.coworker.db.fetchall(
                "SELECT content, status FROM memories WHERE kind = 'fact'"
            )
        }
        assert statuses == {"The ledger uses Postgres 16": "active"}
        # The same facts again: the approved one is a duplicate, the rejected one stays rejected.
        await run_task(h, "migrate the payments ledger again", user="U1", channel="C1", task_id=2)
        episodes = (
            "SELECT COUNT(*) FROM memories WHERE kind = 'episode' AND consolidated_at IS NULL"
        )
        await until(lambda: h.coworker.db.fetchval(episodes))
        h.anthropic.enqueue_tool_use(
            "submit_facts", {"facts": ["The ledger uses Postgres 16", "Migrations run on Tuesdays"]}
        )
        assert await memory.consolidate() == []


async def test_fact_edit_through_modal(make_harness: Callable[..., Harness]) -> None:
    async with make_harness(config=CONFIG) as h:
        memory = h.coworker.memory
        assert memory is not None
        fact_id = await memory.store.add(
            "fact", "Releses on Fridya", "project", project="payments", status="proposed"
        )
        await h.slack.send_interactive(
            block_action("fact_edit", str(fact_id), user="ULEAD", channel="C1")
        )
        await h.slack.wait_for("views.open")
        await h.slack.send_interactive(
            view_submission(
                "fact_edit",
                {"fact": {"text": "Releases on Friday"}},
                user="ULEAD",
                private_metadata=str(fact_id),
            )
        )

        async def edited() -> Any:
            fact = await memory.store.get(fact_id)
            return fact if fact and fact.content == "Releases on Friday" else None

        fact = await until(edited)
        assert fact.status == "active" and fact.decided_by == "ULEAD"


async def test_episode_recorded_and_feedback_updates_it(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=CONFIG) as h:
        await run_task(h, "summarize the payments incident", user="U1", channel="C1", task_id=1)
        await until(
            lambda: h.coworker.db.fetchval("SELECT COUNT(*) FROM memories WHERE kind = 'episode'")
        )
        row = await h.coworker.db.fetchone(
            "SELECT content, importance, project FROM memories WHERE kind = 'episode'"
        )
        assert "summarize the payments incident" in row["content"] and row["project"] == "payments"
        await h.click("feedback_down", 1, user="USOMEONE")  # not the delegator: ignored
        await h.slack.wait_for("chat.postEphemeral")
        await h.click("feedback_up", 1, user="U1")
        sql = "SELECT feedback, importance FROM memories WHERE kind = 'episode'"
        updated = await until(lambda: h.coworker.db.fetchone(sql + " AND feedback = 1"))
        assert updated["importance"] > row["importance"]
        assert (await h.task(1)).feedback == 1


async def test_app_home_shows_facts_by_scope_with_forget_and_the_review_queue(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=CONFIG) as h:
        h.slack.add_channel("C1", "payments")
        h.slack.channel_members["C1"] = ["ULEAD"]
        memory = h.coworker.memory
        assert memory is not None
        await command(
            h, "remember payments deploys need the PCI checklist", user="ULEAD", channel="C1"
        )
        await command(h, "remember search reindexes nightly", user="U1", channel="C2")
        proposed = await memory.store.add(
            "fact", "Ledger uses Postgres 16", "project", project="payments", status="proposed"
        )
        await h.slack.send_event(
            {"type": "app_home_opened", "user": "ULEAD", "channel": "D1", "tab": "home"}
        )
        await h.slack.wait_for("views.publish")
        view = str(h.slack.home_views["ULEAD"])
        assert "PCI checklist" in view and "reindexes nightly" not in view  # not in C2
        assert (
            "Facts to review" in view
            and "Ledger uses Postgres 16" in view
            and "fact_forget" in view
        )
        fact_id = (await memory.listing("ULEAD", "C1"))[0].id
        await h.slack.send_interactive(
            block_action("fact_forget", str(fact_id), user="ULEAD", channel="D1")
        )
        await h.slack.wait_for("views.publish", count=2)
        assert "PCI checklist" not in str(h.slack.home_views["ULEAD"])
        assert await memory.store.get(proposed) is not None


async def test_fact_remembered_in_a_task_reaches_a_later_related_task(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=CONFIG) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Remember", ["memory__remember"])))
        h.anthropic.enqueue_tool_use(
            "memory__remember",
            {"content": "Refunds over $500 need Finance sign-off", "task_id": 999},
        )
        h.anthropic.enqueue_text("Noted.")
        await h.mention(
            "remember: refunds over $500 need Finance sign-off", user="U1", channel="C1"
        )
        await h.wait_status("done", task_id=1)
        act_tools = next(
            r.body["tools"]
            for r in h.anthropic.requests
            if r.body.get("tools") and not r.body.get("tool_choice")
        )
        remember_schema = next(t for t in act_tools if t["name"] == "memory__remember")[
            "input_schema"
        ]
        assert "task_id" not in remember_schema["properties"]
        fact = await until(
            lambda: h.coworker.db.fetchone(
                "SELECT id, status, project, source_task FROM memories WHERE kind = 'fact'"
            )
        )
        assert (fact["status"], fact["project"], fact["source_task"]) == ("proposed", "payments", 1)
        await h.slack.send_interactive(
            block_action("fact_approve", str(fact["id"]), user="ULEAD", channel="C1")
        )
        await until(
            lambda: h.coworker.db.fetchval(
                "SELECT 1 FROM memories WHERE kind = 'fact' AND status = 'active'"
            )
        )
        related = await run_task(h, "issue a $700 refund", user="U2", channel="C1", task_id=2)
        assert "Finance sign-off" in related
        elsewhere = await run_task(h, "issue a $700 refund", user="U2", channel="C2", task_id=3)
        assert "Finance sign-off" not in elsewhere


async def test_a_task_recalls_once_for_its_plan_and_its_work(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=CONFIG) as h:
        await command(h, "remember payments deploys need the PCI checklist signed by Dana")
        await run_task(h, "deploy the payments service", user="U2", channel="C1", task_id=1)
        prompts = [str(r.body["system"]) + str(r.body["messages"]) for r in h.anthropic.requests]
        assert len(prompts) == 2  # the plan, then the work
        assert all("PCI checklist signed by Dana" in p for p in prompts)
        # Planned and started at once: the memories the plan saw are the ones the work gets,
        # recalled (and counted as used) once.
        used = await h.coworker.db.fetchval(
            "SELECT use_count FROM memories WHERE content LIKE '%PCI checklist%'"
        )
        assert used == 1
