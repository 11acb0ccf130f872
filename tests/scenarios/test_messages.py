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


async def test_a_bare_mention_gets_a_short_help_and_no_task(harness: Harness) -> None:
    h = harness
    await h.mention(f"<@{h.slack.bot_user_id}>", user="U1")
    [hint] = await h.slack.wait_for("chat.postEphemeral")
    assert hint.params["user"] == "U1"
    assert "Tell me what to do in the same message" in hint.params["text"]
    assert "/coworker help" in hint.params["text"]
    assert await h.coworker.db.fetchval("SELECT COUNT(*) FROM tasks") == 0


async def test_a_request_cut_to_the_limit_says_so(harness: Harness) -> None:
    h = harness
    h.anthropic.enqueue_tool_use("submit_plan", plan(("Read it", [])))
    event = await h.mention("summarize this: " + "word " * 9000)
    [note] = await h.slack.wait_for(
        "chat.postMessage", lambda c: "characters long" in c.params.get("text", "")
    )
    assert len(event["text"]) > 45_000
    assert note.params["text"] == (
        f"Your message was {len(event['text']):,} characters long; I read only the first 40,000."
    )
    assert len((await h.task()).request) <= 40_000


TEAM = """
[[coworkers]]
name = "dev"
[[coworkers]]
name = "writer"
"""


async def test_an_unknown_coworker_name_is_answered_with_the_ones_that_exist(
    make_harness: Callable[..., Harness],
) -> None:
    async with make_harness(config=TEAM) as h:
        h.anthropic.enqueue_tool_use("choose_coworker", {"name": "dev"})
        h.anthropic.enqueue_tool_use("submit_plan", plan(("Run it", [])))
        task_id = await h.delegate("qa: run the regression suite")
        [note] = await h.slack.wait_for(
            "chat.postMessage", lambda c: "no coworker called" in c.params.get("text", "")
        )
        assert note.params["text"] == (
            "There is no coworker called `qa` here (there are `dev` and `writer`), so I'll "
            "choose one. To pick, start the request with its name, like `dev: …`."
        )
        await h.wait_status("awaiting_plan_approval", task_id)
        assert (await h.task(task_id)).coworker == "dev"
