"""Memory in the task flow: what a task starts with, what it leaves behind, what people curate.

`TeamMemory` adapts `memory/` to the rest of the core: it gives a new task the relevant
episodes and facts of its scope (team + the channel's project + the delegator's own), writes
an episode when a task ends, turns 👍 / 👎 into feedback, serves `/coworker remember`,
`forget` and `memory`, runs consolidation (facts proposed by a fast-tier model call from
recent episodes, then reviewed by people), decay and backups, and backs the built-in
`memory` MCP server within the calling task's scope.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bot.base.clock import now
from bot.base.config import Config
from bot.base.errors import NotAllowed
from bot.llm import LLM
from bot.tasks import Task, TaskStore, parse_id
from memory import (
    EpisodeInput,
    MemoryStore,
    Scope,
    apply_feedback,
    consolidation,
    decay,
    record_episode,
)
from memory import backup as backups
from memory.records import Memory, MemoryScope, Status, scope_key
from memory.retrieval import recall

log = logging.getLogger(__name__)

EXTRACT_PROMPT = """From this record of a finished task, extract durable facts about the team,
its projects, systems, conventions and preferences that would help with future tasks.
Only facts that will still be true next month; no task-specific details. At most 5, each one
sentence. Submit an empty list when there is nothing worth keeping."""

EXTRACT_TOOL = {
    "name": "submit_facts",
    "description": "Submit the extracted facts.",
    "input_schema": {
        "type": "object",
        "properties": {"facts": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
        "required": ["facts"],
    },
}
_REF = re.compile(r"^\s*#?(\d+)\s*$")
#: A task's memory block is recalled when it is planned and used again when it runs, if that
#: is this soon after and in this process (plan_approval = "never", or a quick approval):
#: the same request in the same scope, so the same memories, marked used once. Later, or on
#: another replica, it is recalled afresh.
CONTEXT_REUSE_SECONDS = 300.0
_CONTEXTS_KEPT = 256


@dataclass
class Proposal:
    """A fact waiting for review, and where to ask."""

    fact: Memory
    channel: str | None


class TeamMemory:
    def __init__(
        self,
        store: MemoryStore,
        llm: LLM,
        tasks: TaskStore,
        config: Config,
        *,
        warning: str | None = None,
    ) -> None:
        self.store = store
        self.llm = llm
        self.tasks = tasks
        self.config = config
        self.warning = warning
        #: task id -> (when recalled, the request it was recalled for, the block)
        self._contexts: dict[int, tuple[float, str, str | None]] = {}

    @staticmethod
    def scope_of(task: Task) -> Scope:
        return Scope(project=task.project, user_id=task.delegator)

    def scope_for(self, user: str, channel: str | None) -> Scope:
        return Scope(project=self.config.project_for(channel), user_id=user)

    # -- the task flow (MemoryHooks) ---------------------------------------------------

    async def context_for(self, task: Task) -> str | None:
        kept = self._contexts.get(task.id)
        if kept is not None and kept[1] == task.request and now() - kept[0] < CONTEXT_REUSE_SECONDS:
            return kept[2]
        recalled = await self.store.retrieve_for_task(task.request, self.scope_of(task))
        text = recalled.text or None
        self._contexts[task.id] = (now(), task.request, text)
        if len(self._contexts) > _CONTEXTS_KEPT:  # the oldest first (dicts keep insertion order)
            del self._contexts[next(iter(self._contexts))]
        return text

    async def task_finished(self, task: Task, outcome: str, tools_used: list[str]) -> None:
        duration = (task.finished_at or now()) - task.created_at if task.created_at else None
        episode = EpisodeInput(
            task_id=task.id,
            request=task.request[:4000],
            plan_summary=(task.plan or {}).get("summary", ""),
            tools_used=tools_used,
            outcome=outcome,
            result_summary=(task.result or "")[:2000],
            duration_s=max(duration, 0.0) if duration is not None else None,
            cost_usd=task.spent_usd,
            project=task.project,
            user=task.delegator,
        )
        await record_episode(self.store, episode)

    async def feedback(self, task_id: int, vote: int) -> None:
        await apply_feedback(self.store, task_id, vote)

    async def estimate_minutes(self, task: Task) -> int | None:
        """From similar past tasks in scope: their median duration."""
        # Keywords only: this runs before the "Got it" reply, which must not wait for a model.
        similar = await recall(
            self.store, task.request, self.scope_of(task), kind="episode", k=5, searches="keyword"
        )
        durations = sorted(m.duration_s for m in similar if m.duration_s)
        return max(1, round(durations[len(durations) // 2] / 60)) if durations else None

    # -- people -----------------------------------------------------------------------

    async def remember(self, text: str, user: str, channel: str | None) -> Memory:
        """`/coworker remember [--team|--me] <fact>`: active at once, in the channel's project."""
        text, scope = text.strip(), self.scope_for(user, channel)
        if text.startswith("--me"):
            fact_id = await consolidation.remember(
                self.store, text[4:].strip(), scope, user_id=user, shared=False
            )
        elif text.startswith("--team"):
            fact_id = await consolidation.remember(
                self.store, text[6:].strip(), Scope(None, user), user_id=user
            )
        else:
            fact_id = await consolidation.remember(self.store, text, scope, user_id=user)
        fact = await self.store.get(fact_id)
        assert fact is not None
        return fact

    async def forget(self, ref: str, user: str, channel: str | None) -> list[Memory]:
        """`/coworker forget <id or text>`: real deletion of what this person may see."""
        scope = self.scope_for(user, channel)
        if (m := _REF.match(ref)) and (fact_id := parse_id(m.group(1))) is not None:
            found = await self.store.get(fact_id)
            targets = [found] if found is not None and self.sees(scope, found) else []
        else:
            targets = await self.store.find(ref, scope, limit=5)
        return [t for t in targets if await self.store.forget(t.id)]

    @staticmethod
    def sees(scope: Scope, memory: Memory) -> bool:
        return scope_key(memory.scope, memory.project, memory.user_id) in scope.keys()

    async def listing(
        self, user: str, channel: str | None, *, status: Status = "active"
    ) -> list[Memory]:
        scope = self.scope_for(user, channel)
        return await self.store.list(scope, kind="fact", status=status, limit=30)

    async def projects_of(self, user: str, directory: Any) -> list[str]:
        """Projects whose channel this person is in."""
        found = [p for c, p in self.config.projects.items() if await directory.in_channel(user, c)]
        return list(dict.fromkeys(found))

    async def forget_from_home(self, fact_id: int, user: str, directory: Any) -> bool:
        """The App Home's Forget button: any fact the person can see there."""
        fact = await self.store.get(fact_id)
        if fact is None:
            return False
        scopes = [Scope(None, user)] + [
            Scope(p, None) for p in await self.projects_of(user, directory)
        ]
        if not any(self.sees(scope, fact) for scope in scopes):
            raise NotAllowed(user=user, action=f"forget fact {fact_id}")
        return await self.store.forget(fact_id)

    async def home_facts(self, user: str, directory: Any) -> tuple[list[Memory], list[Memory]]:
        """(active facts the person can see, proposals they may review) for the App Home.

        Project facts show only for projects whose channel the person is in.
        """
        projects = [
            p for c, p in self.config.projects.items() if await directory.in_channel(user, c)
        ]
        facts = await self.store.list(Scope(None, user), kind="fact", limit=20)
        for project in dict.fromkeys(projects):
            facts += await self.store.list(Scope(project, None), kind="fact", limit=10)
        unique = list({f.id: f for f in facts}.values())
        proposed = await self.store.list(None, kind="fact", status="proposed", limit=10)
        return unique, proposed if self.may_review(user) else []

    # -- review -----------------------------------------------------------------------

    async def fact(self, fact_id: int) -> Memory | None:
        return await self.store.get(fact_id)

    def may_review(self, user: str) -> bool:
        reviewers = self.config.memory.reviewers + self.config.approvals.approvers
        return not reviewers or user in reviewers

    async def decide_fact(
        self, fact_id: int, user: str, *, approve: bool, edited: str | None = None
    ) -> Memory | None:
        if not self.may_review(user):
            raise NotAllowed(user=user, action="review facts")
        if approve:
            return await consolidation.approve(self.store, fact_id, edited, by=user)
        await consolidation.reject(self.store, fact_id)
        return None

    def review_channel(self, fact: Memory) -> str | None:
        if fact.scope == "project" and fact.project:
            return next((c for c, p in self.config.projects.items() if p == fact.project), None)
        return None

    async def consolidate(self) -> list[Proposal]:
        """Propose facts from recent episodes; the caller posts them for review."""
        episodes = await consolidation.pending_episodes(self.store)
        proposed = await consolidation.propose_facts(self.store, episodes, self.extract)
        return [Proposal(fact, self.review_channel(fact)) for fact in proposed]

    async def extract(self, episode_text: str) -> list[str]:
        msg = await self.llm.create(
            purpose="consolidate",
            system=EXTRACT_PROMPT,
            messages=[{"role": "user", "content": episode_text}],
            tools=[EXTRACT_TOOL],
            tool_choice={"type": "tool", "name": "submit_facts"},
            max_tokens=800,
        )
        block = next((b for b in msg.content if b.type == "tool_use"), None)
        facts = block.input.get("facts", []) if block is not None else []
        return (
            [str(f) for f in facts if isinstance(f, str) and f.strip()]
            if isinstance(facts, list)
            else []
        )

    # -- maintenance ------------------------------------------------------------------

    async def decay(self) -> int:
        archived = await decay.archive_stale(self.store)
        return len(archived)

    async def backup(self, path: str | None = None) -> Path:
        if path is not None:
            return await backups.backup_to(self.store.db, path)
        return await backups.nightly_backup(self.store.db, self.config.memory)

    # -- the built-in memory MCP server -------------------------------------------------

    async def tool_remember(self, task_id: int, content: str, scope: str) -> str:
        """The model proposes a fact; people review it before it is used."""
        task = await self.tasks.get(task_id)
        project = task.project if scope == "project" else None
        kind = cast(MemoryScope, scope if scope != "project" or project else "team")
        fact_id = await self.store.add(
            "fact",
            content,
            kind,
            project=project,
            user_id=task.delegator,
            source_task=task.id,
            status="proposed",
        )
        return f"proposed as fact #{fact_id}; a person will review it"

    async def tool_recall(self, task_id: int, query: str, limit: int) -> str:
        task = await self.tasks.get(task_id)
        found = await self.store.recall(query, self.scope_of(task), k=min(limit, 20))
        return json.dumps(
            [{"id": m.id, "kind": m.kind, "content": m.content} for m in found], ensure_ascii=False
        )


def describe(fact: Memory) -> str:
    where = fact.scope if fact.scope != "project" else f"project {fact.project}"
    source = f" (from T-{fact.source_task})" if fact.source_task else ""
    return f"#{fact.id} [{where}] {fact.content}{source}"


def as_dict(fact: Memory) -> dict[str, Any]:
    return {"id": fact.id, "text": describe(fact), "content": fact.content}
