"""Episodic memory: one record per finished task, and the feedback people give on it.

An episode's `content` is what gets embedded and searched: the request, the plan, the tools,
the outcome and any correction, as a few labelled lines. The structured parts are columns
too, for the App Home and reports.

Scope: a task in a project channel becomes a project memory; otherwise it is the
delegator's own (a DM must not surface in someone else's task). Pass `scope="team"` for a
public channel that maps to no project, if the team wants those shared.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memory.records import Memory, MemoryScope
from memory.store import MemoryStore

#: How much a 👍 / 👎 moves an episode's importance. A correction is a lesson worth keeping,
#: so a 👎 that comes with one raises importance instead of lowering it.
FEEDBACK_STEP = 0.15
_MAX_FIELD_CHARS = 2000


class EpisodeInput(BaseModel):
    """What the task runner knows when a task ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: int
    request: str = Field(min_length=1)
    plan_summary: str = ""
    tools_used: list[str] = []
    outcome: str = Field(min_length=1, description="done | failed | cancelled, or similar")
    result_summary: str = ""
    duration_s: float | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    project: str | None = None
    user: str
    permalink: str | None = None
    scope: MemoryScope | None = None

    @property
    def memory_scope(self) -> MemoryScope:
        return self.scope or ("project" if self.project else "user")


def episode_text(episode: EpisodeInput, correction: str | None = None) -> str:
    """The searchable text of an episode: labelled lines, long parts clipped."""

    def clip(text: str) -> str:
        text = text.strip()
        return text if len(text) <= _MAX_FIELD_CHARS else text[:_MAX_FIELD_CHARS] + "…"

    lines = [f"Request: {clip(episode.request)}"]
    if episode.plan_summary.strip():
        lines.append(f"Plan: {clip(episode.plan_summary)}")
    if episode.tools_used:
        lines.append("Tools: " + ", ".join(dict.fromkeys(episode.tools_used)))
    outcome = episode.outcome
    if episode.result_summary.strip():
        outcome += f": {clip(episode.result_summary)}"
    lines.append(f"Outcome: {outcome}")
    if correction:
        lines.append(f"Correction: {clip(correction)}")
    return "\n".join(lines)


async def episode_for_task(store: MemoryStore, task_id: int) -> Memory | None:
    row = await store.db.fetchone(
        "SELECT * FROM memories WHERE kind = 'episode' AND source_task = ?", (task_id,)
    )
    return None if row is None else Memory.from_row(row)


async def record_episode(store: MemoryStore, task_summary: EpisodeInput) -> int:
    """Store (or, for a follow-up on the same task, refresh) the task's episode; its id."""
    ep = task_summary
    existing = await episode_for_task(store, ep.task_id)
    fields: dict[str, Any] = dict(
        scope=ep.memory_scope,
        project=ep.project,
        user_id=ep.user,
        permalink=ep.permalink,
        outcome=ep.outcome,
        tools_used=list(dict.fromkeys(ep.tools_used)),
        duration_s=ep.duration_s,
        cost_usd=ep.cost_usd,
    )
    if existing is None:
        return await store.add("episode", episode_text(ep), source_task=ep.task_id, **fields)
    await store.update(existing.id, content=episode_text(ep, existing.correction), **fields)
    return existing.id


async def apply_feedback(
    store: MemoryStore, task_id: int, vote: int, correction: str | None = None
) -> Memory | None:
    """Record 👍 (+1) or 👎 (-1), and an optional correction, on the task's episode.

    Returns the updated episode, or None when the task has no episode yet.
    """
    if vote not in (1, -1):
        raise ValueError("vote must be +1 or -1")
    episode = await episode_for_task(store, task_id)
    if episode is None:
        return None
    correction = (correction or "").strip() or episode.correction
    step = FEEDBACK_STEP if vote == 1 or correction else -FEEDBACK_STEP
    importance = min(1.0, max(0.0, episode.importance + step))
    changes: dict[str, Any] = {"feedback": vote, "importance": importance}
    if correction != episode.correction:
        changes["correction"] = correction
        base = episode.content.split("\nCorrection: ", 1)[0]
        changes["content"] = f"{base}\nCorrection: {correction}"
    return await store.update(episode.id, **changes)
