"""Ack latency over Socket Mode: the full app next to a bare Bolt app that only acks.

Each app runs in its own process (`python -m bot`, and a bare Bolt script), connected over
Socket Mode to the Slack stand-in in this process, as in production. N `app_mention`
envelopes are delivered one after another and the time from envelope sent to ack received
is measured. The full app does real work for every mention after acking it (task row,
reaction, reply, planning through the Anthropic stand-in), so its acks are measured while
it is loaded. Target: p99 under 50 ms and within 2x of the bare app.

    python benchmarks/ack_latency.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.anthropic import FakeAnthropic, tool_reply  # noqa: E402
from tests.fakes.slack import FakeSlack, app_mention  # noqa: E402

BOT_TOKEN, APP_TOKEN = "xoxb-bench", "xapp-bench"
PLAN = {
    "summary": "bench",
    "steps": [{"what": "answer", "tools": []}],
    "estimate_minutes": 1,
    "questions": [],
}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(slack: FakeSlack, n: int, prefix: str) -> list[float]:
    latencies = []
    for i in range(n):
        event = app_mention(f"bench {i}", user=f"{prefix}{i % 50}", channel=f"C{i % 5}")
        ack = await slack.wait_for_ack(await slack.send_event(event))
        latencies.append(ack.latency * 1000)
    return latencies


async def run_process(
    slack: FakeSlack, args: list[str], env: dict[str, str], n: int, prefix: str
) -> list[float]:
    before = slack.connection_count
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=full_env,
        cwd=env.get("CWD", str(REPO)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await slack.wait_connected(timeout=60, after=before)
        await measure(slack, 20, prefix + "W")  # warm-up, not counted
        return await measure(slack, n, prefix)
    finally:
        proc.terminate()
        await proc.wait()


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<13}: p50 {pct(values, 50):6.2f} ms   p99 {pct(values, 99):6.2f} ms"
        f"   mean {statistics.mean(values):.2f} ms"
    )


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "coworker.toml"
        config.write_text("[runner]\nmax_new_tasks_per_minute = 100000\n")
        servers = Path(tmp) / "none.json"
        servers.write_text('{"mcpServers": {}}')
        async with (
            FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as slack,
            FakeAnthropic() as anthropic,
        ):
            anthropic.responder = lambda body: tool_reply("submit_plan", PLAN)
            base: dict[str, Any] = {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_APP_TOKEN": APP_TOKEN,
                "SLACK_API_URL": slack.api_url,
            }
            app_env = {
                **base,
                "ANTHROPIC_API_KEY": "sk-ant-bench",
                "ANTHROPIC_BASE_URL": anthropic.base_url,
                "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
                "COWORKER_CONFIG": str(config),
                "COWORKER_MCP_CONFIG": str(servers),
                "CWD": tmp,
            }
            full = await run_process(slack, ["-m", "bot"], app_env, n, "U")
            bare = await run_process(
                slack, [str(REPO / "benchmarks/servers/bare_bolt.py")], base, n, "UB"
            )
    ratio = pct(full, 99) / pct(bare, 99)
    print(f"ack latency over Socket Mode, {n} mentions to each app in its own process")
    print("(envelope sent -> ack received; the coworker app plans every mention meanwhile)")
    print(line("coworker app", full))
    print(line("bare Bolt app", bare))
    print(f"  p99 ratio    : {ratio:.2f}x   (target: p99 < 50 ms and <= 2x bare)")
    ok = pct(full, 99) < 50 and ratio <= 2
    print("  result       : " + ("MET" if ok else "NOT MET"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
