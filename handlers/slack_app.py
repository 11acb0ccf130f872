"""The Bolt app, its Web API client, and the two ways to connect (Socket Mode, HTTP).

Every Web API call, `apps.connections.open` included, goes to `SLACK_API_URL` through one
`AsyncWebClient` with slack_sdk's retry handlers (rate limits honour Retry-After; server
and connection errors back off). The bot's client keeps its connections open between calls
(`open_session()`): without a session of its own, slack_sdk opens a new connection (a TCP
and TLS handshake) for every call. HTTP mode serves `/slack/events` (signature verified by
Bolt) and `/healthz`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.base.redact import redact
from handlers.mentions import neutralize

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
# What Bolt raises parsing a body that is not a Slack payload (before or after checking
# its signature): the request is refused with 400 and nothing is acted on.
UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, IndexError)


#: Web API methods that put text in front of people; what they send is made safe first.
POSTING = ("chat.", "views.", "files.completeUploadExternal", "assistant.threads.")


def outgoing(obj: Any) -> Any:
    """What the bot may send: credentials redacted, mass mentions neutralized."""
    return neutralize(redact(obj))


class RedactingWebClient(AsyncWebClient):
    """`AsyncWebClient` that makes everything it posts safe to show.

    Model output, tool results and previews can echo a token or write `<!channel>`;
    whatever path a message takes to Slack (notifier, handlers, the built-in
    `slack__post_message` tool), the credential is replaced by "[redacted]"
    (`bot.base.redact`) and the mass mention notifies nobody (`handlers.mentions`) on the
    way out.
    """

    async def api_call(
        self,
        api_method: str,
        *,
        json: dict[str, Any] | None = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        if api_method.startswith(POSTING):
            json = outgoing(json) if json is not None else None
            data = outgoing(data) if isinstance(data, dict) else data
            params = outgoing(params) if params is not None else None
        return await super().api_call(api_method, json=json, data=data, params=params, **kwargs)


#: seconds a Web API call may take, retries aside
TIMEOUT = 30


def open_session() -> aiohttp.ClientSession:
    """Connections kept open for the Web API calls of one process (call it in the event
    loop; close it at shutdown). A connection the server closed while idle fails its next
    call with a connection error, which the retry handler sends again on a fresh one."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))


def make_client(
    token: str, base_url: str, *, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """The Web API client; with `session` (`open_session()`), it reuses its connections."""
    client = RedactingWebClient(token=token, base_url=base_url, timeout=TIMEOUT, session=session)
    client.retry_handlers.extend(
        [
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=3),
        ]
    )
    return client


class TokenFromClient(logging.Filter):
    """Drops Bolt's start-up warning that the client's token wins over `SLACK_BOT_TOKEN`.

    Bolt reads `SLACK_BOT_TOKEN` from the environment on its own; it is the token the
    client was made with, so the warning would greet every operator at every start.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def make_app(client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
    bolt_log = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, TokenFromClient) for f in bolt_log.filters):
        bolt_log.addFilter(TokenFromClient())
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Logged with context for operators; users never see internals.
        kind = body.get("type") if isinstance(body, dict) else None
        event = (body.get("event") or {}).get("type") if isinstance(body, dict) else None
        log.error(
            "unhandled error in a Slack listener (type=%s event=%s)", kind, event, exc_info=error
        )

    return app


async def socket_mode(app: AsyncApp, app_token: str) -> AsyncSocketModeHandler:
    """Connect over Socket Mode (no public URL needed).

    The SDK retries a failed `apps.connections.open` for ever, a refused token included;
    asking for the first connection URL here makes a wrong `SLACK_APP_TOKEN` or an
    unreachable Slack an error at start (`SlackApiError`, `aiohttp.ClientError`).
    """
    handler = AsyncSocketModeHandler(app, app_token)
    try:
        opened = await handler.client.web_client.apps_connections_open(app_token=app_token)
        handler.client.wss_uri = opened["url"]
        await handler.connect_async()
    except BaseException:
        await handler.close_async()
        raise
    return handler


def http_app(app: AsyncApp, healthy: Callable[[], Awaitable[bool]]) -> web.Application:
    """`POST /slack/events` for Events API, interactivity and commands; `GET /healthz`."""

    async def events(request: web.Request) -> web.Response:
        try:
            body = (await request.read()).decode("utf-8")
            bolt_req = AsyncBoltRequest(
                body=body, query=request.query_string, headers=dict(request.headers)
            )
            resp = await app.async_dispatch(bolt_req)
        except UNREADABLE as exc:
            log.warning("refused a request Bolt cannot read: %s", type(exc).__name__)
            return web.Response(status=400, text="bad request")
        return web.Response(
            status=resp.status,
            body=resp.body,
            headers={
                k: v[0] for k, v in resp.headers.items() if v and k.lower() != "content-length"
            },
        )

    web_app = health_app(healthy)
    web_app.router.add_post("/slack/events", events)
    return web_app


def health_app(healthy: Callable[[], Awaitable[bool]]) -> web.Application:
    """The listener's base: `GET /healthz` (200 when the database and Slack are up)."""

    async def health(request: web.Request) -> web.Response:
        ok = await healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    web_app = web.Application(client_max_size=MAX_BODY)
    web_app.router.add_get("/healthz", health)
    return web_app
