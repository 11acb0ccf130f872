"""Episodes: one per task, refreshed by follow-ups, and feedback on them."""

from __future__ import annotations

from memory.episodes import EpisodeInput, apply_feedback, episode_for_task, record_episode
from memory.records import Scope
from memory.store import MemoryStore
from tests.memory.conftest import MakeTask


def episode(task_id: int, **overrides: object) -> EpisodeInput:
    values: dict[str, object] = dict(
        task_id=task_id,
        request="summarize yesterday's failed CI runs",
        plan_summary="1. list failed runs 2. group by test",
        tools_used=["github__list_runs"],
        outcome="done",
        result_summary="3 flaky tests found",
        duration_s=42.0,
        cost_usd=0.12,
        project="web",
        user="U1",
        permalink="https://x.slack.com/archives/C1/p1",
    )
    return EpisodeInput.model_validate(values | overrides)


async def test_record_episode_is_searchable_and_structured(
    store: MemoryStore, make_task: MakeTask
) -> None:
    await make_task(42)
    memory_id = await record_episode(store, episode(42))
    memory = await store.get(memory_id)
    assert memory is not None
    assert memory.kind == "episode" and memory.scope == "project" and memory.project == "web"
    assert memory.source_task == 42 and memory.cost_usd == 0.12
    assert memory.tools_used == ["github__list_runs"]
    assert "Request: summarize" in memory.content and "Outcome: done: 3 flaky" in memory.content
    hits = await store.recall("flaky CI runs", Scope(project="web"), kind="episode")
    assert [m.id for m in hits] == [memory_id]


async def test_a_follow_up_refreshes_the_same_episode(
    store: MemoryStore, make_task: MakeTask
) -> None:
    await make_task(5)
    first = await record_episode(store, episode(5))
    again = await record_episode(store, episode(5, outcome="failed", result_summary="timed out"))
    assert again == first
    assert len(await store.list(Scope(project="web"), kind="episode")) == 1
    memory = await store.get(first)
    assert memory is not None and memory.outcome == "failed" and "timed out" in memory.content


async def test_a_dm_task_is_the_users_own(store: MemoryStore, make_task: MakeTask) -> None:
    await make_task(6)
    memory_id = await record_episode(store, episode(6, project=None))
    memory = await store.get(memory_id)
    assert memory is not None and memory.scope == "user" and memory.user_id == "U1"


async def test_feedback_and_correction(store: MemoryStore, make_task: MakeTask) -> None:
    await make_task(8)
    memory_id = await record_episode(store, episode(8))
    liked = await apply_feedback(store, 8, +1)
    assert liked is not None and liked.feedback == 1 and liked.importance > 0.5
    corrected = await apply_feedback(store, 8, -1, "group by test file, not by job")
    assert corrected is not None and corrected.feedback == -1
    assert corrected.correction == "group by test file, not by job"
    assert corrected.content.endswith("Correction: group by test file, not by job")
    assert corrected.embedded_by == store.vectors.signature  # re-embedded with the lesson
    hits = await store.recall("group by test file", Scope(project="web"), kind="episode")
    assert hits[0].id == memory_id
    # a later re-record keeps the correction
    await record_episode(store, episode(8))
    refreshed = await episode_for_task(store, 8)
    assert refreshed is not None and "Correction: group by test file" in refreshed.content
    assert await apply_feedback(store, 999, 1) is None
