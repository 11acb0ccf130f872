"""The browser's side of connecting a per-user server, on the bot's HTTP listener (`PORT`).

    GET /oauth/start?state=…      the Connect link: binds this browser to the link (a
                                  cookie) and sends it to the authorization server
    GET /oauth/callback?…         back from the authorization server: a small page saying
                                  "Connected to docs: you can close this tab", or why not
    GET /oauth/client-metadata.json   the Client ID Metadata Document (when PUBLIC_URL is
                                  HTTPS and a server supports it)

The routes parse the request and call `bot.connections`; they are served in HTTP mode and
in Socket Mode alike (Socket Mode then listens on `PORT` for these and `/healthz` only).
"""

from __future__ import annotations

import html
import logging
import secrets
from typing import Any

from aiohttp import web

from bot.base.errors import ConnectFailed

log = logging.getLogger(__name__)

COOKIE = "coworker_oauth"
SERVICES = web.AppKey("coworker", object)
_COOKIE_SECONDS = 900
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Coworker</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}</style>
</head><body><h1>{title}</h1><p>{text}</p></body></html>
"""


def page(title: str, text: str, status: int = 200) -> web.Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text))
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


def _services(request: web.Request) -> Any:
    return request.app[SERVICES]


async def start(request: web.Request) -> web.StreamResponse:
    """The Connect link: remember this browser, then on to the authorization server."""
    state = request.query.get("state", "")
    browser = request.cookies.get(COOKIE) or secrets.token_hex(32)
    try:
        target = await _services(request).connections.open_link(state, browser)
    except ConnectFailed as exc:
        return page("Not connected", exc.reason, status=400)
    response = web.Response(status=302, headers={"Location": target, "Cache-Control": "no-store"})
    secure = _services(request).connections.public_base().startswith("https://")
    response.set_cookie(
        COOKIE,
        browser,
        max_age=_COOKIE_SECONDS,
        path="/oauth/",
        httponly=True,
        secure=secure,
        samesite="Lax",
    )
    return response


async def callback(request: web.Request) -> web.Response:
    """Back from the authorization server: check the state, exchange the code, say so."""
    query = request.query
    done = await _services(request).connections.finish(
        query.get("state", ""),
        browser=request.cookies.get(COOKIE),
        code=query.get("code"),
        error=query.get("error"),
        iss=query.get("iss"),
    )
    if done.connected:
        return page(f"Connected to {done.server}", done.reason)
    return page("Not connected", done.reason, status=400)


async def client_metadata(request: web.Request) -> web.Response:
    return web.json_response(_services(request).connections.metadata_document())


def add_routes(web_app: web.Application, services: Any) -> None:
    """Serve the OAuth routes from `web_app` (the bot's listener), with `services`."""
    web_app[SERVICES] = services
    web_app.router.add_get("/oauth/start", start)
    web_app.router.add_get("/oauth/callback", callback)
    web_app.router.add_get("/oauth/client-metadata.json", client_metadata)
