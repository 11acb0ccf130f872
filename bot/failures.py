"""What the thread is told when a task stops on an error, and the code kept on the task.

Each message says what happened and whether `/coworker resume` can help: a model API that
was down or overloaded (retried, so resuming later picks up), one that refused the request
(sent once; the same request is refused again), a rejected key or an unknown model (an
admin must fix the configuration first). Details go to the log with the task id; nothing
from the exception is shown in Slack.
"""

from __future__ import annotations

from bot.base.errors import LLMUnavailable

INTERNAL = (
    "Something went wrong on my side and I stopped this task (reference {ref}). "
    "An admin can find the details in the logs; `/coworker resume {ref}` tries again."
)

#: How a retried failure is described: what the API kept answering.
_RETRIED = {
    408: "kept timing out (408)",
    409: "kept answering with a conflict (409)",
    429: "kept answering that we are over the rate limit (429)",
    529: "was overloaded (529)",
}
#: What a refusal (a 4xx other than a key or model problem) means, for people.
_REFUSED = {
    400: "an invalid request",
    413: "a request too large",
    422: "a request it could not process",
}


def model_failure(exc: LLMUnavailable, ref: str, retries: int) -> tuple[str, str]:
    """The thread's message for a model API failure, and the error code kept on the task."""
    resume = f"`/coworker resume {ref}`"
    if exc.retryable:
        return _unreachable(exc, resume, retries), "model_unavailable"
    if exc.status in (401, 403):
        return (
            f"The model API did not accept the bot's API key ({exc.status}), so I stopped "
            f"here. An admin needs to fix `ANTHROPIC_API_KEY`; after that, {resume} picks up "
            "where I left off.",
            "model_key_rejected",
        )
    if exc.status == 404:
        return (
            f"The model API has no model `{exc.model}` (404), so I stopped here. An admin "
            "needs to name a model this API key can use in `coworker.toml` (`[models]`, or "
            f"the coworker's `models`) and restart me; after that, {resume} picks up where I "
            "left off. Resuming before that fails the same way.",
            "model_not_found",
        )
    what = _REFUSED.get(exc.status or 0, "the request")
    return (
        f"The model API refused {what} ({exc.status}), so I stopped here. It was sent "
        "once, not retried: the same request would be refused again, so resuming is "
        f"unlikely to help. An admin can find the details in the logs (reference {ref}).",
        "model_refused",
    )


def _unreachable(exc: LLMUnavailable, resume: str, retries: int) -> str:
    if exc.timed_out:
        what = "kept timing out"
    elif exc.status is None:
        what = "could not be reached"
    else:
        what = _RETRIED.get(exc.status, f"kept answering with server errors ({exc.status})")
    tries = f"after {retries} retries" if retries else "(retries are off)"
    return (
        f"I couldn't reach the model API (Anthropic) {tries}: it {what}, so I stopped here. "
        f"Nothing was lost: {resume} picks up where I left off once it answers again."
    )
