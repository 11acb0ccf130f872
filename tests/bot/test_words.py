"""bot/words.py: states, events and stop reasons in words."""

from __future__ import annotations

import json

from bot.tasks import TaskStatus
from bot.words import event_words, state_words, stop_words


def test_every_state_has_words_without_underscores() -> None:
    for status in TaskStatus:
        assert "_" not in state_words(status)
    assert state_words("awaiting_plan_approval") == "waiting for plan approval"


def test_events_read_as_words() -> None:
    assert event_words("status:queued") == "now queued"
    assert event_words("plan_approved") == "plan approved"
    detail = json.dumps({"id": 3, "tool": "tickets__create_ticket"})
    assert (
        event_words("approval_requested", detail) == "approval asked for: `tickets__create_ticket`"
    )
    assert event_words("some_new_event") == "some new event"


def test_stop_reasons_read_as_words() -> None:
    assert stop_words("model_not_found") == "the configured model does not exist"
    assert stop_words("odd_code") == "odd code"
