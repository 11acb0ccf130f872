"""Optional OpenTelemetry export: spans for task runs, model calls and tool calls.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Then `setup()` builds a tracer provider of
our own (never the process-global one, which the Anthropic and MCP SDKs also read) that
exports over OTLP/HTTP protobuf to `<endpoint>/v1/traces`. The OpenTelemetry SDK and
exporter are imported inside `setup()` only, so a bot without the variable loads neither
(the `[otel]` extra installs them); this module imports no OpenTelemetry at all until then.
(The Anthropic and MCP SDKs import the OpenTelemetry *API* package on their own.) The
exporter's other `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, compression) and
`OTEL_SERVICE_NAME` apply as usual.

Spans follow the OpenTelemetry GenAI semantic conventions:

    invoke_agent <coworker>      one runner pass over a task (planning or acting)
    ├── chat <model>             one Messages API call (bot/llm.py)
    └── execute_tool <tool>      one MCP tool call (bot/toolbox.py)

with `gen_ai.*` attributes (operation, provider, model, usage, finish reasons, tool name)
plus a few `coworker.*` ones (task, purpose, dollars) that the conventions have no name for.
When telemetry is off every helper yields a recorder that does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

PROVIDER = "anthropic"
SERVICE_NAME = "coworker"
SCOPE = "coworker"

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def setup(endpoint: str | None) -> bool:
    """Start exporting spans to `endpoint` (an OTLP/HTTP base URL); None turns export off."""
    global _provider, _tracer
    shutdown()
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    _provider, _tracer = provider, provider.get_tracer(SCOPE)
    log.info("exporting OpenTelemetry spans to %s", endpoint)
    return True


def enabled() -> bool:
    return _tracer is not None


def flush(timeout_ms: int = 5000) -> bool:
    """Export the spans that are waiting; True when they all went out."""
    return _provider.force_flush(timeout_ms) if _provider is not None else True


async def close() -> None:
    """Flush and stop the exporter without blocking the event loop (on app stop)."""
    if _provider is not None:
        await asyncio.to_thread(shutdown)


def shutdown() -> None:
    """Flush and stop the exporter; blocks while the last spans are sent."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = None, None


class Recorder:
    """Sets attributes on a span and marks it failed; does nothing when telemetry is off."""

    def __init__(self, span: Span | None = None) -> None:
        self.span = span
        self.failed = False

    def response(self, message: Any, cost_usd: float) -> None:
        """A model reply's id, model, finish reason and usage, as the GenAI conventions name them."""
        if self.span is None:
            return
        usage = message.usage
        cache_write = getattr(usage, "cache_creation_input_tokens", 0) or 0
        cache_read = getattr(usage, "cache_read_input_tokens", 0) or 0
        self.span.set_attributes(
            {
                "gen_ai.response.id": message.id,
                "gen_ai.response.model": message.model,
                "gen_ai.response.finish_reasons": [message.stop_reason or "unknown"],
                # The conventions count cached tokens in input_tokens; Anthropic reports them apart.
                "gen_ai.usage.input_tokens": usage.input_tokens + cache_write + cache_read,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_creation.input_tokens": cache_write,
                "gen_ai.usage.cache_read.input_tokens": cache_read,
                "coworker.cost_usd": cost_usd,
            }
        )

    def fail(self, error_type: str) -> None:
        """Mark the span failed with `error.type` (the first failure wins)."""
        if self.span is None or self.failed:
            return
        self.failed = True
        from opentelemetry.trace import StatusCode

        self.span.set_attribute("error.type", error_type)
        self.span.set_status(StatusCode.ERROR)


@contextmanager
def _span(name: str, kind: str, attributes: dict[str, Any]) -> Iterator[Recorder]:
    if _tracer is None:
        yield Recorder()
        return
    from opentelemetry.trace import SpanKind

    attrs = {k: v for k, v in attributes.items() if v is not None}
    with _tracer.start_as_current_span(
        name, kind=getattr(SpanKind, kind), attributes=attrs, record_exception=False
    ) as span:
        recorder = Recorder(span)
        try:
            yield recorder
        except BaseException as exc:
            recorder.fail(type(exc).__name__)
            raise


def task_span(*, task_id: int, coworker: str, phase: str) -> AbstractContextManager[Recorder]:
    """`invoke_agent <coworker>`: one runner pass over a task."""
    coworker = coworker or "coworker"  # not routed yet
    return _span(
        f"invoke_agent {coworker}",
        "INTERNAL",
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.agent.name": coworker,
            "coworker.task": f"T-{task_id}",
            "coworker.phase": phase,
        },
    )


def model_span(
    *, model: str, purpose: str, task_id: int | None, max_tokens: int
) -> AbstractContextManager[Recorder]:
    """`chat <model>`: one Messages API call."""
    return _span(
        f"chat {model}",
        "CLIENT",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.system": PROVIDER,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
            "coworker.purpose": purpose,
            "coworker.task": f"T-{task_id}" if task_id is not None else None,
        },
    )


def tool_span(
    *, tool: str, call_id: str | None, task_id: int | None
) -> AbstractContextManager[Recorder]:
    """`execute_tool <tool>`: one MCP tool call."""
    return _span(
        f"execute_tool {tool}",
        "INTERNAL",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "extension",
            "gen_ai.tool.call.id": call_id,
            "coworker.task": f"T-{task_id}" if task_id is not None else None,
        },
    )
