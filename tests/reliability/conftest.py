"""Fixtures of the reliability suite: the in-process harness and the effects MCP server."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.harness import Harness

EFFECTS = Path(__file__).parent / "servers" / "effects.py"


def effects_mcp(log: Path, **env: str) -> dict[str, Any]:
    """`.mcp.json` content for the effects server, logging real calls to `log`."""
    return {
        "mcpServers": {
            "effects": {
                "command": sys.executable,
                "args": [str(EFFECTS)],
                "env": {"EFFECTS_LOG": str(log), **env},
            }
        }
    }


@pytest.fixture
def make_harness(tmp_path: Path) -> Callable[..., Harness]:
    def factory(**kw: Any) -> Harness:
        return Harness(tmp=tmp_path, **kw)

    return factory


class Captured(logging.Handler):
    """Every log record of the app, formatted, for scans after a run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def app_logs() -> Iterator[Captured]:
    """All log records (INFO and up, tracebacks included) while the test runs."""
    handler = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
