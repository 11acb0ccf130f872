"""Shared fixtures: an isolated environment and a fresh migrated database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.base.db import Database, open_database
from bot.base.migrations import migrate

_OUR_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "DATABASE_URL",
    "COWORKER_CONFIG",
    "COWORKER_MCP_CONFIG",
    "PORT",
    "PUBLIC_URL",
    "COWORKER_SECRET_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "VOYAGE_API_KEY",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No operator settings leak in; the database and config files live in tmp_path."""
    for name in _OUR_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'coworker.db'}")
    # COWORKER_CONFIG and COWORKER_MCP_CONFIG stay unset: their defaults, ./coworker.toml and
    # ./.mcp.json, are in tmp_path, and may be missing (set explicitly, they must exist).
    return tmp_path


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, fully migrated database in a temporary file."""
    database = await open_database(f"sqlite:///{tmp_path / 'test.db'}")
    await migrate(database)
    try:
        yield database
    finally:
        await database.close()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
