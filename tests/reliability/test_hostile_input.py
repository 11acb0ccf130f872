"""Issue 9.4: hostile input, in both modes.

Property-based (hypothesis) over Slack payloads, one app for many examples
(tests/reliability/live.py): events, interactive payloads (buttons, modal submissions) and
slash commands over Socket Mode, and signed (or forged) bodies over HTTP. For each: the bot
acks and keeps running, never answers 5xx to a well-signed request, logs no error for a
payload shaped like Slack's, and acts on nothing it cannot verify: every decision,
cancellation or resumption recorded during an example was made by the person who sent it,
and that person may make it (the delegator or a configured approver; never a bot).

Then the named cases: oversized messages, unknown action ids, replayed and forged
approvals (another task's, a stale one, from someone who may not decide, from a bot, from
another team), forged and replayed HTTP requests.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.slack import (
    app_mention,
    block_action,
    dm_message,
    event_callback,
    form_body,
    post_signed,
    slash_command,
    view_submission,
)
from tests.reliability.conftest import Captured, effects_mcp
from tests.reliability.live import LiveApp, settle
from tests.reliability.script import file_and_link, job_of, runs, scripted
from tests.scenarios.harness import SIGNING_SECRET, Harness, until

# Hypothesis' failure report (its "explain" phase) imports code that warns on import.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)
OURS, OTHER = "T0001", "TOTHER"
APPROVER, BOTLIKE, STRANGER = "ULEAD", "UHELPERBOT", "USTRANGER"
CONFIG = f'plan_approval = "never"\n[approvals]\napprovers = ["{APPROVER}", "{BOTLIKE}"]\n'
EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DECISIONS = (
    "approval_approved",
    "approval_rejected",
    "cancelled",
    "resumed",
    "plan_approved",
    "plan_edited",
)
ACTION_IDS = (
    "approval_approve",
    "approval_reject",
    "plan_approve",
    "plan_edit",
    "task_cancel",
    "task_resume",
    "feedback_up",
    "feedback_down",
)


class Big(str):
    """An oversized text that shows as its length in hypothesis' reports."""

    def __repr__(self) -> str:
        return f"Big({len(self)} chars: {str.__repr__(self[:20])}…)"


class Blob(bytes):
    """A request body that shows as its length in hypothesis' reports when it is long."""

    def __repr__(self) -> str:
        return super().__repr__() if len(self) < 500 else f"Blob({len(self)} bytes)"


HUGE = tuple(
    Big(t) for t in ("x" * 45_000, "🙂" * 15_000, "<@UBOT> " + "a " * 30_000, "\u0000\u202e" * 500)
)


def model(body: dict[str, Any]) -> Any:
    """Jobs 1 and 2 stop at a block-tier call; any other request gets a one-step answer."""
    if job_of(json.dumps(body["messages"][0])) in (1, 2):
        return scripted(file_and_link)(body)
    return scripted(lambda job: [])(body)


class World:
    """The live app with two tasks waiting for approval, and the invariant checks."""

    def __init__(self, live: LiveApp, logs: Captured) -> None:
        self.live = live
        self.h = live.h
        self.logs = logs

    def setup(self) -> None:
        self.h.slack.add_user(BOTLIKE, "helper", is_bot=True)
        self.h.anthropic.responder = model
        self.live.run(self._two_waiting_tasks())

    async def mention(self, text: str, user: str, channel: str) -> None:
        await self.h.mention(text, user=user, channel=channel)

    async def _two_waiting_tasks(self) -> None:
        await self.mention("job-1: file a ticket", user="U1", channel="C1")
        await self.mention("job-2: file a ticket", user="U2", channel="C2")

        async def posted() -> bool:
            sql = "SELECT COUNT(*) FROM approvals WHERE message_ts IS NOT NULL"
            return await self._count(sql) == 2

        await until(posted, timeout=20, what="two approval requests")

    async def _count(self, sql: str) -> int:
        return int(await self.h.coworker.db.fetchval(sql))

    def mark(self) -> tuple[int, int]:
        events = self.live.run(self._count("SELECT COALESCE(MAX(id), 0) FROM task_events"))
        return events, len(self.logs.records)

    def check(
        self, mark: tuple[int, int], user: str, team: str, *, errors_ok: bool = False
    ) -> None:
        """Everything decided since `mark` was decided by `user`, who may decide it."""
        self.live.run(settle())
        rows = self.live.run(
            self.h.coworker.db.fetchall(
                "SELECT e.kind, e.actor, t.delegator FROM task_events e JOIN tasks t ON t.id = e.task_id"
                " WHERE e.id > ? AND e.actor IS NOT NULL",
                (mark[0],),
            )
        )
        for kind, actor, delegator in rows:
            if kind in DECISIONS:
                assert actor == user, (kind, actor, user)
                assert actor in (delegator, APPROVER), (kind, actor, delegator)
                assert team == OURS, (kind, team)  # nothing from another workspace acts
        if not errors_ok:
            errors = [r for r in self.logs.records[mark[1] :] if r.levelno >= 40]
            assert errors == [], self.logs.format(errors[0])


@pytest.fixture
def world(tmp_path: Path, app_logs: Captured) -> Iterator[World]:
    harness = Harness(tmp=tmp_path, config=CONFIG, mcp=effects_mcp(tmp_path / "effects.log"))
    with LiveApp(harness) as live:
        w = World(live, app_logs)
        w.setup()
        yield w


# -- strategies --------------------------------------------------------------------------

users = st.sampled_from(["U1", "U2", APPROVER, STRANGER, BOTLIKE, "UBOT", "B0001", "W1"]) | st.text(
    min_size=1, max_size=12
)
teams = st.sampled_from([OURS, OURS, OURS, OTHER])
texts = st.sampled_from(HUGE) | st.text(max_size=300)
ids = st.sampled_from(["1", "2", "3", "0", "-1", "99999999999999999999999", "1.0", " 1", "T-1"]) | (
    st.text(max_size=20)
)
channels = st.sampled_from(["C1", "C2", "D1", "C9"]) | st.text(min_size=1, max_size=10)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Message-like events with hostile values (Slack's shape, anyone's content)."""
    kind = draw(st.sampled_from(["mention", "dm", "reply", "subtype", "other"]))
    user, channel, text = draw(users), draw(channels), draw(texts)
    if kind == "mention":
        return app_mention(text, user=user, channel=channel)
    if kind == "dm":
        return dm_message(text, user=user, channel=channel)
    event = dm_message(text, user=user, channel=channel, thread_ts="1700000000.000100")
    if kind == "reply":
        return {**event, "channel_type": "channel", "channel": draw(st.sampled_from(["C1", "C2"]))}
    if kind == "subtype":
        return {
            **event,
            "subtype": draw(
                st.sampled_from(["bot_message", "message_changed", "file_share", "me_message", "x"])
            ),
        }
    subscribed = ["app_home_opened", "assistant_thread_started", "assistant_thread_context_changed"]
    return {
        "type": draw(st.sampled_from(subscribed)),
        "user": user,
        "channel": channel,
        "tab": draw(st.sampled_from(["home", "messages", "x"])),
        "assistant_thread": draw(
            st.fixed_dictionaries({"channel_id": channels, "thread_ts": ids, "user_id": users})
        ),
    }


@st.composite
def clicks(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A button click or a modal submission: (payload, user, team)."""
    user, team = draw(users), draw(teams)
    if draw(st.booleans()):
        action = draw(st.sampled_from(ACTION_IDS) | st.text(max_size=30))
        payload = block_action(action, draw(ids), user=user, channel=draw(channels), team_id=team)
    else:
        callback = draw(st.sampled_from(["approval_reject", "plan_edit", "fact_edit"]))
        values = {"reason": {"text": draw(texts)}, "plan": {"text": draw(texts)}}
        payload = view_submission(
            callback, values, user=user, private_metadata=draw(ids), team_id=team
        )
    return payload, user, team


commands = (
    st.sampled_from(
        [
            "cancel",
            "resume",
            "status",
            "tasks",
            "help",
            "budget",
            "memory",
            "remember",
            "forget",
            "",
        ]
    ).flatmap(
        lambda name: st.tuples(st.just(name), ids | texts).map(lambda p: f"{p[0]} {p[1]}".strip())
    )
    | texts
)


# -- Socket Mode -----------------------------------------------------------------------


@EXAMPLES
@given(event=events(), team=teams)
def test_any_event_is_acked_and_nothing_unverified_happens(
    world: World, event: dict[str, Any], team: str
) -> None:
    mark = world.mark()
    envelope = world.live.run(world.h.slack.send_event(event, team_id=team))
    world.live.run(world.h.slack.wait_for_ack(envelope))
    world.check(mark, str(event.get("user")), team)
    longest = world.live.run(world.h.coworker.db.fetchval("SELECT MAX(LENGTH(request)) FROM tasks"))
    assert longest <= 40_000


@EXAMPLES
@given(click=clicks())
def test_any_click_or_submission_decides_only_what_its_sender_may(
    world: World, click: tuple[dict[str, Any], str, str]
) -> None:
    payload, user, team = click
    mark = world.mark()
    envelope = world.live.run(world.h.slack.send_interactive(payload))
    world.live.run(world.h.slack.wait_for_ack(envelope))
    world.check(mark, user, team)


@EXAMPLES
@given(text=commands, user=users, team=teams)
def test_any_command_is_answered_and_changes_only_what_its_sender_may(
    world: World, text: str, user: str, team: str
) -> None:
    mark = world.mark()
    before = len(world.h.slack.calls_to("response_url"))
    envelope = world.live.run(
        world.h.slack.send_slash_command(slash_command(text, user=user, team_id=team))
    )
    # answered, however slowly a loaded machine runs it (ack latency is ack_latency.py's)
    world.live.run(world.h.slack.wait_for_ack(envelope, timeout=15))
    world.check(mark, user, team)
    world.live.run(world.h.slack.wait_for("response_url", count=before + 1))


# -- HTTP mode ---------------------------------------------------------------------------


HOOKS = re.compile(rb"https%3A%2F%2Fhooks\.slack\.com(?:%2F[A-Za-z0-9]+)+")


class HttpWorld(World):
    url = ""

    def setup(self) -> None:
        self.url = self.live.run(self._serve())
        super().setup()

    async def mention(self, text: str, user: str, channel: str) -> None:
        event = app_mention(text, user=user, channel=channel)
        self.h.slack.add_event_message(event)
        assert (
            await self.post(json.dumps(event_callback(event)).encode(), "application/json") == 200
        )

    async def _serve(self) -> str:
        self.h.coworker.settings.port = 0
        await self.h.coworker.connect()
        port = self.h.coworker._runner_http.addresses[0][1]
        return f"http://127.0.0.1:{port}/slack/events"

    async def post(
        self, body: bytes, content_type: str, secret: str = SIGNING_SECRET, age: float = 0
    ) -> int:
        local = urllib.parse.quote(f"{self.h.slack.url}/response/hostile", safe="").encode()
        body = HOOKS.sub(local, body)  # answers to a command or click go to the stand-in
        headers = {"Content-Type": content_type, **sign_bytes(body, secret, int(time.time() - age))}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers) as resp,
        ):
            await resp.read()
            return resp.status


def sign_bytes(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """`sign()` for raw bytes (a body that is not UTF-8 text)."""
    import hashlib
    import hmac

    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


@pytest.fixture
def http_world(tmp_path: Path, app_logs: Captured) -> Iterator[HttpWorld]:
    harness = Harness(
        tmp=tmp_path, config=CONFIG, mcp=effects_mcp(tmp_path / "effects.log"), socket_mode=False
    )
    with LiveApp(harness) as live:
        w = HttpWorld(live, app_logs)
        w.setup()
        yield w


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def http_requests(draw: st.DrawFn) -> tuple[bytes, str, str, str]:
    body, content_type, user, team = draw(http_bodies())
    return Blob(body), content_type, user, team


@st.composite
def http_bodies(draw: st.DrawFn) -> tuple[bytes, str, str, str]:
    """(body, content type, user, team): Slack's payloads with hostile values, or garbage
    (then the user is empty: nobody may decide anything)."""
    kind = draw(
        st.sampled_from(["event", "click", "command", "garbage-json", "garbage-form", "bytes"])
    )
    form, js = "application/x-www-form-urlencoded", "application/json"
    if kind == "event":
        team = draw(teams)
        body = json.dumps(event_callback(draw(events()), team_id=team))
        return body.encode(), js, "", team
    if kind == "click":
        payload, user, team = draw(clicks())
        return form_body(payload).encode(), form, user, team
    if kind == "command":
        user, team = draw(users), draw(teams)
        return (
            form_body(slash_command(draw(commands), user=user, team_id=team)).encode(),
            form,
            user,
            team,
        )
    if kind == "garbage-json":
        return json.dumps(draw(json_values)).encode(), js, "", OURS
    if kind == "garbage-form":
        fields = draw(
            st.dictionaries(
                st.sampled_from(["payload", "command", "text", "user_id", "type", "ssl_check"]),
                st.text(max_size=40),
            )
        )
        return urllib.parse.urlencode(fields).encode(), form, "", OURS
    return draw(st.binary(max_size=200)), draw(st.sampled_from([js, form, "text/plain"])), "", OURS


@EXAMPLES
@given(request=http_requests())
def test_http_never_5xx_to_signed_requests_and_401_to_forged_ones(
    http_world: HttpWorld, request: tuple[bytes, str, str, str]
) -> None:
    w = http_world
    body, content_type, user, team = request
    mark = w.mark()
    forged = w.live.run(w.post(body, content_type, secret="not-the-secret"))
    stale = w.live.run(w.post(body, content_type, age=6 * 60))
    assert forged in (400, 401) and stale in (400, 401)
    w.check(mark, user="(nobody)", team=team, errors_ok=True)  # nothing at all was decided
    status = w.live.run(w.post(body, content_type))
    assert status < 500
    w.check(mark, user, team, errors_ok=not user)


# -- named cases -------------------------------------------------------------------------


async def two_waiting_tasks(h: Harness) -> tuple[int, int]:
    """T-1 (U1) and T-2 (U2), each waiting for approval of a block-tier call; their ids."""
    h.slack.add_user(BOTLIKE, "helper", is_bot=True)
    h.anthropic.responder = model
    await h.delegate("job-1: file a ticket", user="U1", channel="C1")
    await h.delegate("job-2: file a ticket", user="U2", channel="C2")
    for task in (1, 2):
        await h.wait_status("waiting_approval", task_id=task, timeout=15)
    rows = await h.coworker.db.fetchall("SELECT id FROM approvals ORDER BY task_id")
    return rows[0]["id"], rows[1]["id"]


async def approval_status(h: Harness, approval: int) -> str:
    return str(
        await h.coworker.db.fetchval("SELECT status FROM approvals WHERE id = ?", (approval,))
    )


async def test_forged_replayed_and_stale_approvals_change_nothing(
    make_harness: Any, tmp_path: Path, app_logs: Captured
) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=CONFIG) as h:
        a1, a2 = await two_waiting_tasks(h)
        refusals = 0
        for approval, user, team in [
            (a2, "U1", OURS),  # another task's approval
            (a1, STRANGER, OURS),  # someone who may not decide
            (a1, BOTLIKE, OURS),  # a bot, even one listed as an approver
            (a1, "UBOT", OURS),  # the coworker itself
        ]:
            await h.click("approval_approve", approval, user=user, team_id=team)
            refusals += 1
            eph = await h.slack.wait_for("chat.postEphemeral", count=refusals)
            assert eph[-1].params["user"] == user and "not yours" in eph[-1].params["text"]
        await h.click("approval_approve", a1, user="U1", team_id=OTHER)  # another workspace
        await until(lambda: "foreign team" in app_logs.text(), what="the foreign click ignored")
        assert (await approval_status(h, a1), await approval_status(h, a2)) == (
            "pending",
            "pending",
        )
        # The delegator's click, delivered twice (a replay), decides once and runs once.
        click = block_action("approval_approve", str(a1), user="U1", channel="C1")
        for _ in range(2):
            await h.slack.wait_for_ack(await h.slack.send_interactive(click))
        await h.wait_status("done", task_id=1, timeout=15)
        assert await approval_status(h, a1) == "used"
        # Stale buttons on the used approval: nothing happens, nothing runs again.
        await h.click("approval_approve", a1, user="U1")
        await h.click("approval_reject", a1, user="U1")
        await h.click("approval_approve", a2, user=APPROVER)  # the approver may decide T-2's
        await h.wait_status("done", task_id=2, timeout=15)
        assert await approval_status(h, a1) == "used"
        assert runs(log, "create_ticket", 1) == runs(log, "create_ticket", 2) == 1
        decided = await h.coworker.db.fetchall(
            "SELECT actor FROM task_events WHERE kind = 'approval_approved' ORDER BY id"
        )
        assert [r["actor"] for r in decided] == ["U1", APPROVER]
        assert not [r for r in app_logs.records if r.levelno >= 40]


async def test_nothing_from_another_workspace_acts_on_any_surface(
    make_harness: Any, tmp_path: Path, app_logs: Captured
) -> None:
    """A modal submission, a slash command and an event from another workspace are
    acknowledged and change nothing, though the person's id matches the delegator's."""
    async with make_harness(mcp=effects_mcp(tmp_path / "effects.log"), config=CONFIG) as h:
        a1, _ = await two_waiting_tasks(h)
        foreign = [
            await h.slack.send_interactive(
                view_submission(
                    "approval_reject",
                    {"reason": {"text": "no"}},
                    user="U1",
                    private_metadata=str(a1),
                    team_id=OTHER,
                )
            ),
            await h.slack.send_slash_command(slash_command("cancel T-1", user="U1", team_id=OTHER)),
            await h.slack.send_event(app_mention("job-3: file a ticket", user="U1"), team_id=OTHER),
        ]
        for envelope in foreign:
            await h.slack.wait_for_ack(envelope)
        await until(
            lambda: app_logs.text().count("foreign team") >= 3, what="three foreign requests"
        )
        assert await approval_status(h, a1) == "pending"
        assert (await h.task(1)).status == "waiting_approval"
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 2
        assert not h.slack.calls_to("chat.postEphemeral")  # not even a refusal to them


async def test_oversized_messages_and_unknown_actions(
    make_harness: Any, app_logs: Captured
) -> None:
    async with make_harness(config=CONFIG) as h:
        h.anthropic.responder = model
        event = app_mention("summarize " + "word " * 20_000, user="U1")
        assert len(event["text"]) > 100_000
        await h.slack.wait_for_ack(await h.slack.send_event(event))
        task = await h.wait_status("done", timeout=15)
        assert 39_000 < len(task.request) <= 40_000  # cut at the handler's limit
        await h.slack.wait_for("chat.postMessage", lambda c: "Done: T-1" in str(c.params))
        reply = dm_message("x" * 50_000, user="U1", channel="C1", thread_ts=event["ts"])
        await h.slack.wait_for_ack(await h.slack.send_event({**reply, "channel_type": "channel"}))
        for action in ("no_such_action", "", "approval_approve_v0", "💥" * 100):
            envelope = await h.slack.send_interactive(block_action(action, "1", user="U1"))
            await h.slack.wait_for_ack(envelope)
        await until(lambda: app_logs.text().count("ignored unknown action") == 4, what="4 ignored")
        assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 1
        assert not [r for r in app_logs.records if r.levelno >= 40]


async def test_task_numbers_too_large_get_a_plain_answer(make_harness: Any) -> None:
    async with make_harness(config=CONFIG) as h:
        huge = "T-" + "9" * 30
        for text in (f"status {huge}", f"cancel {huge}", f"resume {huge}", "forget " + "9" * 30):
            await h.slack.send_slash_command(slash_command(text, user="U1"))
        replies = await h.slack.wait_for("response_url", count=4)
        texts = [str(r.params.get("text")) for r in replies]
        assert sum("Which task?" in t for t in texts) == 3, texts


async def test_remember_with_nothing_visible_is_refused_politely(make_harness: Any) -> None:
    async with make_harness(config=CONFIG) as h:
        envelope = await h.slack.send_slash_command(slash_command("remember \x00\u202e", user="U1"))
        await h.slack.wait_for_ack(envelope)
        [reply] = await h.slack.wait_for("response_url")
        assert "What should I remember?" in str(reply.params.get("text"))


async def test_forged_stale_and_replayed_http_requests(make_harness: Any, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    async with make_harness(mcp=effects_mcp(log), config=CONFIG, socket_mode=False) as h:
        h.coworker.settings.port = 0
        await h.coworker.connect()
        url = f"http://127.0.0.1:{h.coworker._runner_http.addresses[0][1]}/slack/events"
        h.anthropic.responder = model
        event = app_mention("job-1: file a ticket", user="U1", channel="C1")
        h.slack.add_event_message(event)
        assert (await post_signed(url, json.dumps(event_callback(event)), SIGNING_SECRET))[0] == 200
        await h.wait_status("waiting_approval", timeout=15)
        approval = await h.coworker.db.fetchval("SELECT id FROM approvals")
        click = block_action("approval_approve", str(approval), user="U1", channel="C1")
        click["response_url"] = f"{h.slack.url}/response/http"
        body, form = form_body(click), "application/x-www-form-urlencoded"
        for secret, age in (("wrong-secret", 0), (SIGNING_SECRET, 6 * 60), ("", 0)):
            status, _ = await post_signed(url, body, secret, form, int(time.time() - age))
            assert status == 401
        assert await approval_status(h, approval) == "pending"
        h.anthropic.responder = model
        sent_at = int(time.time())
        for _ in range(2):  # Slack's request, then the same bytes replayed within 5 minutes
            assert (await post_signed(url, body, SIGNING_SECRET, form, sent_at))[0] == 200
        await h.wait_status("done", timeout=15)
        assert runs(log, "create_ticket", 1) == 1
        assert (
            await h.coworker.db.fetchval(
                "SELECT COUNT(*) FROM task_events WHERE kind = 'approval_approved'"
            )
            == 1
        )
