"""How task states, events and stop reasons read to people.

The database and the logs keep the short names (`awaiting_plan_approval`, `status:queued`,
`plan_approved`, `model_unavailable`); everything people read in Slack says them in words
through these functions. A name without words here (a new event) is shown with its
underscores as spaces rather than not at all.
"""

from __future__ import annotations

import json
from typing import Any

from bot.tasks import TaskStatus as S

STATES = {
    S.RECEIVED: "received",
    S.PLANNING: "planning",
    S.AWAITING_PLAN_APPROVAL: "waiting for plan approval",
    S.QUEUED: "queued",
    S.RUNNING: "working",
    S.WAITING_APPROVAL: "waiting for an approval",
    S.WAITING_INPUT: "waiting for answers or subtasks",
    S.PAUSED: "paused",
    S.DONE: "done",
    S.FAILED: "failed",
    S.CANCELLED: "cancelled",
}

EVENTS = {
    "created": "request received",
    "reply": "reply in the thread",
    "questions": "asked clarifying questions",
    "questions_posted": "questions posted",
    "plan_approved": "plan approved",
    "plan_edited": "plan edited",
    "approval_requested": "approval asked for",
    "approval_approved": "approved",
    "approval_rejected": "rejected",
    "approval_escalated": "approval overdue, escalated",
    "approval_reason": "reason given for a rejection",
    "resumed": "resumed",
    "cancelled": "cancelled",
    "closed_said": "told the thread it stays cancelled",
    "feedback": "feedback given",
    "spawned": "handed work to subtasks",
    "child_escalated": "a subtask kept failing, escalated",
    "delegation_refused": "a hand-off was refused",
    "data_check": "query result checked",
    "check": "deliverable checked",
    "budget_capped": "requested budget capped",
}

STOP_REASONS = {
    "model_unavailable": "the model API could not be reached",
    "model_refused": "the model API refused the request",
    "model_not_found": "the configured model does not exist",
    "model_key_rejected": "the model API did not accept the key",
    "internal_error": "an error on my side",
    "plan_invalid": "no valid plan came back",
    "budget_declined": "its top-up was declined",
}


def _spaced(name: str) -> str:
    return name.replace("_", " ")


def state_words(status: str) -> str:
    """A task state as people read it ("waiting for plan approval")."""
    try:
        return STATES[S(status)]
    except ValueError:
        return _spaced(status)


def event_words(kind: str, detail: Any = None) -> str:
    """A task event as people read it ("now queued", "approval asked for: `x__y`")."""
    if kind.startswith("status:"):
        return f"now {state_words(kind.removeprefix('status:'))}"
    words = EVENTS.get(kind, _spaced(kind))
    tool = _detail(detail).get("tool")
    return f"{words}: `{tool}`" if kind == "approval_requested" and tool else words


def stop_words(code: str) -> str:
    """Why a task stopped, from the error code kept on it."""
    return STOP_REASONS.get(code, _spaced(code))


def _detail(detail: Any) -> dict[str, Any]:
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            return {}
    return detail if isinstance(detail, dict) else {}
