"""Issue 15, messages people read: what a failure says, answers to empty, long or misnamed
requests, words instead of internal names, and rejecting in one click."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.conftest import plan
from tests.scenarios.harness import Harness

NO_PLAN_APPROVAL = 'plan_approval = "never"\n'


@pytest.mark.parametrize(
    ("status", "kind", "code", "said"),
    [
        (
            400,
            "invalid_request_error",
            "model_refused",
            "refused an invalid request (400), so I stopped here. It was sent once, not "
            "retried: the same request would be refused again, so resuming is unlikely to help",
        ),
        (
            404,
            "not_found_error",
            "model_not_found",
            "has no model `claude-sonnet-5-5` (404), so I stopped here. An admin needs to name "
            "a model this API key can use in `coworker.toml`",
        ),
        (
            401,
            "authentication_error",
            "model_key_rejected",
            "did not accept the bot's API key (401), so I stopped here. An admin needs to fix "
            "`ANTHROPIC_API_KEY`; after that, `/coworker resume T-1` picks up",
        ),
    ],
)
async def test_a_model_api_error_resuming_cannot_fix_says_so(
    make_harness: Callable[..., Harness], status: int, kind: str, code: str, said: str
) -> None:
    async with make_harness(config=NO_PLAN_APPROVAL) as h:
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Answer", [])))
        h.anthropic.enqueue_error(status, kind, "details for the log only")
        await h.mention("hi")
        failed = await h.wait_status("failed")
        assert failed.error == code
        [msg] = await h.slack.wait_for("chat.postMessage", lambda c: said in str(c.params))
        assert "several retries" not in str(msg.params) and "couldn't reach" not in str(msg.params)
        assert "details for the log only" not in h.texts()
        assert len(h.anthropic.requests) == 2  # the plan, and one try of the failing call
