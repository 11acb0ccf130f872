"""Issue 9.1: crash recovery.

The first test runs the real bot as a child process and SIGKILLs it at random points of a
multi-step task with approvals (tests/reliability/crash.py), restarting it on the same
database each time. By default it kills 5 times with a fresh seed, printed (and shown in
any failure) so a failing run can be replayed: RELIABILITY_SEED=<seed>. RELIABILITY_KILLS=20
runs the full-size version (so does `python benchmarks/reliability.py`).

The other tests pin, in-process and deterministically, the crash windows the random run
found: an approval decided just before a crash, a re-run interrupted again, and a stop
between finishing a task and posting its deliverable.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.base.db import open_database
from tests.fakes.anthropic import Reply, text_reply
from tests.reliability.conftest import effects_mcp
from tests.reliability.crash import CrashRun
from tests.reliability.script import job_of, runs
from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness, until

KILLS = int(os.environ.get("RELIABILITY_KILLS", "5"))
NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


async def test_random_sigkills_lose_no_task_and_repeat_no_side_effect(tmp_path: Path) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED") or random.randrange(1_000_000))
    print(f"\ncrash recovery seed: {seed} (replay with RELIABILITY_SEED={seed})")
    async with CrashRun(tmp_path, kills=KILLS, seed=seed) as run:
        report = await run.run()
        log = run.effects_log
        bot_log = run.bot.log_text() if run.bot else ""
    print("\n".join(report.lines()))
    context = f"seed {seed}; kills {[(k.mode, round(k.at, 2), k.in_doubt) for k in report.kills]}"
    assert len(report.kills) == KILLS
    assert report.lost == 0, context
    assert report.repeated == {}, context
    assert report.missing == [], context
    for job in range(1, report.jobs + 1):
        interrupted = sum(
            1
            for k in report.kills
            for tool, j in k.in_doubt
            if tool.endswith("search") and j == job
        )
        assert runs(log, "search", job) <= 1 + interrupted, context
    assert report.resume, context
    assert "Traceback" not in bot_log, context


async def test_approval_decided_just_before_a_crash_goes_on(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("File it", ["effects__create_ticket"])))
        h.anthropic.enqueue_tool_use("effects__create_ticket", {"title": "job-1 flaky"})
        await h.mention("job-1: file a ticket")
        await h.wait_status("waiting_approval")
        await h.stop_app()
        # The decision's first write landed; the process died before the task moved on.
        db = await open_database(f"sqlite:///{tmp_path / 'coworker.db'}")
        try:
            changed = await db.execute(
                "UPDATE approvals SET status = 'approved', decided_by = 'U1' WHERE status = 'pending'"
            )
        finally:
            await db.close()
        assert changed == 1
        h.anthropic.enqueue_text("Filed TCK-99.")
        await h.start_app()
        done = await h.wait_status("done", timeout=10)
        assert done.result == "Filed TCK-99."
        assert runs(log, "create_ticket", 1) == 1


async def test_rerun_interrupted_again_is_asked_again(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    log, hold = tmp_path / "effects.log", tmp_path / "hold"
    hold.touch()
    mcp = effects_mcp(log, EFFECTS_HOLD=str(hold))
    async with make_harness(mcp=mcp, config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("File it", ["effects__create_ticket"])))
        h.anthropic.enqueue_tool_use("effects__create_ticket", {"title": "job-1 flaky"})
        await h.mention("job-1: file a ticket")
        for suffix in ("", ":rerun", ":rerun2"):
            approval = await until(
                lambda s=suffix: h.coworker.db.fetchone(
                    "SELECT id FROM approvals WHERE status = 'pending' AND message_ts IS NOT NULL"
                    " AND idempotency_key LIKE ?",
                    (f"%{s}" if s else "%toolu%",),
                ),
                what=f"an approval request '{suffix}'",
            )
            if suffix == ":rerun2":
                break
            await h.click("approval_approve", approval["id"], user="U1")
            await until(
                lambda a=approval["id"]: h.coworker.db.fetchval(
                    "SELECT 1 FROM tool_calls WHERE status = 'started' AND approval_id = ?", (a,)
                ),
                what="the approved call in flight",
            )
            await h.stop_app()  # interrupted while the server holds the call
            await h.start_app()
        assert (await h.wait_status("waiting_approval")).status == "waiting_approval"
        hold.unlink()
        h.anthropic.enqueue_text("Filed TCK-99.")
        await h.click("approval_approve", approval["id"], user="U1")
        await h.wait_status("done", timeout=10)
        assert runs(log, "create_ticket", 1) == 1
        events = await h.coworker.db.fetchval("SELECT COUNT(*) FROM task_events")
        assert events < 50  # no requeue loop


async def test_stop_while_delivering_still_delivers(
    make_harness: Callable[..., Harness],
) -> None:
    def deliverable(call: Any, ok: bool | None = None) -> bool:
        posted = "Done: T-1" in str(call.params.get("text"))
        return posted and (ok is None or bool(call.response and call.response.get("ok")) == ok)

    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        answer = asyncio.Event()

        async def final(body: dict[str, Any]) -> Reply:
            await answer.wait()
            return text_reply("job-1: the answer is 42.")

        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.responder = final
        await h.mention("job-1: what is the answer?")
        await h.anthropic.wait_for_requests(2)
        # The deliverable's first post fails, and slack_sdk backs off before retrying...
        h.slack.fail_next("chat.postMessage", times=2, status=500)
        answer.set()
        await h.slack.wait_for("chat.postMessage", deliverable)
        await h.stop_app()  # ...when the process stops.
        await h.start_app()
        await h.slack.wait_for("chat.postMessage", lambda c: deliverable(c, ok=True), timeout=10)
        done = await h.wait_status("done")
        assert done.result == "job-1: the answer is 42."
        assert job_of(done.result) == 1
