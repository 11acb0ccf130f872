"""Reports as text: the tables `python -m bot report` prints and the lines the App Home shows.

The figures come from `bot.reports`; this module only formats them (money, durations,
percentages, plain-text tables with numbers right-aligned).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.base.db import Database
from bot.base.errors import CoworkerError
from bot.reports import CostLine, Spread, Summary, Timeline, clip, summary, timeline
from bot.tasks import parse_task_ref
from bot.words import state_words


def money(value: float | None) -> str:
    return (
        "–"
        if value is None
        else f"${value:.2f}"
        if value >= 0.01 or value == 0
        else f"${value:.4f}"
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part} of {whole})" if whole else "–"


def summary_rows(s: Summary) -> list[tuple[str, str]]:
    """The summary as (metric, value) lines, shared by the CLI table and the App Home."""
    state = f"{s.tasks} ({s.done} done, {s.failed} failed, {s.cancelled} cancelled, {s.open} open)"
    rows = [
        ("tasks", state),
        ("success rate", percent(s.done, s.finished)),
        ("time to completion", _spread(s.completion_s, duration)),
        ("cost per task", f"{_spread(s.cost_usd, money)} · total {money(s.total_usd)}"),
        ("human intervention", percent(s.intervened, s.tasks)),
        ("approval wait", _spread(s.approval_wait_s, duration)),
    ]
    if s.untasked_calls:
        rows.append(("calls outside tasks", f"{s.untasked_calls} · {money(s.untasked_usd)}"))
    return rows


def _spread(spread: Spread, fmt: Any) -> str:
    if not spread.count:
        return "–"
    return f"median {fmt(spread.median)} · p90 {fmt(spread.p90)} (n={spread.count})"


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table; columns whose cells all look numeric are right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    numeric = [
        bool(rows) and all(_looks_numeric(str(r[i])) for r in rows) for i in range(len(headers))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if num else str(c).ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _looks_numeric(cell: str) -> bool:
    return cell.lstrip("$+-").replace(".", "", 1).replace(",", "").isdigit() or cell == "–"


def _cost_table(title: str, lines: list[CostLine]) -> str:
    rows = [[c.name, str(c.calls), str(c.tasks), money(c.cost_usd)] for c in lines]
    return render_table([title, "calls", "tasks", "cost"], rows) if rows else f"{title}: no calls"


def render_summary(s: Summary) -> str:
    who = "the team" if s.user is None else s.user
    head = f"Tasks created in the last {s.days} days, for {who}"
    metrics = render_table(["metric", "value"], [list(r) for r in summary_rows(s)])
    return "\n\n".join(
        [head, metrics, _cost_table("model", s.by_model), _cost_table("coworker", s.by_coworker)]
    )


def render_timeline(t: Timeline) -> str:
    finished = f", took {duration(t.finished_at - t.created_at)}" if t.finished_at else ""
    head = (
        f"T-{t.task_id} · {state_words(t.status)}{finished} · coworker {t.coworker}"
        f" · from {t.delegator}\n"
        f"{clip(t.request, 100)}\n"
        f"{t.model_calls} model call(s), {t.tool_calls} tool call(s), "
        f"{money(t.cost_usd)} of {money(t.budget_usd)} budget"
    )
    rows = [
        [
            f"+{duration(s.at - t.created_at)}",
            f"T-{s.task_id}",
            s.kind,
            s.name,
            s.detail,
            "" if s.duration_ms is None else duration(s.duration_ms / 1000),
            "" if s.cost_usd is None else money(s.cost_usd),
            s.outcome,
        ]
        for s in t.steps
    ]
    headers = ["at", "task", "kind", "what", "detail", "took", "cost", "outcome"]
    return head + "\n\n" + (render_table(headers, rows) if rows else "no calls yet")


# -- the CLI command ----------------------------------------------------------------------


async def report_command(database_path: str, *, days: int, task: str | None) -> str:
    """The text `python -m bot report [--days N | --task T-n]` prints.

    Raises:
        CoworkerError: no database, an unmigrated one, a bad `--days` or task reference.
    """
    if days < 1:
        raise CoworkerError("--days must be at least 1")
    task_id = parse_task_ref(task) if task else None
    if task and task_id is None:
        raise CoworkerError(f"{task!r} is not a task reference (try T-42)")
    if not await asyncio.to_thread(Path(database_path).exists):
        raise CoworkerError(f"no database at {database_path}: nothing to report yet")
    db = await Database.open(database_path)
    try:
        if not await db.fetchval("SELECT 1 FROM sqlite_master WHERE name = 'llm_calls'"):
            raise CoworkerError("the database is not migrated: run `python -m bot migrate`")
        if task_id is not None:
            return render_timeline(await timeline(db, task_id))
        return render_summary(await summary(db, days=days))
    finally:
        await db.close()
