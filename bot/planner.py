"""Planning and routing: the model proposes, pydantic validates, the policy marks approvals.

The plan comes from a default-tier call with a forced `submit_plan` tool whose input schema
is the `Plan` model. Which steps stop for approval is decided here from the tools' tiers,
never by the model.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from bot.base.config import Config, CoworkerConfig
from bot.llm import LLM, CallContext
from bot.plans import Plan, plan_tool_schema
from bot.tasks import Task

log = logging.getLogger(__name__)

DEFAULT_COWORKER = CoworkerConfig(
    name="coworker", description="A general-purpose teammate", tools=["*"]
)

PLANNER_PROMPT = """You plan work for {name}, an AI coworker on a team's Slack. {persona}
Make a short, concrete plan for the request using only the tools listed. Ask clarifying
questions only when the request cannot be done well without an answer.

Available tools:
{tools}"""


class PlanRejected(Exception):
    """The model's plan did not validate twice in a row."""


def coworker_for(config: Config, name: str) -> CoworkerConfig:
    return config.coworker(name) or DEFAULT_COWORKER


def describe_tools(tools: list[Any]) -> str:
    if not tools:
        return "(none: answer from your own knowledge and the conversation)"
    return "\n".join(f"- {t.name} [{t.tier}]: {(t.description or '').strip()[:200]}" for t in tools)


class Planner:
    def __init__(self, llm: LLM, config: Config) -> None:
        self.llm = llm
        self.config = config

    async def route(self, request: str, task: Task) -> str:
        """Pick a coworker: the only one, or a fast-tier choice among those configured."""
        names = [c.name for c in self.config.coworkers]
        if not names:
            return DEFAULT_COWORKER.name
        if len(names) == 1:
            return names[0]
        catalog = "\n".join(f"- {c.name}: {c.description}" for c in self.config.coworkers)
        tool = {
            "name": "choose_coworker",
            "description": "Choose the coworker best suited to the request.",
            "input_schema": {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": names}},
                "required": ["name"],
            },
        }
        msg = await self.llm.create(
            purpose="route",
            system=f"Route the request to one of these coworkers:\n{catalog}",
            messages=[{"role": "user", "content": request}],
            tools=[tool],
            tool_choice={"type": "tool", "name": "choose_coworker"},
            max_tokens=200,
            ctx=CallContext(task_id=task.id, budget_usd=task.budget_usd),
        )
        for block in msg.content:
            if block.type == "tool_use" and block.input.get("name") in names:
                return str(block.input["name"])
        return names[0]

    async def plan(
        self,
        task: Task,
        tools: list[Any],
        *,
        conversation: list[dict[str, Any]],
        memory: str | None = None,
    ) -> Plan:
        """Ask for a plan, validate it, and mark the steps that will stop for approval."""
        coworker = coworker_for(self.config, task.coworker)
        system = PLANNER_PROMPT.format(
            name=coworker.name, persona=coworker.system_prompt, tools=describe_tools(tools)
        )
        ctx = CallContext(
            task_id=task.id,
            coworker=coworker,
            budget_usd=task.budget_usd,
            high_visibility=task.high_visibility,
        )
        messages = list(conversation)
        for _attempt in range(2):
            msg = await self.llm.create(
                purpose="plan",
                system=system,
                context=memory,
                messages=messages,
                tools=[plan_tool_schema()],
                tool_choice={"type": "tool", "name": "submit_plan"},
                max_tokens=2000,
                ctx=ctx,
            )
            block = next((b for b in msg.content if b.type == "tool_use"), None)
            if block is None:
                raise PlanRejected("no plan returned")
            try:
                plan = Plan.model_validate(block.input)
            except ValidationError as exc:
                log.info("task %s: plan did not validate: %s", task.id, exc.errors()[:3])
                messages = [
                    *conversation,
                    {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": block.id,
                                "is_error": True,
                                "content": f"The plan is invalid: {exc.errors()[:5]}. Submit it again.",
                            }
                        ],
                    },
                ]
                continue
            return mark_approvals(plan, tools)
        raise PlanRejected("the plan did not validate")


def mark_approvals(plan: Plan, tools: list[Any]) -> Plan:
    """Set `approval` on each step that uses a block-tier tool under the current policy."""
    tiers = {t.name: t.tier for t in tools}
    steps = [
        s.model_copy(update={"approval": any(tiers.get(n) == "block" for n in s.tools)})
        for s in plan.steps
    ]
    return plan.model_copy(update={"steps": steps})
