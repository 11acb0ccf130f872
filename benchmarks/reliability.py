"""Reliability figures: crash recovery under SIGKILL, and load with realistic latency.

    python benchmarks/reliability.py [--kills 20] [--seed N] [--tasks 50] [--quick]

Both parts run the real bot as a child process (`python -m bot`) against the local Slack
and Anthropic stand-ins and a stdio MCP server with side effects (tests/reliability/).

Crash recovery (tests/reliability/crash.py): a task that plans, searches (auto), files a
ticket (block: waits for the delegator's click, sent over Socket Mode), comments
(notify) and answers, with the model taking 0.05–0.3 s and tools 0.05–0.3 s. The bot is
SIGKILLed `--kills` times at points drawn from a seeded RNG and restarted on the same
database each time; a new task is sent whenever none is open. Figures: tasks lost
(target 0), side-effecting calls repeated (target 0, from the server's own log), read-only
calls re-run, in-doubt calls put to the delegator, time to resume (restart → next new
llm_calls/tool_calls row; it includes the Python start-up of the bot).

Load (tests/reliability/load.py): `--tasks` mentions from different people within 3 s,
model latency 0.5–2 s, tool latency 0.1–1 s, default runner concurrency (4), and a
`/coworker status` four times a second while the tasks run. Figures: tasks finished, ack
latency while loaded (target p99 < 100 ms), "database is locked" errors, the bot's
resident memory, wall time.

`--quick` runs the sizes of the CI tests (5 kills; 15 tasks with lower latency).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.crash import CrashRun
from tests.reliability.load import LoadRun


async def crash_figures(kills: int, seed: int) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        async with CrashRun(Path(tmp), kills=kills, seed=seed) as run:
            report = await run.run()
    print("\n".join(report.lines()))
    return report.lost == 0 and not report.repeated and not report.missing


async def load_figures(tasks: int, quick: bool) -> bool:
    latency = (
        {"model_latency": (0.05, 0.3), "tool_latency": (0.02, 0.2), "spread": 2.0}
        if quick
        else {"model_latency": (0.5, 2.0), "tool_latency": (0.1, 1.0), "spread": 3.0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with LoadRun(Path(tmp), tasks=tasks, **latency) as run:  # type: ignore[arg-type]
            report = await run.run(timeout=600)
    print("\n".join(report.lines()))
    return (
        report.done == report.delivered == tasks
        and report.locked == 0
        and not report.errors
        and report.ack_p99 < 100
    )


async def main(args: argparse.Namespace) -> int:
    kills = 5 if args.quick and args.kills is None else (args.kills or 20)
    tasks = 15 if args.quick and args.tasks is None else (args.tasks or 50)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    crash_ok = await crash_figures(kills, seed)
    print()
    load_ok = await load_figures(tasks, args.quick)
    print()
    print("result: " + ("all targets met" if crash_ok and load_ok else "a target was NOT met"))
    return 0 if crash_ok and load_ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="the CI sizes")
    sys.exit(asyncio.run(main(parser.parse_args())))
