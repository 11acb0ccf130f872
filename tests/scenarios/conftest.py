from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.harness import Harness

TICKETS = Path(__file__).parent / "servers" / "tickets.py"
WAREHOUSE = Path(__file__).parent / "servers" / "warehouse.py"


def plan(
    *steps: tuple[str, list[str]], questions: list[str] | None = None, minutes: int = 5
) -> dict[str, Any]:
    """A `submit_plan` tool input."""
    return {
        "summary": "Do what was asked",
        "steps": [{"what": what, "tools": tools} for what, tools in steps],
        "estimate_minutes": minutes,
        "questions": questions or [],
    }


def tickets_mcp(log: Path) -> dict[str, Any]:
    import sys

    return {
        "mcpServers": {
            "tickets": {
                "command": sys.executable,
                "args": [str(TICKETS)],
                "env": {"TICKETS_LOG": str(log)},
            }
        }
    }


def warehouse_mcp() -> dict[str, Any]:
    import sys

    return {"mcpServers": {"warehouse": {"command": sys.executable, "args": [str(WAREHOUSE)]}}}


def tool_runs(log: Path, tool: str | None = None) -> list[dict[str, Any]]:
    import json

    if not log.exists():
        return []
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in runs if tool is None or r["tool"] == tool]


@pytest.fixture
def make_harness(tmp_path: Path) -> Callable[..., Harness]:
    def factory(**kw: Any) -> Harness:
        return Harness(tmp=tmp_path, **kw)

    return factory


@pytest.fixture
async def harness(make_harness: Callable[..., Harness]) -> AsyncIterator[Harness]:
    async with make_harness() as h:
        yield h
