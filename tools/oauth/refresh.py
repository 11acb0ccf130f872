"""Keeping people's tokens usable: refreshed before they expire and after a 401, once.

A token is refreshed when it expires within a minute (`tokens.REFRESH_MARGIN`), and when a
server refuses it. Refresh tokens rotate, so a refresh token spent twice loses the
connection: one process at a time refreshes a row. Within a process a lock per (person,
server) serializes the coroutines; across processes (replicas sharing PostgreSQL) the row is
leased with a conditional update (`refreshing_until`), the result is written only over the
version the refresh started from, and the others wait for the new version (bounded by the
lease, after which they may take it over). A refresh the server refuses drops the
connection: the person is asked to connect again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx2
from mcp.shared.auth import OAuthToken

from bot.base.errors import ConnectFailed, ConnectionNeeded
from tools.oauth.tokens import StoredToken, TokenStore

log = logging.getLogger(__name__)

#: How long one process may hold a token's refresh before another may take it over.
REFRESH_LEASE = 30.0

#: Spends a refresh token at a server's token endpoint: (server, refresh token) → tokens.
RefreshGrant = Callable[[str, str], Awaitable[OAuthToken]]


class RefreshRefused(Exception):
    """The authorization server refused a refresh token (revoked, expired, used)."""


class Refresher:
    def __init__(self, tokens: TokenStore, grant: RefreshGrant) -> None:
        self.tokens = tokens
        self._grant = grant
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def access_token(self, user: str, server: str) -> str:
        """`user`'s access token for `server`, refreshed first if it is about to expire.

        Raises:
            ConnectionNeeded: no connection, or its refresh was refused (reconnect).
            ConnectFailed: the authorization server could not be reached to refresh an
                expired token.
        """
        token = await self.tokens.get(user, server)
        if token is None:
            raise ConnectionNeeded(server=server, user=user)
        if not token.due:
            return token.access_token
        return (await self._refresh(token)).access_token

    async def after_401(self, user: str, server: str, refused: str) -> str | None:
        """A token to retry with after the server refused `refused`, or None (reconnect)."""
        token = await self.tokens.get(user, server)
        if token is None:
            return None
        if token.access_token != refused:  # refreshed meanwhile, here or on another replica
            return token.access_token
        try:
            return (await self._refresh(token, forced=True)).access_token
        except (ConnectionNeeded, ConnectFailed):
            return None

    async def refused(self, user: str, server: str, token: str) -> None:
        """The server refused even a fresh `token`: drop the connection (reconnect)."""
        current = await self.tokens.get(user, server)
        if current is not None and current.access_token == token:
            log.info("%s refused %s's fresh token; they will be asked to reconnect", server, user)
            await self.tokens.remove(user, server, version=current.version)

    async def _refresh(self, token: StoredToken, *, forced: bool = False) -> StoredToken:
        key = (token.user, token.server)
        async with self._locks.setdefault(key, asyncio.Lock()):
            current = await self.tokens.get(token.user, token.server)
            if current is None:
                raise ConnectionNeeded(server=token.server, user=token.user, reconnect=True)
            if current.version != token.version:
                return current  # another coroutine refreshed it while this one waited
            return await self._refresh_row(current, forced)

    async def _refresh_row(self, token: StoredToken, forced: bool) -> StoredToken:
        if not token.refresh_token:
            if not forced and not token.expired:
                return token
            await self.tokens.remove(token.user, token.server, version=token.version)
            raise ConnectionNeeded(server=token.server, user=token.user, reconnect=True)
        if not await self.tokens.lease(token, REFRESH_LEASE):
            return await self._refreshed_elsewhere(token, forced)
        return await self._spend(token, forced)

    async def _spend(self, token: StoredToken, forced: bool) -> StoredToken:
        """Refresh `token`, whose lease this process holds."""
        assert token.refresh_token is not None
        try:
            fresh = await self._grant(token.server, token.refresh_token)
        except RefreshRefused as exc:
            log.info("%s's %s token: refresh refused (%s)", token.user, token.server, exc)
            await self.tokens.remove(token.user, token.server, version=token.version)
            raise ConnectionNeeded(server=token.server, user=token.user, reconnect=True) from None
        except (httpx2.HTTPError, ConnectFailed) as exc:
            await self.tokens.release(token)
            log.warning("%s's %s token: refresh failed: %r", token.user, token.server, exc)
            if not forced and not token.expired:
                return token  # still good for a while: the next use tries again
            raise ConnectFailed(
                "refresh failed",
                server=token.server,
                reason=f"I couldn't renew access to {token.server} just now.",
            ) from None
        await self.tokens.replace(token, fresh)
        current = await self.tokens.get(token.user, token.server)
        if current is None:  # disconnected while refreshing
            raise ConnectionNeeded(server=token.server, user=token.user)
        return current

    async def _refreshed_elsewhere(self, token: StoredToken, forced: bool) -> StoredToken:
        """Wait (bounded by the lease) for the process refreshing `token` to store the result."""
        async with asyncio.timeout(REFRESH_LEASE + 5):
            while True:
                await asyncio.sleep(0.05)
                current = await self.tokens.get(token.user, token.server)
                if current is None:
                    raise ConnectionNeeded(server=token.server, user=token.user, reconnect=True)
                if current.version != token.version:
                    return current
                if await self.tokens.lease(token, REFRESH_LEASE):  # its lease ran out
                    return await self._spend(token, forced)
