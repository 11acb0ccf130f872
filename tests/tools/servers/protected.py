"""An OAuth-protected MCP server for tests, built from the `mcp` SDK's server auth pieces.

One process plays both parts of the MCP authorization spec: the authorization server
(`create_auth_routes` through `MCPServer(auth_server_provider=…)`: metadata, /authorize,
/token, /register, /revoke) and the protected resource (protected resource metadata, and
the bearer check in front of /mcp). Its tools answer with the account behind the token.

The "people" are accounts named by a cookie the test's browser carries (`account=alice`):
/authorize sends the browser to /login, which consents at once (or declines, when the
test says so) and redirects back with a code, as a real server would after its login page.
Knobs let a test expire every access token (the next call gets a 401), refuse code
exchanges, and count what the server saw.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE = "docs"


@dataclass
class Counters:
    registrations: int = 0
    authorizations: int = 0
    exchanges: int = 0
    refreshes: int = 0
    revocations: int = 0
    rejected: int = 0  # bearer tokens refused (unknown, expired or revoked): a 401 each
    calls: list[tuple[str, str]] = field(default_factory=list)  # (tool, account)
    #: Every access and refresh token the server ever issued (to look for them elsewhere).
    issued: list[str] = field(default_factory=list)


class PeopleAuthority:
    """An `OAuthAuthorizationServerProvider` for a handful of test accounts."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.access_ttl = 3600
        self.deny = False
        self.fail_exchange = False
        self.rotate_refresh = True
        #: Client ID Metadata Documents this server "fetches" (URL → document), when it
        #: advertises support for them (`serve_protected(cimd=True)`).
        self.documents: dict[str, dict[str, object]] = {}
        self.seen = Counters()
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self._pending: dict[str, tuple[str, AuthorizationParams]] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}

    # -- knobs -------------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (refresh tokens still do)."""
        self._access.clear()

    def preregister(self, client_id: str, secret: str | None, redirect_uri: str) -> None:
        method = "client_secret_basic" if secret else "none"
        self.clients[client_id] = OAuthClientInformationFull(
            client_id=client_id,
            client_secret=secret,
            redirect_uris=[redirect_uri],  # type: ignore[list-item]
            token_endpoint_auth_method=method,
            scope=SCOPE,
        )

    def revoke_account(self, account: str) -> None:
        """The account withdrew the grant at the server: its tokens stop working, refresh too."""
        for store in (self._access, self._refresh):
            for key in [k for k, v in store.items() if v.subject == account]:
                del store[key]

    def works(self, token: str) -> bool:
        return token in self._access or token in self._refresh

    # -- the provider protocol ---------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if client_id in self.documents:  # a URL client id: its document says who it is,
            document = self.documents[client_id]  # and this server lets it ask for `docs`
            return OAuthClientInformationFull.model_validate({**document, "scope": SCOPE})
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.seen.registrations += 1
        self.clients[client_info.client_id] = client_info

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        request = secrets.token_hex(8)
        self._pending[request] = (client.client_id, params)
        return f"{self.base}/login?request={request}"

    def login(self, request: str, account: str | None) -> str:
        """Where /login sends the browser: back to the client, with a code or an error."""
        client_id, params = self._pending.pop(request)
        redirect = str(params.redirect_uri)
        if self.deny or not account:
            return construct_redirect_uri(redirect, error="access_denied", state=params.state)
        self.seen.authorizations += 1
        code = secrets.token_hex(16)
        self._codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [SCOPE],
            expires_at=time.time() + 300,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=account,
        )
        return construct_redirect_uri(redirect, code=code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        code = self._codes.get(authorization_code)
        return code if code and code.client_id == client.client_id else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        self._codes.pop(authorization_code.code, None)
        if self.fail_exchange:
            raise TokenError(error="invalid_grant", error_description="refused by the test")
        self.seen.exchanges += 1
        return self._issue(
            client.client_id,
            authorization_code.scopes,
            authorization_code.subject,
            authorization_code.resource,
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        token = self._refresh.get(refresh_token)
        return token if token and token.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        self.seen.refreshes += 1
        if self.rotate_refresh:
            self._refresh.pop(refresh_token.token, None)
        return self._issue(
            client.client_id,
            scopes or refresh_token.scopes,
            refresh_token.subject,
            refresh_token.resource,
        )

    async def load_access_token(self, token: str) -> AccessToken | None:
        found = self._access.get(token)
        if found is None or (found.expires_at and found.expires_at < time.time()):
            self.seen.rejected += 1
            return None
        return found

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.seen.revocations += 1
        subject, client_id = token.subject, token.client_id
        for store in (self._access, self._refresh):
            for key in [
                k for k, v in store.items() if (v.subject, v.client_id) == (subject, client_id)
            ]:
                del store[key]

    def _issue(
        self, client_id: str, scopes: list[str], subject: str | None, resource: str | None
    ) -> OAuthToken:
        access, refresh = f"docs-at-{secrets.token_hex(16)}", f"docs-rt-{secrets.token_hex(16)}"
        expires = int(time.time()) + self.access_ttl
        self._access[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=expires,
            resource=resource,
            subject=subject,
        )
        self._refresh[refresh] = RefreshToken(
            token=refresh, client_id=client_id, scopes=scopes, resource=resource, subject=subject
        )
        self.seen.issued += [access, refresh]
        return OAuthToken(
            access_token=access,
            expires_in=self.access_ttl,
            refresh_token=refresh,
            scope=" ".join(scopes),
        )


def build_protected(base: str, *, registration: bool = True) -> tuple[MCPServer, PeopleAuthority]:
    """The `docs` server at `base` (its MCP endpoint is `base/mcp`) and its authority."""
    authority = PeopleAuthority(base)
    server = MCPServer(
        "docs",
        auth_server_provider=authority,
        auth=AuthSettings(
            issuer_url=base,  # type: ignore[arg-type]
            resource_server_url=f"{base}/mcp",  # type: ignore[arg-type]
            client_registration_options=ClientRegistrationOptions(
                enabled=registration, valid_scopes=[SCOPE], default_scopes=[SCOPE]
            ),
            revocation_options=RevocationOptions(enabled=True),
            required_scopes=[SCOPE],
            validate_token_resource=True,
        ),
    )

    def account() -> str:
        token = get_access_token()
        assert token is not None and token.subject
        return token.subject

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def whoami() -> str:
        """Say whose account this session acts for."""
        authority.seen.calls.append(("whoami", account()))
        return f"signed in as {account()}"

    @server.tool()
    def write_note(text: str) -> str:
        """Write a note in the account's documents (no annotations: block tier)."""
        authority.seen.calls.append(("write_note", account()))
        return f"{account()} wrote: {text}"

    @server.custom_route("/login", methods=["GET"])
    async def login(request: Request) -> Response:
        target = authority.login(request.query_params["request"], request.cookies.get("account"))
        return RedirectResponse(target, status_code=302)

    return server, authority


@dataclass
class Protected:
    url: str  # the MCP endpoint
    base: str
    authority: PeopleAuthority
    server: MCPServer


def advertising_cimd(app: ASGIApp) -> ASGIApp:
    """`app`, its authorization server metadata saying it accepts Client ID Metadata
    Documents (the SDK's metadata route has no such option)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/.well-known/oauth-authorization-server":
            await app(scope, receive, send)
            return
        parts: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await app(scope, receive, keep)
        metadata = json.loads(b"".join(parts))
        await JSONResponse({**metadata, "client_id_metadata_document_supported": True})(
            scope, receive, send
        )

    return wrapped


@asynccontextmanager
async def serve_protected(
    *, registration: bool = True, cimd: bool = False
) -> AsyncIterator[Protected]:
    """Run the protected `docs` server on a free port of 127.0.0.1 (the socket is bound first,
    so its URL is known before the server is built)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server, authority = build_protected(base, registration=registration)
    app = server.streamable_http_app()
    if cimd:
        app = advertising_cimd(app)
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(web.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not web.started and not task.done():
                await asyncio.sleep(0.01)
        yield Protected(url=f"{base}/mcp", base=base, authority=authority, server=server)
    finally:
        web.should_exit = web.force_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
