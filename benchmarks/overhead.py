"""Orchestration overhead per agent step: the real bot, stand-ins that answer at once.

    python benchmarks/overhead.py [--tasks 50] [--steps 10] [--warmup 4] [--concurrency 1 4]

The bot runs as `python -m bot` in its own process, started the way an operator starts it,
against the Slack and Anthropic stand-ins (tests/fakes), which run in this process, and one
stdio MCP server, benchmarks/servers/lookup.py, which answers at once and times itself. So
the bot's event loop does the bot's work and nothing else, as in production, where Slack,
Anthropic and the tool servers are other machines or processes.

`--tasks` mentions arrive at once; each task is planned (one `submit_plan` reply), then the
model stand-in asks for `--steps` calls of the read-only tool `bench__lookup`, one per turn,
then answers with text. Before the measured run, `--warmup` tasks run the same way and are
not counted, so one-time costs (first imports, first queries, connection set-up) are not
charged to steps. The whole run is repeated for each `--concurrency` (a fresh bot each time).

Configuration: `plan_approval = "never"`; `[policy.tools] "bench__lookup" = "auto"`, so no
call waits for a person; `max_new_tasks_per_minute = 10000`, so intake never throttles;
`status_interval = "3s"` (the default): a task posts its status message when it starts and
updates it at most once per 3 s after that, as in production.

Definition. A step is one tool round of one task. It starts when the Anthropic stand-in has
written the model's `tool_use` reply out to the bot (aiohttp's `write_eof` returned) and
ends when the bot's next model request for that task reaches the stand-in (its request
handler is entered). Inside it the bot parses the reply, logs the call, checkpoints, runs
the tool through the gateway (journal rows, scope, schema, limits, the MCP client),
reports status, checks the budget and builds and sends the next request. The time the call
spent inside the tool server is subtracted: from just after the server read the request
line to just before it wrote the answer, measured by the server itself on CLOCK_MONOTONIC
(the same clock in every process), clipped to the step. What remains is the bot's own time.

With concurrency c, c tasks share the bot's one event loop, and because the stand-ins
answer at once the loop is never idle: a step also waits while the loop runs the other
c - 1 tasks' steps. That wait is queueing, not this step's work (summed over all steps it
counts each step's work about c times), and it exists only because nothing here takes time: with
a real model a turn takes seconds and a step finds the loop free. So the per-step overhead
is measured at concurrency 1, and the default concurrency (4) gives the throughput (tasks
per second, the bot's CPU per step) and the latency of a step on a saturated loop. Target:
median overhead per step under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from tests.fakes.anthropic import FakeAnthropic, Reply, text_reply, tool_reply
from tests.fakes.slack import FakeSlack, app_mention
from tests.reliability.bot_process import BotProcess, ChildBotRun, bot_env

TARGET_MS = 5.0
DEFAULT_CONCURRENCY = 4
TOOL = "bench__lookup"
LOOKUP = Path(__file__).resolve().parent / "servers" / "lookup.py"
CONFIG = """plan_approval = "never"

[runner]
concurrency = {concurrency}
max_new_tasks_per_minute = 10000
status_interval = "3s"

[policy.tools]
"{tool}" = "auto"
"""
PLAN = {
    "summary": "Look things up",
    "steps": [{"what": "Look the keys up", "tools": [TOOL]}],
    "estimate_minutes": 1,
    "questions": [],
}
DEFINITION = """\
  step     = model's tool_use reply written out to the bot -> the task's next model
             request reaches the stand-in
  overhead = step wall time - time inside the tool server (request read -> answer
             written, timed by the server); the stand-ins run in another process"""
TASK_REF = re.compile(r"\(task (T-\d+)\)")
TICK = os.sysconf("SC_CLK_TCK")

# The request being answered, so the responder can label the handler's span.
_SLOT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("slot")


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    key: tuple[str, int] | None = None  # (task ref, tool results in the request)


@dataclass
class Figures:
    concurrency: int
    overhead: list[float]
    tool: list[float]
    gateway: list[float]
    cpu_per_step: float
    tasks_per_second: float
    wall: float


class TimedAnthropic(FakeAnthropic):
    """The Anthropic stand-in; each /v1/messages span runs from handler entry to response sent."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Span] = []

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        slot: dict[str, Any] = {}
        token = _SLOT.set(slot)
        start = time.monotonic()
        try:
            resp = await super()._handle_messages(request)
        finally:
            _SLOT.reset(token)
        write_eof = resp.write_eof

        async def timed_write_eof(data: bytes = b"") -> None:
            try:
                await write_eof(data)
            finally:
                self.spans.append(Span(start, time.monotonic(), slot.get("key")))

        resp.write_eof = timed_write_eof  # type: ignore[method-assign]
        return resp


class Model:
    """The responder: a plan, then `steps` lookups one per turn, then a text answer."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.waiting: set[str] = set()
        self.all_final = asyncio.Event()

    def expect(self, refs: set[str]) -> None:
        self.waiting = set(refs)
        self.all_final.clear()

    def __call__(self, body: dict[str, Any]) -> Reply:
        if (body.get("tool_choice") or {}).get("name") == "submit_plan":
            return tool_reply("submit_plan", PLAN)
        messages = body["messages"]
        match = TASK_REF.search(messages[0]["content"][0]["text"])
        assert match, messages[0]
        ref = match.group(1)
        done = sum(
            1
            for m in messages
            if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        )
        _SLOT.get()["key"] = (ref, done)
        if done < self.steps:
            n = done + 1
            return tool_reply(TOOL, {"query": f"{ref}/{n}"}, id=f"toolu_bench_{n:03d}")
        self.waiting.discard(ref)
        if not self.waiting:
            self.all_final.set()
        return text_reply(f"{ref}: looked up {done} keys.")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def thread_cpu(pid: int, tid: int) -> float:
    """CPU seconds (user + system) one thread of another process has used, from /proc."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def read_tool_log(path: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for line in path.read_text().splitlines():
        query, read, answered = line.split("\t")
        out[query] = (float(read), float(answered))
    return out


class Run(ChildBotRun):
    """One bot process against the stand-ins, for one concurrency."""

    def __init__(
        self, tmp: Path, concurrency: int, steps: int, database_url: str | None = None
    ) -> None:
        self.tmp, self.concurrency = tmp, concurrency
        #: a postgresql:// URL to run the bot on PostgreSQL (benchmarks/replicas.py)
        self.database_url = database_url
        self.slack = FakeSlack(bot_token="xoxb-bench", app_token="xapp-bench")
        self.anthropic = TimedAnthropic()
        self.model = Model(steps)
        self.tool_log = tmp / "tool.log"
        self._pg: Any = None

    async def __aenter__(self) -> Run:
        await self.slack.start()
        await self.anthropic.start()
        self.anthropic.responder = self.model
        (self.tmp / "coworker.toml").write_text(
            CONFIG.format(concurrency=self.concurrency, tool=TOOL)
        )
        server = {
            "command": sys.executable,
            "args": [str(LOOKUP)],
            "env": {"BENCH_TOOL_LOG": str(self.tool_log)},
        }
        (self.tmp / ".mcp.json").write_text(json.dumps({"mcpServers": {"bench": server}}))
        env = bot_env(self.slack, self.anthropic, self.tmp)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        self.bot = BotProcess(env=env, cwd=self.tmp, log=self.tmp / "bot.log")
        await self.bot.start()
        try:
            await self.slack.wait_connected(timeout=60)
        except TimeoutError:
            raise SystemExit(f"the bot did not connect:\n{self.bot.log_text()[-3000:]}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pg is not None:
            self._pg.close()
        await super().__aexit__(*exc)

    @property
    def pid(self) -> int:
        assert self.bot is not None and self.bot.proc is not None
        return self.bot.proc.pid

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self.database_url:
            import psycopg

            if self._pg is None:
                self._pg = psycopg.connect(self.database_url, autocommit=True)
            return list(self._pg.execute(sql.replace("?", "%s"), params).fetchall())
        return list(self.db().execute(sql, params).fetchall())

    async def tasks(self, names: list[str], timeout: float) -> list[int]:
        """Mention once per name, all at once; the task ids once every one is done."""
        before = int(self.rows("SELECT COALESCE(MAX(id), 0) FROM tasks")[0][0])
        self.model.expect({f"T-{before + i + 1}" for i in range(len(names))})
        for i, name in enumerate(names):
            event = app_mention(name, user=f"U{i % 40}", channel=f"C{i % 5}")
            await self.slack.send_event(event)
        rows: list[Any] = []
        try:
            async with asyncio.timeout(timeout):
                await self.model.all_final.wait()  # no polling while the tasks run
                while True:
                    rows = self.rows("SELECT id, status FROM tasks WHERE id > ?", (before,))
                    if len(rows) == len(names) and all(r[1] in ("done", "failed") for r in rows):
                        break
                    await asyncio.sleep(0.01)
        except TimeoutError:
            rows = self.rows("SELECT id, status FROM tasks WHERE id > ?", (before,))
            raise SystemExit(f"timed out after {timeout:g} s: {rows}") from None
        failed = [r[0] for r in rows if r[1] != "done"]
        assert not failed, f"tasks did not finish: {failed}"
        return sorted(r[0] for r in rows)

    async def measure(self, tasks: int, steps: int, warmup: int) -> Figures:
        if warmup:
            await self.tasks([f"warm-up {i}" for i in range(warmup)], 120)
        spans_from = len(self.anthropic.spans)
        wall0, cpu0 = time.time(), thread_cpu(self.pid, self.pid)
        ids = await self.tasks([f"bench task {i}" for i in range(tasks)], 300)
        cpu1 = thread_cpu(self.pid, self.pid)
        marks = ",".join("?" * len(ids))
        finished = float(
            self.rows(f"SELECT MAX(finished_at) FROM tasks WHERE id IN ({marks})", tuple(ids))[0][0]
        )
        durations = dict(
            self.rows("SELECT idempotency_key, duration_ms FROM tool_calls WHERE tool = ?", (TOOL,))
        )
        replies = {s.key: s for s in self.anthropic.spans[spans_from:] if s.key is not None}
        log = read_tool_log(self.tool_log)
        overhead, tools, gateway = [], [], []
        for task_id in ids:
            ref = f"T-{task_id}"
            for k in range(steps):
                start, end = replies[(ref, k)].end, replies[(ref, k + 1)].start
                read, answered = log[f"{ref}/{k + 1}"]
                tool = max(0.0, min(answered, end) - max(read, start))
                tools.append(tool * 1000)
                overhead.append((end - start - tool) * 1000)
                gateway.append(
                    float(durations[f"t{task_id}:toolu_bench_{k + 1:03d}"]) - tool * 1000
                )
        wall = finished - wall0
        return Figures(
            concurrency=self.concurrency,
            overhead=overhead,
            tool=tools,
            gateway=gateway,
            cpu_per_step=(cpu1 - cpu0) * 1000 / len(overhead),
            tasks_per_second=tasks / wall,
            wall=wall,
        )


def report(
    figures: list[Figures], tasks: int, steps: int, warmup: int, load: float, before: float
) -> None:
    print(
        f"orchestration overhead per step: {tasks} tasks x {steps} tool steps, "
        f"stand-ins answer at once; the bot is `python -m bot` in its own process"
    )
    print(DEFINITION)
    print(f"  tasks: {tasks} per run (+{warmup} warm-up, not counted); steps: {tasks * steps}")
    cols = "".join(f"{'concurrency ' + str(f.concurrency):>18}" for f in figures)
    print(f"  {'':34}{cols}")

    def row(label: str, values: list[str]) -> None:
        print(f"  {label:34}" + "".join(f"{v:>18}" for v in values))

    row("overhead per step, median (ms)", [f"{statistics.median(f.overhead):.2f}" for f in figures])
    row("overhead per step, p95 (ms)", [f"{pct(f.overhead, 95):.2f}" for f in figures])
    row("  tool server, median (ms)", [f"{statistics.median(f.tool):.3f}" for f in figures])
    row("  gateway per call, median (ms)", [f"{statistics.median(f.gateway):.2f}" for f in figures])
    row("bot main thread CPU per step (ms)", [f"{f.cpu_per_step:.2f}" for f in figures])
    row("tasks per second", [f"{f.tasks_per_second:.2f}" for f in figures])
    row("wall time (s)", [f"{f.wall:.2f}" for f in figures])
    print("  gateway per call = tool_calls.duration_ms - tool server time (part of the overhead);")
    print("  CPU per step = the bot's main thread over the measured run (planning, status and")
    print("  delivery included), divided by the steps")
    print(
        f"  machine: {os.cpu_count()} CPUs, 1-min load average {load:.2f} at start; "
        f"a reference loop took {before:.0f} ms before and {reference_loop_ms():.0f} ms after"
    )
    own = next((f for f in figures if f.concurrency == 1), None)
    if own is None:
        print("  target: measured at concurrency 1 (run with --concurrency 1)")
        return
    med = statistics.median(own.overhead)
    verdict = "MET" if med < TARGET_MS else "NOT MET"
    print(f"  target: median < {TARGET_MS:g} ms per step (concurrency 1) -> {verdict}")


def reference_loop_ms() -> float:
    """`sum(i * i for i in range(10**7))`: how fast this machine runs Python now (it varies)."""
    start = time.perf_counter()
    sum(i * i for i in range(10**7))
    return (time.perf_counter() - start) * 1000


async def main(tasks: int, steps: int, warmup: int, concurrencies: list[int]) -> None:
    load = os.getloadavg()[0]
    before = reference_loop_ms()
    figures = []
    for concurrency in concurrencies:
        with tempfile.TemporaryDirectory() as tmp:
            async with Run(Path(tmp), concurrency, steps) as run:
                figures.append(await run.measure(tasks, steps, warmup))
    report(figures, tasks, steps, warmup, load, before)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, DEFAULT_CONCURRENCY])
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.steps, args.warmup, args.concurrency))
