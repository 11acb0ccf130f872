"""The App Home tab: my tasks, approvals waiting for me, and (with memory) facts to review."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers import blocks as bk
from handlers.commands import task_line

log = logging.getLogger(__name__)


async def home_view(svc: Any, user: str) -> dict[str, Any]:
    mine, _ = await svc.delegation.tasks_for(user)
    open_mine = [t for t in mine if not t.finished]
    pending = await svc.approvals.pending_for(user)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Your tasks"}},
        bk.section("\n".join(task_line(t) for t in open_mine[:15]) or "No open tasks."),
        {"type": "header", "text": {"type": "plain_text", "text": "Approvals waiting for you"}},
    ]
    if not pending:
        blocks.append(bk.section("Nothing to approve."))
    for row in pending[:10]:
        blocks.append(
            bk.section(
                f"T-{row['task_id']}: `{row['tool'] or row['kind']}` — {bk.escape(row['reason'] or '')}"
            )
        )
        blocks.append(bk.actions(
            f"home-approval:{row['id']}",
            bk.button("Approve", "approval_approve", str(row["id"]), "primary"),
            bk.button("Reject", "approval_reject", str(row["id"]), "danger"),
        ))  # fmt: skip
    for extra in getattr(svc, "home_sections", []):
        blocks.extend(await extra(user))
    return {"type": "home", "blocks": blocks[:100]}


async def publish_home(client: AsyncWebClient, svc: Any, user: str) -> None:
    try:
        await client.views_publish(user_id=user, view=await home_view(svc, user))
    except SlackApiError as exc:
        log.warning("views.publish failed: %s", exc.response.get("error"))


async def handle_home_opened(
    event: dict[str, Any], client: AsyncWebClient, context: dict[str, Any]
) -> None:
    if event.get("tab", "home") == "home" and event.get("user"):
        await publish_home(client, context["coworker"], event["user"])


def register(app: AsyncApp) -> None:
    app.event("app_home_opened")(handle_home_opened)
