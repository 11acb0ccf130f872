"""Issue 18: per-user MCP servers, end to end, with the real bot, the real `mcp` client and an
OAuth-protected MCP server built from the SDK's server auth pieces (tests/tools/servers/
protected.py). People's browsers are HTTP clients that follow the Connect link and every
redirect; the test authorization server signs each in as the account their cookie names.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.base.errors import SettingsError
from tests.fakes.anthropic import Reply, text_reply, tool_reply
from tests.fakes.slack import slash_command
from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness, until
from tests.tools.browser import Browser
from tests.tools.conftest import audit_text
from tests.tools.servers.protected import Protected, serve_protected
from tests.tools.test_oauth import database_bytes, logged_text

SECRET_KEY = "test-coworker-secret-key-0123456789abcdef"
NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


@pytest.fixture
async def docs() -> AsyncIterator[Protected]:
    async with serve_protected() as server:
        yield server


def docs_mcp(docs: Protected) -> dict[str, Any]:
    return {"mcpServers": {"docs": {"type": "http", "url": docs.url}}}


def oauth_harness(make_harness: Callable[..., Harness], docs: Protected, **kw: Any) -> Harness:
    kw.setdefault("config", NO_PLAN_APPROVAL)
    return make_harness(
        mcp=docs_mcp(docs), env={"port": 0, "coworker_secret_key": SECRET_KEY}, **kw
    )


def tool_results(body: dict[str, Any]) -> list[str]:
    """The tool results in the last message of a Messages API request."""
    content = body["messages"][-1]["content"]
    if not isinstance(content, list):
        return []
    return [str(b["content"]) for b in content if b.get("type") == "tool_result"]


def docs_model(
    tool: str = "docs__whoami", arguments: dict[str, Any] | None = None
) -> Callable[[dict[str, Any]], Reply]:
    """A model that plans one step with `tool`, calls it, and answers with what it returned."""

    def respond(body: dict[str, Any]) -> Reply:
        names = [t["name"] for t in body.get("tools") or []]
        if "submit_plan" in names:
            return tool_reply("submit_plan", plan(("Use the docs account", [tool])))
        results = tool_results(body)
        if results:
            return text_reply(f"From docs: {results[-1]}")
        return tool_reply(tool, arguments or {})

    return respond


def link_buttons(blocks: Any) -> list[str]:
    """The URLs of the Connect link buttons in `blocks`."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    found = []
    for block in blocks or []:
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if element.get("action_id") == "oauth_connect_link":
                found.append(element["url"])
    return found


def dm_links(h: Harness, user: str) -> list[str]:
    """Every Connect link the bot sent `user` in a DM, oldest first."""
    dm = h.slack._dm_channel(user)
    return [
        url
        for call in h.slack.calls_to("chat.postMessage")
        if call.params.get("channel") == dm
        for url in link_buttons(call.params.get("blocks"))
    ]


async def connect_link(h: Harness, user: str, after: int = 0) -> str:
    """The URL of the Connect link sent to `user` (the `after`-th one onwards)."""
    found = await until(lambda: dm_links(h, user)[after:], what=f"a Connect link for {user}")
    return str(found[0])


async def sign_in(url: str, account: str) -> str:
    """Open a Connect link in `account`'s browser and follow it to the end; the page text."""
    browser = Browser(account)
    try:
        page = await browser.open(url)
    finally:
        await browser.close()
    assert page.status_code == 200, page.text
    return page.text


async def connect_from_slash_command(h: Harness, user: str, account: str) -> None:
    """`/coworker connections`, then the Connect link in the (ephemeral) answer."""
    before = len(h.slack.calls_to("response_url"))
    await h.slack.send_slash_command(slash_command("connections", user=user))
    answers = await until(
        lambda: h.slack.calls_to("response_url")[before:], what="/coworker connections"
    )
    [url] = link_buttons(answers[0].params["blocks"])
    assert "Connected to docs" in await sign_in(url, account)


async def test_a_task_waits_for_connect_then_finishes_after_the_callback(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        task_id = await h.delegate("which docs account do you use for me?", user="U1")
        waiting = await h.wait_status("waiting_input", task_id)
        url = await connect_link(h, "U1")
        assert url.startswith(h.coworker.public_url() + "/oauth/start?state=")
        assert len(h.anthropic.requests) == 1  # the plan names docs: it waits before acting
        await h.slack.wait_for(
            "chat.update", lambda c: "waiting for <@U1> to connect docs" in str(c.params)
        )
        assert "Connected to docs: you can close this tab" in await sign_in(url, "alice")
        done = await h.wait_status("done", task_id, timeout=20)
        assert done.result == "From docs: signed in as alice"
        assert waiting.id == done.id
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
        assert docs.authority.seen.calls == [("whoami", "alice")]


async def test_two_people_delegating_the_same_request_each_get_their_own_account(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        await connect_from_slash_command(h, "U1", "alice")
        await connect_from_slash_command(h, "U2", "bob")
        first = await h.delegate("which docs account is mine?", user="U1")
        assert (await h.wait_status("done", first, timeout=20)).result == (
            "From docs: signed in as alice"
        )
        second = await h.delegate("which docs account is mine?", user="U2")
        assert (await h.wait_status("done", second, timeout=20)).result == (
            "From docs: signed in as bob"
        )
        assert docs.authority.seen.calls == [("whoami", "alice"), ("whoami", "bob")]
        assert dm_links(h, "U1") == [] and dm_links(h, "U2") == []  # nobody was asked


async def test_no_token_reaches_slack_the_model_the_logs_the_audit_or_the_disk_in_clear(
    make_harness: Callable[..., Harness],
    docs: Protected,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        task_id = await h.delegate("which docs account do you use for me?", user="U1")
        await sign_in(await connect_link(h, "U1"), "alice")
        await h.wait_status("done", task_id, timeout=20)
        docs.authority.expire_access_tokens()  # and a refresh, for rotated tokens too
        again = await h.delegate("and now?", user="U1")
        await h.wait_status("done", again, timeout=20)
        assert docs.authority.seen.refreshes == 1
        issued = docs.authority.seen.issued
        audit = await audit_text(h.coworker.db)
    places = {
        "slack": h.texts(),
        "model": json.dumps([r.body for r in h.anthropic.requests]),
        "audit": audit,
        "database": repr(await asyncio.to_thread(database_bytes, tmp_path, "coworker.db")),
        "logs": logged_text(caplog.records),
    }
    assert "signed in as alice" in places["audit"]  # the places are really searched
    leaks = {where: [t for t in issued if t in text] for where, text in places.items()}
    assert leaks == {where: [] for where in places}


async def test_a_token_expiring_mid_task_is_refreshed_without_the_person_noticing(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        calls = 0

        def model(body: dict[str, Any]) -> Reply:
            nonlocal calls
            if any(t["name"] == "submit_plan" for t in body.get("tools") or []):
                return tool_reply("submit_plan", plan(("Check twice", ["docs__whoami"])))
            results = tool_results(body)
            if len(results) and calls == 2:
                return text_reply("Both: " + " / ".join(tool_results(body)))
            calls += 1
            if calls == 2:  # the token the server gave expires between the two calls
                docs.authority.expire_access_tokens()
            return tool_reply("docs__whoami", {})

        h.anthropic.responder = model
        await connect_from_slash_command(h, "U1", "alice")
        task_id = await h.delegate("check my docs account twice", user="U1")
        done = await h.wait_status("done", task_id, timeout=20)
        assert done.result == "Both: signed in as alice"
        assert docs.authority.seen.calls == [("whoami", "alice"), ("whoami", "alice")]
        assert docs.authority.seen.refreshes == 1 and docs.authority.seen.rejected >= 1
        assert dm_links(h, "U1") == []  # never asked to connect again
        thread = str(h.slack.thread("C1", done.thread_ts))
        assert "connect" not in thread.lower()


async def test_a_bad_callback_stores_nothing_and_says_why(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        base = h.coworker.public_url()
        stranger = Browser("mallory")
        try:
            forged = await stranger.open(f"{base}/oauth/callback?state={'f' * 64}&code=x")
            assert forged.status_code == 400 and "not one I made" in forged.text
            task_id = await h.delegate("which docs account do you use for me?", user="U1")
            url = await connect_link(h, "U1")
            owner = Browser("alice")
            try:
                back = await owner.follow(url, stop_at=base + "/oauth/callback")
                assert isinstance(back, str)
                # The callback URL, brought by another browser (a forwarded or leaked link):
                foreign = await stranger.open(back)
                assert (
                    foreign.status_code == 400 and "not started from this browser" in foreign.text
                )
                assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM oauth_tokens") == 0
                await h.slack.wait_for(
                    "chat.postMessage", lambda c: "not started from this browser" in str(c.params)
                )
                assert (await h.task(task_id)).status == "waiting_input"
                # The right browser still completes it, once.
                page = await owner.open(back)
                assert page.status_code == 200 and "Connected to docs" in page.text
                replayed = await owner.open(back)
                assert replayed.status_code == 400 and "already used" in replayed.text
            finally:
                await owner.close()
        finally:
            await stranger.close()
        await h.wait_status("done", task_id, timeout=20)
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM oauth_tokens") == 1


async def test_declining_consent_lets_the_task_go_on_without_the_server(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        docs.authority.deny = True
        task_id = await h.delegate("which docs account do you use for me?", user="U1")
        browser = Browser("alice")
        try:
            page = await browser.open(await connect_link(h, "U1"))
        finally:
            await browser.close()
        assert page.status_code == 400 and "declined" in page.text
        done = await h.wait_status("done", task_id, timeout=20)
        assert done.result is not None and "declined to connect docs" in done.result
        assert docs.authority.seen.calls == []
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM oauth_tokens") == 0


async def test_disconnect_removes_the_token_and_the_next_task_asks_again(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        await connect_from_slash_command(h, "U1", "alice")
        token = await h.coworker.gateway.connector.tokens.get("U1", "docs")  # type: ignore[union-attr]
        assert token is not None
        await h.click("oauth_disconnect", "command:docs", user="U1")
        [answer] = await h.slack.wait_for(
            "response_url", lambda c: "Disconnected from docs" in str(c.params)
        )
        assert link_buttons(answer.params["blocks"])  # Connect again, from the same list
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM oauth_tokens") == 0
        assert not docs.authority.works(token.access_token)  # revoked at the server
        task_id = await h.delegate("which docs account do you use for me?", user="U1")
        await h.wait_status("waiting_input", task_id)
        planning = json.dumps(h.anthropic.requests[-1].body["system"])
        assert "docs__whoami [auto]: (needs <@U1> to connect docs)" in planning
        assert "Connected to docs" in await sign_in(await connect_link(h, "U1"), "alice")
        assert (await h.wait_status("done", task_id, timeout=20)).result == (
            "From docs: signed in as alice"
        )


async def test_a_revoked_grant_asks_the_delegator_to_reconnect_and_waits(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        h.anthropic.responder = docs_model()
        await connect_from_slash_command(h, "U1", "alice")
        docs.authority.revoke_account("alice")  # withdrawn at the server's side
        task_id = await h.delegate("which docs account do you use for me?", user="U1")
        await h.wait_status("waiting_input", task_id, timeout=20)
        await h.slack.wait_for(
            "chat.postMessage", lambda c: "stopped working" in str(c.params.get("blocks"))
        )
        assert "Connected to docs" in await sign_in(await connect_link(h, "U1"), "alice")
        done = await h.wait_status("done", task_id, timeout=20)
        assert done.result == "From docs: signed in as alice"
        assert docs.authority.seen.calls == [("whoami", "alice")]


TEAM = """plan_approval = "never"
[[coworkers]]
name = "lead"
description = "Coordinates"
[[coworkers]]
name = "scribe"
description = "Works in the docs"
"""


async def test_a_subtask_uses_its_delegators_token(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    def model(body: dict[str, Any]) -> Reply:
        system = " ".join(b["text"] for b in body.get("system", []))
        names = [t["name"] for t in body.get("tools") or []]
        if "submit_plan" in names:
            return tool_reply("submit_plan", plan(("Hand it to the scribe", [])))
        results = tool_results(body)
        if "You are lead" in system:
            if results:
                return text_reply("Lead: " + json.loads(results[-1])[0]["result"]["summary"])
            return tool_reply("team__delegate", {"coworker": "scribe", "objective": "whoami"})
        if results:
            return tool_reply("team__submit_result", {"summary": results[-1]})
        return tool_reply("docs__whoami", {})

    async with oauth_harness(make_harness, docs, config=TEAM) as h:
        h.anthropic.responder = model
        await connect_from_slash_command(h, "U1", "alice")
        await connect_from_slash_command(h, "U2", "bob")
        parent = await h.delegate("lead: which docs account is mine?", user="U2")
        done = await h.wait_status("done", parent, timeout=30)
        child = (await h.coworker.tasks.children(parent))[0]
        assert (child.coworker, child.delegator) == ("scribe", "U2")
        assert done.result == "Lead: signed in as bob"
        assert docs.authority.seen.calls == [("whoami", "bob")]


async def test_an_approvers_click_does_not_lend_their_token(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    approvers = NO_PLAN_APPROVAL + '[approvals]\napprovers = ["U2"]\n'
    async with oauth_harness(make_harness, docs, config=approvers) as h:
        h.anthropic.responder = docs_model("docs__write_note", {"text": "minutes"})
        await connect_from_slash_command(h, "U1", "alice")
        await connect_from_slash_command(h, "U2", "bob")
        task_id = await h.delegate("write the minutes in my docs", user="U1")
        await h.wait_status("waiting_approval", task_id, timeout=20)
        approval = await h.coworker.db.fetchval(
            "SELECT id FROM approvals WHERE task_id = ? AND status = 'pending'", (task_id,)
        )
        await h.click("approval_approve", approval, user="U2")
        done = await h.wait_status("done", task_id, timeout=20)
        assert done.result == "From docs: alice wrote: minutes"
        assert docs.authority.seen.calls == [("write_note", "alice")]


async def test_the_app_home_lists_the_persons_connections_with_connect_and_disconnect(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        await h.slack.send_event(
            {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"}
        )
        [before] = await h.slack.wait_for("views.publish")
        assert "*docs*: not connected" in json.dumps(before.params["view"])
        await h.click("oauth_connect", "home:docs", user="U1")  # the link comes in a DM
        assert "Connected to docs" in await sign_in(await connect_link(h, "U1"), "alice")
        await h.slack.send_event(
            {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"}
        )
        published = await h.slack.wait_for("views.publish", count=2)
        text = json.dumps(published[-1].params["view"])
        assert "Your connections" in text and "*docs*: connected since" in text
        assert '"value": "home:docs"' in text and "oauth_disconnect" in text


async def test_a_follow_up_from_an_approver_still_uses_the_delegators_account(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    approvers = NO_PLAN_APPROVAL + '[approvals]\napprovers = ["U2"]\n'
    async with oauth_harness(make_harness, docs, config=approvers) as h:
        h.anthropic.responder = docs_model()
        await connect_from_slash_command(h, "U1", "alice")
        await connect_from_slash_command(h, "U2", "bob")
        task_id = await h.delegate("which docs account do you use for me?", user="U1")
        done = await h.wait_status("done", task_id, timeout=20)
        await h.reply("and which one now?", done.thread_ts, user="U2")
        await until(
            lambda: len(docs.authority.seen.calls) == 2, timeout=20, what="the follow-up's call"
        )
        assert docs.authority.seen.calls == [("whoami", "alice"), ("whoami", "alice")]


async def test_per_user_servers_without_a_secret_key_stop_start_up(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        settings = h.settings()
        # A file of its own: the harness's bot holds its SQLite file (one bot per file).
        other = Path(settings.database_path).with_name("keyless.db")
        keyless = settings.model_copy(
            update={"coworker_secret_key": None, "database_url": f"sqlite:///{other}"}
        )
        with pytest.raises(SettingsError, match="COWORKER_SECRET_KEY is not set") as stopped:
            await build(keyless)
        assert "docs" in str(stopped.value)


async def test_a_delegator_disconnecting_mid_run_is_asked_to_reconnect_and_the_task_waits(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs) as h:
        turns = 0

        async def model(body: dict[str, Any]) -> Reply:
            nonlocal turns
            if any(t["name"] == "submit_plan" for t in body.get("tools") or []):
                return tool_reply("submit_plan", plan(("Check twice", ["docs__whoami"])))
            turns += 1
            if turns == 2:  # between the two calls, the person disconnects in Slack
                await h.click("oauth_disconnect", "command:docs", user="U1")
                await until(
                    lambda: h.coworker.db.fetchval("SELECT COUNT(*) = 0 FROM oauth_tokens"),
                    what="the disconnection",
                )
            if turns >= 3:
                return text_reply("Both: " + " / ".join(tool_results(body)))
            return tool_reply("docs__whoami", {})

        h.anthropic.responder = model
        await connect_from_slash_command(h, "U1", "alice")
        task_id = await h.delegate("check my docs account twice", user="U1")
        await h.wait_status("waiting_input", task_id, timeout=20)
        [asked] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "waiting for <@U1> to reconnect `docs`" in str(c.params)
        )
        assert "Connected to docs" in await sign_in(await connect_link(h, "U1"), "alice")
        done = await h.wait_status("done", task_id, timeout=20)
        assert done.result == "Both: signed in as alice"
        assert docs.authority.seen.calls == [("whoami", "alice"), ("whoami", "alice")]


async def test_in_http_mode_the_callback_shares_the_listener_with_slack_events(
    make_harness: Callable[..., Harness], docs: Protected
) -> None:
    async with oauth_harness(make_harness, docs, socket_mode=False) as h:
        await h.coworker.connect()  # HTTP mode: the listener on PORT serves Slack too
        browser = Browser(None)
        try:
            base = h.coworker.public_url()
            page = await browser.open(f"{base}/oauth/callback?state={'0' * 64}&code=x")
            events = await browser.http.post(f"{base}/slack/events", content=b"{}")
            health = await browser.open(f"{base}/healthz")
            document = (await browser.open(f"{base}/oauth/client-metadata.json")).json()
        finally:
            await browser.close()
        assert page.status_code == 400 and "not one I made" in page.text
        assert document["client_id"] == f"{base}/oauth/client-metadata.json"
        assert document["redirect_uris"] == [f"{base}/oauth/callback"]
        assert events.status_code == 401  # Bolt's signature check: it is Slack's endpoint
        assert health.status_code == 200
