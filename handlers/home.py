"""The App Home tab: my tasks, approvals waiting for me, spend and outcomes, and (with
memory) facts to review. The spend section is `bot.reports`' summary of the viewer's own
tasks, plus the team's for admins (a `[roles.*]` with `admin = true`)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.report_text import money, summary_rows
from bot.reports import Summary
from bot.team_memory import describe
from handlers import blocks as bk
from handlers.commands import task_line
from handlers.services import Services, services

log = logging.getLogger(__name__)


async def home_view(svc: Services, user: str) -> dict[str, Any]:
    mine = await svc.delegation.my_tasks(user)
    open_mine = [t for t in mine if not t.finished]
    pending = await svc.delegation.approvals_for(user)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Your tasks"}},
        bk.section("\n".join(task_line(t) for t in open_mine[:15]) or "No open tasks."),
        {"type": "header", "text": {"type": "plain_text", "text": "Approvals waiting for you"}},
    ]
    if not pending:
        blocks.append(bk.section("Nothing to approve."))
    for approval in pending[:10]:
        what = approval.tool or approval.kind
        blocks.append(
            bk.section(f"T-{approval.task_id}: `{what}` — {bk.escape(approval.reason or '')}")
        )
        blocks.append(
            bk.actions(
                f"home-approval:{approval.id}",
                bk.button("Approve", "approval_approve", str(approval.id), "primary"),
                bk.button("Reject", "approval_reject", str(approval.id), "danger"),
            )
        )
    blocks.extend(await spend_blocks(svc, user))
    if svc.connections.personal():
        blocks.extend(await connection_blocks(svc, user))
    blocks.extend(await memory_blocks(svc, user))
    for extra in svc.home_sections:
        blocks.extend(await extra(user))
    return {"type": "home", "blocks": blocks[:100]}


async def connection_blocks(svc: Services, user: str) -> list[dict[str, Any]]:
    """The viewer's per-user servers: Disconnect, or Connect (the link comes in a DM)."""
    views = await svc.connections.listing(user)
    header = {"type": "header", "text": {"type": "plain_text", "text": "Your connections"}}
    return [header, *bk.connections_blocks(views, {}, where="home")]


async def memory_blocks(svc: Services, user: str) -> list[dict[str, Any]]:
    """Facts this person can see, by scope, with Forget buttons; and the review queue."""
    facts, proposed = await svc.memory.home_facts(user, svc.directory)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "What I know"}}
    ]
    if not facts:
        blocks.append(bk.section("No facts yet. Teach me with `/coworker remember …`."))
    for fact in facts[:10]:
        blocks.append(
            {
                **bk.section(bk.escape(describe(fact))),
                "accessory": bk.button("Forget", "fact_forget", str(fact.id), "danger"),
            }
        )
    if proposed:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Facts to review"}})
    for fact in proposed[:5]:
        blocks.extend(bk.fact_blocks(fact.id, fact.content))
    return blocks


async def spend_blocks(svc: Services, user: str) -> list[dict[str, Any]]:
    """Spend and outcomes of the viewer's tasks (and the team's, for admins)."""
    blocks: list[dict[str, Any]] = []
    for title, summary in await svc.delegation.spend_for(user):
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": title}})
        blocks.append(summary_block(summary))
    return blocks


def summary_block(summary: Summary) -> dict[str, Any]:
    lines = [f"*{metric.capitalize()}:* {value}" for metric, value in summary_rows(summary)]
    if summary.by_model:
        lines.append(
            "*By model:* " + ", ".join(f"`{c.name}` {money(c.cost_usd)}" for c in summary.by_model)
        )
    if summary.user is None and summary.by_coworker:
        lines.append(
            "*By coworker:* "
            + ", ".join(f"{bk.escape(c.name)} {money(c.cost_usd)}" for c in summary.by_coworker)
        )
    return bk.section("\n".join(lines))


async def publish_home(client: AsyncWebClient, svc: Services, user: str) -> None:
    try:
        await client.views_publish(user_id=user, view=await home_view(svc, user))
    except SlackApiError as exc:
        log.warning("views.publish failed: %s", exc.response.get("error"))


async def handle_home_opened(
    event: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]
) -> None:
    if event.get("tab", "home") == "home" and event.get("user"):
        await publish_home(client, services(context), event["user"])


def register(app: AsyncApp) -> None:
    app.event("app_home_opened")(handle_home_opened)
