"""The plan: typed, validated, and rendered the same way for the model and for people."""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)


class Expect(BaseModel):
    """What a query step's result should look like; checked when its tool answers."""

    min_rows: int | None = Field(default=None, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    #: A JSON Schema every row must satisfy (e.g. the columns and their types).
    row_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sound(self) -> Expect:
        if self.min_rows is not None and self.max_rows is not None:
            if self.min_rows > self.max_rows:
                raise ValueError("min_rows is greater than max_rows")
        return self

    @property
    def empty(self) -> bool:
        return self.min_rows is None and self.max_rows is None and not self.row_schema

    def render(self) -> str:
        parts = []
        if self.min_rows is not None or self.max_rows is not None:
            low = self.min_rows if self.min_rows is not None else 0
            high = self.max_rows if self.max_rows is not None else "any"
            parts.append(f"{low}–{high} rows")
        if self.row_schema:
            parts.append("rows matching a schema")
        return ", ".join(parts)


class PlanStep(BaseModel):
    what: str = Field(min_length=1, max_length=500)
    tools: list[str] = Field(default_factory=list, max_length=20)
    #: For a step that queries data: the expected result, when the request implies one.
    expect: Expect | None = None

    @field_validator("expect", mode="wrap")
    @classmethod
    def _drop_unsound_expect(cls, value: Any, handler: Any) -> Expect | None:
        """An expectation that does not validate is dropped, not the whole plan."""
        try:
            expect = handler(value)
        except ValidationError as exc:
            log.info("plan step: expectation dropped: %s", exc.errors()[:1])
            return None
        return None if expect is None or expect.empty else expect

    #: Filled in by the policy, never by the model.
    approval: bool = False


class Plan(BaseModel):
    summary: str = Field(min_length=1, max_length=1000)
    steps: list[PlanStep] = Field(default_factory=list, max_length=30)
    estimate_minutes: int = Field(default=5, ge=1, le=24 * 60)
    questions: list[str] = Field(default_factory=list, max_length=5)
    deliverable: Literal["answer", "written", "code", "data"] = "answer"
    #: Filled in from the request, never by the model: a `!budget` beyond what a request
    #: may set (`bot.intake.budget_note`).
    budget_note: str | None = None


def plan_tool_schema() -> dict[str, Any]:
    """The forced `submit_plan` tool; its input schema is the plan minus policy fields."""
    return copy.deepcopy(_plan_tool())


@functools.cache
def _plan_tool() -> dict[str, Any]:
    # Generating the schema takes milliseconds; it never changes while the process runs.
    schema = Plan.model_json_schema()
    step = schema["$defs"]["PlanStep"]
    step["properties"].pop("approval", None)
    schema["properties"].pop("budget_note", None)
    return {
        "name": "submit_plan",
        "description": (
            "Submit the plan for this task: numbered steps with the tools each uses, an "
            "estimate in minutes, and clarifying questions (only if the request is genuinely "
            "ambiguous; otherwise an empty list). For a step that queries data, state the "
            "expected result in `expect` (a row-count range and/or a JSON Schema per row) "
            "when you know what a sound result looks like; it is checked when the tool answers."
        ),
        "input_schema": schema,
    }


def step_using(plan: dict[str, Any] | None, tool: str) -> str | None:
    """The first step of a plan (as stored) that uses `tool`, numbered: "2. Open the issue"."""
    for i, step in enumerate((plan or {}).get("steps", []), 1):
        if tool in step.get("tools", []):
            return f"{i}. {step['what']}"
    return None


def render_plan(plan: Plan) -> str:
    """Plain Markdown for the model's context and for the Edit modal."""
    lines = [plan.summary, ""]
    for i, step in enumerate(plan.steps, 1):
        tools = f" (tools: {', '.join(step.tools)})" if step.tools else ""
        expect = (
            f" [expects {step.expect.render()}]" if step.expect and step.expect.render() else ""
        )
        stop = " [stops for approval]" if step.approval else ""
        lines.append(f"{i}. {step.what}{tools}{expect}{stop}")
    lines.append("")
    lines.append(f"Estimate: ~{plan.estimate_minutes} min")
    return "\n".join(lines)
