"""bot/reports.py against a seeded database, with every expected figure worked out by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.base.config import parse_config
from bot.base.db import Database, open_database
from bot.base.errors import CoworkerError, TaskNotFound
from bot.base.migrations import migrate
from bot.report_text import render_summary, render_table, render_timeline, report_command
from bot.reports import CostLine, is_admin, percentile, summary, timeline

REPO = Path(__file__).resolve().parents[2]
#: the tests that use the database run on both engines (tests/conftest.py)
ENGINES = ("sqlite", "postgres")
T0 = 1_800_000_000.0
H, D = 3600.0, 86_400.0
SONNET, HAIKU, OPUS = "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5"


async def add_task(
    db: Database,
    task_id: int,
    *,
    user: str,
    status: str,
    created: float,
    took: float | None = None,
    coworker: str = "dev",
    parent: int | None = None,
) -> None:
    finished = created + took if took is not None else None
    await db.execute(
        "INSERT INTO tasks (id, parent_id, status, coworker, delegator, channel, thread_ts,"
        " message_ts, request, created_at, finished_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'C1', ?, ?, ?, ?, ?, ?)",
        (
            task_id,
            parent,
            status,
            coworker,
            user,
            str(task_id),
            str(task_id),
            f"request {task_id}",
            created,
            finished,
            created,
        ),
    )


async def add_call(
    db: Database, task_id: int | None, model: str, cost: float, at: float, **kw: Any
) -> None:
    row = {
        "purpose": "act",
        "input_tokens": 100,
        "output_tokens": 10,
        "latency_ms": 500.0,
        "stop_reason": "end_turn",
        **kw,
    }
    await db.execute(
        "INSERT INTO llm_calls (task_id, coworker, purpose, model, input_tokens, output_tokens,"
        " cache_write_tokens, cache_read_tokens, cost_usd, latency_ms, stop_reason, error,"
        " created_at) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            task_id,
            row["purpose"],
            model,
            row["input_tokens"],
            row["output_tokens"],
            row.get("cache_write", 0),
            row.get("cache_read", 0),
            cost,
            row["latency_ms"],
            row["stop_reason"],
            row.get("error"),
            at,
        ),
    )


async def add_approval(
    db: Database, task_id: int, requested: float, waited: float | None, status: str = "approved"
) -> None:
    decided = requested + waited if waited is not None else None
    await db.execute(
        "INSERT INTO approvals (task_id, kind, tool, reason, status, requested_at, deadline,"
        " decided_by, decided_at) VALUES (?, 'tool', 'github__merge', 'merge it', ?, ?, ?, ?, ?)",
        (task_id, status, requested, requested + 4 * H, "U9" if decided else None, decided),
    )


async def add_event(db: Database, task_id: int, kind: str, at: float) -> None:
    await db.execute(
        "INSERT INTO task_events (task_id, kind, at) VALUES (?, ?, ?)", (task_id, kind, at)
    )


async def seed(db: Database, t0: float = T0) -> None:
    """Six top-level tasks in the window, one sub-task, one task too old to count."""
    await add_task(db, 1, user="U1", status="done", created=t0 - 1 * D, took=600)
    await add_task(db, 2, user="U1", status="done", created=t0 - 2 * D, took=1200)
    await add_task(db, 3, user="U2", status="done", created=t0 - 3 * D, took=300, coworker="writer")
    await add_task(
        db, 4, user="U2", status="failed", created=t0 - 1 * H, took=60, coworker="writer"
    )
    await add_task(db, 5, user="U1", status="cancelled", created=t0 - 2 * H, took=30)
    await add_task(db, 6, user="U2", status="running", created=t0 - 600)
    await add_task(db, 7, user="U1", status="done", created=t0 - 10 * D, took=50)
    await add_task(
        db,
        8,
        user="U1",
        status="done",
        created=t0 - 2 * D + 100,
        took=200,
        coworker="writer",
        parent=2,
    )

    await add_call(db, 1, SONNET, 0.10, t0 - 1 * D + 10)
    await add_call(db, 1, HAIKU, 0.01, t0 - 1 * D + 5, purpose="classify")
    await add_call(db, 2, SONNET, 0.20, t0 - 2 * D + 50, cache_write=900, cache_read=4000)
    await add_call(db, 8, HAIKU, 0.05, t0 - 2 * D + 150, purpose="summarize")
    await add_call(db, 3, OPUS, 0.50, t0 - 3 * D + 10, purpose="final_draft")
    await add_call(db, 4, SONNET, 0.04, t0 - 1 * H + 5)
    await add_call(db, 4, SONNET, 0.0, t0 - 1 * H + 9, error="APIConnectionError")
    await add_call(db, 6, SONNET, 0.30, t0 - 500)
    await add_call(db, 7, SONNET, 9.99, t0 - 10 * D + 5)
    await add_call(db, None, HAIKU, 0.02, t0 - 1 * D, purpose="consolidate")
    await add_call(db, None, HAIKU, 0.50, t0 - 8 * D, purpose="consolidate")

    await add_approval(db, 1, t0 - 1 * D + 20, 120)
    await add_approval(db, 8, t0 - 2 * D + 160, 3600)
    await add_approval(db, 4, t0 - 1 * H + 6, 30, status="rejected")
    await add_approval(db, 6, t0 - 400, None, status="pending")
    await add_approval(db, 7, t0 - 10 * D + 6, 9999)

    await add_event(db, 8, "questions", t0 - 2 * D + 120)
    await add_event(db, 3, "plan_approved", t0 - 3 * D + 5)
    await add_event(db, 4, "plan_edited", t0 - 1 * H + 2)
    await add_event(db, 5, "created", t0 - 2 * H)

    await db.execute(
        "INSERT INTO tool_calls (idempotency_key, task_id, server, tool, arguments, args_hash,"
        " tier, status, started_at, finished_at, duration_ms)"
        " VALUES ('t2:a', 2, 'github', 'github__search', '{\"q\": \"flaky\"}', 'h', 'auto', 'ok',"
        " ?, ?, 250.0)",
        (t0 - 2 * D + 60, t0 - 2 * D + 60.25),
    )


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)
    return db


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0, 20.0], 0.9) == pytest.approx(18.0)


async def test_team_summary_matches_the_hand_computed_figures(seeded: Database) -> None:
    s = await summary(seeded, days=7, until=T0)
    # tasks 1-6 are top-level and in the window; 7 is too old; 8 belongs to 2
    assert (s.tasks, s.done, s.failed, s.cancelled, s.open) == (6, 3, 1, 1, 1)
    assert s.success_rate == pytest.approx(3 / 5)
    # done tasks took 600, 1200, 300 s
    assert s.completion_s.count == 3
    assert s.completion_s.median == 600
    assert s.completion_s.p90 == pytest.approx(600 + 0.8 * 600)
    # per task: 0.11, 0.20 + 0.05 (sub-task), 0.50, 0.04, 0, 0.30
    assert s.cost_usd.median == pytest.approx((0.11 + 0.25) / 2)
    assert s.cost_usd.p90 == pytest.approx(0.30 + 0.5 * (0.50 - 0.30))
    assert s.total_usd == pytest.approx(1.20)
    # approval (1), sub-task question (2), plan edit (4), pending approval (6); not 3 or 5
    assert s.intervened == 4
    assert s.intervention_rate == pytest.approx(4 / 6)
    # decided approvals waited 120, 3600 (sub-task), 30 s; the pending one is not counted
    assert s.approval_wait_s.count == 3
    assert s.approval_wait_s.median == 120
    assert s.approval_wait_s.p90 == pytest.approx(120 + 0.8 * (3600 - 120))
    assert s.by_model == [
        CostLine(SONNET, calls=5, tasks=4, cost_usd=pytest.approx(0.64)),
        CostLine(OPUS, calls=1, tasks=1, cost_usd=pytest.approx(0.50)),
        CostLine(HAIKU, calls=2, tasks=2, cost_usd=pytest.approx(0.06)),
    ]
    assert s.by_coworker == [
        CostLine("dev", calls=4, tasks=3, cost_usd=pytest.approx(0.61)),
        CostLine("writer", calls=4, tasks=3, cost_usd=pytest.approx(0.59)),
    ]
    assert (s.untasked_calls, s.untasked_usd) == (1, pytest.approx(0.02))


async def test_one_persons_summary_counts_only_their_tasks(seeded: Database) -> None:
    s = await summary(seeded, days=7, user="U1", until=T0)
    assert (s.tasks, s.done, s.cancelled, s.open) == (3, 2, 1, 0)  # tasks 1, 2, 5
    assert s.success_rate == pytest.approx(2 / 3)
    assert s.cost_usd.median == pytest.approx(0.11)
    assert s.cost_usd.p90 == pytest.approx(0.11 + 0.8 * (0.25 - 0.11))
    assert s.total_usd == pytest.approx(0.36)
    assert s.intervened == 2
    assert s.approval_wait_s.median == pytest.approx((120 + 3600) / 2)
    assert s.untasked_calls == 0


async def test_empty_window(db: Database) -> None:
    s = await summary(db, days=1, until=T0)
    assert s.tasks == 0 and s.success_rate is None and s.intervention_rate is None
    assert s.cost_usd.median is None and s.by_model == []
    assert "success rate" in render_summary(s)


async def test_task_timeline_in_time_order_with_sub_tasks(seeded: Database) -> None:
    t = await timeline(seeded, 2)
    assert [(s.kind, s.task_id) for s in t.steps] == [
        ("model", 2),
        ("tool", 2),
        ("model", 8),
        ("approval", 8),
    ]
    first = t.steps[0]
    assert first.at == pytest.approx(T0 - 2 * D + 50 - 0.5)  # logged at the end of the call
    assert "cache write 900 read 4000" in first.detail
    assert t.cost_usd == pytest.approx(0.25)
    assert (t.model_calls, t.tool_calls) == (2, 1)
    text = render_timeline(t)
    assert "T-2 · done, took 20m 00s" in text
    assert "github__search" in text and "summarize · claude-haiku-5-5" in text
    assert text.index("github__search") < text.index("summarize")
    with pytest.raises(TaskNotFound):
        await timeline(seeded, 999)


async def test_failed_call_shows_its_error(seeded: Database) -> None:
    t = await timeline(seeded, 4)
    assert [s.outcome for s in t.steps if s.kind == "model"] == [
        "end_turn",
        "error: APIConnectionError",
    ]


def test_render_table_aligns_columns() -> None:
    text = render_table(["model", "cost"], [["claude-haiku-5-5", "$0.06"], ["x", "$10.50"]])
    lines = text.splitlines()
    assert lines[0] == "model               cost"
    assert lines[2] == "claude-haiku-5-5   $0.06"
    assert lines[3] == "x                 $10.50"


async def test_render_summary_shows_every_figure(seeded: Database) -> None:
    text = render_summary(await summary(seeded, days=7, until=T0))
    for expected in (
        "6 (3 done, 1 failed, 1 cancelled, 1 open)",
        "60.0% (3 of 5)",
        "median 10m 00s · p90 18m 00s",
        "median $0.18 · p90 $0.40 (n=6) · total $1.20",
        "66.7% (4 of 6)",
        "median 2m 00s · p90 48m 24s (n=3)",
        SONNET,
        "writer",
    ):
        assert expected in text, expected


async def test_admins_are_role_members_directly_or_by_group() -> None:
    config = parse_config(
        {
            "roles": {
                "ops": {"members": ["U1", "S9"], "admin": True},
                "devs": {"members": ["U2"]},
            }
        }
    )

    class Groups:
        async def is_bot(self, user: str) -> bool:
            return False

        async def groups_of(self, user: str) -> set[str]:
            return {"S9"} if user == "U3" else set()

    assert await is_admin(config, Groups(), "U1")
    assert await is_admin(config, Groups(), "U3")
    assert not await is_admin(config, Groups(), "U2")


async def test_report_command_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CoworkerError, match="no database"):
        await report_command(f"sqlite:///{tmp_path / 'none.db'}", days=7, task=None)
    with pytest.raises(CoworkerError, match="--days"):
        await report_command(f"sqlite:///{tmp_path / 'none.db'}", days=0, task=None)
    with pytest.raises(CoworkerError, match="not a task reference"):
        await report_command(f"sqlite:///{tmp_path / 'none.db'}", days=7, task="banana")


async def seeded_file(path: Path) -> None:
    db = await open_database(f"sqlite:///{path}")
    try:
        await migrate(db)
        await seed(db, t0=time.time())
    finally:
        await db.close()


def run_report(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))}
    env.update(PYTHONPATH=str(REPO), DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}")
    return subprocess.run(
        [sys.executable, "-m", "bot", "report", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )


async def test_cli_report_prints_the_summary_and_a_task(tmp_path: Path) -> None:
    await seeded_file(tmp_path / "r.db")
    result = run_report(tmp_path, "--days", "7")
    assert result.returncode == 0, result.stderr
    assert "60.0% (3 of 5)" in result.stdout and "total $1.20" in result.stdout
    one = run_report(tmp_path, "--task", "T-2")
    assert one.returncode == 0, one.stderr
    assert "github__search" in one.stdout and "T-8" in one.stdout
    missing = run_report(tmp_path, "--task", "T-999")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no task T-999"
