"""Ack latency over Socket Mode: the full app next to a bare Bolt app that only acks.

Delivers N `app_mention` envelopes through the Slack stand-in to each app and prints p50/p99
from envelope sent to ack received. Target: p99 under 50 ms and within 2x of the bare app.

    python benchmarks/ack_latency.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.anthropic import tool_reply
from tests.fakes.slack import app_mention
from tests.scenarios.harness import APP_TOKEN, BOT_TOKEN, Harness

PLAN = {
    "summary": "bench",
    "steps": [{"what": "answer", "tools": []}],
    "estimate_minutes": 1,
    "questions": [],
}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(slack: object, n: int, user_prefix: str) -> list[float]:
    latencies = []
    for i in range(n):
        event = app_mention(f"bench {i}", user=f"{user_prefix}{i % 50}", channel=f"C{i % 5}")
        env = await slack.send_event(event)  # type: ignore[attr-defined]
        ack = await slack.wait_for_ack(env)  # type: ignore[attr-defined]
        latencies.append(ack.latency * 1000)
    return latencies


async def bare_bolt(slack: object, n: int) -> list[float]:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)  # type: ignore[attr-defined]
    app = AsyncApp(client=client, token=BOT_TOKEN, request_verification_enabled=False)

    @app.event("app_mention")
    async def noop() -> None:
        return None

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    before = slack.connection_count  # type: ignore[attr-defined]
    await handler.connect_async()
    await slack.wait_connected(after=before)  # type: ignore[attr-defined]
    try:
        return await measure(slack, n, "UB")
    finally:
        await handler.close_async()


async def main(n: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        config = '[runner]\nmax_new_tasks_per_minute = 1000\nstatus_interval = "0.05s"\n'
        async with Harness(tmp=Path(tmp), config=config) as h:
            h.anthropic.responder = lambda body: tool_reply("submit_plan", PLAN)
            full = await measure(h.slack, n, "U")
            await h.stop_app()
            bare = await bare_bolt(h.slack, n)
    p50f, p99f, p50b, p99b = pct(full, 50), pct(full, 99), pct(bare, 50), pct(bare, 99)
    print(f"ack latency over Socket Mode, {n} mentions each (envelope sent -> ack received)")
    print(
        f"  coworker app : p50 {p50f:6.2f} ms   p99 {p99f:6.2f} ms   mean {statistics.mean(full):.2f} ms"
    )
    print(
        f"  bare Bolt app: p50 {p50b:6.2f} ms   p99 {p99b:6.2f} ms   mean {statistics.mean(bare):.2f} ms"
    )
    print(f"  p99 ratio    : {p99f / p99b:.2f}x   (target: p99 < 50 ms and <= 2x bare)")
    ok = p99f < 50 and p99f <= 2 * p99b
    print("  result       : " + ("MET" if ok else "NOT MET"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
