"""Per-user MCP servers at the gateway: discovery, registration, Connect links and callbacks,
tokens sealed at rest, refresh before expiry and after a 401, revocation, and the whose-token
rule, against an OAuth-protected MCP server built from the `mcp` SDK's server auth pieces.

The bot's listener is not needed here: the person's browser stops at the redirect to the
callback, and the test hands its query to the connector as the route would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.base import clock
from bot.base.config import Config
from bot.base.db import Database, open_database
from bot.base.db.postgres import PostgresDatabase
from bot.base.errors import ConnectFailed, SettingsError
from bot.base.secretbox import SecretBox
from tests.tools.browser import Browser, query
from tests.tools.conftest import GatewayFactory, audit_text, ctx_for
from tests.tools.servers.protected import Protected, serve_protected
from tools.doctor import describe
from tools.gateway import McpGateway
from tools.mcp_config import HttpServer, OAuthClient
from tools.oauth.clients import METADATA_PATH, metadata_document
from tools.oauth.connector import Completion, OAuthConnector

KEY = "tools-test-secret-key-0123456789abcdef"
BOX = SecretBox([KEY], "oauth tokens")
CALLBACK_BASE = "http://127.0.0.1:9"  # nothing listens: the browser stops at the redirect
#: the tests that use the database run on both engines (tests/conftest.py): token storage,
#: the refresh lease between replicas, connection waits
ENGINES = ("sqlite", "postgres")


@pytest.fixture
async def docs() -> AsyncIterator[Protected]:
    async with serve_protected() as server:
        yield server


async def docs_gateway(
    make_gateway: GatewayFactory, docs: Protected, box: SecretBox | None = BOX, **spec: Any
) -> McpGateway:
    server = HttpServer(type="http", url=docs.url, **spec)
    return await make_gateway({"docs": server}, box=box, public_base=lambda: CALLBACK_BASE)


def connector(gateway: McpGateway) -> OAuthConnector:
    assert gateway.connector is not None
    return gateway.connector


async def come_back(
    con: OAuthConnector, user: str, account: str | None, *, browser: str | None = None
) -> tuple[str, str]:
    """Make a Connect link for `user`, open it in a browser signed in as `account`; the
    state and the callback URL the authorization server sent the browser to."""
    state = query(await con.begin(user, "docs", None))["state"]
    person = Browser(account)
    try:
        back = await person.follow(
            await con.open_link(state, browser or f"browser-of-{user}"), stop_at=CALLBACK_BASE
        )
    finally:
        await person.close()
    assert isinstance(back, str)
    return state, back


async def sign_in(
    con: OAuthConnector, user: str, account: str | None, *, browser: str | None = None
) -> Completion:
    """The whole flow, as the browser and the callback route would run it."""
    _, back = await come_back(con, user, account, browser=browser)
    got = query(back)
    return await con.finish(
        got["state"],
        browser=browser or f"browser-of-{user}",
        code=got.get("code"),
        error=got.get("error"),
        iss=got.get("iss"),
    )


#: Loggers `bot.logs.setup` keeps at WARNING (they log whole requests and payloads).
QUIET = (
    "slack_bolt",
    "slack_sdk",
    "httpx",
    "httpx2",
    "apscheduler",
    "aiosqlite",
    "anthropic",
    "mcp",
)


def logged_text(records: list[logging.LogRecord]) -> str:
    """Everything the bot would log at DEBUG with its logging set up as in production
    (the test MCP server's own uvicorn log is not the bot's)."""
    kept = [
        r
        for r in records
        if not r.name.startswith("uvicorn")
        and (r.levelno >= logging.WARNING or r.name.split(".")[0] not in QUIET)
    ]
    return "\n".join(f"{r.name} {r.getMessage()}" for r in kept)


async def whoami(gateway: McpGateway, user: str) -> Any:
    return await gateway.call(
        "docs__whoami", {}, ctx_for(gateway, delegator=user, allowed={"docs__whoami"})
    )


async def connected_two(make_gateway: GatewayFactory, docs: Protected) -> McpGateway:
    gateway = await docs_gateway(make_gateway, docs)
    con = connector(gateway)
    assert (await sign_in(con, "U1", "alice")).connected
    assert (await sign_in(con, "U2", "bob")).connected
    assert await gateway.personal["docs"].list_with("U1")
    return gateway


async def test_a_server_asking_for_a_token_is_per_user_and_calls_act_as_the_delegator(
    make_gateway: GatewayFactory, docs: Protected
) -> None:
    gateway = await docs_gateway(make_gateway, docs)
    [status] = gateway.servers()
    assert (status.mode, status.connected, status.tools) == ("per-user", 0, [])
    con = connector(gateway)
    assert (await sign_in(con, "U1", "alice")).connected
    assert (await sign_in(con, "U2", "bob")).connected
    assert await gateway.personal["docs"].list_with("U1")
    assert sorted(t.name for t in gateway.tools()) == ["docs__whoami", "docs__write_note"]
    first, second = await whoami(gateway, "U1"), await whoami(gateway, "U2")
    assert (first.status, first.content) == ("ok", "signed in as alice")
    assert (second.status, second.content) == ("ok", "signed in as bob")
    stranger = await whoami(gateway, "U3")
    assert (stranger.status, stranger.needs_connection) == ("unconnected", "docs")
    assert "<@U3> needs to connect docs" in stranger.content
    assert docs.authority.seen.calls == [("whoami", "alice"), ("whoami", "bob")]
    assert docs.authority.seen.registrations == 1  # one client for everyone


async def test_doctor_shows_each_servers_mode_and_how_many_people_connected(
    make_gateway: GatewayFactory, docs: Protected
) -> None:
    gateway = await docs_gateway(make_gateway, docs)
    assert describe(gateway.servers()[0]) == (
        "MCP docs (http): per-user, nobody connected yet; its tools are listed with the "
        "first connected person's token",
        [],
    )
    con = connector(gateway)
    await sign_in(con, "U1", "alice")
    await gateway.personal["docs"].start()  # as at the next start: count, then list
    headline, tools = describe(gateway.servers()[0])
    assert headline == "MCP docs (http): per-user, 1 person connected, 2 tools"
    assert any("docs__whoami" in line and "auto" in line for line in tools)


async def test_tokens_are_sealed_at_rest_and_never_logged_or_audited(
    make_gateway: GatewayFactory,
    docs: Protected,
    db: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await connected_two(make_gateway, docs)
    await whoami(gateway, "U1")
    docs.authority.expire_access_tokens()  # a refresh too, so there are rotated tokens
    assert (await whoami(gateway, "U1")).content == "signed in as alice"
    issued = docs.authority.seen.issued
    assert len(issued) >= 6
    stored = await stored_bytes(db, tmp_path)
    assert stored and not [t for t in issued if t.encode() in stored]
    audit = await audit_text(db)
    assert "signed in as alice" in audit and not [t for t in issued if t in audit]
    logged = logged_text(caplog.records)
    assert "alice" in logged or "U1" in logged  # the log says who connected, not with what
    assert not [t for t in issued if t in logged]


async def stored_bytes(db: Database, directory: Path) -> bytes:
    """Everything the database stores: SQLite's file and WAL as on disk; on PostgreSQL
    (whose files belong to the server), every row of every table as text."""
    if db.engine == "sqlite":
        return await asyncio.to_thread(database_bytes, directory)
    rows = [await db.fetchall(f"SELECT * FROM {table}") for table in sorted(await db.tables())]
    return repr(rows).encode()


def database_bytes(directory: Path, name: str = "test.db") -> bytes:
    """The database file and its WAL, as stored on disk."""
    paths = sorted(directory.glob(f"{name}*"))
    assert paths, f"no {name} in {directory}"
    return b"".join(path.read_bytes() for path in paths)


async def expiring(db: Database, user: str, seconds: float = 10.0) -> None:
    """Time goes by: `user`'s hour-long token now expires in `seconds` (within the margin)."""
    t = clock.now()
    await db.execute(
        "UPDATE oauth_tokens SET expires_at = ?, connected_at = ?, refreshed_at = NULL"
        " WHERE user_id = ?",
        (t + seconds, t + seconds - 3600, user),
    )


async def test_a_token_about_to_expire_is_refreshed_before_it_is_used(
    make_gateway: GatewayFactory, docs: Protected, db: Database
) -> None:
    gateway = await connected_two(make_gateway, docs)
    assert (await whoami(gateway, "U1")).status == "ok"
    assert docs.authority.seen.refreshes == 0  # an hour left: nothing to do
    await expiring(db, "U1")
    assert (await whoami(gateway, "U1")).content == "signed in as alice"
    assert (await whoami(gateway, "U1")).content == "signed in as alice"
    assert docs.authority.seen.refreshes == 1  # once, and the new token is good for an hour
    assert docs.authority.seen.rejected == 0  # never sent a token the server refused


async def test_a_token_the_server_refuses_is_refreshed_and_the_call_retried(
    make_gateway: GatewayFactory, docs: Protected
) -> None:
    gateway = await connected_two(make_gateway, docs)
    assert (await whoami(gateway, "U1")).status == "ok"
    docs.authority.expire_access_tokens()
    result = await whoami(gateway, "U1")
    assert (result.status, result.content) == ("ok", "signed in as alice")
    assert docs.authority.seen.refreshes == 1 and docs.authority.seen.rejected >= 1


async def test_a_refresh_the_server_refuses_asks_the_person_to_reconnect(
    make_gateway: GatewayFactory, docs: Protected
) -> None:
    gateway = await connected_two(make_gateway, docs)
    docs.authority.revoke_account("alice")
    result = await whoami(gateway, "U1")
    assert (result.status, result.needs_connection) == ("unconnected", "docs")
    assert "<@U1> needs to reconnect docs" in result.content
    assert await connector(gateway).tokens.get("U1", "docs") is None
    assert (await whoami(gateway, "U2")).content == "signed in as bob"  # others go on


async def test_two_replicas_needing_a_refresh_at_once_spend_the_refresh_token_once(
    make_gateway: GatewayFactory, docs: Protected, db: Database, tmp_path: Path
) -> None:
    gateway = await connected_two(make_gateway, docs)
    await expiring(db, "U1")
    before = docs.authority.seen.refreshes
    # another replica's connection (its own pool on PostgreSQL)
    other_db = await open_database(
        db.url if isinstance(db, PostgresDatabase) else f"sqlite:///{tmp_path / 'test.db'}"
    )
    other = OAuthConnector(
        other_db, BOX, {"docs": gateway.personal["docs"].spec}, lambda: CALLBACK_BASE
    )
    try:
        tokens = await asyncio.gather(
            *(c.access_token("U1", "docs") for c in (connector(gateway), other) * 3)
        )
    finally:
        await other.close()
        await other_db.close()
    # Rotating refresh tokens: a second refresh with the same one would have failed.
    assert docs.authority.seen.refreshes == before + 1
    assert len(set(tokens)) == 1 and docs.authority.works(tokens[0])


async def test_callbacks_with_a_forged_expired_replayed_or_foreign_state_store_nothing(
    make_gateway: GatewayFactory, docs: Protected, db: Database
) -> None:
    gateway = await docs_gateway(make_gateway, docs)
    con = connector(gateway)

    async def stored() -> int:
        return int(await db.fetchval("SELECT COUNT(*) FROM oauth_tokens"))

    forged = await con.finish("f" * 64, browser="browser-of-U1", code="x", error=None)
    assert (forged.problem, forged.user) == ("unknown", None)

    state, back = await come_back(con, "U1", "alice")
    await db.execute("UPDATE oauth_states SET expires_at = 0")  # ten minutes went by
    late = await con.finish(state, browser="browser-of-U1", code=query(back)["code"], error=None)
    assert (late.problem, late.user, late.server) == ("expired", "U1", "docs")
    assert await stored() == 0

    state, back = await come_back(con, "U1", "alice")
    foreign = await con.finish(state, browser="someone-else", code=query(back)["code"], error=None)
    assert foreign.problem == "foreign" and await stored() == 0
    with pytest.raises(ConnectFailed) as refused:
        await con.open_link(state, "someone-else")  # the link is bound to the first browser
    assert "not started from this browser" in refused.value.reason

    ok = await con.finish(state, browser="browser-of-U1", code=query(back)["code"], error=None)
    assert ok.connected and await stored() == 1
    first = await con.tokens.get("U1", "docs")
    replayed = await con.finish(
        state, browser="browser-of-U1", code=query(back)["code"], error=None
    )
    assert replayed.problem == "used"
    assert await con.tokens.get("U1", "docs") == first
    assert docs.authority.seen.exchanges == 1


async def test_declined_consent_or_a_refused_code_exchange_store_nothing(
    make_gateway: GatewayFactory, docs: Protected, db: Database
) -> None:
    gateway = await docs_gateway(make_gateway, docs)
    con = connector(gateway)
    docs.authority.deny = True
    denied = await sign_in(con, "U1", "alice")
    assert (denied.problem, denied.reason) == (
        "denied",
        "You declined access, so I did not connect anything.",
    )
    docs.authority.deny, docs.authority.fail_exchange = False, True
    failed = await sign_in(con, "U1", "alice")
    assert failed.problem == "exchange"
    assert await db.fetchval("SELECT COUNT(*) FROM oauth_tokens") == 0


async def test_disconnect_revokes_at_the_server_then_deletes(
    make_gateway: GatewayFactory, docs: Protected
) -> None:
    gateway = await connected_two(make_gateway, docs)
    con = connector(gateway)
    token = await con.tokens.get("U1", "docs")
    assert token is not None and docs.authority.works(token.access_token)
    assert await con.disconnect("U1", "docs")
    assert docs.authority.seen.revocations >= 1
    assert not docs.authority.works(token.access_token)
    assert token.refresh_token and not docs.authority.works(token.refresh_token)
    assert await con.tokens.get("U1", "docs") is None
    assert (await whoami(gateway, "U1")).needs_connection == "docs"


async def test_a_client_registered_beforehand_is_used_instead_of_registering() -> None:
    async with serve_protected(registration=False) as docs:
        docs.authority.preregister(
            "coworker-test", "client-s3cret", CALLBACK_BASE + "/oauth/callback"
        )
        db = await open_database("sqlite:///:memory:")
        from bot.base.migrations import migrate

        await migrate(db)
        spec = HttpServer(
            type="http",
            url=docs.url,
            oauth=OAuthClient(client_id="coworker-test", client_secret="client-s3cret"),
        )
        bare = HttpServer(type="http", url=docs.url, oauth=OAuthClient())
        gateway = McpGateway(
            {"docs": spec, "docs2": bare}, Config(), db, box=BOX, public_base=lambda: CALLBACK_BASE
        )
        try:
            await gateway.start()
            con = connector(gateway)
            assert (await sign_in(con, "U1", "alice")).connected
            assert docs.authority.seen.registrations == 0
            assert await gateway.personal["docs"].list_with("U1")
            assert (await whoami(gateway, "U1")).content == "signed in as alice"
            with pytest.raises(ConnectFailed) as no_way:
                await con.begin("U1", "docs2", None)
            assert '"oauth": {"client_id"' in no_way.value.reason
        finally:
            await gateway.stop()
            await db.close()


async def test_per_user_servers_without_a_secret_key_stop_start_up_naming_the_variable(
    make_gateway: GatewayFactory, docs: Protected
) -> None:
    with pytest.raises(SettingsError) as missing:
        await docs_gateway(make_gateway, docs, box=None)
    assert missing.value.variable == "COWORKER_SECRET_KEY"
    assert "docs" in str(missing.value)


async def test_a_second_key_lets_stored_tokens_move_to_a_new_key(
    make_gateway: GatewayFactory, docs: Protected, db: Database
) -> None:
    old = SecretBox(["old-key-0123456789-0123456789-012345"], "oauth tokens")
    gateway = await docs_gateway(make_gateway, docs, box=old)
    assert (await sign_in(connector(gateway), "U1", "alice")).connected
    await gateway.stop()
    new_key = "new-key-0123456789-0123456789-012345"
    both = SecretBox([new_key, "old-key-0123456789-0123456789-012345"], "oauth tokens")
    await docs_gateway(make_gateway, docs, box=both)  # start re-seals with the new key
    only_new = OAuthConnector(db, SecretBox([new_key], "oauth tokens"), {}, lambda: CALLBACK_BASE)
    token = await only_new.tokens.get("U1", "docs")
    await only_new.close()
    assert token is not None and docs.authority.works(token.access_token)


async def test_a_client_id_metadata_document_is_used_where_the_server_supports_it(
    db: Database,
) -> None:
    public = "https://coworker.example.com"  # CIMD needs HTTPS; the browser stops before it
    async with serve_protected(registration=False, cimd=True) as docs:
        docs.authority.documents[public + METADATA_PATH] = metadata_document(public)
        gateway = McpGateway(
            {"docs": HttpServer(type="http", url=docs.url)},
            Config(),
            db,
            box=BOX,
            public_base=lambda: public,
        )
        try:
            await gateway.start()
            con = connector(gateway)
            state = query(await con.begin("U1", "docs", None))["state"]
            assert query(await con.open_link(state, "b"))["client_id"] == public + METADATA_PATH
            person = Browser("alice")
            try:
                back = await person.follow(await con.open_link(state, "b"), stop_at=public)
            finally:
                await person.close()
            assert isinstance(back, str) and back.startswith(public + "/oauth/callback?")
            got = query(back)
            done = await con.finish(got["state"], browser="b", code=got["code"], error=None)
            assert done.connected
            assert await gateway.personal["docs"].list_with("U1")
            assert (await whoami(gateway, "U1")).content == "signed in as alice"
            assert docs.authority.seen.registrations == 0  # nothing registered, nothing stored
            assert await db.fetchval("SELECT COUNT(*) FROM oauth_clients") == 0
        finally:
            await gateway.stop()
