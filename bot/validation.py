"""Checks a deliverable passes before a person sees it.

- written content: a review call (the `review` purpose, routed to another tier than the
  acting call) against the request, the team's style facts from memory, and whether internal data
  is cited; failures go back to the model for revision;
- code: the commands of `[validation.code]` (lint, type check, tests) run in the configured
  working directory with a timeout; failures go back with their output.

Each check's outcome is a `Check`, recorded on the task and shown with the deliverable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field, ValidationError

from bot.base.config import Config
from bot.base.errors import BudgetExhausted
from bot.llm import LLM, CallContext, text_of
from bot.plans import Expect
from bot.tasks import Task

log = logging.getLogger(__name__)
OUTPUT_LIMIT = 4000

REVIEW_PROMPT = """You review a deliverable before a person sees it. Pass it only if:
1. it fully answers the request;
2. it follows the team's style facts given below, if any;
3. every claim about internal data (tickets, metrics, code, people) names its source.
Report each problem as one short, actionable sentence."""


POLISH_PROMPT = """You edit a deliverable that many people will read. Make it clear and
well structured for that audience. Keep every fact, number, link and source exactly; add
nothing new. Reply with the final deliverable only, in Markdown."""


class Review(BaseModel):
    passed: bool
    issues: list[str] = Field(default_factory=list, max_length=20)


REVIEW_TOOL = {
    "name": "submit_review",
    "description": "Submit the review verdict and the problems found.",
    "input_schema": Review.model_json_schema(),
}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    #: False when the check could not be made (the result was cut, the schema unusable):
    #: neither passed nor failed, and shown as such.
    checked: bool = True

    def line(self) -> str:
        if not self.checked:
            return f"➖ {self.name}: not checked ({self.detail})"
        mark = "✅" if self.passed else "⚠️"
        return f"{mark} {self.name}" + (
            f": {self.detail}" if self.detail and not self.passed else ""
        )

    @property
    def failed(self) -> bool:
        return self.checked and not self.passed


ROW_KEYS = ("rows", "results", "items", "records", "data")


def rows_of(value: Any) -> list[Any] | None:
    """The rows of a query result: a JSON list, or the list under a usual key of an object."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ROW_KEYS:
            if isinstance(value.get(key), list):
                return list(value[key])
    return None


def check_result(tool: str, expect: Expect, text: str, *, cut: bool = False) -> Check:
    """Whether a query's result matches what the plan expected of it."""
    name = f"{tool} result"
    if cut:
        return Check(name, False, "the result was too long to check in full", checked=False)
    try:
        rows = rows_of(json.loads(text))
    except ValueError:
        rows = None
    if rows is None:
        return Check(name, False, "expected rows as JSON, got something else")
    low, high = expect.min_rows, expect.max_rows
    if (low is not None and len(rows) < low) or (high is not None and len(rows) > high):
        wanted = f"{low if low is not None else 0}–{high if high is not None else 'any'}"
        return Check(name, False, f"expected {wanted} rows, got {len(rows)}")
    if expect.row_schema:
        try:
            validator = Draft202012Validator(expect.row_schema)
            validator.check_schema(expect.row_schema)
            bad = next(
                ((i, e) for i, row in enumerate(rows) for e in validator.iter_errors(row)), None
            )
        except Exception as exc:  # a schema that cannot be applied ($ref to nowhere, …)
            log.info("row schema not applicable: %s", type(exc).__name__)
            return Check(name, False, "the plan's row schema could not be applied", checked=False)
        if bad is not None:
            return Check(name, False, f"row {bad[0] + 1}: {bad[1].message[:200]}")
    return Check(name, True, f"{len(rows)} rows as expected")


class Validator:
    def __init__(self, llm: LLM, config: Config) -> None:
        self.llm = llm
        self.config = config

    def kind(self, task: Task) -> str:
        deliverable = (task.plan or {}).get("deliverable", "answer")
        if deliverable == "code" and self.config.validation.code.commands:
            return "code"
        return "written" if deliverable == "written" else "none"

    async def review(self, task: Task, draft: str, style: str | None) -> Check:
        """A review call on the draft; the verdict is a forced tool call."""
        msg = await self.llm.create(
            purpose="review",
            system=REVIEW_PROMPT,
            context=style,
            messages=[
                {"role": "user", "content": f"Request:\n{task.request}\n\nDeliverable:\n{draft}"}
            ],
            tools=[REVIEW_TOOL],
            tool_choice={"type": "tool", "name": "submit_review"},
            max_tokens=1000,
            ctx=CallContext(task_id=task.id, budget_usd=task.budget_usd),
        )
        block = next((b for b in msg.content if b.type == "tool_use"), None)
        try:
            verdict = Review.model_validate(block.input if block else {})
        except ValidationError:
            return Check("review", False, "the reviewer gave no usable verdict")
        return Check("review", verdict.passed, "; ".join(verdict.issues))

    async def polish(self, task: Task, draft: str) -> str:
        """The final draft of a high-visibility task, on the `final_draft` route (best tier)."""
        ctx = CallContext(task_id=task.id, budget_usd=task.budget_usd, high_visibility=True)
        try:
            msg = await self.llm.create(
                purpose="final_draft",
                system=POLISH_PROMPT,
                max_tokens=8000,
                ctx=ctx,
                messages=[
                    {"role": "user", "content": f"Request:\n{task.request}\n\nDraft:\n{draft}"}
                ],
            )
        except BudgetExhausted:
            return draft
        return text_of(msg) or draft

    async def code(self, task: Task) -> list[Check]:
        """Run each configured command; a failure carries its (cut) output."""
        cfg = self.config.validation.code
        return [await self._run(cmd, cfg.workdir, cfg.timeout) for cmd in cfg.commands]

    async def _run(self, command: str, workdir: str, timeout: float) -> Check:
        proc = await asyncio.create_subprocess_shell(
            command, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return Check(command, False, f"timed out after {timeout:.0f}s")
        text = out.decode(errors="replace")[-OUTPUT_LIMIT:]
        return Check(command, proc.returncode == 0, text.strip())


def feedback(checks: list[Check]) -> str:
    """What the model is told when checks fail."""
    lines = [f"- {c.name}: {c.detail or 'failed'}" for c in checks if not c.passed]
    return (
        "Your deliverable did not pass these checks. Fix them and give the full revised "
        "deliverable:\n" + "\n".join(lines)
    )
