"""Buttons: plan decisions, approvals, cancel, resume, feedback, fact review, and
connecting or disconnecting per-user servers.

Every handler acks at once, parses the button's value (an id), and calls a service. A
person who may not decide gets an ephemeral refusal; stale or repeated clicks change
nothing because the services use conditional updates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.base.errors import ConnectFailed, CoworkerError, NotAllowed
from bot.tasks import parse_id
from handlers import views
from handlers.responses import NOT_YOURS, ephemeral
from handlers.services import Services, services
from handlers.slack_app import outgoing

log = logging.getLogger(__name__)


def action_value(body: dict[str, Any]) -> int | None:
    """The id carried in the clicked button's value, or None if it is not one."""
    try:
        value = body["actions"][0]["value"]
        return parse_id(str(value))
    except (KeyError, IndexError, TypeError):
        return None


def actor(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def same_team(body: dict[str, Any], context: dict[str, Any]) -> bool:
    ours = services(context).team_id
    theirs = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    return ours is None or theirs == ours


#: What a click does: the services, the id the button carries, and who clicked.
ClickCall = Callable[[Services, int, str], Awaitable[None]]
Listener = Callable[..., Awaitable[None]]


async def _run(
    body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient, call: ClickCall
) -> None:
    """Call a service for a click; answer refusals and errors only to the clicker."""
    target = action_value(body)
    if target is None or not same_team(body, context):
        log.info("ignored action with bad value or foreign team")
        return
    try:
        await call(services(context), target, actor(body))
    except NotAllowed:
        await ephemeral(client, body, NOT_YOURS)
    except CoworkerError as exc:
        await ephemeral(client, body, exc.user_message)


def simple(call: ClickCall) -> Listener:
    async def listener(
        ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        await _run(body, context, client, call)

    return listener


async def approve_plan(
    ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
) -> None:
    await ack()
    clicked = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get(
        "ts"
    )

    async def call(svc: Services, task_id: int, user: str) -> None:
        await svc.delegation.approve_plan(task_id, user, str(clicked) if clicked else None)

    await _run(body, context, client, call)


async def _cancel(svc: Services, task_id: int, user: str) -> None:
    await svc.delegation.cancel(task_id, user)


async def _resume(svc: Services, task_id: int, user: str) -> None:
    await svc.delegation.resume(task_id, user)


async def _approve(svc: Services, approval_id: int, user: str) -> None:
    await svc.delegation.decide(approval_id, user, approve=True)


async def _feedback_up(svc: Services, task_id: int, user: str) -> None:
    await svc.delegation.feedback(task_id, user, 1)


async def _feedback_down(svc: Services, task_id: int, user: str) -> None:
    await svc.delegation.feedback(task_id, user, -1)


async def open_plan_edit(
    ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
) -> None:
    await ack()

    async def call(svc: Services, task_id: int, user: str) -> None:
        task = await svc.delegation.plan_to_edit(task_id, user)
        await client.views_open(trigger_id=body["trigger_id"], view=views.plan_edit_modal(task))

    await _run(body, context, client, call)


async def _reject(svc: Services, approval_id: int, user: str) -> None:
    await svc.delegation.decide(approval_id, user, approve=False)


async def open_reason(
    ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
) -> None:
    """ "Add a reason" on a rejected request: the modal, for the person who rejected it."""
    await ack()

    async def call(svc: Services, approval_id: int, user: str) -> None:
        if not await svc.delegation.may_give_reason(approval_id, user):
            return
        try:
            await client.views_open(
                trigger_id=body["trigger_id"], view=views.reason_modal(approval_id)
            )
        except (SlackApiError, KeyError):
            log.info("the reason modal could not open for approval %s", approval_id)

    await _run(body, context, client, call)


def fact_action(approve: bool) -> Listener:
    async def listener(
        ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()

        async def call(svc: Services, fact_id: int, user: str) -> None:
            fact = await svc.memory.decide_fact(fact_id, user, approve=approve)
            line = f"{'✅ Approved' if fact else '❌ Rejected'} by <@{user}>"
            message = body.get("message") or {}
            channel = (body.get("channel") or {}).get("id")
            if channel and message.get("ts"):
                await svc.notifier.fact_decided(
                    channel, message["ts"], fact.content if fact else "", line
                )

        await _run(body, context, client, call)

    return listener


async def open_fact_edit(
    ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
) -> None:
    await ack()

    async def call(svc: Services, fact_id: int, user: str) -> None:
        if not svc.memory.may_review(user):
            raise NotAllowed(user=user, action="review facts")
        fact = await svc.memory.fact(fact_id)
        if fact is not None:
            await client.views_open(
                trigger_id=body["trigger_id"], view=views.fact_edit_modal(fact.id, fact.content)
            )

    await _run(body, context, client, call)


async def _forget(svc: Services, fact_id: int, user: str) -> None:
    if await svc.memory.forget_from_home(fact_id, user, svc.directory):
        from handlers.home import publish_home

        await publish_home(svc.slack, svc, user)


def server_target(body: dict[str, Any]) -> tuple[str, str] | None:
    """(where the button is: command | home, the server) from a connections button."""
    try:
        value = str(body["actions"][0]["value"])
    except (KeyError, IndexError, TypeError):
        return None
    where, _, server = value.partition(":")
    return (where, server) if where in ("command", "home") and server else None


async def disconnect(
    ack: AsyncAck,
    body: dict[str, Any],
    context: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
) -> None:
    """Disconnect the clicker (only ever their own connection) and show the list again."""
    await ack()
    target = server_target(body)
    if target is None or not same_team(body, context):
        return
    where, server = target
    svc, user = services(context), actor(body)
    await svc.connections.disconnect(user, server)
    if where == "home":
        from handlers.home import publish_home

        await publish_home(client, svc, user)
        return
    from handlers.commands import connections_listing

    blocks = await connections_listing(svc, user, links=True)
    await respond(
        text=outgoing(f"Disconnected from {server}"),
        blocks=outgoing(blocks),
        replace_original=True,
    )


async def connect(
    ack: AsyncAck, body: dict[str, Any], context: dict[str, Any], client: AsyncWebClient
) -> None:
    """A Connect button without a link (the App Home): the link comes in a DM."""
    await ack()
    target = server_target(body)
    if target is None or not same_team(body, context):
        return
    svc, user = services(context), actor(body)
    try:
        url = await svc.connections.link(user, target[1])
    except ConnectFailed as exc:
        await svc.notifier.connect_failed(user, target[1], exc.reason)
        return
    await svc.notifier.connect_requested(None, user, target[1], url)


async def link_clicked(ack: AsyncAck) -> None:
    """A Connect link button: the browser does the work; Slack only wants an ack."""
    await ack()


async def unknown_action(ack: AsyncAck, body: dict[str, Any]) -> None:
    """A button this version does not know (an old message's): ack it, do nothing."""
    await ack()
    action = ((body.get("actions") or [{}])[0] or {}).get("action_id")
    log.info("ignored unknown action %r", str(action)[:60])


def register(app: AsyncApp) -> None:
    app.action("fact_approve")(fact_action(True))
    app.action("fact_reject")(fact_action(False))
    app.action("fact_edit")(open_fact_edit)
    app.action("fact_forget")(simple(_forget))
    app.action("plan_approve")(approve_plan)
    app.action("plan_edit")(open_plan_edit)
    app.action("task_cancel")(simple(_cancel))
    app.action("task_resume")(simple(_resume))
    app.action("approval_approve")(simple(_approve))
    app.action("approval_reject")(simple(_reject))
    app.action("approval_reason")(open_reason)
    app.action("feedback_up")(simple(_feedback_up))
    app.action("feedback_down")(simple(_feedback_down))
    app.action("oauth_disconnect")(disconnect)
    app.action("oauth_connect")(connect)
    app.action("oauth_connect_link")(link_clicked)


def register_fallback(app: AsyncApp) -> None:
    """Ack buttons no surface handles; registered after every surface (first match wins)."""
    app.action(re.compile(".*"))(unknown_action)
