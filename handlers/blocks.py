"""Block Kit: the building blocks, and what each message of a task shows.

Model output is standard Markdown, shown with Block Kit's `markdown` block (which renders
it; 12,000 characters per message) instead of being hand-converted to mrkdwn; long text is
cut into parts by `handlers.splitting`. Arguments shown in Slack are redacted of secrets.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.base.clock import now
from bot.base.redact import redact
from bot.notifier import ApprovalView, StatusSnapshot
from bot.tasks import Task
from handlers.splitting import split_markdown

SECTION_LIMIT = 3000
MARKDOWN_LIMIT = 12_000
MESSAGE_BLOCKS = 50
FILE_THRESHOLD = 12_000
#: What a deliverable's last message carries besides its text: the checks (a context block,
#: cut at SECTION_LIMIT) and the feedback buttons, as JSON.
TAIL_ROOM = SECTION_LIMIT + 500


def markdown(text: str) -> dict[str, Any]:
    return {"type": "markdown", "text": text}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style:
        b["style"] = style
    return b


def actions(block_id: str, *buttons: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "block_id": block_id, "elements": list(buttons)}


def code(obj: Any, limit: int = 2500) -> str:
    """Arguments as a fenced JSON block, cut to fit a section."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + "\n… (cut)"
    return f"```\n{text}\n```"


def escape(text: str) -> str:
    """Escape Slack's control characters in user-provided text shown as mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plan_blocks(
    ref: str, plan: dict[str, Any], budget_usd: float, needs_approval: bool, task_id: int
) -> list[dict[str, Any]]:
    lines = [f"*Plan for {ref}*: {escape(plan.get('summary', ''))}", ""]
    for i, step in enumerate(plan.get("steps", []), 1):
        tools = f" — `{'`, `'.join(step['tools'])}`" if step.get("tools") else ""
        stop = "  ⏸ _stops for approval_" if step.get("approval") else ""
        lines.append(f"{i}. {escape(step['what'])}{tools}{stop}")
    lines.append("")
    note = f" ({escape(plan['budget_note'])})" if plan.get("budget_note") else ""
    lines.append(
        f"Estimate ~{plan.get('estimate_minutes', '?')} min · budget ${budget_usd:.2f}{note}"
    )
    blocks = [section(part) for part in split_markdown("\n".join(lines), SECTION_LIMIT)]
    if needs_approval:
        v = str(task_id)
        blocks.append(
            actions(
                f"plan:{task_id}",
                button("Approve", "plan_approve", v, "primary"),
                button("Edit", "plan_edit", v),
                button("Cancel", "task_cancel", v, "danger"),
            )
        )
    return blocks[:MESSAGE_BLOCKS]


def ack_text(task: Task) -> str:
    """The "Got it" reply to a new request (shown again once routing or planning ended)."""
    who = f"`{task.coworker}`" if task.coworker else ("none" if task.finished else "routing…")
    if task.estimate_min:
        est = f", est. ~{task.estimate_min} min"
    else:
        est = "" if task.finished else ", estimate after planning"
    return f"Got it: task {task.ref}, priority {task.priority_name}, assignee {who}{est}."


def local_time(at: float, tz: str | None) -> str:
    """`at` in a person's time zone, labelled with it: "14:03:12 CET" today there, else
    "Dec 5, 14:03 CET"; UTC (labelled so) when the zone is unknown."""
    try:
        zone: Any = ZoneInfo(tz) if tz else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    when = datetime.fromtimestamp(at, zone)
    label = when.tzname() or "UTC"
    if when.date() == datetime.fromtimestamp(now(), zone).date():
        return f"{when:%H:%M:%S} {label}"
    return f"{when:%b} {when.day}, {when:%H:%M} {label}"


_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_LINE_START = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d+[.)][ \t]+)", re.M)
#: A horizontal rule, a code fence, or a table's header rule (`|---|:--|`).
_MD_RULE_OR_FENCE = re.compile(
    r"^(?:[ \t]*(?:(?:[-*_][ \t]*){3,}|`{3,}.*|~{3,}.*)|(?=.*\|)(?=.*-)[ \t|:-]+)$", re.M
)
_MD_MARKS = re.compile(
    r"\*\*|__|~~|`+|(?<![\w*])\*(?=\S)|(?<=\S)\*(?![\w*])|(?<!\w)_(?=\S)|(?<=\S)_(?!\w)"
)


#: A table's cell bar, not one inside Slack markup (`<url|label>`, `<!here|here>`).
_TABLE_BAR = re.compile(r"\|(?![^<>]*>)")


def notification_text(markdown_text: str, limit: int = 200) -> str:
    """Markdown as the plain text of a notification (Slack shows a message's `text` as
    is there): no heading marks, emphasis, code fences, list bullets or link targets."""
    text = _MD_LINK.sub(r"\1", markdown_text)
    text = _MD_RULE_OR_FENCE.sub("", text)
    text = _MD_LINE_START.sub("", text)
    text = _TABLE_BAR.sub(" ", _MD_MARKS.sub("", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def status_text(task: Task, s: StatusSnapshot) -> str:
    """The one status line of a task."""
    steps = f"step {s.step}/{s.total_steps}" if s.total_steps else f"step {s.step}"
    tools = f" · tools: {', '.join(f'`{t}`' for t in s.tools_used)}" if s.tools_used else ""
    note = f" · {s.note}" if s.note else ""
    return (
        f"{task.ref} · {s.state} · {steps}{tools} · ${s.spent_usd:.2f} of ${s.budget_usd:.2f}{note}"
    )


def decision_line(view: ApprovalView) -> str:
    icon = {
        "approved": "✅ Approved",
        "rejected": "❌ Rejected",
        "used": "✅ Approved",
        "expired": "⌛ Expired",
    }.get(view.status, view.status)
    who = f" by <@{view.decided_by}>" if view.decided_by else ""
    when = (
        f" at <!date^{int(view.decided_at)}^{{time}}|{time.ctime(view.decided_at)}>"
        if view.decided_at
        else ""
    )
    note = f"\n> {escape(view.note)}" if view.note else ""
    return f"{icon}{who}{when}{note}"


def approval_blocks(task: Task, view: ApprovalView, *, buttons: bool) -> list[dict[str, Any]]:
    """An approval request: with Approve / Reject, or (decided) with the decision line."""
    if view.kind == "budget":
        head = f"*Budget reached* for {task.ref}. {escape(view.reason)}"
        blocks = [section(head)]
        approve = "Approve top-up"
    else:
        head = f"*Approval needed* for {task.ref}: `{view.tool}` (tier: {view.tier})"
        why = f"*Why:* {escape(view.reason)}" if view.reason else ""
        if view.plan_step:
            why += f"\n*Plan step:* {escape(view.plan_step)}"
        blocks = [section(head)]
        if why:
            blocks.append(section(why))
        blocks.append(section(f"*Arguments:*\n{code(redact(view.arguments))}"))
        if view.preview:
            blocks.append(section(f"*Dry-run preview:*\n{code(view.preview)}"))
        approve = "Approve"
    if buttons:
        v = str(view.approval_id)
        blocks.append(
            actions(
                f"approval:{view.approval_id}",
                button(approve, "approval_approve", v, "primary"),
                button("Reject", "approval_reject", v, "danger"),
            )
        )
    else:
        blocks.append(context(decision_line(view)))
        if view.kind == "tool" and view.status == "rejected" and not view.note:
            v = str(view.approval_id)
            blocks.append(
                actions(f"approval-reason:{v}", button("Add a reason", "approval_reason", v))
            )
    return blocks


def paused_blocks(task: Task, text: str) -> list[dict[str, Any]]:
    return [
        section(text),
        actions(f"resume:{task.id}", button("Resume", "task_resume", str(task.id))),
    ]


def deliverable_tail(task: Task, checks: list[str] | None) -> list[dict[str, Any]]:
    """What follows a deliverable's last part: its checks, and the feedback buttons."""
    feedback = actions(
        f"feedback:{task.id}",
        button("👍", "feedback_up", str(task.id)),
        button("👎", "feedback_down", str(task.id)),
    )
    return [*([context("\n".join(checks))] if checks else []), feedback]


def fact_blocks(fact_id: int, text: str) -> list[dict[str, Any]]:
    """A proposed fact with Approve / Edit / Reject."""
    v = str(fact_id)
    return [
        section(f"*Proposed fact* (from what I learned):\n>{escape(text)}"),
        actions(
            f"fact:{fact_id}",
            button("Approve", "fact_approve", v, "primary"),
            button("Edit", "fact_edit", v),
            button("Reject", "fact_reject", v, "danger"),
        ),
    ]


def link_button(text: str, url: str, action_id: str, style: str | None = None) -> dict[str, Any]:
    """A button that opens `url` in the browser (Slack still sends its click: acked, ignored)."""
    b: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text[:75]},
        "url": url,
        "action_id": action_id,
    }
    if style:
        b["style"] = style
    return b


def connect_blocks(
    server: str, url: str, task: Task | None, *, reconnect: bool, minutes: int = 10
) -> list[dict[str, Any]]:
    """A person's Connect link to a per-user server: theirs alone, for `minutes`."""
    why = f" so {task.ref} can use it" if task is not None else ""
    again = "reconnect" if reconnect else "connect"
    head = (
        f"*{escape(server)}* works with your own account: {again} it{why}. "
        f"The link is yours alone and works once, for {minutes} minutes."
    )
    if reconnect:
        head = f"Your connection to *{escape(server)}* stopped working. " + head
    return [
        section(head),
        actions(
            f"connect:{server}",
            link_button(f"Connect {server}", url, "oauth_connect_link", "primary"),
        ),
    ]


def connections_blocks(
    views: list[Any], links: dict[str, str], *, where: str
) -> list[dict[str, Any]]:
    """A person's per-user servers: Disconnect for the connected ones, Connect for the rest.

    `links` holds Connect URLs made for this listing (server → URL); a server without one
    gets a button that asks for a link in a DM. `where` tells the buttons where they are
    (`command` or `home`), so a click can refresh the right view.
    """
    if not views:
        return [section("No MCP server here works with people's own accounts.")]
    blocks: list[dict[str, Any]] = []
    for view in views:
        if view.connected:
            since = (
                f"<!date^{int(view.connected_at)}^{{date_short}}|{time.ctime(view.connected_at)}>"
            )
            text = f"*{escape(view.server)}*: connected since {since}"
            button_ = button("Disconnect", "oauth_disconnect", f"{where}:{view.server}", "danger")
        elif view.server in links:
            text = f"*{escape(view.server)}*: not connected"
            button_ = link_button("Connect", links[view.server], "oauth_connect_link", "primary")
        else:
            text = f"*{escape(view.server)}*: not connected"
            button_ = button("Connect", "oauth_connect", f"{where}:{view.server}", "primary")
        blocks.append({**section(text), "accessory": button_})
    return blocks
