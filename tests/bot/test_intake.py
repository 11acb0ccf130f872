"""bot/intake.py: thread replies to a task, as a running task and a finishing one see them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.base.config import Config, parse_config
from bot.base.db import Database
from bot.base.db.postgres import PostgresDatabase
from bot.intake import IncomingMessage, Intake, budget_note, parse_request
from bot.tasks import Task, TaskStore
from tests.postgres_races import replica, table_gate, until_done_or_waiting, waiters

#: the tests that use the database run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")


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


@pytest.mark.parametrize(
    ("text", "dollars", "unusable", "rest"),
    [
        ("!budget 5 do it", 5.0, None, "do it"),
        ("do it !budget $7.50", 7.5, None, "do it"),
        ("!budget 1,000 do it", 1000.0, None, "do it"),
        ("!budget 0 do it", None, "!budget 0", "do it"),
        ("!budget -5 do it", None, "!budget -5", "do it"),
        ("!budget 1e9 do it", None, "!budget 1e9", "do it"),
        ("!budget lots do it", None, "!budget", "lots do it"),
        ("do it !budget", None, "!budget", "do it"),
        ("no flag here", None, None, "no flag here"),
    ],
)
def test_a_budget_flag_gives_dollars_or_says_what_could_not_be_used(
    text: str, dollars: float | None, unusable: str | None, rest: str
) -> None:
    parsed = parse_request(text, Config())
    assert (parsed.budget_usd, parsed.budget_unusable, parsed.text) == (dollars, unusable, rest)


async def test_a_budget_beyond_the_cap_is_capped_and_said(db: Database) -> None:
    config = parse_config({"budget": {"task_usd": 2, "max_task_usd": 20}})
    intake = Intake(TaskStore(db), config)
    msg = IncomingMessage(
        event_id="Ev1", channel="C1", user="U1", text="!budget 100000 go", ts="1.0", mention=True
    )
    result = await intake.receive(msg)
    assert result.task is not None and result.task.budget_usd == 20.0
    [note] = result.notes
    assert "$100,000.00" in note and "at most $20.00" in note and "top-up" in note
    events = await TaskStore(db).events(result.task.id)
    assert budget_note(events) == (
        "you asked for $100,000.00: more than this needs an approver's top-up"
    )
    zero = IncomingMessage(
        event_id="Ev2", channel="C1", user="U1", text="!budget 0 go", ts="2.0", mention=True
    )
    result = await intake.receive(zero)
    assert result.task is not None and result.task.budget_usd == 2.0
    assert result.notes == [
        "`!budget 0` has no amount I can use (dollars above 0, like `!budget 5`), so T-2 has "
        "the usual budget of $2.00."
    ]
    assert budget_note(await TaskStore(db).events(2)) is None


TEAM = parse_config({"coworkers": [{"name": "dev"}, {"name": "writer"}]})


@pytest.mark.parametrize(
    ("text", "coworker", "unknown", "rest"),
    [
        ("dev: fix it", "dev", None, "fix it"),
        ("qa: run the suite", None, "qa", "qa: run the suite"),
        ("https://example.com: look at it", None, None, "https://example.com: look at it"),
        ("10:30 standup notes", None, None, "10:30 standup notes"),
        ("summarize the thread", None, None, "summarize the thread"),
    ],
)
def test_a_name_prefix_picks_a_coworker_or_is_noted_as_unknown(
    text: str, coworker: str | None, unknown: str | None, rest: str
) -> None:
    parsed = parse_request(text, TEAM)
    assert (parsed.coworker, parsed.unknown_coworker, parsed.text) == (coworker, unknown, rest)
    assert parse_request(text, Config()).unknown_coworker is None  # no coworkers configured


# -- two replicas at once (PostgreSQL; SQLite's BEGIN IMMEDIATE serializes these) ----------


async def test_a_reply_racing_the_run_finishing_on_another_replica_is_not_lost(
    pg_db: PostgresDatabase,
) -> None:
    """The run moves its task to done and then looks for replies that came too late for its
    last turn; a reply committed after that look would wait for a run that never comes.
    Intake locks the task's row before it reads the status, so the run's move waits for the
    reply (and finds it) or intake sees the task done (and queues a follow-up)."""
    runner = TaskStore(pg_db)
    async with replica(pg_db) as other:
        intake = Intake(TaskStore(other), Config())
        task_id = await new_task(intake)
        await walk(runner, task_id, "planning", "queued", "running")

        async def finish() -> list[dict[str, Any]]:
            await runner.transition(task_id, "done", from_="running", result="answer")
            return await runner.pending_inputs(task_id)  # what the run sees after its move

        async with table_gate(pg_db.url, "task_inputs"):
            receiving = asyncio.create_task(intake.receive(reply("and staging too", 1)))
            await waiters(pg_db, 1)  # intake has read the task and waits to write the reply
            finishing = asyncio.create_task(finish())
            await until_done_or_waiting(finishing, pg_db, 2)
        async with asyncio.timeout(10):
            received, seen = await receiving, await finishing

    assert received.kind == "continued"
    status = (await runner.get(task_id)).status
    assert status in ("received", "queued") or [i["text"] for i in seen] == ["and staging too"]


async def test_a_burst_from_one_person_on_two_replicas_stays_within_the_limit(
    pg_db: PostgresDatabase,
) -> None:
    config = parse_config({"runner": {"max_new_tasks_per_minute": 1}})
    async with replica(pg_db) as other:
        intakes = [Intake(TaskStore(pg_db), config), Intake(TaskStore(other), config)]
        messages = [
            IncomingMessage(
                event_id=f"Ev{n}",
                channel="C1",
                user="U1",
                text="<@UBOT> go",
                ts=f"{n}.0",
                mention=True,
            )
            for n in (1, 2)
        ]
        async with table_gate(pg_db.url, "tasks"):
            # Both count the person's tasks before either can insert one.
            both = asyncio.gather(*(i.receive(m) for i, m in zip(intakes, messages, strict=True)))
            await waiters(pg_db, 2)
        async with asyncio.timeout(10):
            results = await both

    assert sorted(r.kind for r in results) == ["created", "rate_limited"]
    assert await pg_db.fetchval("SELECT COUNT(*) FROM tasks") == 1
