"""Bearer authentication with one person's token, for every HTTP request of their session.

The token is read for each request (a lookup, an open, and a refresh when it is about to
expire: `OAuthConnector.access_token`), so a refresh made by another replica or a
disconnection is seen at once, and no token lives longer in memory than a request. A 401
gets one refresh and one retry; if the server refuses the fresh token too, the connection
is dropped, so the person is asked to connect again. Nothing here raises into the MCP
transport: without a usable token the request goes out without one and the server's 401
ends the call.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx2

from bot.base.errors import ConnectFailed, ConnectionNeeded
from tools.oauth.connector import OAuthConnector


class PersonalAuth(httpx2.Auth):
    def __init__(self, connector: OAuthConnector, user: str, server: str) -> None:
        self.connector = connector
        self.user = user
        self.server = server
        #: Requests the server refused for want of a usable token (the person must reconnect).
        self.refusals = 0

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            token: str | None = await self.connector.access_token(self.user, self.server)
        except (ConnectionNeeded, ConnectFailed):
            token = None
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        retry = (
            None if token is None else await self.connector.after_401(self.user, self.server, token)
        )
        if retry is None:
            self.refusals += 1
            return
        request.headers["Authorization"] = f"Bearer {retry}"
        response = yield request
        if response.status_code == 401:
            self.refusals += 1
            await self.connector.refused(self.user, self.server, retry)
