"""Issue 16 item 7: three replicas on one PostgreSQL share the work and survive a SIGKILL.

Three `python -m bot` processes (tests/reliability/replicas.py), each with its own Socket
Mode connection; the Slack stand-in hands each envelope to a random open connection. 30
jobs (search, then comment; one of them also files a ticket, which waits for an Approve
click) plus one job that stalls and is cancelled. While they run, one replica that holds
tasks is SIGKILLed; its tasks are taken over once their leases run out. The Approve click
and the cancel are sent to a replica other than the one that ran the task.

Checked: all 30 done and each answer posted once; no side-effecting call ran twice (one
cut short by the kill may be asked again; it is counted apart); the approved ticket was
filed once; the cancelled task made no model or tool call from one second after the
cancel was recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.fakes.anthropic import Reply, text_reply
from tests.fakes.slack import app_mention, block_action, view_submission
from tests.postgres_server import EmbeddedPostgres
from tests.reliability.replicas import ReplicaRun
from tests.reliability.script import COMMENT, CREATE, SEARCH, job_of, runs, scripted

JOBS = 30
APPROVAL_JOB, CANCEL_JOB = 0, JOBS
DELEGATOR = "UDELEGATOR"
CONFIG = """plan_approval = "never"

[approvals]
sweep_interval = "0.5s"

[runner]
concurrency = 4
status_interval = "1s"
max_new_tasks_per_minute = 100000

[cluster]
lease = "3s"
poll = "0.5s"

[policy.tools]
"effects__search" = "auto"
"effects__stall" = "auto"
"""


def steps(job: int) -> list[tuple[str, dict[str, Any]]]:
    if job == CANCEL_JOB:  # stalls, then would comment: the comment must never happen
        return [
            ("effects__stall", {"seconds": 6}),
            (COMMENT, {"ticket": "T", "text": f"job-{job}: stalled"}),
        ]
    search = (SEARCH, {"query": f"job-{job} flaky login"})
    comment = (COMMENT, {"ticket": "TCK-2", "text": f"job-{job}: still flaky"})
    if job == APPROVAL_JOB:
        return [search, (CREATE, {"title": f"job-{job}: flaky login test"}), comment]
    return [search, comment]


async def until(check: Any, timeout: float, what: str, run: ReplicaRun) -> Any:
    try:
        async with asyncio.timeout(timeout):
            while not (value := check()):
                await asyncio.sleep(0.05)
            return value
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; logs:\n{run.logs()[-6000:]}") from None


def task_of(run: ReplicaRun, job: int) -> int | None:
    return run.val("SELECT id FROM tasks WHERE request LIKE %s", (f"%job-{job} %",))


def other_than(run: ReplicaRun, *busy: int | None) -> str:
    """The app token of a live replica that is none of `busy`."""
    return next(
        token
        for i, (token, bot) in enumerate(zip(run.tokens, run.bots, strict=True))
        if bot.running and i not in busy
    )


async def test_three_replicas_share_30_tasks_and_survive_a_sigkill(
    tmp_path: Path, postgres_server: EmbeddedPostgres
) -> None:
    run = ReplicaRun(
        tmp_path,
        postgres_server,
        3,
        config=CONFIG,
        seed=16,
        tool_delay=(0.3, 0.8),
        model_latency=(0.05, 0.2),
    )
    async with run:
        script = scripted(steps)
        cancelled_at: list[float] = []

        def respond(body: dict[str, Any]) -> Reply:
            job = job_of(json.dumps(body["messages"][0]))
            if job == CANCEL_JOB and cancelled_at:  # a turn after the cancel: say so, visibly
                return text_reply(f"job-{job} went on after the cancel")
            return script(body)

        run.anthropic.responder = respond
        holders: list[int] = []  # replicas seen running the approval job's task, in turn

        async def watch_approval_task() -> None:
            while True:
                task_id = task_of(run, APPROVAL_JOB)
                if task_id is not None and (i := run.replica_running(task_id)) is not None:
                    if not holders or holders[-1] != i:
                        holders.append(i)
                await asyncio.sleep(0.01)

        await run.wait_connected()  # migrated by then
        watcher = asyncio.create_task(watch_approval_task())
        for job in range(JOBS + 1):
            event = app_mention(f"job-{job} check the flaky login test", user=DELEGATOR)
            await run.slack.send_event(event, event_id=f"Ev-job-{job}")

        # SIGKILL a replica while it holds tasks.
        [victim] = await until(
            lambda: [
                i
                for i in range(3)
                if run.val(
                    "SELECT COUNT(*) FROM tasks WHERE lease_owner LIKE %s"
                    " AND status IN ('planning', 'running')",
                    (f"%:{run.bots[i].proc.pid}:%" if run.bots[i].proc else "-",),
                )
            ][:1],
            30,
            "a replica holding tasks",
            run,
        )
        victim_pid = run.bots[victim].proc.pid if run.bots[victim].proc else -1
        cut_short = {
            job_of(str(r["request"]))
            for r in run.rows(
                "SELECT request FROM tasks WHERE lease_owner LIKE %s"
                " AND status IN ('planning', 'running')",
                (f"%:{victim_pid}:%",),
            )
        }
        await run.bots[victim].kill()

        # A mention the victim acknowledged but never took in is replayed from the inbox table.
        await until(lambda: run.val("SELECT COUNT(*) FROM tasks") == JOBS + 1, 60, "31 tasks", run)

        # The cancel, received by a replica that is not running the stalling task.
        stalling = await until(lambda: task_of(run, CANCEL_JOB), 10, "the stalling task", run)
        await until(
            lambda: run.val(
                "SELECT COUNT(*) FROM tool_calls WHERE task_id = %s AND tool LIKE '%%stall'",
                (stalling,),
            ),
            30,
            "the stall call",
            run,
        )

        def live_holder() -> list[int]:
            i = run.replica_running(stalling)
            return [i] if i is not None and run.bots[i].running else []

        [holder] = await until(live_holder, 30, "the stalling task on a live replica", run)
        via = other_than(run, holder)
        cancel = block_action("task_cancel", str(stalling), user=DELEGATOR, channel="C1")
        await run.slack.wait_for_ack(await run.slack.send_interactive(cancel, via=via))
        await until(
            lambda: run.val("SELECT status FROM tasks WHERE id = %s", (stalling,)) == "cancelled",
            10,
            "the cancel recorded",
            run,
        )
        cancelled_at.append(time.monotonic())

        # The Approve click, received by a replica other than the one that ran the task.
        approving = await until(lambda: task_of(run, APPROVAL_JOB), 10, "the approval task", run)
        approval = await until(
            lambda: run.rows(
                "SELECT a.id, a.message_ts FROM approvals a WHERE a.task_id = %s"
                " AND a.status = 'pending' AND a.message_ts IS NOT NULL",
                (approving,),
            ),
            60,
            "the approval request posted",
            run,
        )
        if watcher.done():
            watcher.result()  # its error, if it failed
        watcher.cancel()
        assert holders, "the approval job's task was never seen running"
        clicked: set[int] = set()

        async def click(approval: dict[str, Any]) -> None:
            """Approve; or, for a call asked again that already ran, reject (crash.py)."""
            clicked.add(approval["id"])
            if runs(run.effects_log, "create_ticket", APPROVAL_JOB):
                payload = view_submission(
                    "approval_reject",
                    {"reason": {"text": "It already ran."}},
                    user=DELEGATOR,
                    private_metadata=str(approval["id"]),
                )
            else:
                payload = block_action(
                    "approval_approve",
                    str(approval["id"]),
                    user=DELEGATOR,
                    channel="C1",
                    message_ts=approval["message_ts"],
                )
            via = other_than(run, victim, holders[-1])  # not the replica that ran it
            await run.slack.wait_for_ack(await run.slack.send_interactive(payload, via=via))

        await click(approval[0])
        async with asyncio.timeout(90):
            while run.val("SELECT COUNT(*) FROM tasks WHERE status = 'done'") < JOBS:
                for again in run.rows(
                    "SELECT id, message_ts FROM approvals WHERE task_id = %s"
                    " AND status = 'pending' AND message_ts IS NOT NULL",
                    (approving,),
                ):
                    if again["id"] not in clicked:  # asked again after a take-over
                        await click(again)
                await asyncio.sleep(0.1)
        answers = Counter(
            int(m.group(1))
            for c in run.slack.calls_to("chat.postMessage")
            if (m := re.search(r"job-(\d+) finished: all steps done", str(c.params.get("text"))))
        )
        logs = run.logs()
        # A task taken over was claimed once more than its plan and acts need (and the
        # approval job once more for its resume): a call it had in flight may run again.
        for row in run.rows("SELECT request, attempts FROM tasks"):
            job = job_of(str(row["request"]))
            if row["attempts"] > 2 + (job == APPROVAL_JOB):
                cut_short.add(job)

    assert sorted(answers) == list(range(JOBS)), logs[-4000:]
    assert max(answers.values()) == 1, answers
    for job in range(JOBS):
        for tool in ("search", "comment"):
            count = runs(run.effects_log, tool, job)
            assert count >= 1, f"job-{job} {tool} never ran"
            assert count == 1 or (job in cut_short and count == 2), f"job-{job} {tool}: {count}"
    assert runs(run.effects_log, "create_ticket", APPROVAL_JOB) == 1
    assert runs(run.effects_log, "comment", CANCEL_JOB) == 0
    late = [
        r
        for r in run.anthropic.requests
        if job_of(json.dumps(r.body["messages"][0])) == CANCEL_JOB and r.at > cancelled_at[0] + 1
    ]
    assert late == [], "the cancelled task called the model after its cancel"
    assert "Traceback" not in logs
