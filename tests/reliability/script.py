"""The scripted model and the effects log shared by the crash and load runs.

A "job" is one delegated task whose request carries `job-<n>`. The scripted model answers
the same conversation the same way every time (so a restarted bot gets the same answers):
the plan, then each tool of the job's script in turn, then a final text. The effects
server logs every call that took effect, so `runs()` says how often a tool really ran for
a job, whatever the bot's own records say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.anthropic import Reply, text_reply, tool_reply
from tests.scenarios.conftest import plan

SEARCH, CREATE, COMMENT = "effects__search", "effects__create_ticket", "effects__comment"
_JOB = re.compile(r"job-(\d+)")

Steps = Callable[[int], list[tuple[str, dict[str, Any]]]]


def job_of(text: str) -> int | None:
    m = _JOB.search(text)
    return int(m.group(1)) if m else None


def file_and_link(job: int) -> list[tuple[str, dict[str, Any]]]:
    """Look (auto), file a ticket (block: needs an approval), link it (notify)."""
    return [
        (SEARCH, {"query": f"job-{job} flaky login"}),
        (CREATE, {"title": f"job-{job}: flaky login test"}),
        (COMMENT, {"ticket": "TCK-1", "text": f"job-{job}: see TCK-99"}),
    ]


def look_and_note(job: int) -> list[tuple[str, dict[str, Any]]]:
    """Look (auto), then comment (notify): a task that never waits for a person."""
    return [
        (SEARCH, {"query": f"job-{job} slow deploy"}),
        (COMMENT, {"ticket": "TCK-2", "text": f"job-{job}: still slow"}),
    ]


def answered(messages: list[dict[str, Any]]) -> set[str]:
    """Names of the tools whose calls have a result in the conversation."""
    names: dict[str, str] = {}
    done: set[str] = set()
    for msg in messages:
        for block in msg["content"] if isinstance(msg["content"], list) else []:
            if block.get("type") == "tool_use":
                names[block["id"]] = block["name"]
            elif block.get("type") == "tool_result" and block.get("tool_use_id") in names:
                done.add(names[block["tool_use_id"]])
    return done


def scripted(steps: Steps) -> Callable[[dict[str, Any]], Reply]:
    """A FakeAnthropic responder playing `steps` for each job."""

    def respond(body: dict[str, Any]) -> Reply:
        job = job_of(json.dumps(body["messages"][0])) or 0
        if (body.get("tool_choice") or {}).get("name") == "submit_plan":
            return tool_reply("submit_plan", plan(*((f"Use {n}", [n]) for n, _ in steps(job))))
        done = answered(body["messages"])
        for name, args in steps(job):
            if name not in done:
                return tool_reply(name, args, text=f"Next: {name}.")
        return text_reply(f"job-{job} finished: all steps done.")

    return respond


def effects(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def runs(log: Path, tool: str, job: int) -> int:
    """How many times `tool` (its name on the server) really ran for `job`."""
    return sum(1 for r in effects(log) if r["tool"] == tool and job_of(json.dumps(r)) == job)
