"""Load: many delegations arriving within seconds over Socket Mode, slow model and tools.

The real bot runs as a child process (`python -m bot`) against the stand-ins, which add
latency like the real services: the model answers in `model_latency` seconds, each tool
call takes `tool_latency`, Slack a few milliseconds. `tasks` mentions from different
people (and a few `/coworker tasks` commands) arrive spread over `spread` seconds; each
task plans, searches (auto), comments (notify) and answers.

Reported: tasks finished, ack latency (Socket Mode envelope sent → ack received, per
envelope, while the bot is busy), "database is locked" and other errors in the bot's log,
the bot's resident memory before and at its peak (VmHWM), and the wall time. While the
tasks run, a person asks `/coworker status` four times a second: those acks are the
"while loaded" figure.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack, app_mention, slash_command
from tests.reliability.bot_process import ChildBotRun
from tests.reliability.script import look_and_note, runs, scripted

CONFIG = """plan_approval = "never"
[runner]
status_interval = "1s"
[gateway]
call_timeout = "30s"
start_timeout = "30s"
[gateway.servers.effects]
max_concurrency = 8
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in kB, from /proc."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


@dataclass
class LoadReport:
    tasks: int
    done: int = 0
    delivered: int = 0
    acks: list[float] = field(default_factory=list)  # ms, every envelope
    command_acks: list[float] = field(default_factory=list)  # ms, the slash commands
    locked: int = 0
    errors: list[str] = field(default_factory=list)
    duplicates: int = 0
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    seconds: float = 0.0
    spread: float = 0.0

    @property
    def ack_p99(self) -> float:
        return percentile(self.acks, 99)

    def lines(self) -> list[str]:
        a = self.acks
        return [
            f"load: {self.tasks} delegations over Socket Mode within {self.spread:.1f} s, "
            f"all done in {self.seconds:.1f} s",
            f"  finished                 : {self.done}/{self.tasks} "
            f"(deliverable posted for {self.delivered})",
            f"  ack latency, loaded ({len(a)} envelopes): p50 {percentile(a, 50):.1f} ms, "
            f"p99 {self.ack_p99:.1f} ms, max {max(a):.1f} ms (target: p99 < 100 ms)",
            f"  'database is locked'     : {self.locked}; other errors logged: {len(self.errors)}",
            f"  tool calls repeated      : {self.duplicates}",
            f"  bot memory (RSS)         : {self.rss_idle_mb:.0f} MB idle, "
            f"{self.rss_peak_mb:.0f} MB peak",
        ]


class LoadRun(ChildBotRun):
    def __init__(
        self,
        tmp: Path,
        *,
        tasks: int,
        spread: float,
        model_latency: tuple[float, float],
        tool_latency: tuple[float, float],
        concurrency: int = 4,
    ) -> None:
        self.tmp = tmp
        self.report = LoadReport(tasks=tasks, spread=spread)
        self.model_latency = model_latency
        self.tool_latency = tool_latency
        self.concurrency = concurrency
        self.slack = FakeSlack(
            bot_token="xoxb-load-bot", app_token="xapp-load-app", latency=(0.002, 0.01)
        )
        self.anthropic = FakeAnthropic()

    async def __aenter__(self) -> LoadRun:
        config = CONFIG.replace("[runner]\n", f"[runner]\nconcurrency = {self.concurrency}\n")
        await self.launch(config, self.tool_latency)
        self.anthropic.responder = scripted(look_and_note)
        self.anthropic.latency = self.model_latency
        return self

    async def run(self, timeout: float = 300) -> LoadReport:
        assert self.bot is not None
        await self.bot.start()
        await self.slack.wait_connected(timeout=90)
        assert self.bot.proc is not None
        pid = self.bot.proc.pid
        self.report.rss_idle_mb = memory_kb(pid)["VmRSS"] / 1024
        t0 = time.monotonic()
        mentions, commands = await self.deliver_events()
        probe = asyncio.create_task(self.probe(commands))
        try:
            async with asyncio.timeout(timeout):
                while int(self.val("SELECT COUNT(*) FROM tasks WHERE status = 'done'")) < len(
                    mentions
                ):
                    await asyncio.sleep(0.05)
                while len(self.delivered()) < len(mentions):
                    await asyncio.sleep(0.05)
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        self.report.seconds = time.monotonic() - t0
        await self.wait_acks([*mentions, *commands])
        self.report.rss_peak_mb = memory_kb(pid)["VmHWM"] / 1024
        self.tally(mentions, commands)
        return self.report

    async def deliver_events(self) -> tuple[list[str], list[str]]:
        """Send the mentions (and a slash command every 10) spread over `spread` seconds."""
        n = self.report.tasks
        gap = self.report.spread / max(1, n - 1)
        mentions, commands = [], []
        start = time.monotonic()
        for i in range(n):
            event = app_mention(
                f"job-{i + 1}: is the deploy still slow?", user=f"U{i:03d}", channel=f"C{i % 5}"
            )
            mentions.append(await self.slack.send_event(event))
            if i % 10 == 5:
                commands.append(
                    await self.slack.send_slash_command(slash_command("tasks", user=f"U{i:03d}"))
                )
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - time.monotonic()))
        self.report.spread = time.monotonic() - start
        return mentions, commands

    async def probe(self, commands: list[str]) -> None:
        """While the tasks run, a person asks `/coworker status` four times a second."""
        i = 0
        while True:
            await asyncio.sleep(0.25)
            i += 1
            cmd = slash_command(f"status T-{i % self.report.tasks + 1}", user="UPROBE")
            commands.append(await self.slack.send_slash_command(cmd))

    async def wait_acks(self, envelopes: list[str]) -> None:
        for envelope in envelopes:
            await self.slack.wait_for_ack(envelope, timeout=30)

    def delivered(self) -> set[int]:
        return {
            int(m.group(1))
            for c in self.slack.calls_to("chat.postMessage")
            if (m := re.match(r"Done: T-(\d+)", str(c.params.get("text", ""))))
        }

    def tally(self, mentions: list[str], commands: list[str]) -> None:
        r = self.report
        r.acks = [a * 1000 for e in mentions + commands if (a := self.slack.acks[e].latency)]
        r.command_acks = [a * 1000 for e in commands if (a := self.slack.acks[e].latency)]
        r.done = int(self.val("SELECT COUNT(*) FROM tasks WHERE status = 'done'"))
        r.delivered = len(self.delivered())
        assert self.bot is not None
        log = self.bot.log_text()
        r.locked = log.count("database is locked")
        r.errors = [
            line for line in log.splitlines() if " ERROR " in line or line.startswith("Traceback")
        ]
        for job in range(1, r.tasks + 1):
            for tool in ("search", "comment"):
                r.duplicates += max(0, runs(self.effects_log, tool, job) - 1)
