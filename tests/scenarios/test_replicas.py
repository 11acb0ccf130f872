"""The app on PostgreSQL is one replica among several: leased claims, leader-only jobs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.base.db.postgres import PostgresDatabase
from bot.cluster.inbox import InboxTable
from bot.cluster.runner import ReplicaRunner
from bot.intake import IncomingMessage
from tests.scenarios.conftest import plan, tickets_mcp, tool_runs
from tests.scenarios.harness import Harness, until


async def test_a_task_runs_end_to_end_under_a_lease_on_postgresql(
    make_harness: Callable[..., Harness], pg_db: PostgresDatabase, tmp_path: Path
) -> None:
    log = tmp_path / "tickets.log"
    async with make_harness(mcp=tickets_mcp(log), database_url=pg_db.url) as h:
        assert isinstance(h.coworker.runner, ReplicaRunner)
        replica = h.coworker.replica
        assert replica is not None and replica.leader.is_leader
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Search tickets", ["tickets__search"])))
        h.anthropic.enqueue_tool_use("tickets__search", {"query": "flaky"})
        h.anthropic.enqueue_text("Found 2 tickets.")
        await h.mention("find flaky test tickets")
        [posted] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "Plan for T-1" in c.params.get("text", "")
        )
        task = await h.wait_status("awaiting_plan_approval")
        await h.click("plan_approve", task.id, user="U1", message_ts=posted.response["ts"])
        done = await h.wait_status("done")
        assert done.result == "Found 2 tickets."
        assert tool_runs(log, "search") == [{"tool": "search", "args": {"query": "flaky"}}]
        # Planned, then acted (two claims); let go once its job ended.
        assert await pg_db.fetchval("SELECT attempts FROM tasks WHERE id = ?", (task.id,)) == 2
        await until(
            lambda: pg_db.fetchval(
                "SELECT lease_owner IS NULL FROM tasks WHERE id = ?", (task.id,)
            ),
            what="the lease let go",
        )


async def test_once_only_jobs_run_on_the_leader_only(
    make_harness: Callable[..., Harness], pg_db: PostgresDatabase
) -> None:
    await pg_db.execute(
        "INSERT INTO leader_leases (name, holder, acquired_at, expires_at)"
        " VALUES ('scheduler', 'another-replica', 0, 1e12)"
    )
    ran: list[str] = []

    async def job() -> None:
        ran.append("job")

    memory = '[memory]\nembeddings = "test"\n'
    async with make_harness(database_url=pg_db.url, config=memory) as h:
        app = h.coworker
        assert not app.leads()
        await app.once("probe", job)()
        assert ran == []
        assert app.memory is not None
        # not the leader, yet it embeds what it writes itself: the model's work is spread
        # over the replicas, and the leader's sweep only takes what was left for a while
        store = app.memory.store
        memory_id = await store.add("fact", "Deploys on Fridays need a second reviewer", "team")
        await until(
            lambda: pg_db.fetchval(
                "SELECT embedded_by IS NOT NULL FROM memories WHERE id = ?", (memory_id,)
            ),
            what="this replica to embed its own write",
        )
        names = {j.func.__name__ for j in app.scheduler.get_jobs()}
        assert {"delivery_sweep", "memory_embed", "approval_sweep"} <= names
        await pg_db.execute("DELETE FROM leader_leases")
        assert app.replica is not None and await app.replica.leader.try_acquire()
        await app.once("probe", job)()
        assert ran == ["job"]


async def test_a_mention_is_in_the_inbox_table_before_intake_and_marked_handled(
    make_harness: Callable[..., Harness], pg_db: PostgresDatabase
) -> None:
    async with make_harness(database_url=pg_db.url) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        assert h.coworker.delegation.inbox is h.coworker.replica.inbox  # type: ignore[union-attr]
        task_id = await h.delegate("summarize the incident")
        row = await until(
            lambda: pg_db.fetchone(
                "SELECT writer, handled_at FROM inbox WHERE handled_at IS NOT NULL"
            ),
            what="the inbox row handled",
        )
        assert row["writer"] == h.coworker.replica.id  # type: ignore[union-attr]
        assert task_id
    assert not list(h.tmp.glob("*.inbox.jsonl"))  # no file inbox on PostgreSQL


async def test_a_message_a_dead_replica_acknowledged_is_replayed_by_another(
    make_harness: Callable[..., Harness], pg_db: PostgresDatabase
) -> None:
    dead = InboxTable(pg_db, "dead-replica")  # acknowledged, then SIGKILLed before intake
    await dead.keep(
        IncomingMessage(
            event_id="Ev-left",
            channel="C1",
            user="U1",
            text="<@UBOT> rotate the staging keys",
            ts="1700000000.000100",
            mention=True,
        )
    )
    async with make_harness(database_url=pg_db.url) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Rotate", [])))
        task = await until(
            lambda: pg_db.fetchone(
                "SELECT id, request FROM tasks WHERE message_ts = ?", ("1700000000.000100",)
            ),
            what="the replayed message's task",
        )
        assert "rotate the staging keys" in task["request"]
        assert await pg_db.fetchval("SELECT writer FROM inbox") == h.coworker.replica.id  # type: ignore[union-attr]
