"""bot/intake.py: thread replies to a task, as a running task and a finishing one see them."""

from __future__ import annotations

from typing import Any

from bot.base.config import Config
from bot.base.db import Database
from bot.intake import IncomingMessage, Intake
from bot.tasks import Task, TaskStore


class WatchedStore(TaskStore):
    """A TaskStore that notes how many replies were counted whenever intake reads a task."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.counted_at_get: list[int] = []

    async def get(self, task_id: int) -> Task:
        self.counted_at_get.append(self.replies)
        return await super().get(task_id)


def reply(text: str, n: int, user: str = "U1") -> IncomingMessage:
    return IncomingMessage(
        event_id=f"Ev{n}", channel="C1", user=user, text=text, ts=f"2.{n}", thread_ts="1.0"
    )


async def walk(tasks: TaskStore, task_id: int, *states: str, **fields: Any) -> None:
    """Move a received task through `states` (each a move the state machine has); the last
    move sets `fields`."""
    for was, to in zip(("received", *states), states, strict=False):
        assert await tasks.transition(
            task_id, to, from_=was, **(fields if to == states[-1] else {})
        )


async def new_task(intake: Intake) -> int:
    first = IncomingMessage(
        event_id="Ev0", channel="C1", user="U1", text="<@UBOT> do it", ts="1.0", mention=True
    )
    result = await intake.receive(first)
    assert result.task is not None
    return result.task.id


async def test_a_reply_is_counted_as_soon_as_it_is_committed(db: Database) -> None:
    # A running task skips re-reading its row while the count stands, so the count must
    # move before intake does anything else that could let a model turn start.
    tasks = WatchedStore(db)
    intake = Intake(tasks, Config())
    task_id = await new_task(intake)
    await walk(tasks, task_id, "planning", "queued", "running")
    before, tasks.counted_at_get[:] = tasks.replies, []

    result = await intake.receive(reply("also check staging", 1))

    assert result.kind == "continued"
    assert tasks.counted_at_get == [before + 1]
    assert [i["text"] for i in await tasks.pending_inputs(task_id)] == ["also check staging"]
    assert (await tasks.get(task_id)).status == "running"  # the run takes it in


class StaleStore(TaskStore):
    """Finds the thread's task as it was before it finished (intake read it just before)."""

    async def find_by_thread(self, channel: str, thread_ts: str) -> Task | None:
        task = await super().find_by_thread(channel, thread_ts)
        if task is not None:
            task.status, task.finished_at = "running", None
        return task


async def test_a_reply_to_a_task_that_finished_meanwhile_queues_a_follow_up(db: Database) -> None:
    # Intake found the task running, but it finished before intake's transaction: the
    # status read inside the transaction decides, so the reply becomes a follow-up.
    tasks = StaleStore(db)
    intake = Intake(tasks, Config())
    task_id = await new_task(intake)
    await walk(
        tasks,
        task_id,
        "planning",
        "queued",
        "running",
        "done",
        result="first answer",
        plan={"summary": "s", "steps": []},
    )

    await intake.receive(reply("and one more thing", 2))

    fresh = await tasks.get(task_id)
    assert fresh.status == "queued" and fresh.finished_at is None


async def test_a_reply_to_a_task_without_an_approved_plan_plans_it_again(db: Database) -> None:
    # It failed while planning (the model was down): a reply must not run it plan-less.
    tasks = TaskStore(db)
    intake = Intake(tasks, Config())
    task_id = await new_task(intake)
    await walk(tasks, task_id, "planning", "failed", error="model_unavailable")

    await intake.receive(reply("try again please", 3))

    fresh = await tasks.get(task_id)
    assert fresh.status == "received" and fresh.plan is None and fresh.finished_at is None


async def test_a_plan_message_is_recorded_only_for_the_plan_it_shows(db: Database) -> None:
    tasks = TaskStore(db)
    task_id = await new_task(Intake(tasks, Config()))
    first, second = {"summary": "one", "steps": []}, {"summary": "two", "steps": []}
    await walk(tasks, task_id, "planning", "awaiting_plan_approval", plan=first)
    assert await tasks.set_plan_ts(task_id, "1.1", first, was=None)
    assert not await tasks.set_plan_ts(task_id, "1.2", first, was=None)  # 1.1 took its place
    await tasks.update(task_id, plan=second)  # planned again while 1.3 was being posted
    assert not await tasks.set_plan_ts(task_id, "1.3", first, was="1.1")
    assert await tasks.set_plan_ts(task_id, "1.4", second, was="1.1")
    assert (await tasks.get(task_id)).plan_ts == "1.4"
