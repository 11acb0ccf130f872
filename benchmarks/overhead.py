"""Orchestration overhead per agent step: the real app, stand-ins that answer at once.

    python benchmarks/overhead.py [--tasks 50] [--steps 10] [--warmup 4] [--concurrency 4]

The full app (`bot.app.build()`, as `python -m bot` builds it) runs against the Slack and
Anthropic stand-ins (tests/fakes) and one stdio MCP server, benchmarks/servers/lookup.py,
which answers at once and times itself. `--tasks` mentions arrive at once; each task is
planned (one `submit_plan` reply), then the model stand-in asks for `--steps` calls of the
read-only tool `bench__lookup`, one per turn, then answers with text. Before the measured
run, `--warmup` tasks (one per worker) run the same way and are not counted, so one-time
costs (first imports, first queries, connection set-up) are not charged to steps.

Configuration: `plan_approval = "never"`; `[policy.tools] "bench__lookup" = "auto"`, so no
call waits for a person; `[runner] concurrency = 4`; `max_new_tasks_per_minute = 10000`,
so intake never throttles; `status_interval = "3s"` (the default): a task posts its status
message when it starts and updates it at most once per 3 s after that, as in production,
so status updates are a few Slack calls per task, not one per step.

Definition. A step is one tool round of one task. It starts when the Anthropic stand-in has
written the model's `tool_use` reply out to the app (aiohttp's `write_eof` returned) and
ends when the app's next model request for that task reaches the stand-in (its request
handler is entered).
Inside it the app parses the reply, logs the call, checkpoints, runs the tool through the
gateway (journal rows, scope, schema, limits, the MCP client), checkpoints again, reports
status, checks the budget and builds and sends the next request. From the step's wall time
we subtract:

* the time the call spent inside the tool server: from just after the server read the
  request line to just before it wrote the answer, measured by the server itself on
  CLOCK_MONOTONIC (the same clock in every process), clipped to the step. The gateway's `tool_calls.duration_ms`
  is printed next to it: it also covers the journal insert, validation and the MCP client,
  which are orchestration, so it is not what is subtracted;
* the time the event loop spent inside the stand-ins during the step. Both stand-ins are
  aiohttp servers in the app's own process and event loop (as in the scenario harness), so
  while one answers a request (this task's or another's) the app cannot run; a real API
  would not cost the app that time. Each request is timed from handler entry until its
  response is written out, and the union of those spans, clipped to the step, is
  subtracted.

What remains is the app's own time, as one task sees it. With 4 tasks sharing one event
loop it includes the time the loop spent on the other tasks' steps, so it is about
concurrency x the loop's cost per step when the loop is busy; the "event loop per step"
line (run wall time minus stand-in time, divided by the steps, and the loop thread's CPU
per step) gives the throughput view. `--concurrency 1` shows the per-step latency without
sharing (for diagnosis; the benchmark's figure is at 4). Target: median overhead per step
under 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import logging
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
from tests.scenarios.harness import APP_TOKEN, BOT_TOKEN, Harness

TARGET_MS = 5.0
CONCURRENCY = 4
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
  step     = model's tool_use reply written out to the app -> the task's next model
             request reaches the stand-in
  overhead = step wall time - time inside the tool server (request read -> answer written,
             timed by the server) - time the event loop spent inside the Slack/Anthropic stand-ins
             during the step (they share the app's loop)"""
TASK_REF = re.compile(r"\(task (T-\d+)\)")

# The request being answered, so the responder can label the handler's span.
_SLOT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("slot")


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    key: tuple[str, int] | None = None  # (task ref, tool results in the request)


def until_sent(resp: web.StreamResponse, start: float, done: Any) -> web.StreamResponse:
    """Call `done(start, end)` once aiohttp has written the response out (`write_eof`)."""
    write_eof = resp.write_eof

    async def timed_write_eof(data: bytes = b"") -> None:
        try:
            await write_eof(data)
        finally:
            done(start, time.monotonic())

    resp.write_eof = timed_write_eof  # type: ignore[method-assign]
    return resp


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
        key = slot.get("key")
        return until_sent(resp, start, lambda a, b: self.spans.append(Span(a, b, key)))


class TimedSlack(FakeSlack):
    """The Slack stand-in; each Web API span runs from handler entry to response sent."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.spans: list[Span] = []

    async def _timed(self, handler: Any, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        resp = await handler(request)
        return until_sent(resp, start, lambda a, b: self.spans.append(Span(a, b)))

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        return await self._timed(super()._handle_api, request)

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        return await self._timed(super()._handle_upload, request)

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        return await self._timed(super()._handle_response_url, request)


class BenchHarness(Harness):
    """`Harness` with the timed stand-ins; the app is built and started the same way."""

    async def __aenter__(self) -> BenchHarness:
        self.slack = TimedSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
        await self.slack.start()
        self.anthropic = TimedAnthropic()
        await self.anthropic.start()
        (self.tmp / "coworker.toml").write_text(self.config)
        (self.tmp / ".mcp.json").write_text(json.dumps(self.mcp or {"mcpServers": {}}))
        await self.start_app()
        return self


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
        first = messages[0]["content"][0]["text"]
        match = TASK_REF.search(first)
        assert match, first
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


def union(spans: list[Span]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for s in sorted(spans, key=lambda s: s.start):
        if merged and s.start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], s.end))
        else:
            merged.append((s.start, s.end))
    return merged


def busy_within(busy: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in busy)


async def run_tasks(h: Harness, model: Model, names: list[str], timeout: float) -> list[int]:
    """Mention once per name, all at once; return the task ids once every one is done."""
    db = h.coworker.db
    before = int(await db.fetchval("SELECT COALESCE(MAX(id), 0) FROM tasks"))
    model.expect({f"T-{before + i + 1}" for i in range(len(names))})
    for i, name in enumerate(names):
        await h.slack.send_event(app_mention(name, user=f"U{i % 40}", channel=f"C{i % 5}"))
    rows: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            await model.all_final.wait()  # no polling while the tasks run
            while True:
                rows = await db.fetchall("SELECT id, status FROM tasks WHERE id > ?", (before,))
                if len(rows) == len(names) and all(r[1] in ("done", "failed") for r in rows):
                    break
                await asyncio.sleep(0.01)
    except TimeoutError:
        rows = await db.fetchall("SELECT id, status FROM tasks WHERE id > ?", (before,))
        raise SystemExit(f"timed out after {timeout:g} s: {[tuple(r) for r in rows]}") from None
    failed = [r[0] for r in rows if r[1] != "done"]
    assert not failed, f"tasks did not finish: {failed}"
    return sorted(r[0] for r in rows)


def read_tool_log(path: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for line in path.read_text().splitlines():
        query, read, answered = line.split("\t")
        out[query] = (float(read), float(answered))
    return out


async def main(tasks: int, steps: int, warmup: int, concurrency: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "tool.log"
        server = {"command": sys.executable, "args": [str(LOOKUP)],
                  "env": {"BENCH_TOOL_LOG": str(log)}}  # fmt: skip
        mcp = {"mcpServers": {"bench": server}}
        async with BenchHarness(
            tmp=Path(tmp), config=CONFIG.format(concurrency=concurrency, tool=TOOL), mcp=mcp
        ) as h:
            assert h.coworker.gateway.tool(TOOL) is not None, "the lookup server did not start"
            model = Model(steps)
            h.anthropic.responder = model
            if warmup:
                await run_tasks(h, model, [f"warm-up {i}" for i in range(warmup)], 60)
            spans_from = len(h.anthropic.spans), len(h.slack.spans)
            wall0, mono0, cpu0 = time.time(), time.monotonic(), time.thread_time()
            ids = await run_tasks(h, model, [f"bench task {i}" for i in range(tasks)], 170)
            mono1, cpu1 = time.monotonic(), time.thread_time()
            db = h.coworker.db
            finished = float(
                await db.fetchval(
                    f"SELECT MAX(finished_at) FROM tasks WHERE id IN ({','.join('?' * len(ids))})",
                    ids,
                )
            )
            durations = {
                r[0]: float(r[1])
                for r in await db.fetchall(
                    "SELECT idempotency_key, duration_ms FROM tool_calls WHERE tool = ?", (TOOL,)
                )
            }
            anthropic_spans = h.anthropic.spans[spans_from[0] :]
            slack_spans = h.slack.spans[spans_from[1] :]
        tool_log = read_tool_log(log)

    replies = {s.key: s for s in anthropic_spans if s.key is not None}
    busy = union(anthropic_spans + slack_spans)
    overhead, walls, tools, gateway, inside = [], [], [], [], []
    for task_id in ids:
        ref = f"T-{task_id}"
        for k in range(steps):
            start, end = replies[(ref, k)].end, replies[(ref, k + 1)].start
            read, answered = tool_log[f"{ref}/{k + 1}"]
            tool = max(0.0, min(answered, end) - max(read, start))
            stand_ins = busy_within(busy, start, end)
            walls.append((end - start) * 1000)
            tools.append(tool * 1000)
            inside.append(stand_ins * 1000)
            gateway.append(durations[f"t{task_id}:toolu_bench_{k + 1:03d}"] - tool * 1000)
            overhead.append((end - start - tool - stand_ins) * 1000)

    n = len(overhead)
    wall = finished - wall0
    run_busy = busy_within(busy, mono0, mono1)
    loop_per_step = ((mono1 - mono0) - run_busy) * 1000 / n
    med, p95 = statistics.median(overhead), pct(overhead, 95)
    print(f"orchestration overhead per step: {tasks} tasks x {steps} tool steps, "
          f"concurrency {concurrency}, stand-ins answer at once")  # fmt: skip
    print(DEFINITION)
    print(f"  tasks                  : {tasks} (+{warmup} warm-up, not counted)")
    print(f"  steps                  : {n}")
    print(f"  overhead per step      : median {med:6.2f} ms   p95 {p95:6.2f} ms")
    print(
        f"    of which (medians)   : step wall {statistics.median(walls):.2f} ms, "
        f"tool server {statistics.median(tools):.3f} ms, "
        f"stand-ins {statistics.median(inside):.2f} ms subtracted"
    )
    print(
        f"    gateway, per call    : tool_calls.duration_ms - tool server time = median "
        f"{statistics.median(gateway):.2f} ms (included in the overhead)"
    )
    print(
        f"  event loop per step    : {loop_per_step:.2f} ms (run wall time - stand-in time, / steps); "
        f"loop thread CPU {(cpu1 - cpu0) * 1000 / n:.2f} ms/step incl. stand-ins"
    )
    print(f"  tasks per second       : {tasks / wall:.2f}")
    print(f"  total wall time        : {wall:.2f} s (first mention -> last task done)")
    print(
        f"  machine                : {os.cpu_count()} CPUs, 1-min load average {load:.2f} at start"
    )
    verdict = "MET" if med < TARGET_MS else "NOT MET"
    print(f"  target                 : median < {TARGET_MS:g} ms per step -> {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=CONCURRENCY)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="for diagnosis")
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.steps, args.warmup, args.concurrency))
