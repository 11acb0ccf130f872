"""FakeSlack: a local stand-in for the Slack platform, for tests and benchmarks.

A real aiohttp server on 127.0.0.1 (random free port) that the real ``slack_sdk`` and
``slack_bolt`` clients talk to, so nothing inside them is patched::

    async with FakeSlack(bot_token="xoxb-test", app_token="xapp-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        [call] = await slack.wait_for("chat.postMessage")

What it serves:

* ``/api/<method>`` -- the Web API, with the response shapes and errors Slack documents.
  Form, query-string and JSON parameters are all accepted; JSON-valued form fields
  (``blocks``, ``view``, ``files``...) are decoded.  Every call, failed or not, is
  recorded as a :class:`Call` after its effects are stored, so ``wait_for`` never wakes
  before ``slack.messages`` is up to date.
* the Socket Mode websocket at the URL ``apps.connections.open`` returns: ``hello`` on
  connect, envelopes pushed with ``send_event`` / ``send_interactive`` /
  ``send_slash_command``, acks recorded as :class:`Ack`.
* ``/upload/v1/<file id>`` (the ``files.getUploadURLExternal`` upload URL),
  ``/files-pri/...`` (``url_private`` downloads) and ``/response/<id>`` (a
  ``response_url``; interactive payloads sent through the socket get one that points here).

Realism choices worth knowing:

* Tokens: no token -> ``not_authed``; an unknown token -> ``invalid_auth``; the app token
  on a bot method (or the reverse) -> ``not_allowed_token_type``, as Slack answers.
* ``fail_next(..., status=429, retry_after=0)`` sends ``Retry-After: -1``: slack_sdk's
  rate-limit handler sleeps ``int(Retry-After) + random()`` seconds, so ``0`` would still
  cost up to a second per retry, while ``-1`` makes the sleep non-positive (no wait).
* Messages the bot reacts to or replies under must exist, as in Slack: ``send_event``
  stores message-like events; for HTTP mode call ``add_event_message`` or ``add_message``.
* ``files.completeUploadExternal`` shares the file as a message in the channel.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import math
import mimetypes
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import WSMsgType, web

DEFAULT_TEAM_ID = "T0001"
DEFAULT_APP_ID = "A0001"
DEFAULT_BOT_ID = "B0001"
DEFAULT_BOT_USER_ID = "UBOT"
VERIFICATION_TOKEN = "fake-verification-token"

MAX_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELDS = 10
MAX_SECTION_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_MARKDOWN_TOTAL = 12_000  # cumulative over all markdown blocks of one payload

_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
_JSON_FIELDS = ("blocks", "attachments", "view", "files", "prompts", "metadata")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_TS_BASE_MICROS = 1_700_000_000_000_000
_CREATED = 1_700_000_000

_ts_counter = itertools.count(1)
_id_counter = itertools.count(1)


def new_ts() -> str:
    """A unique, increasing Slack timestamp such as ``"1700000000.000100"``."""
    micros = _TS_BASE_MICROS + 100 * next(_ts_counter)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _new_id(prefix: str) -> str:
    return f"{prefix}{next(_id_counter):08d}"


def _ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ts.split("."))


# --------------------------------------------------------------------------- records


@dataclass
class Call:
    """One Web API call (or upload/download/response_url hit) as the fake received it."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float  # time.perf_counter() when the request arrived
    response: dict[str, Any] | None = None
    #: the client's (address, port): calls with the same one came over one connection
    peer: Any = None


@dataclass
class Ack:
    """A Socket Mode acknowledgement sent back by the app."""

    envelope_id: str
    payload: dict[str, Any] | None
    received_at: float  # time.perf_counter()
    sent_at: float | None = None  # when the envelope was written to the socket

    @property
    def latency(self) -> float | None:
        """Seconds from envelope sent to ack received."""
        return None if self.sent_at is None else self.received_at - self.sent_at


@dataclass
class StoredFile:
    """A file known to the fake: uploaded through the API or added by the test."""

    id: str
    name: str
    length: int = 0
    title: str | None = None
    content: bytes = b""
    user: str = ""
    mimetype: str = "application/octet-stream"
    channel_id: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class _Failure:
    status: int
    retry_after: float
    error: str
    html: bool = False  # answer an HTML error page (a proxy's), not Slack's JSON
    drop: bool = False  # close the connection without an answer (a network drop)


class SlackError(Exception):
    """An ``{"ok": false}`` answer from a fake Web API method."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# ----------------------------------------------------------------------- validation


def _check_message(params: dict[str, Any]) -> None:
    if len(str(params.get("text") or "")) > MAX_TEXT:
        raise SlackError("msg_too_long")
    if params.get("blocks") is not None:
        _check_blocks(params["blocks"], MAX_MESSAGE_BLOCKS)


def _check_blocks(blocks: Any, limit: int) -> None:
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SlackError("invalid_blocks_format")
    errors = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        errors.extend(_block_errors(block, f"/blocks/{i}"))
    markdown = sum(len(b.get("text") or "") for b in blocks if b.get("type") == "markdown")
    if markdown > MAX_MARKDOWN_TOTAL:
        errors.append(
            f"markdown blocks exceed {MAX_MARKDOWN_TOTAL} characters [json-pointer:/blocks]"
        )
    if errors:
        messages = [f"[ERROR] {e}" for e in errors]
        raise SlackError("invalid_blocks", errors=errors, response_metadata={"messages": messages})


def _block_errors(block: dict[str, Any], pointer: str) -> list[str]:
    kind = block.get("type")
    if kind == "section":
        return _section_errors(block, pointer)
    if kind == "header":
        return _too_long(block.get("text"), MAX_HEADER_TEXT, f"{pointer}/text/text")
    return []


def _section_errors(block: dict[str, Any], pointer: str) -> list[str]:
    text, fields = block.get("text"), block.get("fields") or []
    errors = _too_long(text, MAX_SECTION_TEXT, f"{pointer}/text/text")
    if text is None and not fields:
        errors.append(f"must provide text or fields [json-pointer:{pointer}]")
    if len(fields) > MAX_SECTION_FIELDS:
        errors.append(
            f"no more than {MAX_SECTION_FIELDS} items allowed [json-pointer:{pointer}/fields]"
        )
    for j, item in enumerate(fields):
        errors += _too_long(item, MAX_SECTION_FIELD_TEXT, f"{pointer}/fields/{j}/text")
    return errors


def _too_long(text_object: Any, limit: int, pointer: str) -> list[str]:
    if len(_text_of(text_object)) <= limit:
        return []
    return [f"must be less than {limit + 1} characters [json-pointer:{pointer}]"]


def _text_of(text_object: Any) -> str:
    return str(text_object.get("text") or "") if isinstance(text_object, dict) else ""


# ------------------------------------------------------------------ request parsing


async def _read_params(request: web.Request) -> tuple[dict[str, Any], str | None]:
    """Merge query, form and JSON parameters; take the token from the header or a field."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST":
        if request.content_type == "application/json":
            raw = await request.text()
            params.update(json.loads(raw) if raw.strip() else {})
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            params[name] = json.loads(value)
    token = params.pop("token", None)
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ")
    return params, token


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _blank_to_none(value: Any) -> Any:
    return value or None


def _paginate(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    limit = min(max(int(params.get("limit") or 100), 1), 1000)
    cursor = params.get("cursor") or ""
    try:
        start = int(base64.b64decode(cursor).decode().removeprefix("offset:")) if cursor else 0
    except ValueError:
        raise SlackError("invalid_cursor") from None
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return items[start:end], {
        "has_more": bool(next_cursor),
        "response_metadata": {"next_cursor": next_cursor},
    }


def _in_range(ts: str, params: dict[str, Any]) -> bool:
    inclusive = _truthy(params.get("inclusive"))
    key = _ts_key(ts)
    if params.get("oldest"):
        oldest = _ts_key(str(params["oldest"]))
        if key < oldest or (key == oldest and not inclusive):
            return False
    if params.get("latest"):
        latest = _ts_key(str(params["latest"]))
        if key > latest or (key == latest and not inclusive):
            return False
    return True


def _tz_fields(tz: str) -> dict[str, Any]:
    now = datetime.now(ZoneInfo(tz))
    offset = now.utcoffset()
    return {
        "tz": tz,
        "tz_label": now.tzname(),
        "tz_offset": int(offset.total_seconds()) if offset else 0,
    }


# ------------------------------------------------------------------------ the server


class FakeSlack:
    """A local Slack: Web API, Socket Mode websocket, uploads and response URLs."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        bot_user_id: str = DEFAULT_BOT_USER_ID,
        team_id: str = DEFAULT_TEAM_ID,
        latency: tuple[float, float] | None = None,
        bot_id: str = DEFAULT_BOT_ID,
        app_id: str = DEFAULT_APP_ID,
        team_domain: str = "fakeworkspace",
        app_tokens: tuple[str, ...] = (),
        dispatch: str = "newest",
        seed: int | None = None,
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        #: more app-level tokens of the same app (Slack allows several; one per replica
        #: lets a test tell the replicas' Socket Mode connections apart)
        self.app_tokens = (app_token, *app_tokens)
        #: which open connection gets an envelope: "newest", or "random" as Slack does
        #: with several connections
        self.dispatch = dispatch
        self._rng = random.Random(seed)
        self.bot_user_id, self.bot_id, self.app_id = bot_user_id, bot_id, app_id
        self.team_id, self.team_domain = team_id, team_domain
        self.latency = latency

        self.calls: list[Call] = []
        self.messages: list[dict[str, Any]] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, str, str]] = []
        self.files: dict[str, StoredFile] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.channel_members: dict[str, list[str]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.missing_channels: set[str] = set()
        self.missing_users: set[str] = set()

        self.envelopes: dict[str, dict[str, Any]] = {}
        self.sent_at: dict[str, float] = {}
        self.acks: dict[str, Ack] = {}
        self.connection_count = 0  # websocket connections accepted so far

        self._failures: dict[str, deque[_Failure]] = {}
        self._refusals: list[tuple[str, Callable[[dict[str, Any]], bool], str]] = []
        self._dms: dict[str, str] = {}
        self._tickets: dict[str, str] = {}  # ticket -> the app token that opened it
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_tokens: dict[web.WebSocketResponse, str] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.delete": self._chat_delete,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "assistant.threads.setStatus": self._assistant_thread_call,
            "assistant.threads.setSuggestedPrompts": self._assistant_thread_call,
            "assistant.threads.setTitle": self._assistant_thread_call,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "files.info": self._files_info,
            "apps.connections.open": self._apps_connections_open,
        }

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{team_file}/{name}", self._handle_download)
        app.router.add_post("/response/{response_id}", self._handle_response_url)
        app.router.add_get("/socket-mode", self._handle_socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close websockets, then the server."""
        await self.disconnect_clients()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The server origin, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL to pass as ``base_url`` (ends with a slash)."""
        return f"{self.url}/api/"

    # ------------------------------------------------------------ test set-up

    def add_message(
        self,
        channel: str,
        text: str,
        user: str = "U1",
        ts: str | None = None,
        thread_ts: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Store a message as if someone had posted it; returns the stored dict."""
        return self._store(channel, text=text, user=user, ts=ts, thread_ts=thread_ts, **fields)

    def add_event_message(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Store the message behind a ``message``/``app_mention`` event (once per ts)."""
        if event.get("type") not in ("message", "app_mention") or "ts" not in event:
            return None
        if event.get("subtype") in ("message_changed", "message_deleted"):
            return None
        existing = self._lookup(event["channel"], event["ts"])
        if existing is not None:
            return existing
        skip = {"type", "channel", "ts", "event_ts", "channel_type"}
        fields = {k: v for k, v in event.items() if k not in skip}
        return self._store(event["channel"], ts=event["ts"], **fields)

    def add_user(
        self,
        id: str,
        name: str,
        is_bot: bool = False,
        is_admin: bool = False,
        *,
        real_name: str | None = None,
        email: str | None = None,
        tz: str = "UTC",
    ) -> dict[str, Any]:
        """Register a user for ``users.info``; returns the user object."""
        user = self._user_object(id, name, is_bot, is_admin, real_name, email, tz)
        self.users[id] = user
        return user

    def add_channel(
        self, id: str, name: str | None = None, *, is_private: bool = False, is_member: bool = True
    ) -> dict[str, Any]:
        """Register a channel for ``conversations.info``; returns the channel object."""
        channel = self._channel_object(id, name or id.lower(), is_private, is_member)
        self.channels[id] = channel
        self.channel_members.setdefault(id, [])
        return channel

    def add_usergroup(self, id: str, users: list[str]) -> None:
        """Register a user group for ``usergroups.users.list``."""
        self.usergroups[id] = list(users)

    def add_file(
        self, name: str, content: bytes | str, user: str = "U1", title: str | None = None
    ) -> dict[str, Any]:
        """Store a file (e.g. one a user attached) and return its Slack file object."""
        data = content.encode() if isinstance(content, str) else content
        stored = StoredFile(
            id=_new_id("F"),
            name=name,
            length=len(data),
            title=title,
            content=data,
            user=user,
            mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream",
            completed=True,
        )
        self.files[stored.id] = stored
        return self._file_object(stored)

    def fail_next(
        self,
        method: str,
        times: int = 1,
        status: int = 429,
        retry_after: float = 1,
        error: str | None = None,
        html: bool = False,
        drop: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        429 answers carry ``Retry-After``; 5xx answers an error body; 200 answers
        ``{"ok": false, "error": error}``.  ``error`` defaults to ``ratelimited`` (429),
        ``internal_error`` (5xx) or ``fatal_error`` (200). ``html`` answers an HTML error
        page instead, as a proxy in front of Slack does; ``drop`` closes the connection
        without answering, as a network failure does (the call is still recorded).
        """
        default = {429: "ratelimited", 200: "fatal_error"}.get(status, "internal_error")
        failure = _Failure(status, retry_after, error or default, html, drop)
        self._failures.setdefault(method, deque()).extend([failure] * times)

    def refuse(self, method: str, matching: Callable[[dict[str, Any]], bool], error: str) -> None:
        """Answer ``{"ok": false, "error": error}`` to every call of ``method`` whose params
        match, until ``stop_refusing()``: Slack refusing one kind of message for a while."""
        self._refusals.append((method, matching, error))

    def stop_refusing(self) -> None:
        self._refusals.clear()

    # ------------------------------------------------------------- inspection

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls of one method, oldest first."""
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The stored messages of a thread, parent first, in ts order."""
        found = [
            m
            for m in self.messages
            if m["channel"] == channel and (m["ts"] == ts or m.get("thread_ts") == ts)
        ]
        return sorted(found, key=lambda m: _ts_key(m["ts"]))

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Call]:
        """Wait until ``count`` calls of ``method`` matching ``predicate`` were recorded."""

        def matching() -> list[Call]:
            return [c for c in self.calls_to(method) if predicate is None or predicate(c)]

        def describe() -> str:
            seen = [c.method for c in self.calls]
            which = " matching the predicate" if predicate else ""
            return (
                f"timed out after {timeout}s waiting for {count} {method} call(s){which}; "
                f"{len(matching())} matched; recorded calls: {seen}"
            )

        await self._wait_until(lambda: len(matching()) >= count, timeout, describe)
        return matching()

    # -------------------------------------------------------------- socket mode

    async def wait_connected(
        self,
        timeout: float = 5.0,
        *,
        after: int = 0,
    ) -> int:
        """Wait for an open Socket Mode connection newer than ``after`` accepted ones.

        Returns ``connection_count``; pass it back as ``after`` to wait for a reconnect.
        """
        await self._wait_until(
            lambda: self.connection_count > after and bool(self._open_sockets()),
            timeout,
            lambda: (
                f"no Socket Mode connection after {timeout}s "
                f"(accepted so far: {self.connection_count}, waiting for more than {after})"
            ),
        )
        return self.connection_count

    async def send_event(
        self,
        event: dict[str, Any],
        event_id: str | None = None,
        team_id: str | None = None,
        *,
        via: str | None = None,
    ) -> str:
        """Push an ``events_api`` envelope; returns its envelope_id.

        Like every ``send_*`` method it waits (up to 5 s) for a connection, and stores the
        message behind a message-like event so the app can thread under or react to it.
        """
        self.add_event_message(event)
        payload = event_callback(
            event, event_id, team_id or self.team_id, self.app_id, self.bot_user_id
        )
        return await self._send_envelope(
            "events_api",
            payload,
            via,
            accepts_response_payload=False,
            retry_attempt=0,
            retry_reason="",
        )

    async def send_interactive(self, payload: dict[str, Any], *, via: str | None = None) -> str:
        """Push an ``interactive`` envelope (block_actions, view_submission...)."""
        payload = self._with_local_response_url(payload)
        accepts = payload.get("type") in ("view_submission", "block_suggestion")
        return await self._send_envelope(
            "interactive", payload, via, accepts_response_payload=accepts
        )

    async def send_slash_command(self, payload: dict[str, Any], *, via: str | None = None) -> str:
        """Push a ``slash_commands`` envelope; ``payload`` is the command's form fields."""
        payload = self._with_local_response_url(payload)
        return await self._send_envelope(
            "slash_commands", payload, via, accepts_response_payload=True
        )

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        """Wait for the app to acknowledge an envelope."""
        await self._wait_until(
            lambda: envelope_id in self.acks,
            timeout,
            lambda: (
                f"no ack for envelope {envelope_id} after {timeout}s "
                f"(acked: {list(self.acks)}; open connections: {len(self._open_sockets())})"
            ),
        )
        return self.acks[envelope_id]

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message; the SDK then reconnects on its own."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}
        for ws in self._open_sockets():
            await ws.send_json(message)

    async def disconnect_clients(self) -> None:
        """Close every Socket Mode connection from the server side."""
        for ws in self._open_sockets():
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)

    # ------------------------------------------------------------- HTTP handlers

    async def _handle_api(self, request: web.Request) -> web.Response:
        at = time.perf_counter()
        method = request.match_info["method"]
        params, token = await _read_params(request)
        if self.latency:
            await asyncio.sleep(random.uniform(*self.latency))
        status, body, headers = self._answer(method, params, token)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        await self._record(Call(method, params, token, at, body, peer=peer))
        if body.get("drop") and request.transport is not None:
            request.transport.close()
            return web.Response(status=500)  # never sent: the connection is gone
        if "html" in body:
            return web.Response(text=body["html"], status=status, content_type="text/html")
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        failure = self._pop_failure(method)
        if failure is not None:
            return _failure_answer(failure)
        for refused, matching, error in self._refusals:
            if refused == method and matching(params):
                return 200, {"ok": False, "error": error}, {}
        handler = self._methods.get(method)
        if handler is None:
            return 404, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        try:
            self._check_token(method, token)
            self._check_channel(params)
            if method == "apps.connections.open":
                return 200, {"ok": True, **self._apps_connections_open(params, token)}, {}
            return 200, {"ok": True, **handler(params)}, {}
        except SlackError as e:
            return 200, {"ok": False, "error": e.error, **e.extra}, {}

    async def _handle_upload(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["file_id"])
        data = await request.read()
        if stored is not None:
            stored.content, stored.length = data, len(data)
        params = {"file_id": request.match_info["file_id"], "length": len(data)}
        await self._record(Call("file_upload", params, None, time.perf_counter()))
        if stored is None:
            return web.Response(status=404, text="file_not_found")
        return web.Response(text=f"OK - {len(data)}")

    async def _handle_download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["team_file"].rpartition("-")[2]
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        await self._record(Call("file_download", {"file": file_id}, token, time.perf_counter()))
        stored = self.files.get(file_id)
        if stored is None:
            return web.Response(status=404, text="file_not_found")
        if token != self.bot_token:
            # Slack answers an unauthenticated download with its login page, not a 401.
            return web.Response(text=_LOGIN_PAGE, content_type="text/html")
        return web.Response(body=stored.content, content_type=stored.mimetype)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        raw = await request.text()
        body = json.loads(raw) if raw.strip().startswith("{") else dict(parse_qsl(raw))
        body["response_id"] = request.match_info["response_id"]
        await self._record(Call("response_url", body, None, time.perf_counter()))
        return web.Response(text="ok")

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        self._socket_tokens[ws] = self._tickets[request.query["ticket"]]
        self.connection_count += 1
        await ws.send_json(self._hello())
        await self._notify()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._receive_ack(message.data)
        finally:
            self._sockets.remove(ws)
            self._socket_tokens.pop(ws, None)
            await self._notify()
        return ws

    # ---------------------------------------------------------- Web API methods

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Fake Workspace",
            "user": "coworker",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(p.get("channel"))
        _check_message(p)
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            raise SlackError("no_text")
        content = {k: p[k] for k in ("blocks", "attachments", "metadata") if p.get(k) is not None}
        message = self._store(
            channel,
            text=p.get("text") or "",
            user=self.bot_user_id,
            thread_ts=_blank_to_none(p.get("thread_ts")),
            bot_id=self.bot_id,
            app_id=self.app_id,
            **content,
        )
        return {"channel": channel, "ts": message["ts"], "message": self._public(message)}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(p.get("channel"), p.get("ts"), "cant_update_message")
        _check_message(p)
        for key in ("text", "blocks", "attachments", "metadata"):
            if p.get(key) is not None:
                message[key] = p[key]
        message["edited"] = {"user": self.bot_user_id, "ts": new_ts()}
        return {
            "channel": message["channel"],
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": self._public(message),
        }

    def _chat_post_ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(p.get("channel"))
        if not p.get("user"):
            raise SlackError("user_not_in_channel")
        _check_message(p)
        message_ts = new_ts()
        fields = ("user", "text", "blocks", "thread_ts")
        self.ephemeral.append(
            {"channel": channel, "message_ts": message_ts, **{k: p[k] for k in fields if k in p}}
        )
        return {"message_ts": message_ts}

    def _chat_get_permalink(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p.get("channel"), p.get("message_ts"))
        channel, ts = message["channel"], message["ts"]
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if message.get("thread_ts") not in (None, ts):
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(p.get("channel"), p.get("ts"), "cant_delete_message")
        self.messages.remove(message)
        return {"channel": message["channel"], "ts": message["ts"]}

    def _reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        reaction = self._reaction(p)
        if reaction in self.reactions:
            raise SlackError("already_reacted")
        self.reactions.append(reaction)
        return {}

    def _reactions_remove(self, p: dict[str, Any]) -> dict[str, Any]:
        reaction = self._reaction(p)
        if reaction not in self.reactions:
            raise SlackError("no_reaction")
        self.reactions.remove(reaction)
        return {}

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = p.get("channel"), str(p.get("ts") or "")
        anchor = self._lookup(channel, ts)
        root = (anchor.get("thread_ts") or ts) if anchor else ts
        thread = self.thread(channel, root)
        if not thread:
            raise SlackError("thread_not_found")
        messages = [m for m in thread if _in_range(m["ts"], p)]
        page, meta = _paginate([self._public(m) for m in messages], p)
        return {"messages": page, **meta}

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = p.get("channel")
        top = [
            m
            for m in self.messages
            if m["channel"] == channel
            and m.get("thread_ts") in (None, m["ts"])
            and _in_range(m["ts"], p)
        ]
        top.sort(key=lambda m: _ts_key(m["ts"]), reverse=True)
        page, meta = _paginate([self._public(m) for m in top], p)
        return {"messages": page, "pin_count": 0, **meta}

    def _conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        channel_id = p.get("channel")
        if not channel_id:
            raise SlackError("channel_not_found")
        return {"channel": self._channel_info(channel_id)}

    def _conversations_members(self, p: dict[str, Any]) -> dict[str, Any]:
        channel_id = p.get("channel")
        if not channel_id or channel_id in self.missing_channels:
            raise SlackError("channel_not_found")
        members = self.channel_members.get(channel_id, [])
        page, meta = _paginate(members, p)
        return {"members": page, **meta}

    def _conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("channel"):
            return {"channel": self._channel_info(p["channel"])}
        users = [u for u in str(p.get("users") or "").split(",") if u]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            mpim_id = "G" + "".join(u[1:] for u in sorted(users))
            return {"channel": {"id": mpim_id}}
        already_open = users[0] in self._dms
        channel_id = self._dm_channel(users[0])
        info = self._channel_info(channel_id) if _truthy(p.get("return_im")) else {"id": channel_id}
        extra = {"no_op": True, "already_open": True} if already_open else {}
        return {"channel": info, **extra}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user_id = p.get("user")
        if not user_id or user_id in self.missing_users:
            raise SlackError("user_not_found")
        return {"user": self.users.get(user_id) or self._default_user(user_id)}

    def _usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        group = p.get("usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("trigger_id"):
            raise SlackError("invalid_trigger_id")
        return {"view": self._store_view(p.get("view"))}

    def _views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        current = self._find_view(p.get("view_id"), p.get("external_id"))
        if p.get("hash") and p["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._store_view(
            p.get("view"),
            view_id=current["id"],
            root_id=current["root_view_id"],
            previous_id=current["previous_view_id"],
        )
        return {"view": view}

    def _views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        user_id = p.get("user_id")
        if not user_id:
            raise SlackError("invalid_arguments")
        previous = self.home_views.get(user_id)
        if p.get("hash") and previous and p["hash"] != previous["hash"]:
            raise SlackError("hash_conflict")
        view = self._store_view(p.get("view"), view_id=previous["id"] if previous else None)
        self.home_views[user_id] = view
        return {"view": view}

    def _assistant_thread_call(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel_id") or not p.get("thread_ts"):
            raise SlackError("invalid_arguments")
        return {}

    def _files_get_upload_url(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p.get("filename")
        if not name or not str(p.get("length") or "").isdigit():
            raise SlackError("invalid_arguments")
        stored = StoredFile(
            id=_new_id("F"),
            name=name,
            length=int(p["length"]),
            user=self.bot_user_id,
            mimetype=mimetypes.guess_type(name)[0] or "application/octet-stream",
        )
        self.files[stored.id] = stored
        return {"upload_url": f"{self.url}/upload/v1/{stored.id}", "file_id": stored.id}

    def _files_complete_upload(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = p.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        channel = p.get("channel_id") or (str(p.get("channels") or "").split(",")[0] or None)
        completed = [self._complete_file(entry, channel, p.get("thread_ts")) for entry in entries]
        if channel:
            self._share_files(channel, completed, p)
        return {"files": [self._file_object(f) for f in completed]}

    def _files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        stored = self.files.get(p.get("file") or "")
        if stored is None or not stored.completed:
            raise SlackError("file_not_found")
        return {
            "file": self._file_object(stored),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _apps_connections_open(self, p: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets[ticket] = token or self.app_token
        host = f"ws://127.0.0.1:{self._port}"
        return {"url": f"{host}/socket-mode?ticket={ticket}&app_id={self.app_id}"}

    # ------------------------------------------------------- Web API helpers

    def _check_token(self, method: str, token: str | None) -> None:
        expected = self.app_tokens if method in _APP_TOKEN_METHODS else (self.bot_token,)
        if not token:
            raise SlackError("not_authed")
        if token not in expected:
            known = token in (self.bot_token, *self.app_tokens)
            raise SlackError("not_allowed_token_type" if known else "invalid_auth")

    def _check_channel(self, params: dict[str, Any]) -> None:
        for key in ("channel", "channel_id"):
            if params.get(key) in self.missing_channels:
                raise SlackError("channel_not_found")

    def _pop_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.popleft() if queue else None

    def _resolve_channel(self, channel: Any) -> str:
        """A channel id; a user id means that user's DM, as chat.postMessage allows."""
        if not channel:
            raise SlackError("channel_not_found")
        channel = str(channel)
        return self._dm_channel(channel) if channel[:1] in ("U", "W") else channel

    def _dm_channel(self, user_id: str) -> str:
        return self._dms.setdefault(user_id, f"D{user_id[1:]}")

    def _store(self, channel: str, *, ts: str | None = None, **fields: Any) -> dict[str, Any]:
        message = {
            "type": "message",
            "channel": channel,
            "ts": ts or new_ts(),
            "team": self.team_id,
        }
        message.update({k: v for k, v in fields.items() if v is not None})
        self.messages.append(message)
        return message

    def _lookup(self, channel: Any, ts: Any) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

    def _message(self, channel: Any, ts: Any) -> dict[str, Any]:
        message = self._lookup(channel, ts)
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _own_message(self, channel: Any, ts: Any, error: str) -> dict[str, Any]:
        message = self._message(channel, ts)
        if message.get("user") != self.bot_user_id:
            raise SlackError(error)
        return message

    def _reaction(self, p: dict[str, Any]) -> tuple[str, str, str]:
        if not p.get("name"):
            raise SlackError("invalid_name")
        message = self._message(p.get("channel"), p.get("timestamp"))
        return (message["channel"], message["ts"], str(p["name"]).strip(":"))

    def _public(self, message: dict[str, Any]) -> dict[str, Any]:
        """A stored message as the API shows it: thread fields and reactions added."""
        out = {k: v for k, v in message.items() if k != "channel"}
        channel, ts = message["channel"], message["ts"]
        if message.get("thread_ts") in (None, ts):
            out.update(_thread_summary(self.thread(channel, ts)[1:], ts))
        else:
            parent = self._lookup(channel, message["thread_ts"])
            if parent is not None:
                out["parent_user_id"] = parent.get("user")
        reactions = [name for c, t, name in self.reactions if (c, t) == (channel, ts)]
        if reactions:
            users = [self.bot_user_id]
            out["reactions"] = [{"name": n, "users": users, "count": 1} for n in reactions]
        return out

    def _channel_info(self, channel_id: str) -> dict[str, Any]:
        if channel_id in self.channels:
            return self.channels[channel_id]
        if channel_id.startswith("D"):
            user = next((u for u, d in self._dms.items() if d == channel_id), f"U{channel_id[1:]}")
            return {
                "id": channel_id,
                "created": _CREATED,
                "is_im": True,
                "is_org_shared": False,
                "user": user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return self._channel_object(channel_id, channel_id.lower(), False, True)

    def _channel_object(
        self, channel_id: str, name: str, is_private: bool, is_member: bool
    ) -> dict[str, Any]:
        empty_topic = {"value": "", "creator": "", "last_set": 0}
        return {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "created": _CREATED,
            "creator": "U1",
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_member": is_member,
            "topic": dict(empty_topic),
            "purpose": dict(empty_topic),
            "previous_names": [],
        }

    def _default_user(self, user_id: str) -> dict[str, Any]:
        if user_id == self.bot_user_id:
            return self._user_object(user_id, "coworker", True, False, "Coworker", None, "UTC")
        return self._user_object(user_id, user_id.lower(), False, False, None, None, "UTC")

    def _user_object(
        self,
        user_id: str,
        name: str,
        is_bot: bool,
        is_admin: bool,
        real_name: str | None,
        email: str | None,
        tz: str,
    ) -> dict[str, Any]:
        real_name = real_name or name.title()
        profile = {
            "real_name": real_name,
            "display_name": name,
            "real_name_normalized": real_name,
            "display_name_normalized": name,
            "status_text": "",
            "status_emoji": "",
            "image_72": f"https://avatars.example.com/{user_id}_72.png",
            "team": self.team_id,
        }
        if is_bot:
            profile["bot_id"] = self.bot_id if user_id == self.bot_user_id else f"B{user_id[1:]}"
        else:
            profile["email"] = email or f"{name}@example.com"
        return {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": real_name,
            **_tz_fields(tz),
            "profile": profile,
            "is_admin": is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": _CREATED,
        }

    def _store_view(
        self,
        view: Any,
        *,
        view_id: str | None = None,
        root_id: str | None = None,
        previous_id: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(view, dict) or "type" not in view:
            raise SlackError("invalid_arguments")
        _check_blocks(view.get("blocks", []), MAX_VIEW_BLOCKS)
        view_id = view_id or _new_id("V")
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close")),
            "notify_on_close": bool(view.get("notify_on_close")),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": previous_id,
            "root_view_id": root_id or view_id,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[view_id] = stored
        return stored

    def _find_view(self, view_id: Any, external_id: Any) -> dict[str, Any]:
        if view_id in self.views:
            return self.views[view_id]
        found = [v for v in self.views.values() if external_id and v["external_id"] == external_id]
        if not found:
            raise SlackError("not_found")
        return found[-1]

    def _complete_file(
        self, entry: dict[str, Any], channel: str | None, thread_ts: str | None
    ) -> StoredFile:
        stored = self.files.get(entry.get("id", ""))
        if stored is None:
            raise SlackError("file_not_found")
        stored.title = entry.get("title") or stored.name
        stored.channel_id, stored.thread_ts = channel, _blank_to_none(thread_ts)
        stored.completed = True
        return stored

    def _share_files(self, channel: str, files: list[StoredFile], p: dict[str, Any]) -> None:
        self._store(
            channel,
            text=p.get("initial_comment") or "",
            user=self.bot_user_id,
            thread_ts=_blank_to_none(p.get("thread_ts")),
            bot_id=self.bot_id,
            files=[self._file_object(f) for f in files],
            upload=True,
        )

    def _file_object(self, stored: StoredFile) -> dict[str, Any]:
        extension = stored.name.rpartition(".")[2].lower() if "." in stored.name else "binary"
        url = f"{self.url}/files-pri/{self.team_id}-{stored.id}/{stored.name}"
        channels = [stored.channel_id] if stored.channel_id else []
        permalink_base = f"https://{self.team_domain}.slack.com/files"
        return {
            "id": stored.id,
            "created": _CREATED,
            "timestamp": _CREATED,
            "name": stored.name,
            "title": stored.title or stored.name,
            "mimetype": stored.mimetype,
            "filetype": extension,
            "pretty_type": extension.upper(),
            "user": stored.user,
            "user_team": self.team_id,
            "editable": False,
            "mode": "hosted",
            "size": len(stored.content) or stored.length,
            "is_external": False,
            "external_type": "",
            "is_public": bool(channels),
            "public_url_shared": False,
            "display_as_bot": False,
            "url_private": url,
            "url_private_download": f"{url}?download=1",
            "permalink": f"{permalink_base}/{stored.user}/{stored.id}/{stored.name}",
            "channels": channels,
            "groups": [],
            "ims": [],
            "comments_count": 0,
        }

    # ----------------------------------------------------- socket mode helpers

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._open_sockets()),
            "debug_info": {
                "host": "fake-slack",
                "build_number": 1,
                "approximate_connection_time": 3600,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _open_sockets(self) -> list[web.WebSocketResponse]:
        return [ws for ws in self._sockets if not ws.closed]

    def open_connections(self) -> dict[str, int]:
        """Open Socket Mode connections per app token."""
        counts: dict[str, int] = {}
        for ws in self._open_sockets():
            token = self._socket_tokens.get(ws, self.app_token)
            counts[token] = counts.get(token, 0) + 1
        return counts

    async def _send_envelope(
        self, kind: str, payload: dict[str, Any], via: str | None = None, **extra: Any
    ) -> str:
        """Write an envelope to an open connection (the newest, a random one, or one opened
        with app token `via`), waiting for one if needed."""

        def candidates() -> list[web.WebSocketResponse]:
            open_ = self._open_sockets()
            if via is None:
                return open_
            return [ws for ws in open_ if self._socket_tokens.get(ws) == via]

        await self.wait_connected()
        await self._wait_until(
            lambda: bool(candidates()), 5.0, lambda: f"no open connection opened with {via}"
        )
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "payload": payload, "type": kind, **extra}
        self.envelopes[envelope_id] = envelope
        sockets = candidates()
        ws = self._rng.choice(sockets) if self.dispatch == "random" else sockets[-1]
        self.sent_at[envelope_id] = time.perf_counter()
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    async def _receive_ack(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if envelope_id:
            self.acks[envelope_id] = Ack(
                envelope_id,
                message.get("payload"),
                time.perf_counter(),
                self.sent_at.get(envelope_id),
            )
            await self._notify()

    def _with_local_response_url(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Point a builder's placeholder ``response_url`` at this server."""
        url = payload.get("response_url")
        if isinstance(url, str) and url.startswith("https://hooks.slack.com/"):
            return {**payload, "response_url": f"{self.url}/response/{uuid.uuid4().hex}"}
        return payload

    # ------------------------------------------------------------ waiting

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_until(
        self,
        ready: Callable[[], bool],
        timeout: float,
        describe: Callable[[], str],
    ) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            raise AssertionError(describe()) from None


_LOGIN_PAGE = "<!DOCTYPE html><html><title>Slack</title><body>Sign in to Slack</body></html>"


def _failure_answer(failure: _Failure) -> tuple[int, dict[str, Any], dict[str, str]]:
    if failure.drop:
        return 500, {"ok": False, "drop": True}, {}
    if failure.html:
        return (
            failure.status,
            {"ok": False, "html": f"<html>{failure.status} Bad Gateway</html>"},
            {},
        )
    body = {"ok": False, "error": failure.error}
    if failure.status != 429:
        return failure.status, body, {}
    # slack_sdk sleeps int(Retry-After) + random(); "-1" makes that sleep non-positive.
    retry_after = str(math.ceil(failure.retry_after)) if failure.retry_after > 0 else "-1"
    return 429, body, {"Retry-After": retry_after}


def _thread_summary(replies: list[dict[str, Any]], ts: str) -> dict[str, Any]:
    if not replies:
        return {}
    users = list(dict.fromkeys(r.get("user") for r in replies if r.get("user")))
    return {
        "thread_ts": ts,
        "reply_count": len(replies),
        "reply_users": users,
        "reply_users_count": len(users),
        "latest_reply": replies[-1]["ts"],
    }


# ---------------------------------------------------------------- payload builders


def _rich_text(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack attaches to a typed message."""
    elements: list[dict[str, Any]] = []
    position = 0
    for match in _MENTION.finditer(text):
        if match.start() > position:
            elements.append({"type": "text", "text": text[position : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        position = match.end()
    if position < len(text):
        elements.append({"type": "text", "text": text[position:]})
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5], "elements": [section]}]


def _user_message(
    kind: str,
    text: str,
    user: str,
    channel: str,
    ts: str | None,
    thread_ts: str | None,
    files: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": kind,
        "client_msg_id": str(uuid.uuid4()),
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": _rich_text(text),
        "team": DEFAULT_TEAM_ID,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event.update(files=files, upload=False, display_as_bot=False)
    return event


def app_mention(
    text: str,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
) -> dict[str, Any]:
    """An ``app_mention`` event; ``<@bot_user_id>`` is prefixed unless already in text."""
    mention = f"<@{bot_user_id}>"
    text = text if mention in text else f"{mention} {text}"
    return _user_message("app_mention", text, user, channel, ts, thread_ts, files)


def dm_message(
    text: str,
    user: str = "U1",
    channel: str = "D1",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``message`` event in a DM with the bot (``channel_type: im``)."""
    return _channel_typed_message("im", text, user, channel, ts, thread_ts, files)


def channel_message(
    text: str,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``message`` event in a public channel, usually a thread reply (pass thread_ts)."""
    return _channel_typed_message("channel", text, user, channel, ts, thread_ts, files)


def group_dm_message(
    text: str,
    user: str = "U1",
    channel: str = "G0MPIM1",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``message`` event in a group DM the bot is in (``channel_type: mpim``)."""
    return _channel_typed_message("mpim", text, user, channel, ts, thread_ts, files)


def _channel_typed_message(
    channel_type: str,
    text: str,
    user: str,
    channel: str,
    ts: str | None,
    thread_ts: str | None,
    files: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    event = _user_message("message", text, user, channel, ts, thread_ts, files)
    if files:
        event["subtype"] = "file_share"
    event["channel_type"] = channel_type
    return event


def assistant_thread_started(
    user: str = "U1",
    channel: str = "D1",
    thread_ts: str | None = None,
    context_channel_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """An ``assistant_thread_started`` event (the user opened the assistant pane)."""
    context: dict[str, Any] = {"team_id": team_id, "enterprise_id": None}
    if context_channel_id:
        context["channel_id"] = context_channel_id
    thread = {
        "user_id": user,
        "context": context,
        "channel_id": channel,
        "thread_ts": thread_ts or new_ts(),
    }
    return {"type": "assistant_thread_started", "assistant_thread": thread, "event_ts": new_ts()}


def _interactive_user(user: str, team_id: str) -> dict[str, Any]:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id}


def _trigger_id() -> str:
    return f"{next(_id_counter)}.{_TS_BASE_MICROS // 1_000_000}.{uuid.uuid4().hex}"


def _response_url(team_id: str) -> str:
    return f"https://hooks.slack.com/actions/{team_id}/{next(_id_counter)}/{uuid.uuid4().hex}"


def block_action(
    action_id: str,
    value: str,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str | None = None,
    trigger_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    *,
    block_id: str | None = None,
    thread_ts: str | None = None,
    message: dict[str, Any] | None = None,
    action_type: str = "button",
) -> dict[str, Any]:
    """A ``block_actions`` payload for a click on a message button.

    ``message`` is the clicked message (e.g. one from ``slack.messages``); by default a
    minimal bot message with ``message_ts`` is used.
    """
    message = dict(message) if message else {}
    message_ts = message_ts or message.get("ts") or new_ts()
    message = {"type": "message", "user": DEFAULT_BOT_USER_ID, "ts": message_ts, **message}
    message.pop("channel", None)
    container = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if thread_ts:
        container["thread_ts"] = thread_ts
    action = {
        "action_id": action_id,
        "block_id": block_id or uuid.uuid4().hex[:5],
        "value": value,
        "type": action_type,
        "action_ts": new_ts(),
        "text": {"type": "plain_text", "text": action_id, "emoji": True},
    }
    return {
        "type": "block_actions",
        "user": _interactive_user(user, team_id),
        "api_app_id": DEFAULT_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id or _trigger_id(),
        "enterprise": None,
        "team": {"id": team_id, "domain": "fakeworkspace"},
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel.lower()},
        "message": message,
        "state": {"values": {}},
        "response_url": _response_url(team_id),
        "actions": [action],
    }


def view_submission(
    callback_id: str,
    values: dict[str, dict[str, Any]],
    user: str = "U1",
    private_metadata: str = "",
    *,
    view_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """A ``view_submission`` payload.

    ``values`` is ``{block_id: {action_id: state}}``; a plain string state becomes a
    ``plain_text_input`` value.
    """
    state = {
        block_id: {
            action_id: {"type": "plain_text_input", "value": v} if isinstance(v, str) else v
            for action_id, v in actions.items()
        }
        for block_id, actions in values.items()
    }
    view_id = view_id or _new_id("V")
    view = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": [],
        "private_metadata": private_metadata,
        "callback_id": callback_id,
        "state": {"values": state},
        "hash": f"{_CREATED}.{uuid.uuid4().hex[:8]}",
        "title": {"type": "plain_text", "text": "Coworker"},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": DEFAULT_APP_ID,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": DEFAULT_BOT_ID,
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "fakeworkspace"},
        "user": _interactive_user(user, team_id),
        "api_app_id": DEFAULT_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": _trigger_id(),
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def slash_command(
    text: str,
    user: str = "U1",
    channel: str = "C1",
    command: str = "/coworker",
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, str]:
    """A slash command's form fields (all strings, as Slack posts them)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": "fakeworkspace",
        "channel_id": channel,
        "channel_name": channel.lower(),
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": DEFAULT_APP_ID,
        "is_enterprise_install": "false",
        "response_url": _response_url(team_id).replace("/actions/", "/commands/"),
        "trigger_id": _trigger_id(),
    }


def event_callback(
    event: dict[str, Any],
    event_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = DEFAULT_APP_ID,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
) -> dict[str, Any]:
    """The ``event_callback`` wrapper Slack puts around an event."""
    authorization = {
        "enterprise_id": None,
        "team_id": team_id,
        "user_id": bot_user_id,
        "is_bot": True,
        "is_enterprise_install": False,
    }
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or _new_id("Ev"),
        "event_time": int(time.time()),
        "authorizations": [authorization],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


# -------------------------------------------------------------------- HTTP mode


def event_callback_body(
    event: dict[str, Any], event_id: str | None = None, team_id: str = DEFAULT_TEAM_ID
) -> str:
    """The JSON body Slack posts to ``/slack/events`` for an event."""
    return json.dumps(event_callback(event, event_id, team_id))


def form_body(payload: dict[str, Any]) -> str:
    """A form body: slash command fields as-is, anything else as ``payload=<json>``."""
    if "command" in payload and "type" not in payload:
        return urlencode(payload)
    return urlencode({"payload": json.dumps(payload)})


def sign(body: str, signing_secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The ``X-Slack-Request-Timestamp`` / ``X-Slack-Signature`` (v0) headers for a body."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:{body}".encode()
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


async def post_signed(
    url: str,
    body: str,
    signing_secret: str,
    content_type: str = "application/json",
    timestamp: int | None = None,
) -> tuple[int, str]:
    """POST a signed request like Slack does in HTTP mode; returns (status, text)."""
    headers = {
        "Content-Type": content_type,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign(body, signing_secret, timestamp),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body.encode(), headers=headers) as response,
    ):
        return response.status, await response.text()
