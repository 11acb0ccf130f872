"""FakeAnthropic: a local stand-in for the Anthropic Messages API, for tests.

A real aiohttp server on 127.0.0.1 (random free port) that the real SDK talks to
over HTTP, so nothing inside the SDK is patched::

    async with FakeAnthropic() as fake:
        fake.enqueue_text("Hello!")
        client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="sk-ant-test")
        message = await client.messages.create(model=..., max_tokens=..., messages=[...])
        assert fake.requests[0].body["messages"] == [...]

``fake.base_url`` is the bare origin (``http://127.0.0.1:PORT``); the SDK appends
``/v1/messages`` itself.

Endpoints:

* ``POST /v1/messages`` -- every request is recorded in ``fake.requests`` and answered
  with the next queued :class:`Reply` (or by ``fake.responder`` when the queue is
  empty).  Plain requests get a Message JSON; ``"stream": true`` requests get the
  same message as Server-Sent Events in the order the real API sends them
  (message_start, content_block_start, ping, content_block_delta..., content_block_stop,
  message_delta, message_stop).  Text is streamed a few words per ``text_delta``, tool
  input as a few ``input_json_delta`` chunks of partial JSON.
* ``POST /v1/messages/count_tokens`` -- ``{"input_tokens": estimate}``.
* ``GET /v1/models`` -- a one-page list of ``DEFAULT_MODELS`` (a "reachable" check).
* anything else -- 404 ``not_found_error``.

Every endpoint wants an API key and answers 401 ``authentication_error`` without one.
The key is read from ``x-api-key`` or ``Authorization: Bearer``: anthropic 2.x sends
``api_key`` as a bearer token, not as ``x-api-key``.  Errors have the API's shape
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``.

Queued errors carry the headers the SDK's retry loop reads: ``x-should-retry`` and
``retry-after-ms`` (10 ms unless ``retry_after`` is given, then also ``retry-after``),
so retry tests take milliseconds.  An empty queue with no responder answers 500
"FakeAnthropic: no reply queued ..." with ``x-should-retry: false``, so the test fails
at once with a clear message rather than after the SDK's retries.

Usage is simulated.  Tokens are estimated as ceil(len(JSON text) / 4) per block.
Prompt caching follows the real API, simplified:

* the request is read in the API's cache order -- tools, system, messages -- one unit
  per tool, system block and message content block (a plain string is one block);
* a unit with ``cache_control`` is a breakpoint (top-level ``cache_control`` marks the
  last unit); the prompt up to the last breakpoint is the cached part;
* from each breakpoint the fake looks back up to 20 units for a prefix it has cached
  before; the longest one found counts as ``cache_read_input_tokens``, the rest of the
  cached part as ``cache_creation_input_tokens``, the units after the last breakpoint
  as ``input_tokens``; then the prefixes ending at each breakpoint are remembered for
  the fake's lifetime.

Not simulated: the minimum cacheable length, TTLs (all cache writes are reported as
5-minute ones), ``cache_control`` nested inside ``tool_result`` content.  An explicit
``usage=`` on a reply overrides the simulated values key by key.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import random
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

__all__ = [
    "DEFAULT_MODELS",
    "FakeAnthropic",
    "Reply",
    "Request",
    "Responder",
    "error_reply",
    "estimate_tokens",
    "request_tokens",
    "stream_events",
    "text_reply",
    "tool_reply",
    "tool_uses_reply",
]

Block = dict[str, Any]  # one API content block, e.g. {"type": "text", "text": "hi"}
Usage = dict[str, Any]
ToolCall = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str]  # (name, input[, id])

DEFAULT_MODELS: tuple[str, ...] = ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5")
CACHE_LOOKBACK = 20  # blocks the real API searches back from a breakpoint for a hit
DELTA_USAGE_KEYS = (  # cumulative counts repeated in message_delta
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
FAST_RETRY_MS = 10  # retry-after-ms sent with errors that don't set retry_after
RETRYABLE_STATUSES = frozenset({408, 409, 429})  # plus every status >= 500


# --------------------------------------------------------------------------- types


@dataclass
class Request:
    """One recorded ``POST /v1/messages`` call.

    ``headers`` has lower-cased names; ``at`` is ``time.monotonic()`` on arrival.
    """

    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def api_key(self) -> str:
        """The key sent as ``x-api-key`` or ``Authorization: Bearer`` (the 2.x SDK's way)."""
        return self.headers.get("x-api-key") or _bearer_token(self.headers.get("authorization", ""))


@dataclass
class Reply:
    """What the fake answers to one ``POST /v1/messages``.

    A success carries ``content`` (API-shaped content blocks); an error has
    ``status >= 400``.  ``delay`` seconds are slept before answering.
    """

    content: list[Block] = field(default_factory=list)
    stop_reason: str | None = "end_turn"
    stop_sequence: str | None = None
    usage: Usage | None = None
    status: int = 200
    error_type: str | None = None
    error_message: str = ""
    retry_after: float | None = None
    should_retry: bool | None = None  # x-should-retry; None: retry 408/409/429/5xx like the API
    delay: float = 0.0

    @property
    def is_error(self) -> bool:
        return self.status >= 400


Responder = Callable[[dict[str, Any]], Reply | str | Awaitable[Reply | str]]
"""Called with the request body when the queue is empty; a ``str`` means ``text_reply(str)``."""


def text_reply(text: str, *, stop_reason: str = "end_turn", usage: Usage | None = None) -> Reply:
    """A reply with one text block."""
    return Reply(content=[{"type": "text", "text": text}], stop_reason=stop_reason, usage=usage)


def tool_uses_reply(
    calls: Iterable[ToolCall],
    *,
    text: str | None = None,
    stop_reason: str = "tool_use",
    usage: Usage | None = None,
) -> Reply:
    """A reply with an optional text block, then one tool_use block per (name, input[, id])."""
    content: list[Block] = [{"type": "text", "text": text}] if text is not None else []
    for call in calls:
        name, tool_input = call[0], call[1]
        tool_id = call[2] if len(call) > 2 else _new_id("toolu_01")
        content.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
    return Reply(content=content, stop_reason=stop_reason, usage=usage)


def tool_reply(
    name: str,
    input: dict[str, Any],
    *,
    id: str | None = None,
    text: str | None = None,
    stop_reason: str = "tool_use",
    usage: Usage | None = None,
) -> Reply:
    """A reply calling one tool, optionally preceded by a text block."""
    call = (name, input) if id is None else (name, input, id)
    return tool_uses_reply([call], text=text, stop_reason=stop_reason, usage=usage)


def error_reply(
    status: int,
    error_type: str,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    should_retry: bool | None = None,
) -> Reply:
    """An API error, e.g. ``error_reply(529, "overloaded_error")``."""
    return Reply(
        status=status,
        error_type=error_type,
        error_message=message or f"FakeAnthropic: {error_type}",
        retry_after=retry_after,
        should_retry=should_retry,
    )


# ------------------------------------------------------------------ token estimates


def estimate_tokens(value: Any) -> int:
    """ceil(len(JSON text) / 4); strings are measured as their JSON encoding."""
    return math.ceil(len(_dumps(value)) / 4)


def request_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of a Messages request (tools + system + messages)."""
    return sum(unit.tokens for unit in _cache_units(body))


@dataclass(frozen=True)
class _Unit:
    key: str  # identity of the unit within the cache order
    tokens: int
    breakpoint: bool


def _cache_units(body: dict[str, Any]) -> list[_Unit]:
    """The request's blocks in the API's cache order: tools, system, messages."""
    units = [_unit("tool", tool) for tool in body.get("tools") or []]
    units += [_unit("system", block) for block in _as_blocks(body.get("system"))]
    for index, message in enumerate(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else message
        units += [_unit(f"message:{index}:{role}", block) for block in _as_blocks(content)]
    if body.get("cache_control") and units:
        units[-1] = replace(units[-1], breakpoint=True)
    return units


def _as_blocks(content: Any) -> list[Any]:
    if content is None or content == "":
        return []
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content} if isinstance(content, str) else content]


def _unit(section: str, block: Any) -> _Unit:
    marked = isinstance(block, dict) and bool(block.get("cache_control"))
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return _Unit(key=f"{section}|{_dumps(block)}", tokens=estimate_tokens(block), breakpoint=marked)


def _simulate_usage(body: dict[str, Any], content: list[Block], cache: set[str]) -> dict[str, Any]:
    """Usage for one call; remembers the prefixes written to ``cache``."""
    units = _cache_units(body)
    hashes, totals = _prefixes(units)
    total = totals[-1] if totals else 0
    breakpoints = [i for i, unit in enumerate(units) if unit.breakpoint]
    cached = read = 0
    if breakpoints:
        hit = max(_cache_hit(bp, hashes, cache) for bp in breakpoints)
        read = totals[hit] if hit >= 0 else 0
        cached = totals[breakpoints[-1]]
        cache.update(hashes[bp] for bp in breakpoints)
    return {
        "input_tokens": total - cached,
        "cache_creation_input_tokens": cached - read,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cached - read,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": max(1, estimate_tokens(content)),
        "service_tier": "standard",
    }


def _prefixes(units: Sequence[_Unit]) -> tuple[list[str], list[int]]:
    """Hash and cumulative token count of every prefix ``units[: i + 1]``."""
    hasher = hashlib.sha256()
    hashes: list[str] = []
    totals: list[int] = []
    running = 0
    for unit in units:
        hasher.update(unit.key.encode() + b"\x00")
        hashes.append(hasher.copy().hexdigest())
        running += unit.tokens
        totals.append(running)
    return hashes, totals


def _cache_hit(breakpoint: int, hashes: Sequence[str], cache: set[str]) -> int:
    """Index of the longest cached prefix within the lookback window, or -1."""
    for i in range(breakpoint, max(breakpoint - CACHE_LOOKBACK, -1), -1):
        if hashes[i] in cache:
            return i
    return -1


# ------------------------------------------------------------------------ messages


def _build_message(body: dict[str, Any], reply: Reply, usage: dict[str, Any]) -> dict[str, Any]:
    """The Message JSON the API returns for a non-streamed request."""
    return {
        "id": _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }


def stream_events(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The SSE event payloads the API sends for ``message`` when streaming."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    yield {
        "type": "message_start",
        "message": {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        },
    }
    blocks = [event for i, b in enumerate(message["content"]) for event in _block_events(i, b)]
    blocks.insert(1 if blocks else 0, {"type": "ping"})  # where the API sends it
    yield from blocks
    final_usage = {key: usage[key] for key in DELTA_USAGE_KEYS}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
        "usage": final_usage,
    }
    yield {"type": "message_stop"}


def _block_events(index: int, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        start, deltas = (
            {**block, "text": ""},
            [{"type": "text_delta", "text": t} for t in _text_chunks(block["text"])],
        )
    elif kind == "tool_use":
        chunks = _json_chunks(block.get("input", {}))
        start, deltas = (
            {**block, "input": {}},
            [{"type": "input_json_delta", "partial_json": c} for c in chunks],
        )
    else:  # other blocks (thinking, server tools...) are sent whole; the SDK accepts that
        start, deltas = block, []
    yield {"type": "content_block_start", "index": index, "content_block": start}
    for delta in deltas:
        yield {"type": "content_block_delta", "index": index, "delta": delta}
    yield {"type": "content_block_stop", "index": index}


def _text_chunks(text: str, words_per_chunk: int = 3) -> list[str]:
    words = re.findall(r"\s*\S+\s*|\s+", text)
    return ["".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]


def _json_chunks(value: Any, parts: int = 3) -> list[str]:
    """The JSON text split into a few partial chunks, led by "" as the API does."""
    text = _dumps(value)
    cuts = [len(text) * i // parts for i in range(parts + 1)]
    return [""] + [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {_dumps(event)}\n\n".encode()


# -------------------------------------------------------------------------- server


class FakeAnthropic:
    """Local Anthropic API server; use as ``async with FakeAnthropic() as fake``."""

    def __init__(
        self, *, api_key: str | None = None, models: Sequence[str] = DEFAULT_MODELS
    ) -> None:
        """``api_key``: if set, only this key is accepted (otherwise any non-empty one)."""
        self.api_key = api_key
        self.models = list(models)
        self.requests: list[Request] = []
        self.responder: Responder | None = None
        self.latency: tuple[float, float] | None = None
        self.base_url = ""
        self._queue: deque[Reply] = deque()
        self._cache: set[str] = set()
        self._arrived = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- lifecycle

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        self._closing.set()  # wakes hanging / delayed handlers
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- queue

    def enqueue_reply(self, reply: Reply) -> None:
        self._queue.append(reply)

    def enqueue(
        self,
        content: list[Block],
        *,
        stop_reason: str | None = "end_turn",
        usage: Usage | None = None,
    ) -> None:
        """Queue a reply with raw API content blocks."""
        self.enqueue_reply(Reply(content=content, stop_reason=stop_reason, usage=usage))

    def enqueue_text(
        self, text: str, *, stop_reason: str = "end_turn", usage: Usage | None = None
    ) -> None:
        self.enqueue_reply(text_reply(text, stop_reason=stop_reason, usage=usage))

    def enqueue_tool_use(
        self,
        name: str,
        input: dict[str, Any],
        *,
        id: str | None = None,
        text: str | None = None,
        stop_reason: str = "tool_use",
        usage: Usage | None = None,
    ) -> None:
        self.enqueue_reply(
            tool_reply(name, input, id=id, text=text, stop_reason=stop_reason, usage=usage)
        )

    def enqueue_tool_uses(
        self,
        calls: Iterable[ToolCall],
        *,
        text: str | None = None,
        stop_reason: str = "tool_use",
        usage: Usage | None = None,
    ) -> None:
        self.enqueue_reply(tool_uses_reply(calls, text=text, stop_reason=stop_reason, usage=usage))

    def enqueue_error(
        self,
        status: int,
        error_type: str,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Queue an API error; ``retry_after`` seconds (default 10 ms) is sent as retry-after(-ms)."""
        self.enqueue_reply(
            error_reply(
                status, error_type, message, retry_after=retry_after, should_retry=should_retry
            )
        )

    def enqueue_hang(self, seconds: float, then: Reply | None = None) -> None:
        """The next request waits ``seconds`` (cut short when the fake closes), then gets ``then``."""
        self.enqueue_reply(replace(then or text_reply("FakeAnthropic: late reply"), delay=seconds))

    @property
    def pending(self) -> int:
        """Number of queued replies not yet used."""
        return len(self._queue)

    @property
    def last_request(self) -> Request:
        return self.requests[-1]

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Wait until at least ``n`` message requests arrived; returns them all."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(self.requests) >= n), timeout
                )
            except TimeoutError:
                raise TimeoutError(
                    f"FakeAnthropic: expected {n} requests, got {len(self.requests)}"
                ) from None
        return list(self.requests)

    # -- handlers

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        body, problem = await _read_json(request)
        await self._record(body, request)
        problem = problem or self._auth_problem(request) or _validate(body, require_max_tokens=True)
        if problem:
            return problem
        reply = await self._next_reply(body)
        await self._sleep(reply.delay + self._latency())
        if reply.is_error:
            return _error_response(
                reply.status,
                reply.error_type or "api_error",
                reply.error_message,
                _retry_headers(reply),
            )
        usage = {**_simulate_usage(body, reply.content, self._cache), **(reply.usage or {})}
        message = _build_message(body, reply, usage)
        if body.get("stream"):
            return await _stream_response(request, message)
        return _json_response(message)

    async def _handle_count_tokens(self, request: web.Request) -> web.Response:
        body, problem = await _read_json(request)
        problem = (
            problem or self._auth_problem(request) or _validate(body, require_max_tokens=False)
        )
        return problem or _json_response({"input_tokens": request_tokens(body)})

    async def _handle_models(self, request: web.Request) -> web.Response:
        if problem := self._auth_problem(request):
            return problem
        data = [_model_info(model) for model in self.models]
        return _json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return _error_response(
            404, "not_found_error", f"FakeAnthropic: no route {request.method} {request.path}"
        )

    # -- helpers

    async def _record(self, body: dict[str, Any], request: web.Request) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        async with self._arrived:
            self.requests.append(Request(body=body, headers=headers, at=time.monotonic()))
            self._arrived.notify_all()

    def _auth_problem(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key") or _bearer_token(
            request.headers.get("authorization", "")
        )
        if not key:
            return _error_response(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return _error_response(401, "authentication_error", "invalid x-api-key")
        return None

    async def _next_reply(self, body: dict[str, Any]) -> Reply:
        if self._queue:
            return self._queue.popleft()
        if self.responder is None:
            return error_reply(
                500,
                "api_error",
                should_retry=False,
                message=(
                    f"FakeAnthropic: no reply queued for request #{len(self.requests)} "
                    "(queue empty, no responder); use fake.enqueue_*() or set fake.responder"
                ),
            )
        try:
            result = self.responder(body)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # surface responder bugs as a clear, non-retried error
            return error_reply(
                500, "api_error", f"FakeAnthropic: responder raised {exc!r}", should_retry=False
            )
        return text_reply(result) if isinstance(result, str) else result

    def _latency(self) -> float:
        return random.uniform(*self.latency) if self.latency else 0.0

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except TimeoutError:
                pass


# ------------------------------------------------------------------ HTTP utilities


async def _read_json(request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
    try:
        body = await request.json()
    except ValueError:
        return {}, _error_response(
            400, "invalid_request_error", "FakeAnthropic: request body is not JSON"
        )
    if not isinstance(body, dict):
        return {}, _error_response(
            400, "invalid_request_error", "FakeAnthropic: request body must be an object"
        )
    return body, None


def _validate(body: dict[str, Any], *, require_max_tokens: bool) -> web.Response | None:
    required = ("model", "messages", "max_tokens") if require_max_tokens else ("model", "messages")
    for name in required:
        if name not in body:
            return _error_response(400, "invalid_request_error", f"{name}: Field required")
    if not isinstance(body["messages"], list):
        return _error_response(
            400, "invalid_request_error", "messages: Input should be a valid list"
        )
    return None


def _bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _retry_headers(reply: Reply) -> dict[str, str]:
    retryable = reply.should_retry
    if retryable is None:
        retryable = reply.status in RETRYABLE_STATUSES or reply.status >= 500
    headers = {"x-should-retry": "true" if retryable else "false"}
    if reply.retry_after is None:
        headers["retry-after-ms"] = str(FAST_RETRY_MS)
    else:
        headers["retry-after"] = f"{reply.retry_after:g}"
        headers["retry-after-ms"] = f"{reply.retry_after * 1000:g}"
    return headers


def _error_response(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    payload = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": _new_id("req_01"),
    }
    return _json_response(payload, status=status, headers=headers)


def _json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    headers = {"request-id": _new_id("req_01"), **(headers or {})}
    return web.Response(
        text=_dumps(payload), status=status, content_type="application/json", headers=headers
    )


async def _stream_response(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "request-id": _new_id("req_01"),
        }
    )
    await response.prepare(request)
    for event in stream_events(message):
        await response.write(_sse(event))
    await response.write_eof()
    return response


def _model_info(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": _display_name(model_id),
        "created_at": "2025-01-01T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


def _display_name(model_id: str) -> str:
    """'claude-sonnet-5-5' -> 'Claude Sonnet 5.5'."""
    family, _, version = model_id.removeprefix("claude-").partition("-")
    return f"Claude {family.title()} {version.replace('-', '.')}".strip()


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(22))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
