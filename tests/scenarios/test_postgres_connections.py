"""The app on PostgreSQL when the server drops its connections mid-task (a failover, an
idle-connection reaper, an operator's pg_terminate_backend): the task goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from tests.scenarios.conftest import plan, tickets_mcp, tool_runs
from tests.scenarios.harness import Harness

CONFIG = 'plan_approval = "never"\n'


async def terminate_other_sessions(url: str) -> int:
    """End every other client session of the database, as `pg_terminate_backend` does, and
    wait (bounded) until they are gone; how many there were."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        others = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        pids = [row[0] for row in await (await conn.execute(others)).fetchall()]
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        async with asyncio.timeout(10):
            while True:
                cur = await conn.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
                )
                row = await cur.fetchone()
                if row is not None and row[0] == 0:
                    return len(pids)
                await asyncio.sleep(0.01)


async def test_a_task_finishes_after_its_database_connections_are_terminated_mid_task(
    make_harness: Callable[..., Harness], postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "tickets.log"
    async with make_harness(mcp=tickets_mcp(log), config=CONFIG, database_url=postgres_url) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Search tickets", ["tickets__search"])))
        h.anthropic.enqueue_tool_use("tickets__search", {"query": "flaky"})
        asked, go_on = asyncio.Event(), asyncio.Event()

        async def last_turn(body: dict[str, Any]) -> str:
            asked.set()  # the search is checkpointed; the model is thinking
            await go_on.wait()
            return "Found 2 tickets."

        h.anthropic.responder = last_turn
        await h.mention("find flaky test tickets")
        async with asyncio.timeout(30):
            await asked.wait()
        assert await terminate_other_sessions(postgres_url) >= 1
        go_on.set()
        done = await h.wait_status("done", timeout=30)
    assert done.result == "Found 2 tickets."
    assert tool_runs(log, "search") == [{"tool": "search", "args": {"query": "flaky"}}]
