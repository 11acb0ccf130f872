"""Per-user MCP server calls against shared ones, in the same run.

    python benchmarks/oauth.py [--calls 300]

One streamable-HTTP MCP server, protected with the `mcp` SDK's server auth pieces, runs in
a child process (this script with `--serve`). The gateway knows it twice: as `docs`, a
per-user server (each call with its delegator's token), and as `team`, a shared entry with a
static `Authorization` header (a service account's token, as `.mcp.json` would hold it). Two
accounts sign in through the real Connect flow (a browser-like client following the
redirects): a person, and the service account whose token goes in the header. Then each
round makes one call through `McpGateway.call` to each entry, interleaved so both see the
same machine, journaled in a real SQLite file. Same server, same tool, same bearer check on
the server's side: the difference is the per-user token work, a lookup in `oauth_tokens`,
an open of the sealed row (Fernet) and the refresh check, once before the call and once
per HTTP request of the person's session (which stays open between calls, like the shared
connection). The last line times that token work alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if TYPE_CHECKING:
    from tools.oauth.connector import OAuthConnector

KEY = "benchmark-secret-key-0123456789abcdef0123"
CALLBACK_BASE = "http://127.0.0.1:9"  # the browser stops at the redirect to it


async def serve() -> None:
    """The protected server on a free port; its URL on stdout; until stdin closes."""
    import socket

    import uvicorn

    from tests.tools.servers.protected import build_protected

    sock = socket.socket()
    # Accepted connections inherit it: without, the server's small SSE writes can wait for
    # the client's delayed ACK (40 ms), which would swamp the figures measured here.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    docs, _ = build_protected(base)
    server = uvicorn.Server(uvicorn.Config(docs.streamable_http_app(), log_level="error"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(30):
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
    print(json.dumps({"url": f"{base}/mcp"}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    server.should_exit = True
    await task


async def sign_in(connector: OAuthConnector, user: str, account: str) -> None:
    """The Connect flow, as a person's browser and the callback route run it."""
    from tests.tools.browser import Browser, query

    state = query(await connector.begin(user, "docs", None))["state"]
    browser = Browser(account)
    try:
        link = await connector.open_link(state, f"browser-{user}")
        back = await browser.follow(link, stop_at=CALLBACK_BASE)
    finally:
        await browser.close()
    assert isinstance(back, str)
    got = query(back)
    done = await connector.finish(
        got["state"], browser=f"browser-{user}", code=got["code"], error=None
    )
    assert done.connected, done.reason


async def measure(calls: int) -> None:
    from bot.base.config import Config
    from bot.base.db import open_database
    from bot.base.migrations import migrate
    from bot.base.secretbox import SecretBox
    from tools.calls import CallContext
    from tools.gateway import McpGateway
    from tools.mcp_config import HttpServer

    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdin=-1, stdout=-1
    )
    assert child.stdout is not None and child.stdin is not None
    url = json.loads(await child.stdout.readline())["url"]
    db = await open_database(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    await migrate(db)
    box = SecretBox([KEY], "oauth tokens")
    docs = HttpServer(type="http", url=url)
    setup = McpGateway({"docs": docs}, Config(), db, box=box, public_base=lambda: CALLBACK_BASE)
    await setup.start()
    assert setup.connector is not None
    await sign_in(setup.connector, "U1", "alice")
    await sign_in(setup.connector, "SERVICE", "service-account")
    service_token = await setup.connector.access_token("SERVICE", "docs")
    await setup.stop()
    team = HttpServer(type="http", url=url, headers={"Authorization": f"Bearer {service_token}"})
    gateway = McpGateway(
        {"docs": docs, "team": team}, Config(), db, box=box, public_base=lambda: CALLBACK_BASE
    )
    try:
        await gateway.start()
        connector = gateway.connector
        assert connector is not None and set(gateway.personal) == {"docs"}
        assert await gateway.personal["docs"].list_with("U1")
        allowed = {t.name for t in gateway.tools()}

        async def call(name: str, expect: str) -> float:
            ctx = CallContext(None, 1, "bench", "U1", uuid.uuid4().hex, allowed)
            t0 = time.perf_counter()
            result = await gateway.call(name, {}, ctx)
            elapsed = (time.perf_counter() - t0) * 1000
            assert (result.status, result.content) == ("ok", f"signed in as {expect}")
            return elapsed

        for _ in range(20):  # warm both sessions and the database
            await call("docs__whoami", "alice")
            await call("team__whoami", "service-account")
        personal, shared = [], []
        for _ in range(calls):
            personal.append(await call("docs__whoami", "alice"))
            shared.append(await call("team__whoami", "service-account"))
        token = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await connector.access_token("U1", "docs")
            token.append((time.perf_counter() - t0) * 1000)
    finally:
        await gateway.stop()
        await db.close()
        child.stdin.close()
        await child.wait()
    print(f"{calls} calls each, interleaved, same server and tool, SQLite file, same run")
    print(f"per-user call (docs__whoami, the person's token): {_figures(personal)}")
    print(f"shared call (team__whoami, a static header):      {_figures(shared)}")
    diff = statistics.median(personal) - statistics.median(shared)
    print(f"per-user minus shared (medians): {diff:+.2f} ms")
    print(f"token lookup + open + refresh check, alone: {_figures(token)}")


def _figures(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls to each server")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(serve() if args.serve else measure(args.calls))


if __name__ == "__main__":
    main()
