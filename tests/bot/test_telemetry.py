"""bot/telemetry.py: GenAI spans over OTLP/HTTP to a local collector stand-in, and no
OpenTelemetry SDK at all without `OTEL_EXPORTER_OTLP_ENDPOINT`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bot import telemetry
from bot.base.clock import now
from bot.base.config import Config
from bot.base.db import Database
from bot.base.errors import LLMUnavailable
from bot.llm import LLM, CallContext, make_client
from tests.fakes.anthropic import FakeAnthropic

REPO = Path(__file__).resolve().parents[2]


class OtlpCollector:
    """A stand-in OTLP/HTTP collector: accepts POST /v1/traces and keeps the decoded spans."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.endpoint = ""
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.endpoint = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        self.requests.append(ExportTraceServiceRequest.FromString(await request.read()))
        async with self._arrived:
            self._arrived.notify_all()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def spans(self) -> list[Any]:
        return [
            span
            for req in self.requests
            for resource in req.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def resources(self) -> list[dict[str, Any]]:
        return [attributes(r.resource) for req in self.requests for r in req.resource_spans]

    async def wait_for(self, names: list[str], timeout: float = 10.0) -> list[Any]:
        """Flush the exporter (in a thread: it posts back to this loop) until spans with
        `names` arrived (a name listed twice waits for two)."""
        wanted = Counter(names)
        async with asyncio.timeout(timeout):
            while Counter(s.name for s in self.spans()) & wanted != wanted:
                await asyncio.to_thread(telemetry.flush)
                await asyncio.sleep(0.01)
        return self.spans()


def value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind)


def attributes(obj: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in obj.attributes}


@pytest.fixture
async def collector() -> AsyncIterator[OtlpCollector]:
    server = OtlpCollector()
    await server.start()
    try:
        yield server
    finally:
        await telemetry.close()
        await server.stop()


@pytest.fixture(autouse=True)
def telemetry_off_afterwards() -> Iterator[None]:
    yield
    telemetry.shutdown()


async def test_model_calls_are_exported_as_genai_chat_spans(
    collector: OtlpCollector, db: Database
) -> None:
    assert telemetry.setup(collector.endpoint)
    t = now()
    task = await db.fetchval(
        "INSERT INTO tasks (delegator, channel, thread_ts, message_ts, request, created_at,"
        " updated_at) VALUES ('U1', 'C1', '1', '1', 'r', ?, ?) RETURNING id",
        (t, t),
    )
    async with FakeAnthropic() as fake:
        client = make_client("sk-ant-test", fake.base_url, max_retries=0)
        llm = LLM(client, Config(), db)
        ctx = CallContext(task_id=task, budget_usd=5.0)
        messages = [{"role": "user", "content": [{"type": "text", "text": "go " * 200}]}]
        for _ in range(2):
            fake.enqueue_text("ok")
            await llm.create(purpose="act", system="S " * 500, messages=messages, ctx=ctx)
        fake.enqueue_error(400, "invalid_request_error")
        with pytest.raises(LLMUnavailable):
            await llm.create(purpose="classify", messages=messages, ctx=ctx)
        await client.close()

    spans = await collector.wait_for(["chat claude-sonnet-5-5", "chat claude-haiku-5-5"])
    first, second = (s for s in spans if s.name == "chat claude-sonnet-5-5")
    a, b = attributes(first), attributes(second)
    assert first.kind == first.SPAN_KIND_CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "anthropic"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "claude-sonnet-5-5"
    assert a["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert a["gen_ai.usage.output_tokens"] >= 1
    assert a["coworker.purpose"] == "act" and a["coworker.task"] == f"T-{task}"
    assert b["gen_ai.usage.cache_read.input_tokens"] > 0
    rows = await db.fetchall("SELECT * FROM llm_calls WHERE task_id = ? ORDER BY id", (task,))
    row = rows[1]
    assert b["gen_ai.usage.input_tokens"] == (
        row["input_tokens"] + row["cache_write_tokens"] + row["cache_read_tokens"]
    )
    assert b["gen_ai.usage.cache_read.input_tokens"] == row["cache_read_tokens"]
    assert b["coworker.cost_usd"] == pytest.approx(row["cost_usd"])
    [failed] = [s for s in spans if s.name == "chat claude-haiku-5-5"]
    assert attributes(failed)["error.type"] == "BadRequestError"
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert {"service.name": "coworker"}.items() <= collector.resources()[0].items()


async def test_task_and_tool_spans_nest_the_model_spans(collector: OtlpCollector) -> None:
    assert telemetry.setup(collector.endpoint)
    with telemetry.task_span(task_id=7, coworker="dev", phase="running"):
        with telemetry.tool_span(tool="github__search", call_id="toolu_1", task_id=7) as tool:
            tool.fail("tool_error")
    spans = await collector.wait_for(["invoke_agent dev", "execute_tool github__search"])
    by_name = {s.name: s for s in spans}
    task, tool_span = by_name["invoke_agent dev"], by_name["execute_tool github__search"]
    assert tool_span.parent_span_id == task.span_id
    assert tool_span.trace_id == task.trace_id
    assert attributes(task) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.agent.name": "dev",
        "coworker.task": "T-7",
        "coworker.phase": "running",
    }
    t = attributes(tool_span)
    assert t["gen_ai.operation.name"] == "execute_tool"
    assert t["gen_ai.tool.name"] == "github__search" and t["gen_ai.tool.call.id"] == "toolu_1"
    assert t["error.type"] == "tool_error"


def test_disabled_spans_do_nothing() -> None:
    assert telemetry.setup(None) is False
    assert not telemetry.enabled()
    with telemetry.model_span(model="m", purpose="act", task_id=None, max_tokens=1) as span:
        span.fail("x")
    assert span.span is None and telemetry.flush()


PROBE = """
import json, sys
import anthropic, mcp  # these SDKs import the OpenTelemetry *API* themselves
before = {m for m in sys.modules if m.startswith("opentelemetry")}
import bot.__main__, bot.app, bot.cli, bot.llm, bot.reports, bot.telemetry, handlers
from bot import telemetry
if not telemetry.setup(sys.argv[1] or None):  # (the control exports nothing at exit)
    with telemetry.model_span(model="m", purpose="act", task_id=1, max_tokens=1) as span:
        span.fail("x")
after = {m for m in sys.modules if m.startswith("opentelemetry")}
sdk = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")
print(json.dumps({"added": sorted(after - before),
                  "sdk": sorted(m for m in after if m.startswith(sdk))}))
"""


def probe(endpoint: str) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, endpoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_without_the_variable_no_opentelemetry_is_imported() -> None:
    off = probe("")
    assert off == {"added": [], "sdk": []}
    on = probe("http://127.0.0.1:9")  # the control: the probe does see the SDK when it loads
    assert "opentelemetry.sdk.trace" in on["sdk"]
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in on["sdk"]
