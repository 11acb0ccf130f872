"""Modals: editing a plan, giving a reason for a rejection."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.base.errors import CoworkerError
from bot.plans import Plan, render_plan
from bot.tasks import Task, parse_id
from handlers.services import services

log = logging.getLogger(__name__)


def text_modal(
    callback_id: str,
    target: int,
    *,
    title: str,
    submit: str,
    block_id: str,
    label: str,
    initial: str | None = None,
    optional: bool = False,
    max_length: int = 3000,
) -> dict[str, Any]:
    """A modal with one multiline text input; `private_metadata` carries the target id."""
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "text",
        "multiline": True,
        "max_length": max_length,
    }
    if initial:
        element["initial_value"] = initial[:max_length]
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": str(target),
        "title": {"type": "plain_text", "text": title[:24]},
        "submit": {"type": "plain_text", "text": submit},
        "blocks": [
            {
                "type": "input",
                "block_id": block_id,
                "optional": optional,
                "label": {"type": "plain_text", "text": label},
                "element": element,
            }
        ],
    }


def plan_edit_modal(task: Task) -> dict[str, Any]:
    text = render_plan(Plan.model_validate(task.plan)) if task.plan else task.request
    return text_modal(
        "plan_edit",
        task.id,
        title=f"Edit plan {task.ref}",
        submit="Revise plan",
        block_id="plan",
        label="Plan",
        initial=text,
    )


def reason_modal(approval_id: int) -> dict[str, Any]:
    """Why a call was rejected, after the one-click Reject."""
    return text_modal(
        "approval_reason",
        approval_id,
        title="Reason for rejecting",
        submit="Tell the coworker",
        block_id="reason",
        label="Why (the coworker sees it if the task is still going)",
        max_length=1000,
    )


def fact_edit_modal(fact_id: int, text: str) -> dict[str, Any]:
    return text_modal(
        "fact_edit",
        fact_id,
        title="Edit fact",
        submit="Approve",
        block_id="fact",
        label="Fact",
        initial=text,
    )


def field(view: dict[str, Any], block: str) -> str:
    value = (((view.get("state") or {}).get("values") or {}).get(block) or {}).get("text") or {}
    return str(value.get("value") or "")


def meta_id(view: dict[str, Any]) -> int | None:
    raw = str(view.get("private_metadata") or "")
    return parse_id(raw)


async def submit_plan_edit(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    task_id, text = meta_id(view), field(view, "plan").strip()
    if task_id is None or not text:
        await ack(response_action="errors", errors={"plan": "Write the plan you want."})
        return
    await ack()
    try:
        await services(context).delegation.edit_plan(task_id, body["user"]["id"], text)
    except CoworkerError:  # not theirs to decide, or no such task or fact
        log.info("plan edit refused for %s", body["user"]["id"])


async def submit_reason(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    approval_id, text = meta_id(view), field(view, "reason").strip()
    if approval_id is None or not text:
        await ack(response_action="errors", errors={"reason": "Write the reason."})
        return
    await ack()
    try:
        await services(context).delegation.give_reason(approval_id, body["user"]["id"], text)
    except CoworkerError:  # not the person who rejected it, or no such approval
        log.info("reason refused for %s", body["user"]["id"])


async def submit_reject(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    """A Reject modal opened before Reject took one click (kept so it still works)."""
    await ack()
    approval_id = meta_id(view)
    if approval_id is None:
        return
    note = field(view, "reason").strip() or None
    try:
        await services(context).delegation.decide(
            approval_id, body["user"]["id"], approve=False, note=note
        )
    except CoworkerError:  # not theirs to decide, or no such task or fact
        log.info("rejection refused for %s", body["user"]["id"])


async def submit_fact_edit(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: dict[str, Any]
) -> None:
    fact_id, text = meta_id(view), field(view, "fact").strip()
    if fact_id is None or not text:
        await ack(response_action="errors", errors={"fact": "Write the fact."})
        return
    await ack()
    try:
        await services(context).memory.decide_fact(
            fact_id, body["user"]["id"], approve=True, edited=text
        )
    except CoworkerError:  # not theirs to decide, or no such task or fact
        log.info("fact edit refused for %s", body["user"]["id"])


def register(app: AsyncApp) -> None:
    app.view("fact_edit")(submit_fact_edit)
    app.view("plan_edit")(submit_plan_edit)
    app.view("approval_reject")(submit_reject)
    app.view("approval_reason")(submit_reason)
