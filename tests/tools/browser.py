"""A person's browser for OAuth tests: an HTTP client with its own cookie jar.

It signs in to the test authorization server as `account` (a cookie that server reads)
and follows redirects the way a browser does, one hop at a time, so a test can stop at
the redirect to the bot's callback or let it through.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx2


class Browser:
    def __init__(self, account: str | None) -> None:
        self.http = httpx2.AsyncClient(timeout=10.0)
        if account is not None:
            self.http.cookies.set("account", account)

    async def close(self) -> None:
        await self.http.aclose()

    async def follow(
        self, url: str, *, stop_at: str | None = None, hops: int = 10
    ) -> httpx2.Response | str:
        """Open `url` and follow redirects; the last response, or the URL of the first
        redirect starting with `stop_at` (not opened)."""
        for _ in range(hops):
            if stop_at is not None and url.startswith(stop_at):
                return url
            response = await self.http.get(url)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = str(response.headers["location"])
        raise AssertionError(f"more than {hops} redirects")

    async def open(self, url: str) -> httpx2.Response:
        """Open `url` and follow every redirect; the page it ends on."""
        response = await self.follow(url)
        assert isinstance(response, httpx2.Response)
        return response


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
