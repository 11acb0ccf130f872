"""Crash recovery: the real bot SIGKILLed at random points of a multi-step task, restarted.

The task (one per "job") is scripted by a `responder` on the Anthropic stand-in, so any
restart gets the same answers for the same conversation: plan → `effects__search` (auto,
read-only) → `effects__create_ticket` (block: waits for an approval) → `effects__comment`
(notify) → the final text. The test plays the delegator: it clicks Approve over Socket Mode
for every approval it can see in Slack (one with a posted message). For a call that was
interrupted and is put to it again ("may or may not have run"), it does what a careful
person does and checks the ticket system (the effects log): it approves only if the call
left no trace, otherwise it rejects.

Kill points come from a seeded RNG: mostly "after the next k units of progress, plus up
to `jitter` seconds", sometimes "at a random moment after the spawn" (during start-up,
recovery or connection). When every job is finished before the kills are used up, a new
job is sent, so every kill interrupts something.

The run reports tasks lost, side-effecting calls repeated, read-only calls re-run, in-doubt
calls put to the delegator, and the time to resume: from a restart to the next new row in
`llm_calls` or `tool_calls`.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.base.db.sqlite import sqlite_module
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack, app_mention, block_action, view_submission
from tests.reliability.bot_process import ChildBotRun
from tests.reliability.script import file_and_link, job_of, runs, scripted

DELEGATOR = "UDELEGATOR"
SIDE_EFFECTS = ("create_ticket", "comment")
CONFIG = """plan_approval = "never"
[approvals]
sweep_interval = "0.2s"
[runner]
status_interval = "0.05s"
max_new_tasks_per_minute = 1000
[gateway]
call_timeout = "20s"
start_timeout = "30s"
"""


@dataclass
class Kill:
    mode: str  # "progress" (after k units of progress + jitter) or "anytime" (after a delay)
    at: float  # seconds after the spawn
    in_doubt: list[tuple[str, int | None]]  # (tool, job) journaled 'started' at the kill


@dataclass
class CrashReport:
    seed: int
    kills: list[Kill] = field(default_factory=list)
    jobs: int = 0
    done: int = 0
    delivered: int = 0
    repeated: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    reads: int = 0
    reads_rerun: int = 0
    asked_again: int = 0
    resume: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.jobs - min(self.done, self.delivered)

    def lines(self) -> list[str]:
        r = self.resume
        spread = (
            f"median {statistics.median(r):.2f} s, max {max(r):.2f} s over {len(r)} restarts"
            if r
            else "n/a"
        )
        modes = {m: sum(1 for k in self.kills if k.mode == m) for m in ("progress", "anytime")}
        return [
            f"crash recovery: {len(self.kills)} SIGKILLs (seed {self.seed}; {modes['progress']} "
            f"after progress, {modes['anytime']} at any moment), {self.jobs} task(s), "
            f"{self.seconds:.0f} s",
            f"  tasks lost                      : {self.lost} (done {self.done}, "
            f"deliverable posted {self.delivered})",
            f"  side-effecting calls repeated   : {sum(self.repeated.values())}",
            f"  read-only calls re-run          : {self.reads_rerun} of {self.reads} "
            "(only interrupted ones may be)",
            f"  in-doubt calls put to a person  : {self.asked_again}",
            f"  time to resume (restart → next llm/tool row): {spread}",
        ]


class CrashRun(ChildBotRun):
    """One crash-recovery run against a bot child process."""

    def __init__(
        self,
        tmp: Path,
        *,
        kills: int,
        seed: int,
        jitter: float = 0.4,
        latency: bool = True,
    ) -> None:
        self.tmp = tmp
        self.kills = kills
        self.rng = random.Random(seed)
        self.report = CrashReport(seed=seed)
        self.jitter = jitter
        self.latency = latency
        self.slack = FakeSlack(
            bot_token="xoxb-crash-bot",
            app_token="xapp-crash-app",
            latency=(0.002, 0.02) if latency else None,
        )
        self.anthropic = FakeAnthropic()
        self._clicked: dict[int, tuple[float, int]] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._next_job = 1

    # -- set-up ------------------------------------------------------------------------

    async def __aenter__(self) -> CrashRun:
        await self.launch(CONFIG, (0.05, 0.3) if self.latency else None)
        self.anthropic.responder = scripted(file_and_link)
        if self.latency:
            self.anthropic.latency = (0.05, 0.3)
        return self

    def work(self) -> int:
        """New rows in llm_calls and tool_calls: what 'resumed' means."""
        return int(
            self.val("SELECT (SELECT COUNT(*) FROM llm_calls) + (SELECT COUNT(*) FROM tool_calls)")
        )

    def progress(self) -> int:
        """Any step forward: model and tool calls, finished calls, task events."""
        return self.work() + int(
            self.val(
                "SELECT (SELECT COUNT(*) FROM tool_calls WHERE status != 'started')"
                " + (SELECT COUNT(*) FROM task_events)"
            )
        )

    def open_tasks(self) -> int:
        return int(
            self.val(
                "SELECT COUNT(*) FROM tasks WHERE status NOT IN ('done', 'failed', 'cancelled')"
            )
        )

    # -- driving ---------------------------------------------------------------------------

    async def spawn(self) -> None:
        assert self.bot is not None
        await self.bot.start()

    async def connected(self, after: int, timeout: float = 90) -> None:
        await self.slack.wait_connected(timeout=timeout, after=after)

    async def send_job(self) -> None:
        """Mention the bot with a new job and wait until its task is recorded."""
        job = self._next_job
        self._next_job += 1
        event = app_mention(
            f"job-{job}: file a ticket for the flaky login test", user=DELEGATOR, channel="C1"
        )
        async with asyncio.timeout(60):
            while True:
                envelope = await self.slack.send_event(event, event_id=f"Ev-job-{job}")
                try:
                    await self.slack.wait_for_ack(envelope, timeout=10)
                except AssertionError:
                    continue  # not acked: Slack delivers it again
                break
            while not self.val(
                "SELECT COUNT(*) FROM tasks WHERE request LIKE ?", (f"job-{job}:%",)
            ):
                await asyncio.sleep(0.02)
        self.report.jobs += 1

    async def click_approvals(self) -> None:
        """The delegator: approve what Slack shows; for in-doubt calls, check first."""
        while True:
            await asyncio.sleep(0.05)
            try:
                rows = (
                    self.db()
                    .execute(
                        "SELECT a.id, a.idempotency_key, a.tool, a.arguments, a.message_ts, t.channel"
                        " FROM approvals a JOIN tasks t ON t.id = a.task_id"
                        " WHERE a.status = 'pending' AND a.message_ts IS NOT NULL"
                    )
                    .fetchall()
                )
            except sqlite_module().OperationalError:
                continue
            for row in rows:
                await self.decide(*row)

    async def decide(
        self, approval: int, key: str, tool: str, args: str, ts: str, channel: str
    ) -> None:
        last = self._clicked.get(approval)
        connection = self.slack.connection_count
        if last is not None and last[1] == connection and time.monotonic() - last[0] < 3:
            return
        self._clicked[approval] = (time.monotonic(), connection)
        rerun = ":rerun" in key
        if rerun and last is None:
            self.report.asked_again += 1
        job = job_of(args)
        ran = rerun and runs(self.effects_log, tool.split("__", 1)[1], job or 0) > 0
        if ran:
            payload = view_submission(
                "approval_reject",
                {"reason": {"text": "It already ran: TCK-99 exists."}},
                user=DELEGATOR,
                private_metadata=str(approval),
            )
        else:
            payload = block_action(
                "approval_approve", str(approval), user=DELEGATOR, channel=channel, message_ts=ts
            )
        try:
            await self.slack.send_interactive(payload)
        except (AssertionError, ConnectionError):
            self._clicked.pop(approval, None)  # no live connection: click again later

    async def watch_resume(self, since: float, base: int) -> None:
        while self.work() <= base:
            await asyncio.sleep(0.02)
        self.report.resume.append(time.monotonic() - since)

    async def kill_point(self) -> str:
        """Wait for a random point of the work, per the seeded RNG; return its kind."""
        assert self.bot is not None
        if self.rng.random() < 0.2:
            await asyncio.sleep(self.rng.uniform(0.0, 6.0))
            return "anytime"
        k = self.rng.choice((1, 1, 2, 3))
        jitter = self.rng.uniform(0.0, self.jitter)
        await self.connected(after=self.slack.connection_count - 1)
        base = self.progress()
        async with asyncio.timeout(60):
            while self.progress() < base + k and self.open_tasks():
                await asyncio.sleep(0.01)
        await asyncio.sleep(jitter)
        return "progress"

    async def run(self) -> CrashReport:
        """Kill the bot `kills` times at random points, then let it finish every job."""
        t0 = time.monotonic()
        await self.spawn()
        await self.connected(after=0)
        clicker = asyncio.create_task(self.click_approvals())
        try:
            await self.send_job()
            for _ in range(self.kills):
                await self.one_kill()
            await self.finish()
        finally:
            for job in (clicker, *self._watchers):
                job.cancel()
            await asyncio.gather(clicker, *self._watchers, return_exceptions=True)
        self.report.seconds = time.monotonic() - t0
        self.tally()
        return self.report

    async def one_kill(self) -> None:
        assert self.bot is not None
        if self.open_tasks() == 0:
            await self.connected(after=self.slack.connection_count - 1)
            await self.send_job()
        mode = await self.kill_point()
        at = time.monotonic() - self.bot.started_at
        await self.bot.kill()
        for watcher in self._watchers:
            watcher.cancel()
        in_doubt = (
            self.db()
            .execute("SELECT tool, arguments FROM tool_calls WHERE status = 'started'")
            .fetchall()
        )
        self.report.kills.append(Kill(mode, at, [(t, job_of(a)) for t, a in in_doubt]))
        before = self.slack.connection_count
        await self.spawn()
        if self.open_tasks():
            watcher = asyncio.create_task(self.watch_resume(self.bot.started_at, self.work()))
            self._watchers.append(watcher)
        if mode == "anytime":
            return
        await self.connected(after=before)

    async def finish(self, timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while self.open_tasks():
                await asyncio.sleep(0.05)
            while len(self.delivered()) < self.report.jobs:
                await asyncio.sleep(0.05)

    def delivered(self) -> set[int]:
        return {
            int(m.group(1))
            for c in self.slack.calls_to("chat.postMessage")
            if (m := re.match(r"Done: T-(\d+)", str(c.params.get("text", ""))))
        }

    def tally(self) -> None:
        r = self.report
        r.done = int(self.val("SELECT COUNT(*) FROM tasks WHERE status = 'done'"))
        r.delivered = len(self.delivered())
        for job in range(1, self._next_job):
            for tool in SIDE_EFFECTS:
                count = runs(self.effects_log, tool, job)
                if count > 1:
                    r.repeated[f"job-{job} {tool}"] = count - 1
                elif count == 0:
                    r.missing.append(f"job-{job} {tool}")
            r.reads += 1
            r.reads_rerun += max(0, runs(self.effects_log, "search", job) - 1)
