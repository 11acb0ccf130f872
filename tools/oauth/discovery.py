"""Finding a per-user server's authorization server (MCP authorization, OAuth 2.1).

A request without a token answers 401 with `WWW-Authenticate: Bearer …`: that is what makes
an HTTP server per-user. Its protected resource metadata (RFC 9728: the URL in the header,
else the well-known URLs) names the authorization server, whose metadata (RFC 8414, or
OpenID Connect discovery) gives the endpoints. The URL lists, the parsing and the issuer
check are the `mcp` SDK's (`mcp.client.auth.utils`), so this follows the spec as the SDK's
own client does; only the order of requests is ours, because our flow is split over a Slack
message, a browser and a callback instead of running inside one HTTP request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx2
from mcp.client.auth import OAuthFlowError
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    create_oauth_metadata_request,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    get_client_metadata_scopes,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    issuers_match,
    validate_metadata_issuer,
)
from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url

from bot.base.errors import ConnectFailed
from tools.transports import origin

log = logging.getLogger(__name__)

#: The JSON-RPC message of the unauthenticated probe: harmless if the server is not protected.
_PING = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
_ACCEPT = {"Accept": "application/json, text/event-stream"}


@dataclass(frozen=True)
class AuthServer:
    """What connecting a person to one per-user server needs to know."""

    resource: str  # the RFC 8707 resource indicator tokens are asked for
    metadata: OAuthMetadata
    scope: str | None  # what to ask for, space-separated

    @property
    def issuer(self) -> str:
        return str(self.metadata.issuer)


async def challenge(http: httpx2.AsyncClient, url: str) -> httpx2.Response | None:
    """The server's 401 answer to a request without a token, if it asks for one (Bearer)."""
    response = await http.post(url, json=_PING, headers=_ACCEPT)
    await response.aread()
    www = response.headers.get("WWW-Authenticate", "")
    if response.status_code == 401 and www.lower().startswith("bearer"):
        return response
    return None


async def discover(
    http: httpx2.AsyncClient, name: str, url: str, scopes: list[str] | None = None
) -> AuthServer:
    """The authorization server of the per-user server `name` at `url`.

    Raises:
        ConnectFailed: the server does not ask for a token, or its metadata cannot be found.
    """
    try:
        return await _discover(http, url, scopes)
    except (httpx2.HTTPError, OAuthFlowError) as exc:
        log.warning("MCP server %s: OAuth discovery failed: %r", name, exc)
        raise ConnectFailed(
            f"OAuth discovery for {name} failed", server=name, reason=_reason(exc, url)
        ) from None


async def _discover(http: httpx2.AsyncClient, url: str, scopes: list[str] | None) -> AuthServer:
    answer = await challenge(http, url)
    if answer is None:
        raise OAuthFlowError("the server did not ask for a token")
    prm = await _resource_metadata(http, url, extract_resource_metadata_from_www_auth(answer))
    auth_server = str(prm.authorization_servers[0]) if prm else None
    metadata = await _server_metadata(http, url, auth_server)
    if scopes:
        scope: str | None = " ".join(scopes)
    else:
        scope = get_client_metadata_scopes(
            extract_scope_from_www_auth(answer),
            prm,
            metadata,
            ["authorization_code", "refresh_token"],
        )
    resource = resource_url_from_server_url(url)
    if prm is not None and check_resource_allowed(resource, str(prm.resource)):
        resource = str(prm.resource)
    return AuthServer(resource=resource, metadata=metadata, scope=scope)


async def _resource_metadata(
    http: httpx2.AsyncClient, url: str, from_header: str | None
) -> ProtectedResourceMetadata | None:
    """RFC 9728 metadata, or None for a server of the 2025-03-26 era that has none."""
    for candidate in build_protected_resource_metadata_discovery_urls(from_header, url):
        response = await http.send(create_oauth_metadata_request(candidate))
        if response.status_code >= 500:
            raise OAuthFlowError(f"protected resource metadata: HTTP {response.status_code}")
        prm = await handle_protected_resource_response(response)
        if prm is None:
            continue
        expected = resource_url_from_server_url(url)
        if not check_resource_allowed(expected, str(prm.resource)):
            raise OAuthFlowError(f"protected resource {prm.resource} is not {expected}")
        return prm
    return None


async def _server_metadata(
    http: httpx2.AsyncClient, url: str, auth_server: str | None
) -> OAuthMetadata:
    expected = auth_server or origin(url)
    for candidate in build_oauth_authorization_server_metadata_discovery_urls(auth_server, url):
        response = await http.send(create_oauth_metadata_request(candidate))
        found, metadata = await handle_auth_metadata_response(response)
        if not found:
            break
        if metadata is None:
            continue
        if issuers_match(str(metadata.issuer), expected):
            expected = str(metadata.issuer)
        validate_metadata_issuer(metadata, expected)
        return metadata
    raise OAuthFlowError("no authorization server metadata found")


def _reason(exc: BaseException, url: str) -> str:
    """Why connecting cannot start, for a person: no URL path, query or secret."""
    server = origin(url)
    if isinstance(exc, httpx2.ConnectError):
        return f"I couldn't reach {server}."
    if isinstance(exc, httpx2.TimeoutException):
        return f"{server} did not answer in time."
    return f"I couldn't find how {server} wants me to sign you in."
