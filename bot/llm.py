"""The one module that talks to the Anthropic Messages API.

It owns routing, prompt caching, retries (the SDK's, with backoff on 429/529/5xx), dollars
from reported usage, the call log (one `llm_calls` row per call, errors too) and the
model-call span when OpenTelemetry export is on (`bot/telemetry.py`).

Routing: every call names its purpose. `[routing]` may send a purpose to another tier;
otherwise `DEFAULT_ROUTES` decides, and a `final_draft` of a high-visibility task (`!visible`
or urgent) goes to the best tier. A coworker's `models` table then maps a purpose or a tier
to a model id or to another tier; tiers resolve through `[models]`.

Caching: the API caches up to each `cache_control` breakpoint, in the order tools, system,
messages. The stable prefix (tool definitions and the system prompt) ends at the first
breakpoint, so every task of a coworker shares it; per-task memory (`context`) follows it.
The multi-turn purpose (`act`) also marks the end of the conversation, so each turn
reads the previous turn's prefix from the cache and pays full price only for what is new.
`LLM(caching=False)` sends no breakpoints (the cost benchmark's baseline).

Replies are validated from their JSON by pydantic-core in one pass (`read_message`) rather
than built by the SDK's field-by-field parser, which costs more than the rest of an agent
step's bookkeeping; a reply the installed types cannot describe goes to the SDK's parser.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anthropic
import pydantic
from anthropic import AsyncAPIResponse
from anthropic.types import Message

from bot import telemetry
from bot.base.clock import now
from bot.base.config import Config, CoworkerConfig, ModelTier, Price
from bot.base.db import Database, Statement
from bot.base.errors import BudgetExhausted, LLMUnavailable

log = logging.getLogger(__name__)

DEFAULT_ROUTES: dict[str, ModelTier] = {
    "classify": "fast",
    "route": "fast",
    "extract": "fast",
    "summarize": "fast",
    "consolidate": "fast",
    "plan": "default",
    "act": "default",
    "review": "fast",  # checked on another tier than the one that wrote it
    "final_draft": "default",
}
TIERS = ("fast", "default", "best")
MULTI_TURN = frozenset({"act"})  # purposes whose conversation grows call by call
CACHE = {"type": "ephemeral"}


@dataclass
class CallContext:
    """Who a model call is for: the task it is charged to, and how it is routed."""

    task_id: int | None = None
    coworker: CoworkerConfig | None = None
    high_visibility: bool = False
    budget_usd: float | None = None
    #: What the task has spent, when the caller just read it (saves a query per call);
    #: after the call, the task's new total (its `tasks.spent_usd`, this call included).
    spent_usd: float | None = None


def no_statements(message: Message) -> Sequence[Statement]:
    return ()


def cost_usd(price: Price | None, usage: Any) -> float:
    """Dollars for one call's reported usage."""
    if price is None or usage is None:
        return 0.0
    cache_write = getattr(usage, "cache_creation_input_tokens", 0) or 0
    cache_read = getattr(usage, "cache_read_input_tokens", 0) or 0
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + cache_write * price.cache_write
        + cache_read * price.cache_read
    )
    return total / 1_000_000


class LLM:
    """Routed, budgeted, logged access to Claude."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        config: Config,
        db: Database,
        *,
        caching: bool = True,
    ) -> None:
        self.client = client
        self.config = config
        self.db = db
        self.caching = caching

    def tier_for(self, purpose: str, ctx: CallContext | None = None) -> str:
        """The tier for `purpose` before coworker overrides.

        Raises:
            ValueError: `purpose` is not one of `DEFAULT_ROUTES`.
        """
        if purpose not in DEFAULT_ROUTES:
            raise ValueError(f"unknown model-call purpose {purpose!r}")
        configured = self.config.routing.get(purpose)  # type: ignore[call-overload]
        if configured is not None:
            return str(configured)
        if purpose == "final_draft" and ctx is not None and ctx.high_visibility:
            return "best"
        return DEFAULT_ROUTES[purpose]

    def model_for(self, purpose: str, ctx: CallContext | None = None) -> str:
        """The model id for `purpose`, after per-purpose and per-coworker overrides."""
        tier = self.tier_for(purpose, ctx)
        overrides = ctx.coworker.models if ctx is not None and ctx.coworker else {}
        choice = overrides.get(purpose, tier)
        if choice in TIERS:  # a tier, possibly remapped by the coworker
            choice = overrides.get(choice, choice)
        return str(getattr(self.config.models, choice)) if choice in TIERS else choice

    async def spent(self, task_id: int) -> float:
        """Dollars the task's model calls have cost so far."""
        value = await self.db.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE task_id = ?", (task_id,)
        )
        return float(value or 0.0)

    async def create(
        self,
        *,
        purpose: str,
        messages: list[dict[str, Any]],
        system: str = "",
        context: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: dict[str, Any] | None = None,
        max_tokens: int = 4096,
        ctx: CallContext | None = None,
        keep: Callable[[Message], Sequence[Statement]] = no_statements,
    ) -> Message:
        """One Messages API call, cached, charged to the task and logged.

        `keep(reply)` gives statements to commit in the same transaction as the call's row
        and the task's spend (the agent's checkpoint holding the reply): one write a turn.

        Raises:
            BudgetExhausted: the task has no budget left, so no call is made.
            LLMUnavailable: the API failed after the SDK's retries.
        """
        ctx = ctx or CallContext()
        if ctx.task_id is not None and ctx.budget_usd is not None:
            spent = ctx.spent_usd if ctx.spent_usd is not None else await self.spent(ctx.task_id)
            if spent >= ctx.budget_usd:
                raise BudgetExhausted(
                    task_id=ctx.task_id, spent_usd=spent, budget_usd=ctx.budget_usd
                )
        model = self.model_for(purpose, ctx)
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "system": system_blocks(system, context, cache=self.caching),
            "messages": (
                mark_last_block(messages) if self.caching and purpose in MULTI_TURN else messages
            ),
        }
        if tools:
            params["tools"] = tools
        if tool_choice:
            params["tool_choice"] = tool_choice
        with telemetry.model_span(
            model=model, purpose=purpose, task_id=ctx.task_id, max_tokens=max_tokens
        ) as span:
            started = time.perf_counter()
            try:
                raw = await self.client.messages.with_raw_response.create(**params)
                message = await read_message(raw)
            except anthropic.APIError as exc:
                error = type(exc).__name__
                span.fail(error)
                await self._log(ctx, purpose, model, None, started, None, error)
                log.warning("model call failed task=%s purpose=%s: %s", ctx.task_id, purpose, exc)
                raise unavailable(exc, model) from exc
            cost = await self._log_kept(ctx, purpose, model, message, started, keep)
            span.response(message, cost)
        return message

    async def _log_kept(
        self,
        ctx: CallContext,
        purpose: str,
        model: str,
        message: Message,
        started: float,
        keep: Callable[[Message], Sequence[Statement]],
    ) -> float:
        """Log the call with what the caller keeps of it; if that fails, the call alone.

        The call was made and paid for: its row and the task's spend must not go down with
        a checkpoint that could not be built or written.
        """
        usage, stop = message.usage, message.stop_reason
        try:
            return await self._log(ctx, purpose, model, usage, started, stop, None, keep(message))
        except Exception:
            await self._log(ctx, purpose, model, usage, started, stop, None)
            raise

    async def _log(
        self,
        ctx: CallContext,
        purpose: str,
        model: str,
        usage: Any,
        started: float,
        stop_reason: str | None,
        error: str | None,
        kept: Sequence[Statement] = (),
    ) -> float:
        cost = cost_usd(self.config.price(model), usage)
        row = (
            ctx.task_id,
            ctx.coworker.name if ctx.coworker else None,
            purpose,
            model,
            getattr(usage, "input_tokens", 0) or 0,
            getattr(usage, "output_tokens", 0) or 0,
            getattr(usage, "cache_creation_input_tokens", 0) or 0,
            getattr(usage, "cache_read_input_tokens", 0) or 0,
            cost,
            (time.perf_counter() - started) * 1000,
            stop_reason,
            error,
            now(),
        )
        insert = (
            "INSERT INTO llm_calls (task_id, coworker, purpose, model, input_tokens,"
            " output_tokens, cache_write_tokens, cache_read_tokens, cost_usd, latency_ms,"
            " stop_reason, error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        )
        if ctx.task_id is None:
            await self.db.batch((insert, row), *kept)
            return cost
        # The call's row and the task's running total change together, so `tasks.spent_usd`
        # is always the sum of its calls and the loop reads its spend with the task row.
        _, total, *_ = await self.db.batch(
            (insert, row),
            (
                "UPDATE tasks SET spent_usd = spent_usd + ? WHERE id = ? RETURNING spent_usd",
                (cost, ctx.task_id),
            ),
            *kept,
        )
        if total:
            ctx.spent_usd = float(total[0][0])
        return cost


#: Statuses the SDK retries (with back-off) unless the API says otherwise.
RETRIED_STATUSES = frozenset({408, 409, 429})


def unavailable(exc: anthropic.APIError, model: str) -> LLMUnavailable:
    """The error a failed call raises: what the API answered, and whether it was retried."""
    status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
    return LLMUnavailable(
        f"{type(exc).__name__} from the model API",
        status=status,
        model=model,
        retryable=status is None or status in RETRIED_STATUSES or status >= 500,
        timed_out=isinstance(exc, anthropic.APITimeoutError),
    )


def system_blocks(system: str, context: str | None, *, cache: bool = True) -> list[dict[str, Any]]:
    """The system prompt as blocks: the stable prefix is cached; per-task context follows."""
    stable: dict[str, Any] = {"type": "text", "text": system or "You are a helpful coworker."}
    if cache:
        stable["cache_control"] = CACHE
    blocks = [stable]
    if context:
        blocks.append({"type": "text", "text": context})
    return blocks


def mark_last_block(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` with a cache breakpoint on the last block (the caller's is untouched)."""
    if not messages:
        return messages
    last = messages[-1]
    content = last["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    if not blocks or blocks[-1].get("type") in ("thinking", "redacted_thinking"):
        return messages
    if blocks[-1].get("type") == "text" and not blocks[-1].get("text"):
        return messages  # the API refuses cache_control on an empty text block
    blocks[-1] = {**blocks[-1], "cache_control": CACHE}
    return [*messages[:-1], {**last, "content": blocks}]


async def read_message(raw: AsyncAPIResponse[Message]) -> Message:
    """The reply as a `Message`, validated from its JSON; the SDK parses what does not validate.

    The fallback keeps the SDK's leniency: a content block or stop reason newer than the
    installed types fails validation, and the SDK's parser builds it as it always has.
    """
    body = await raw.read()
    try:
        message = Message.model_validate_json(body)
    except pydantic.ValidationError:
        return await raw.parse()
    message._request_id = raw.request_id  # as the SDK's parser sets it, for support requests
    return message


def text_of(message: Message) -> str:
    """The concatenated text blocks of a reply."""
    return "".join(b.text for b in message.content if b.type == "text").strip()


def make_client(
    api_key: str | None, base_url: str | None, *, max_retries: int = 4, timeout: float = 120
) -> anthropic.AsyncAnthropic:
    """The Anthropic client with the SDK's retries (429, 529, 5xx, connection errors).

    It speaks HTTP through the SDK's aiohttp transport (aiohttp is already ours, for Slack):
    about a quarter less CPU per model call than the default httpx transport. The SDK's own
    spans are off: `bot/telemetry.py` records each model call (with its purpose, task and
    dollars) on a provider of its own, and the SDK's would only go to the global one.
    """
    return anthropic.AsyncAnthropic(
        api_key=api_key or "missing",
        base_url=base_url,
        max_retries=max_retries,
        timeout=timeout,
        http_client=anthropic.DefaultAioHttpClient(),
        open_telemetry=False,
    )
