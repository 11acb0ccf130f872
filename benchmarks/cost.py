"""Dollars per task with routing and prompt caching, against everything on one model uncached.

The same scripted suite of tasks runs twice through `bot.llm.LLM` against the local Anthropic
stand-in (which reports usage the way the API does, prompt caching included):

  (a) as shipped: classify, route and summarize on the fast tier, plan and act on the default
      tier, cache breakpoints after the stable prefix and at the end of the act conversation;
  (b) baseline: every purpose routed to the default tier (`[routing]`), `LLM(caching=False)`.

Each task looks like real work: a classify and a route call (fast), a plan call with the
planner prompt, the tool catalogue and retrieved memory, 2-6 act turns with the coworker's
persona and ~16 MCP tool definitions (the large stable prefix) while tool output piles up in
the conversation, then a summarize call for the episode. Dollars are the `llm_calls` rows,
priced with `bot.base.config.DEFAULT_PRICES`. Target: (b) costs at least 2x (a).

    python benchmarks/cost.py [--tasks 20] [--seed 7]

Limits of the stand-in: token counts are estimates (JSON length / 4), and it caches prefixes
of any length, where the API caches only prefixes above a model's minimum (1-4k tokens); the
short classify/route prompts would not be cached by the API, which changes little because
they are a small share of the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.agent import ACT_PROMPT, first_request
from bot.base.clock import now
from bot.base.config import Config, parse_config
from bot.base.db import Database, open_database
from bot.base.migrations import migrate
from bot.llm import DEFAULT_ROUTES, LLM, CallContext, make_client
from bot.planner import PLANNER_PROMPT, describe_tools
from bot.plans import Plan, plan_tool_schema
from bot.tasks import Task
from tests.fakes.anthropic import FakeAnthropic, text_reply, tool_reply, tool_uses_reply

CLASSIFY_PROMPT = (
    "Classify a request sent to the team's AI coworker as one of: question, bug, chore, "
    "report, code_change, other. Answer with the label only."
)
ROUTE_TOOL = {
    "name": "choose_coworker",
    "description": "Choose the coworker best suited to the request.",
    "input_schema": {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": ["dev", "writer", "ops"]}},
        "required": ["name"],
    },
}
SUMMARIZE_PROMPT = (
    "Summarize the finished task for the team's memory: the request, what was done, which "
    "tools helped, the outcome, and anything worth remembering next time. At most 150 words."
)
PERSONAS = {
    "dev": "You review code, triage bugs and improve test coverage for the payments team.",
    "writer": "You write release notes, incident summaries and docs in the team's voice.",
    "ops": "You watch CI, deploys and alerts, and keep the runbooks current.",
}
CONVENTIONS = """
Team conventions (follow them in every answer):
- Cite the source of every claim about internal data: ticket ids, CI run ids, file paths with
  line numbers, dashboard links. Never guess an id.
- Prefer small, reversible steps. Write tools need an approval; read tools are free to use.
- Summaries lead with the outcome, then the evidence, then open questions, in that order.
- Code suggestions come as unified diffs against the default branch, with a test.
- Use UTC timestamps (ISO 8601). Money in USD with two decimals. Durations as 1h 05m.
- Escalate to a person when data is missing, a step failed twice, or a change touches
  billing, authentication, secrets or production data.
- Keep messages short: Slack threads are read on phones. Long output goes to a file.
"""


def tool_catalogue() -> list[SimpleNamespace]:
    """~16 MCP tools the way servers describe them: a paragraph and a JSON schema each."""
    specs = [
        ("github", "search_issues", "auto", ["query", "state", "labels", "sort"]),
        ("github", "get_issue", "auto", ["owner", "repo", "number"]),
        ("github", "create_issue", "block", ["owner", "repo", "title", "body", "labels"]),
        ("github", "list_pull_requests", "auto", ["owner", "repo", "state", "base"]),
        ("github", "get_pull_request_diff", "auto", ["owner", "repo", "number"]),
        ("github", "create_review_comment", "notify", ["owner", "repo", "number", "path", "body"]),
        ("ci", "list_runs", "auto", ["pipeline", "branch", "status", "limit"]),
        ("ci", "get_run_log", "auto", ["run_id", "job", "tail_lines"]),
        ("ci", "rerun_job", "notify", ["run_id", "job"]),
        ("docs", "search", "auto", ["query", "space", "limit"]),
        ("docs", "get_page", "auto", ["page_id", "version"]),
        ("docs", "update_page", "block", ["page_id", "body", "summary"]),
        ("tickets", "search", "auto", ["query", "project", "status"]),
        ("tickets", "comment", "notify", ["ticket", "text"]),
        ("slack", "search_messages", "auto", ["query", "channel", "after"]),
        ("metrics", "query", "auto", ["expression", "start", "end", "step"]),
    ]
    tools = []
    for server, name, tier, params in specs:
        description = (
            f"{name.replace('_', ' ').capitalize()} on {server}. Returns JSON. Use it when the "
            f"current plan step needs {server} data; prefer narrow queries, page through large "
            "results, and quote ids exactly as returned. Rate limited to 60 calls a minute; "
            "errors come back as text with the upstream status code."
        )
        schema = {
            "type": "object",
            "properties": {
                p: {
                    "type": "string",
                    "description": f"The {p.replace('_', ' ')} to use; see "
                    f"the {server} documentation for accepted values and defaults.",
                }
                for p in params
            },
            "required": params[:1],
        }
        tools.append(
            SimpleNamespace(
                name=f"{server}__{name}", tier=tier, description=description, input_schema=schema
            )
        )
    return tools


@dataclass
class Script:
    """One task of the suite and the model's scripted replies to it."""

    coworker: str
    request: str
    memory: str
    turns: list[tuple[str, dict[str, Any], str]]  # (tool, input, tool output)
    answer: str


def make_suite(n: int, seed: int) -> list[Script]:
    rng = random.Random(seed)
    names = [t.name for t in tool_catalogue() if t.tier == "auto"]
    words = "deploy flaky checkout latency refund webhook retry timeout ledger invoice".split()
    suite = []
    for i in range(n):
        topic = " ".join(rng.sample(words, 3))
        memory = "Relevant past work:\n" + "\n".join(
            f"- T-{100 + j}: {' '.join(rng.choices(words, k=30))} (outcome: done)"
            for j in range(rng.randint(6, 10))
        )
        turns = [
            (
                rng.choice(names),
                {"query": f"{topic} {k}"},
                "\n".join(
                    f"{rng.randint(1000, 9999)} {' '.join(rng.choices(words, k=14))}"
                    for _ in range(rng.randint(20, 60))
                ),
            )
            for k in range(rng.randint(2, 6))
        ]
        answer = "## Findings\n" + "\n".join(
            f"- {' '.join(rng.choices(words, k=16))}" for _ in range(rng.randint(8, 20))
        )
        suite.append(
            Script(
                rng.choice(list(PERSONAS)), f"Task {i}: look into {topic}", memory, turns, answer
            )
        )
    return suite


PLAN = Plan.model_validate(
    {
        "summary": "Investigate and report",
        "estimate_minutes": 10,
        "questions": [],
        "steps": [
            {"what": "Gather the evidence", "tools": ["ci__get_run_log"]},
            {"what": "Write up the findings", "tools": []},
        ],
    }
)


async def run_task(llm: LLM, fake: FakeAnthropic, db: Database, script: Script) -> None:
    """classify → route → plan → act × N → summarize, as the app sends them."""
    task = await new_task(db, script)
    ctx = CallContext(task_id=task.id, budget_usd=task.budget_usd)
    persona = PERSONAS[script.coworker] + CONVENTIONS
    await triage_and_plan(llm, fake, ctx, script, persona)
    await act(llm, fake, ctx, task, script, persona)
    fake.enqueue_reply(text_reply("Episode: " + script.answer[:600]))
    episode = {
        "request": script.request,
        "tools": [t for t, _, _ in script.turns],
        "result": script.answer,
    }
    await llm.create(
        purpose="summarize",
        system=SUMMARIZE_PROMPT,
        messages=[{"role": "user", "content": json.dumps(episode)}],
        max_tokens=400,
        ctx=ctx,
    )


async def triage_and_plan(
    llm: LLM, fake: FakeAnthropic, ctx: CallContext, script: Script, persona: str
) -> None:
    ask = [{"role": "user", "content": script.request}]
    fake.enqueue_reply(text_reply("bug"))
    await llm.create(
        purpose="classify", system=CLASSIFY_PROMPT, messages=ask, max_tokens=10, ctx=ctx
    )
    fake.enqueue_reply(tool_reply("choose_coworker", {"name": script.coworker}))
    catalog = "\n".join(f"- {name}: {p}" for name, p in PERSONAS.items())
    await llm.create(
        purpose="route",
        system=f"Route the request to one of these coworkers:\n{catalog}",
        messages=ask,
        tools=[ROUTE_TOOL],
        tool_choice={"type": "tool", "name": "choose_coworker"},
        max_tokens=200,
        ctx=ctx,
    )
    fake.enqueue_reply(tool_reply("submit_plan", PLAN.model_dump()))
    tools = describe_tools(tool_catalogue())
    await llm.create(
        purpose="plan",
        system=PLANNER_PROMPT.format(name=script.coworker, persona=persona, tools=tools),
        context=script.memory,
        messages=ask,
        tools=[plan_tool_schema()],
        tool_choice={"type": "tool", "name": "submit_plan"},
        max_tokens=2000,
        ctx=ctx,
    )


async def act(
    llm: LLM, fake: FakeAnthropic, ctx: CallContext, task: Task, script: Script, persona: str
) -> None:
    """The agent loop's calls: the conversation grows by a tool call and its output per turn."""
    tools = tool_catalogue()
    definitions = [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema}
        for t in tools
    ]
    system = ACT_PROMPT.format(name=script.coworker, persona=persona, tools=describe_tools(tools))
    text = first_request(task, PLAN) + "\n\n" + script.memory
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    for k, (tool, tool_input, output) in enumerate(script.turns):
        call_id = f"toolu_{task.id}_{k}"
        fake.enqueue_reply(
            tool_uses_reply([(tool, tool_input, call_id)], text=f"Checking {tool} (step {k + 1}).")
        )
        reply = await llm.create(
            purpose="act", system=system, messages=messages, tools=definitions, ctx=ctx
        )
        blocks = [b.model_dump(exclude_none=True) for b in reply.content]
        result = {"type": "tool_result", "tool_use_id": call_id, "content": output}
        messages += [
            {"role": "assistant", "content": blocks},
            {"role": "user", "content": [result]},
        ]
    fake.enqueue_reply(text_reply(script.answer))
    await llm.create(purpose="act", system=system, messages=messages, tools=definitions, ctx=ctx)


async def new_task(db: Database, script: Script) -> Task:
    t = now()
    task_id = await db.fetchval(
        "INSERT INTO tasks (status, coworker, delegator, channel, thread_ts, message_ts, request,"
        " budget_usd, created_at, updated_at) VALUES ('running', ?, 'U1', 'C1', ?, ?, ?, 50, ?, ?)"
        " RETURNING id",
        (script.coworker, str(t), str(t), script.request, t, t),
    )
    return Task(
        id=task_id,
        status="running",
        priority=1,
        coworker=script.coworker,
        delegator="U1",
        channel="C1",
        thread_ts=str(t),
        message_ts=str(t),
        request=script.request,
        budget_usd=50,
    )


@dataclass
class Result:
    label: str
    per_task: list[float]
    calls: int
    tokens: dict[str, int]
    by_model: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.per_task)


async def run_suite(label: str, suite: list[Script], config: Config, caching: bool) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await migrate(db)
        async with FakeAnthropic() as fake:
            client = make_client("sk-ant-bench", fake.base_url, max_retries=0)
            llm = LLM(client, config, db, caching=caching)
            try:
                for script in suite:
                    await run_task(llm, fake, db, script)
            finally:
                await client.close()
        per_task = [
            float(r["cost"])
            for r in await db.fetchall(
                "SELECT SUM(cost_usd) AS cost FROM llm_calls GROUP BY task_id ORDER BY task_id"
            )
        ]
        row = await db.fetchone(
            "SELECT COUNT(*) AS calls, SUM(input_tokens) AS input,"
            " SUM(cache_write_tokens) AS cache_write, SUM(cache_read_tokens) AS cache_read,"
            " SUM(output_tokens) AS output FROM llm_calls"
        )
        by_model = {
            r["model"]: float(r["cost"])
            for r in await db.fetchall(
                "SELECT model, SUM(cost_usd) AS cost FROM llm_calls GROUP BY model"
                " ORDER BY cost DESC"
            )
        }
        await db.close()
    assert row is not None
    tokens = {k: row[k] for k in ("input", "cache_write", "cache_read", "output")}
    return Result(label, per_task, int(row["calls"]), tokens, by_model)


def show(r: Result) -> None:
    t = r.tokens
    print(f"{r.label}")
    print(
        f"  calls {r.calls}; tokens: input {t['input']:,}, cache write {t['cache_write']:,}, "
        f"cache read {t['cache_read']:,}, output {t['output']:,}"
    )
    print(
        f"  $ per task: mean {r.total / len(r.per_task):.4f}  median "
        f"{statistics.median(r.per_task):.4f}  max {max(r.per_task):.4f}   "
        f"total ${r.total:.4f}"
    )
    print("  by model: " + ", ".join(f"{m} ${c:.4f}" for m, c in r.by_model.items()))


async def main(n: int, seed: int) -> int:
    suite = make_suite(n, seed)
    turns = sum(len(s.turns) + 1 for s in suite)
    print(f"cost benchmark: {n} scripted tasks, {turns} act turns, prices from DEFAULT_PRICES\n")
    shipped = await run_suite("(a) routing + prompt caching", suite, Config(), caching=True)
    flat = parse_config({"routing": dict.fromkeys(DEFAULT_ROUTES, "default")})
    baseline = await run_suite(
        "(b) default model for everything, no caching", suite, flat, caching=False
    )
    show(shipped)
    show(baseline)
    routing_only = await run_suite("routing only", suite, Config(), caching=False)
    caching_only = await run_suite("caching only", suite, flat, caching=True)
    print(
        f"\neach lever alone ($ per task): routing only {routing_only.total / n:.4f}, "
        f"caching only {caching_only.total / n:.4f}"
    )
    ratio = baseline.total / shipped.total
    print(f"\nratio (b)/(a): {ratio:.2f}x   (target: >= 2x)")
    print("result: " + ("MET" if ratio >= 2 else "NOT MET"))
    return 0 if ratio >= 2 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.tasks, args.seed)))
