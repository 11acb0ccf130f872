"""Connecting people to per-user MCP servers, and keeping their tokens usable.

The authorization code flow with PKCE is split in three, each of which may run on any
replica, so everything between the steps lives in the database, never in memory:

1. `begin(user, server, task)`: discovery and client registration, then a `state` (256
   random bits; only its hash is stored) bound to the person, the server and the task, with
   the PKCE verifier and the authorization URL sealed beside it, valid 10 minutes. The
   Connect link points at the bot's own `/oauth/start`, not at the authorization server;
2. `open_link(state, browser)`: the browser that opens the link first is bound to it (a
   cookie the handler sets), and is sent on to the authorization server;
3. `finish(state, code, browser)`: the state is used once, by a conditional update that
   also checks its expiry and the browser; then the code is exchanged with the verifier
   and the tokens are stored. A state that is unknown, expired, used, or brought by another
   browser (a forwarded or leaked link) stores nothing and says which it was.

`access_token(user, server)` is what a call needs and `after_401` what a refused one needs;
`tools.oauth.refresh` keeps the tokens usable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx2
from mcp.client.auth import OAuthFlowError, PKCEParameters
from mcp.client.auth.utils import validate_authorization_response_iss
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import ValidationError

from bot.base.clock import now
from bot.base.db import Database
from bot.base.errors import ConnectFailed, SecretUnreadable
from bot.base.secretbox import SecretBox
from tools.mcp_config import HttpServer
from tools.oauth.clients import CALLBACK_PATH, ClientRegistry, client_auth
from tools.oauth.discovery import AuthServer, discover
from tools.oauth.refresh import Refresher, RefreshRefused
from tools.oauth.tokens import StoredToken, TokenStore

log = logging.getLogger(__name__)

LINK_SECONDS = 600.0
START_PATH = "/oauth/start"
_HTTP_TIMEOUT = httpx2.Timeout(15.0)


@dataclass(frozen=True)
class Completion:
    """How a callback ended: connected, or which problem stopped it (nothing stored then)."""

    problem: str | None  # None | unknown | expired | used | foreign | denied | refused | exchange
    reason: str  # for the person, on the page and in the thread
    server: str | None = None
    user: str | None = None
    task_id: int | None = None

    @property
    def connected(self) -> bool:
        return self.problem is None


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class OAuthConnector:
    """Connect links, callbacks, token use and refresh, and disconnection, for every
    per-user server."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        servers: dict[str, HttpServer],
        public_base: Callable[[], str],
        *,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.servers = servers
        self.public_base = public_base
        self.http = http or httpx2.AsyncClient(timeout=_HTTP_TIMEOUT)
        self.tokens = TokenStore(db, box)
        self.clients = ClientRegistry(db, box, self.http)
        self.refresher = Refresher(self.tokens, self._refresh_grant)
        self._auth: dict[str, AuthServer] = {}

    async def close(self) -> None:
        await self.http.aclose()

    @property
    def redirect_uri(self) -> str:
        return self.public_base() + CALLBACK_PATH

    async def auth_server(self, server: str) -> AuthServer:
        """The server's authorization server, discovered once per process."""
        found = self._auth.get(server)
        if found is None:
            spec = self.servers[server]
            scopes = spec.oauth.scopes if spec.oauth else None
            found = await discover(self.http, server, spec.url, scopes)
            self._auth[server] = found
        return found

    async def client(self, server: str) -> tuple[AuthServer, OAuthClientInformationFull]:
        auth = await self.auth_server(server)
        spec = self.servers[server]
        return auth, await self.clients.client_for(server, spec, auth, self.public_base())

    # -- the Connect link --------------------------------------------------------------

    async def begin(self, user: str, server: str, task_id: int | None) -> str:
        """A Connect link for `user` to `server` (for `task_id`), valid `LINK_SECONDS`.

        Raises:
            ConnectFailed: discovery or client registration failed (`reason` says why).
        """
        auth, client = await self.client(server)
        pkce = PKCEParameters.generate()
        state = secrets.token_hex(32)
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": pkce.code_challenge,
            "code_challenge_method": "S256",
            "resource": auth.resource,
        }
        if auth.scope:
            params["scope"] = auth.scope
            if "offline_access" in auth.scope.split():
                params["prompt"] = "consent"
        url = f"{auth.metadata.authorization_endpoint}?{urlencode(params)}"
        sealed = self.box.seal(json.dumps({"verifier": pkce.code_verifier, "url": url}))
        t = now()
        await self.db.batch(
            ("DELETE FROM oauth_states WHERE expires_at < ?", (t - 86400,)),
            (
                "INSERT INTO oauth_states (state_hash, user_id, server, task_id, sealed,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (digest(state), user, server, task_id, sealed, t, t + LINK_SECONDS),
            ),
        )
        return f"{self.public_base()}{START_PATH}?{urlencode({'state': state})}"

    async def open_link(self, state: str, browser: str) -> str:
        """Where the browser opening a Connect link goes: the authorization server.

        Raises:
            ConnectFailed: the link is unknown, expired, used, or another browser opened it.
        """
        row = await self.db.fetchone(
            "SELECT server, sealed, binding_hash, expires_at, used_at FROM oauth_states"
            " WHERE state_hash = ?",
            (digest(state),),
        )
        problem = _link_problem(row)
        if row is not None and problem is None:
            bound = await self.db.execute(
                "UPDATE oauth_states SET binding_hash = ? WHERE state_hash = ?"
                " AND binding_hash IS NULL AND used_at IS NULL AND expires_at > ?",
                (digest(browser), digest(state), now()),
            )
            if not bound and row["binding_hash"] != digest(browser):
                problem = "foreign"
        if row is None or problem is not None:
            problem = problem or "unknown"
            server = row["server"] if row is not None else "the server"
            raise ConnectFailed(
                f"Connect link refused: {problem}", server=server, reason=_REASONS[problem]
            )
        return str(json.loads(self.box.open(row["sealed"]))["url"])

    async def finish(
        self,
        state: str,
        *,
        browser: str | None,
        code: str | None,
        error: str | None,
        iss: str | None = None,
    ) -> Completion:
        """Complete a callback: use the state once, exchange the code, store the tokens."""
        rows = await self.db.fetchall(
            "UPDATE oauth_states SET used_at = ? WHERE state_hash = ? AND used_at IS NULL"
            " AND expires_at > ? AND binding_hash = ? RETURNING user_id, server, task_id, sealed",
            (now(), digest(state), now(), digest(browser or "")),
        )
        if not rows:
            return await self._refused_state(state)
        row = rows[0]
        user, server, task_id = row["user_id"], row["server"], row["task_id"]

        def ended(problem: str, reason: str | None = None) -> Completion:
            return Completion(problem, reason or _REASONS[problem], server, user, task_id)

        if error is not None:
            return ended("denied" if error == "access_denied" else "refused")
        if not code:
            return ended("refused")
        try:
            token = await self._exchange(
                server, code, json.loads(self.box.open(row["sealed"])), iss
            )
        except ConnectFailed as exc:
            return ended("exchange", exc.reason)
        await self.tokens.save(user, server, token)
        log.info("%s connected to MCP server %s", user, server)
        return Completion(
            None, f"Connected to {server}: you can close this tab.", server, user, task_id
        )

    async def _refused_state(self, state: str) -> Completion:
        row = await self.db.fetchone(
            "SELECT user_id, server, task_id, binding_hash, expires_at, used_at FROM oauth_states"
            " WHERE state_hash = ?",
            (digest(state),),
        )
        problem = _link_problem(row) or "foreign"
        if row is None:
            return Completion(problem, _REASONS[problem])
        log.warning("OAuth callback for %s refused: %s state", row["server"], problem)
        return Completion(problem, _REASONS[problem], row["server"], row["user_id"], row["task_id"])

    async def _exchange(
        self, server: str, code: str, sealed: dict[str, str], iss: str | None
    ) -> OAuthToken:
        auth, client = await self.client(server)
        try:
            validate_authorization_response_iss(iss, auth.metadata)
        except OAuthFlowError:
            raise ConnectFailed("iss mismatch", server=server, reason=_REASONS["refused"]) from None
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": sealed["verifier"],
            "resource": auth.resource,
        }
        try:
            return await self._token_request(server, auth, client, data)
        except (RefreshRefused, httpx2.HTTPError) as exc:
            log.warning("MCP server %s: the code exchange failed: %s", server, type(exc).__name__)
            raise ConnectFailed(
                "code exchange failed", server=server, reason=_REASONS["exchange"]
            ) from None

    async def _token_request(
        self,
        server: str,
        auth: AuthServer,
        client: OAuthClientInformationFull,
        data: dict[str, str],
    ) -> OAuthToken:
        form, headers = client_auth(client, data)
        response = await self.http.post(
            str(auth.metadata.token_endpoint), data=form, headers=headers
        )
        if response.status_code != 200:
            # Only the error code: the body may echo what was sent.
            raise RefreshRefused(f"HTTP {response.status_code} {_error_code(response)}")
        try:
            return OAuthToken.model_validate_json(response.content)
        except ValidationError:
            raise RefreshRefused("unreadable token response") from None

    # -- using tokens ------------------------------------------------------------------

    async def access_token(self, user: str, server: str) -> str:
        """`user`'s access token for `server`, refreshed first if it is about to expire
        (`Refresher.access_token`)."""
        return await self.refresher.access_token(user, server)

    async def after_401(self, user: str, server: str, refused: str) -> str | None:
        """A token to retry with after the server refused `refused`, or None (reconnect)."""
        return await self.refresher.after_401(user, server, refused)

    async def refused(self, user: str, server: str, token: str) -> None:
        """The server refused even a fresh `token`: drop the connection (reconnect)."""
        await self.refresher.refused(user, server, token)

    async def _refresh_grant(self, server: str, refresh_token: str) -> OAuthToken:
        """A refresh token spent at the server's token endpoint: the new tokens."""
        auth, client = await self.client(server)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "resource": auth.resource,
        }
        return await self._token_request(server, auth, client, form)

    # -- disconnecting -----------------------------------------------------------------

    async def disconnect(self, user: str, server: str) -> bool:
        """Revoke `user`'s tokens where the server supports it, then delete them."""
        token = await self.tokens.get(user, server)
        if token is not None:
            await self._revoke(token)
        return await self.tokens.remove(user, server)

    async def _revoke(self, token: StoredToken) -> None:
        try:
            auth, client = await self.client(token.server)
        except ConnectFailed:
            return
        endpoint = auth.metadata.revocation_endpoint
        if endpoint is None:
            return
        pairs = [(token.refresh_token, "refresh_token"), (token.access_token, "access_token")]
        for value, hint in pairs:
            if not value:
                continue
            form, headers = client_auth(client, {"token": value, "token_type_hint": hint})
            try:
                response = await self.http.post(str(endpoint), data=form, headers=headers)
            except httpx2.HTTPError as exc:
                log.warning("%s: revoking %s's token failed: %r", token.server, token.user, exc)
                return
            if response.status_code != 200:
                log.info("%s: revocation answered HTTP %s", token.server, response.status_code)

    async def reseal(self) -> int:
        """After a key rotation: seal stored secrets with the new key."""
        done = await self.tokens.reseal_all()
        rows = await self.db.fetchall("SELECT server, sealed FROM oauth_clients")
        for row in rows:
            try:
                sealed = self.box.reseal(row["sealed"])
            except SecretUnreadable:
                continue
            await self.db.execute(
                "UPDATE oauth_clients SET sealed = ? WHERE server = ? AND sealed = ?",
                (sealed, row["server"], row["sealed"]),
            )
        return done


_REASONS = {
    "unknown": "This sign-in link is not one I made, so I did nothing with it.",
    "expired": (
        "This sign-in link expired (links last 10 minutes). For a new one, reply in the "
        "task's thread or use /coworker connections."
    ),
    "used": (
        "This sign-in link was already used. If you are not connected, /coworker connections "
        "gives you a new one."
    ),
    "foreign": (
        "This sign-in was not started from this browser (was the link forwarded?), "
        "so I did not connect anything. Open the Connect link yourself."
    ),
    "denied": "You declined access, so I did not connect anything.",
    "refused": "The sign-in did not complete, so I did not connect anything.",
    "exchange": "The server did not accept the sign-in, so I did not connect anything.",
}


def _link_problem(row: object | None) -> str | None:
    if row is None:
        return "unknown"
    if row["used_at"] is not None:  # type: ignore[index]
        return "used"
    if row["expires_at"] <= now():  # type: ignore[index]
        return "expired"
    return None


def _error_code(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return str(code)[:40] if code else ""
