"""Which OAuth client Coworker is to a per-user server's authorization server.

In the order the MCP authorization spec gives:
1. a client registered beforehand, from the entry's `oauth` key in `.mcp.json` (servers
   without dynamic registration, such as Slack's and GitHub's);
2. a Client ID Metadata Document, when the authorization server says it supports one and
   `PUBLIC_URL` is HTTPS: the client id is the URL of the document the bot serves
   (`PUBLIC_URL/oauth/client-metadata.json`), so nothing is registered or stored;
3. dynamic client registration (RFC 7591), once per server; the registration is stored
   sealed (it may carry a client secret) and shared by every person and every replica
   (the first registration stored wins a race). A registration made for another redirect
   URI or issuer, or whose secret expired, is replaced.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote, urljoin

import httpx2
from mcp.client.auth import OAuthRegistrationError
from mcp.client.auth.oauth2 import check_registration_usable
from mcp.client.auth.utils import (
    create_client_info_from_metadata_url,
    create_client_registration_request,
    handle_registration_response,
    is_valid_client_metadata_url,
    should_use_client_metadata_url,
)
from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthClientMetadata,
    TokenEndpointAuthMethod,
)
from pydantic import AnyUrl

from bot.base.clock import now
from bot.base.db import Database
from bot.base.errors import ConnectFailed, SecretUnreadable
from bot.base.secretbox import SecretBox
from tools.mcp_config import HttpServer
from tools.oauth.discovery import AuthServer
from tools.transports import origin

log = logging.getLogger(__name__)

CLIENT_NAME = "Coworker"
METADATA_PATH = "/oauth/client-metadata.json"
CALLBACK_PATH = "/oauth/callback"


def client_metadata(
    redirect_uri: str, scope: str | None, method: TokenEndpointAuthMethod = "none"
) -> OAuthClientMetadata:
    """What Coworker registers as (dynamic registration and the metadata document alike)."""
    return OAuthClientMetadata(
        client_name=CLIENT_NAME,
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method=method,
        scope=scope,
        application_type="web",
    )


def secret_method(auth: AuthServer) -> TokenEndpointAuthMethod:
    """How to authenticate with a client secret, as the authorization server supports it.

    The bot runs on a server and can keep a secret, so it registers as a confidential
    client when it may: a refresh token is then no use to anyone without the secret.
    """
    supported = auth.metadata.token_endpoint_auth_methods_supported or ["client_secret_basic"]
    # Post first, as the MCP SDK does: its revocation endpoint reads the secret from the form.
    if "client_secret_post" in supported:
        return "client_secret_post"
    if "client_secret_basic" in supported:
        return "client_secret_basic"
    return "none"


def metadata_document(public_base: str) -> dict[str, object]:
    """The Client ID Metadata Document served at `METADATA_PATH` (its URL is the client id)."""
    meta = client_metadata(public_base + CALLBACK_PATH, None)
    doc = meta.model_dump(mode="json", exclude_none=True)
    return {"client_id": public_base + METADATA_PATH, **doc}


def client_auth(
    client: OAuthClientInformationFull, data: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """A token or revocation request's form and headers, authenticated as `client` is set up."""
    data = {**data, "client_id": client.client_id}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    method = client.token_endpoint_auth_method
    if client.client_secret and method == "client_secret_basic":
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    elif client.client_secret:
        data["client_secret"] = client.client_secret
    return data, headers


class ClientRegistry:
    """The OAuth client to use with each per-user server's authorization server."""

    def __init__(self, db: Database, box: SecretBox, http: httpx2.AsyncClient) -> None:
        self.db = db
        self.box = box
        self.http = http

    async def client_for(
        self, name: str, spec: HttpServer, auth: AuthServer, public_base: str
    ) -> OAuthClientInformationFull:
        """The client for server `name`, registering one if that is the way.

        Raises:
            ConnectFailed: the server offers no way to get a client (or registration failed).
        """
        redirect = public_base + CALLBACK_PATH
        configured = spec.oauth
        if configured is not None and configured.client_id:
            return self._configured(configured.client_id, configured.client_secret, auth)
        document = public_base + METADATA_PATH
        if is_valid_client_metadata_url(document) and should_use_client_metadata_url(
            auth.metadata, document
        ):
            return create_client_info_from_metadata_url(document, redirect_uris=[AnyUrl(redirect)])
        stored = await self._stored(name, redirect, auth.issuer)
        if stored is not None:
            return stored
        return await self._register(name, redirect, auth)

    @staticmethod
    def _configured(
        client_id: str, secret: str | None, auth: AuthServer
    ) -> OAuthClientInformationFull:
        # RFC 6749 §2.3.1: a server that issued a password must accept HTTP Basic.
        supported = auth.metadata.token_endpoint_auth_methods_supported or []
        method = (
            "client_secret_post" if supported == ["client_secret_post"] else "client_secret_basic"
        )
        return OAuthClientInformationFull(
            client_id=client_id,
            client_secret=secret,
            token_endpoint_auth_method=method if secret else "none",
        )

    async def _stored(
        self, name: str, redirect: str, issuer: str
    ) -> OAuthClientInformationFull | None:
        row = await self.db.fetchone(
            "SELECT sealed, redirect_uri, issuer FROM oauth_clients WHERE server = ?", (name,)
        )
        if row is None:
            return None
        try:
            client = OAuthClientInformationFull.model_validate_json(self.box.open(row["sealed"]))
        except SecretUnreadable:
            client = None
        expires = client.client_secret_expires_at if client else None
        stale = row["redirect_uri"] != redirect or row["issuer"] != issuer
        if client is None or stale or (expires and expires <= now() + 60):
            await self.db.execute(
                "DELETE FROM oauth_clients WHERE server = ? AND sealed = ?", (name, row["sealed"])
            )
            return None
        return client

    async def _register(
        self, name: str, redirect: str, auth: AuthServer
    ) -> OAuthClientInformationFull:
        fallback = origin(str(auth.metadata.issuer))
        if auth.metadata.registration_endpoint is None:
            log.warning("MCP server %s: no dynamic client registration", name)
            raise ConnectFailed(
                f"{name}: no way to register a client",
                server=name,
                reason=(
                    f"{name}'s sign-in needs a client registered beforehand: an admin adds "
                    f'"oauth": {{"client_id": …}} to its entry in .mcp.json.'
                ),
            )
        meta = client_metadata(redirect, auth.scope, secret_method(auth))
        request = create_client_registration_request(auth.metadata, meta, urljoin(fallback, "/"))
        try:
            response = await self.http.send(request)
            client = await handle_registration_response(response)
            check_registration_usable(client)
        except (httpx2.HTTPError, OAuthRegistrationError) as exc:
            log.warning("MCP server %s: client registration failed: %r", name, exc)
            raise ConnectFailed(
                f"{name}: client registration failed",
                server=name,
                reason=f"{name}'s authorization server did not register me as a client.",
            ) from None
        client.issuer = auth.issuer
        await self.db.execute(
            "INSERT INTO oauth_clients (server, issuer, redirect_uri, sealed, registered_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (server) DO NOTHING",
            (name, auth.issuer, redirect, self.box.seal(client.model_dump_json()), now()),
        )
        # Another replica may have registered at the same moment: everyone uses the stored one.
        return await self._stored(name, redirect, auth.issuer) or client
